"""The bad-input promise for `tulu train sft|lora|qlora|dpo|plot`, one table row per bad input.

Each row: exit status 2, exactly one stderr line starting with "error:" that names the fault, no
traceback, nothing new or changed under the shared folder (no output folder, no tulu_options.json,
no cache). Every row stops in the preflight, before any weights load or training starts. Rows about
permissions run as an unprivileged user: root passes every permission check.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests._bad_input import assert_bad_input, snapshot
from tests._peft_helpers import write_preference_data
from tests._train_helpers import one_torch_thread, run_cli, write_chat_data  # noqa: F401 (autouse fixture)
from tests._unprivileged import unprivileged

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _model_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def w(tiny_model, tmp_path_factory) -> Path:
    """Every input of the rows, under one folder the rows must leave as they found it."""
    root = tmp_path_factory.mktemp("bad_train")
    write_chat_data(root / "chat.jsonl", n=4)
    write_preference_data(root / "prefs.jsonl", n=4)
    (root / "first_bad.jsonl").write_text('{"messages": [{"role": "user"\n')
    (root / "not_object.jsonl").write_text("[1, 2]\n")
    good = (root / "chat.jsonl").read_text().splitlines(keepends=True)
    (root / "cut_line3.jsonl").write_text(good[0] + good[1] + good[2][: len(good[2]) // 2] + "\n")  # a copy cut short
    (root / "bad_role.jsonl").write_text(json.dumps({"messages": [{"role": "robot", "content": "hi"}]}) + "\n")
    (root / "empty.jsonl").write_text("")
    (root / "afile").write_text("not a folder\n")
    trunc = _model_copy(tiny_model, root / "trunc_model")
    weights = trunc / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    no_tok = _model_copy(tiny_model, root / "no_tokenizer")
    for name in TOKENIZER_FILES:
        (no_tok / name).unlink(missing_ok=True)
    (root / "no_config").mkdir()
    bad_cfg = _model_copy(tiny_model, root / "bad_config")
    (bad_cfg / "config.json").write_text("{not json")
    no_w = _model_copy(tiny_model, root / "no_weights")
    (no_w / "model.safetensors").unlink()
    (root / "run").mkdir()  # a run folder whose metrics.jsonl is garbled
    (root / "run" / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo\n')
    (root / "cfg_unknown.yaml").write_text("learnin_rate: 1.0e-4\n")
    (root / "cfg_bad.yaml").write_text("model: [unclosed\n")
    (root / "ds.json").write_text("{not json")
    (root / "model").symlink_to(tiny_model)
    return root


def _sft(w: Path, *extra, model=None, data=None, cmd=("sft",)) -> list[str]:
    return ["train", *cmd, "-m", str(model or w / "model"), "-t", str(data or w / "chat.jsonl"), "-o", str(w / "out"),
            "--cache-dir", str(w / "cache"), "--dtype", "fp32", "--max-seq-length", "128", "--cpu", *map(str, extra)]  # fmt: skip


# (id, args given the world folder, what the error line must contain)
ROWS = [
    # model folder, weights, tokenizer
    ("sft-model-missing", lambda w: _sft(w, model=w / "nope"), ["--model", "nope", "no such folder"]),
    ("sft-model-no-config", lambda w: _sft(w, model=w / "no_config"), ["--model", "no config.json"]),
    ("sft-model-config-not-json", lambda w: _sft(w, model=w / "bad_config"), ["config.json", "not valid JSON"]),
    ("sft-model-no-weights", lambda w: _sft(w, model=w / "no_weights"), ["no model weights found"]),
    ("sft-truncated-weights", lambda w: _sft(w, model=w / "trunc_model"), ["trunc_model/model.safetensors", "truncated safetensors file"]),
    ("sft-truncated-weights-dry-run", lambda w: _sft(w, "--dry-run", model=w / "trunc_model"), ["truncated safetensors file"]),
    ("sft-model-is-a-file", lambda w: _sft(w, model=w / "afile"), ["--model", "is a file"]),
    ("sft-no-tokenizer-files", lambda w: _sft(w, model=w / "no_tokenizer"), ["no tokenizer files", "--tokenizer"]),
    ("sft-tokenizer-missing", lambda w: _sft(w, "--tokenizer", w / "no_tok_here"), ["--tokenizer", "no such folder"]),
    # data files
    ("sft-train-file-missing", lambda w: _sft(w, data=w / "missing.jsonl"), ["missing.jsonl", "does not exist"]),
    ("sft-train-file-empty", lambda w: _sft(w, data=w / "empty.jsonl"), ["empty.jsonl", "empty"]),
    ("sft-train-file-first-line-bad", lambda w: _sft(w, data=w / "first_bad.jsonl"), ["first_bad.jsonl:1", "truncated JSON"]),
    ("sft-train-file-line-3-cut-short", lambda w: _sft(w, data=w / "cut_line3.jsonl"), ["cut_line3.jsonl:3", "truncated JSON"]),
    ("sft-train-file-not-object", lambda w: _sft(w, data=w / "not_object.jsonl"), ["not_object.jsonl:1", "JSON object"]),
    ("sft-train-file-bad-role", lambda w: _sft(w, data=w / "bad_role.jsonl"), ["bad_role.jsonl:1", "robot"]),
    ("dpo-data-without-pairs", lambda w: _sft(w, cmd=("dpo",)), ["chat.jsonl"]),
    # output paths
    ("sft-output-is-a-file", lambda w: _sft(w)[:6] + ["-o", str(w / "afile")] + _sft(w)[8:], ["--output-dir", "afile", "not a folder"]),
    ("sft-output-under-a-file", lambda w: _sft(w)[:6] + ["-o", str(w / "afile" / "out")] + _sft(w)[8:], ["--output-dir", "is a file, not a folder"]),
    ("sft-output-under-a-file-dry-run", lambda w: _sft(w, "--dry-run")[:6] + ["-o", str(w / "afile" / "o")] + _sft(w, "--dry-run")[8:], ["--output-dir", "is a file"]),
    ("sft-cache-dir-is-a-file", lambda w: _sft(w)[:8] + ["--cache-dir", str(w / "afile")] + _sft(w)[10:], ["--cache-dir", "not a folder"]),
    ("lora-output-is-a-file", lambda w: _sft(w, cmd=("lora",))[:6] + ["-o", str(w / "afile")] + _sft(w, cmd=("lora",))[8:], ["--output-dir", "not a folder"]),
    ("slurm-under-a-file", lambda w: _sft(w, "--slurm", w / "afile" / "job.sbatch", "--num-machines", 2, "--num-processes", 2), ["--slurm", "is a file, not a folder"]),
    ("slurm-is-a-folder", lambda w: _sft(w, "--slurm", w / "run", "--num-machines", 2, "--num-processes", 2), ["--slurm", "is a folder"]),
    # LoRA target modules, from the architecture on the meta device
    ("lora-bad-target-modules", lambda w: _sft(w, "--lora-target-modules", "q_proj,qkv", cmd=("lora",)), ["--lora-target-modules", "qkv", "not found", "q_proj"]),
    ("lora-bad-target-modules-dry-run", lambda w: _sft(w, "--lora-target-modules", "attn", "--dry-run", cmd=("lora",)), ["--lora-target-modules", "attn not found"]),
    ("qlora-bad-target-modules", lambda w: _sft(w, "--lora-target-modules", "c_attn", cmd=("qlora",)), ["--lora-target-modules", "c_attn not found"]),
    ("dpo-lora-bad-target-modules", lambda w: _sft(w, "--lora", "--lora-target-modules", "wq", data=w / "prefs.jsonl", cmd=("dpo",)), ["--lora-target-modules", "wq not found"]),
    ("lora-truncated-weights", lambda w: _sft(w, model=w / "trunc_model", cmd=("lora",)), ["truncated safetensors file"]),
    # options and --config
    ("sft-config-unknown-key", lambda w: _sft(w, "-c", w / "cfg_unknown.yaml"), ["learnin_rate"]),
    ("sft-config-bad-yaml", lambda w: _sft(w, "-c", w / "cfg_bad.yaml"), ["cfg_bad.yaml"]),
    ("sft-config-missing", lambda w: _sft(w, "-c", w / "none.yaml"), ["none.yaml"]),
    ("sft-lr-not-a-number", lambda w: _sft(w, "--lr", "abc"), ["--learning-rate", "valid number"]),
    ("sft-seq-length-above-model", lambda w: _sft(w, "--max-seq-length", 100000), ["--max-seq-length", "max_position_embeddings"]),
    ("sft-unknown-template", lambda w: _sft(w, "--template", "nope"), ["--template nope", "unknown template"]),
    ("sft-fp16-on-cpu", lambda w: _sft(w, "--dtype", "fp16"), ["fp16 needs a GPU"]),
    ("sft-deepspeed-config-missing", lambda w: _sft(w, "--deepspeed-config", w / "none.json"), ["--deepspeed-config"]),
    ("sft-resume-missing-checkpoint", lambda w: _sft(w, "--resume", w / "no_ckpt"), ["no_ckpt"]),
    ("dpo-lora-and-qlora", lambda w: _sft(w, "--lora", "--qlora", data=w / "prefs.jsonl", cmd=("dpo",)), ["--lora and --qlora"]),
    ("lora-rank-zero", lambda w: _sft(w, "--lora-rank", 0, cmd=("lora",)), ["lora"]),
    # plot
    ("plot-run-dir-missing", lambda w: ["train", "plot", str(w / "norun")], ["norun", "metrics.jsonl"]),
    ("plot-metrics-garbled", lambda w: ["train", "plot", str(w / "run")], ["metrics.jsonl:2: truncated JSON: the text ends before the value is complete (Unterminated string starting at column 13)"]),
    ("plot-metrics-garbled-dry-run", lambda w: ["train", "plot", str(w / "run"), "--dry-run"], ["metrics.jsonl:2"]),
    ("plot-output-under-a-file", lambda w: ["train", "plot", str(w / "run"), "-o", str(w / "afile" / "m.png")], ["--output", "is a file, not a folder"]),
    ("plot-output-is-a-folder", lambda w: ["train", "plot", str(w / "run"), "-o", str(w / "run")], ["--output", "is a folder"]),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(w, tiny_model, row):
    _, args, expect = row
    assert_bad_input(args(w), expect, watch=[w, tiny_model])


def test_tiny_cpu_example_from_the_repository_root(w, monkeypatch):
    """Its usage line as written, from the repository root: without ./tiny-model, --dry-run (like the
    real run) says which model is missing; with it, --dry-run passes every preflight check."""
    monkeypatch.chdir(REPO)
    if Path("tiny-model").exists():
        pytest.skip("./tiny-model exists in this checkout")
    example = ["train", "sft", "-c", "examples/tiny_cpu_sft.yaml"]
    assert_bad_input([*example, "--dry-run"], "--model tiny-model", watch=[REPO / "output"])
    r = run_cli([*example, "-m", str(w / "model"), "-o", str(w / "out"), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert not (w / "out").exists()


def test_ctrl_c_says_what_was_kept_and_how_to_resume(w, monkeypatch):
    """Ctrl-C (KeyboardInterrupt in the worker) exits 130 with one stderr line: the newest complete
    checkpoint and the flag that continues from it; without one, the flag that starts over."""
    out = w.parent / (w.name + "_ctrl_c")

    def interrupted(options_file):
        step = out / "checkpoints" / "step_6"
        step.mkdir(parents=True)
        (step / "COMPLETE").write_text("")
        (out / "checkpoints" / "step_9").mkdir()  # being written when Ctrl-C came: not complete
        raise KeyboardInterrupt

    monkeypatch.setattr("tulu_cli.train.worker.run_worker", interrupted)
    args = _sft(w)[:6] + ["-o", str(out)] + _sft(w)[8:] + ["--checkpointing-steps", "3"]
    r = run_cli(args)
    assert r.exit_code == 130, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip().startswith("interrupted")]
    assert lines == [f"interrupted: kept checkpoint {out}/checkpoints/step_6; continue with the same command plus --resume auto"]

    monkeypatch.setattr("tulu_cli.train.worker.run_worker", lambda f: (_ for _ in ()).throw(KeyboardInterrupt))
    r = run_cli(_sft(w)[:6] + ["-o", str(out / "fresh")] + _sft(w)[8:])
    assert r.exit_code == 130, r.output
    assert f"interrupted: no complete checkpoint in {out}/fresh (none saved yet; see --checkpointing-steps); start again with the same command plus --overwrite-output-dir" in r.stderr


# ---------------------------------------------------------------- as an unprivileged user

USER = "tulu-train-test"
# What the permission rows import before they stop (whole top-level packages are copied): the CLI,
# the training options and the preflight up to the model-folder checks (no torch, no transformers).
MODULES = ["tulu_cli.cli.main", "rich.console", "tulu_cli.train.launch", "tulu_cli.options.train", "tulu_cli.options.peft",
           "tulu_cli.options.dpo", "tulu_cli.models", "tulu_cli.weights.checkpoint", "tulu_cli.paths", "huggingface_hub", "yaml"]  # fmt: skip


@pytest.fixture(scope="module")
def home(tiny_model):
    """Folders every user can reach (pytest's tmp folder is private to root), owned by the ordinary
    user, holding what it may not use: a read-only folder, a locked model, unreadable weights."""
    base = Path(tempfile.mkdtemp(prefix="tulu-train-perm-"))
    base.chmod(0o755)
    runner = unprivileged(USER, base, MODULES) if os.geteuid() == 0 else None
    if isinstance(runner, str):
        shutil.rmtree(base)
        pytest.skip(runner)
    h = base / "home"
    h.mkdir()
    write_chat_data(h / "chat.jsonl", n=4)
    for name in ("model", "model_locked", "model_secret_weights"):
        shutil.copytree(tiny_model, h / name)
    (h / "ro").mkdir()
    if runner is not None:
        for dirpath, dirnames, filenames in os.walk(h):
            for name in [*dirnames, *filenames, ""]:
                os.chown(Path(dirpath, name), runner.uid, runner.gid)
    locks = [("ro", 0o555), ("model_locked", 0), ("model_secret_weights/model.safetensors", 0)]
    for path, mode in locks:
        (h / path).chmod(mode)
    yield runner, h
    for path, _ in locks:
        (h / path).chmod(0o755)
    shutil.rmtree(base)


def _perm_args(h: Path, model: str = "model", out: str = "out", cmd: str = "sft") -> list[str]:
    return ["train", cmd, "-m", str(h / model), "-t", str(h / "chat.jsonl"), "-o", str(h / out), "--cache-dir", str(h / "cache"), "--cpu"]


PERMISSION_ROWS = [
    ("sft-output-in-read-only-folder", lambda h: _perm_args(h, out="ro/out"), "--output-dir {L}/ro/out: cannot write into {L}/ro (permission denied or read-only)"),
    ("sft-output-read-only", lambda h: _perm_args(h, out="ro"), "--output-dir {L}/ro: cannot write into this folder"),
    ("sft-output-read-only-dry-run", lambda h: _perm_args(h, out="ro") + ["--dry-run"], "--output-dir {L}/ro: cannot write into this folder"),
    ("lora-output-in-read-only-folder", lambda h: _perm_args(h, out="ro/out", cmd="lora"), "--output-dir {L}/ro/out: cannot write into {L}/ro"),
    ("sft-model-folder-locked", lambda h: _perm_args(h, model="model_locked"), "--model {L}/model_locked: cannot read this folder (permission denied)"),
    ("sft-weights-unreadable", lambda h: _perm_args(h, model="model_secret_weights"), "{L}/model_secret_weights/model.safetensors: cannot read (permission denied)"),
    ("slurm-in-read-only-folder", lambda h: _perm_args(h) + ["--slurm", str(h / "ro" / "job.sbatch"), "--num-machines", "2", "--num-processes", "2"], "--slurm {L}/ro/job.sbatch: cannot write into {L}/ro"),
]  # fmt: skip


@pytest.mark.parametrize("row", PERMISSION_ROWS, ids=[r[0] for r in PERMISSION_ROWS])
def test_permission_as_an_ordinary_user(home, row):
    runner, h = home
    _, args, expect = row
    before = snapshot([h])
    if runner is None:  # already an ordinary user
        res = run_cli(args(h))
        code, out, err = res.exit_code, res.stdout, res.stderr
    else:
        done = runner.run(args(h), cwd=h)
        code, out, err = done.returncode, done.stdout, done.stderr
    lines = [ln for ln in err.splitlines() if ln.strip()]
    context = f"exit={code}\nstdout={out[-1500:]}\nstderr={err[-3000:]}"
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, context
    assert expect.replace("{L}", str(h)) in lines[0], context
    assert snapshot([h]) == before
