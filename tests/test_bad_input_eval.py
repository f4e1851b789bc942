"""Bad input to `tulu eval run | score | list`: one `error:` line naming the fault, exit 2, no traceback,
nothing written (no output folder either), all before a model loads.

The permission rows run as an ordinary user (root passes every permission check): through runuser when
the suite runs as root, in-process otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import pytest

from _bad_input import assert_bad_input, snapshot
from _unprivileged import unprivileged

FIX = Path(__file__).parent / "fixtures"
GSM_ROW = {"question": "Tom has 2 apples and buys 1 more. How many apples does he have?", "answer": "2 + 1 = 3\n#### 3"}
MMLU_ROW = '"What is 2+2?",3,4,5,6,B\n'


def _safetensors(path: Path, header: dict, data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _model(folder: Path, *, config: str | None = '{"model_type": "llama"}', weights: bool = True, tokenizer: bool = True) -> Path:
    """A folder that passes the model preflight (config, complete weights, tokenizer files) unless told otherwise."""
    folder.mkdir(parents=True)
    if config is not None:
        (folder / "config.json").write_text(config)
    if weights:
        _safetensors(folder / "model.safetensors", {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8)
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    return folder


def _build_lab(d: Path) -> None:
    """Good and bad inputs side by side; every row asserts it changes nothing under the folder."""
    (d / "data" / "gsm").mkdir(parents=True)
    (d / "data" / "gsm" / "test.jsonl").write_text(json.dumps(GSM_ROW) + "\n")
    for split in ("test", "dev"):
        (d / "data" / "mmlu" / "data" / split).mkdir(parents=True)
        (d / "data" / "mmlu" / "data" / split / f"abstract_algebra_{split}.csv").write_text(MMLU_ROW)
    shutil.copytree(FIX / "eval_alpaca" / "alpaca_eval", d / "data" / "alpaca_eval")
    shutil.copytree(FIX / "eval_truthfulqa" / "truthfulqa", d / "data" / "truthfulqa")
    _model(d / "model")
    (d / "model_empty").mkdir()
    _model(d / "model_adapter", config=None, weights=False, tokenizer=False)
    (d / "model_adapter" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    _model(d / "model_badjson", config='{"model_type": "llama"')
    _model(d / "model_notype", config='{"hidden_size": 64}')
    _model(d / "model_noweights", weights=False)
    _model(d / "model_shard", weights=False)
    (d / "model_shard" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-00001-of-00002.safetensors"}}))
    _model(d / "model_trunc", weights=False)
    _safetensors(d / "model_trunc" / "model.safetensors", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 4)
    _model(d / "model_notok", tokenizer=False)
    (d / "tok_empty").mkdir()
    (d / "judge").mkdir()
    (d / "judge" / "config.json").write_text('{"model_type": "llama"}')
    (d / "a_file").write_text("not a folder\n")
    (d / "a_folder").mkdir()
    shutil.copy(FIX / "ifeval" / "input_data.jsonl", d / "ifeval_input.jsonl")
    shutil.copy(FIX / "ifeval" / "responses.jsonl", d / "responses.jsonl")
    shutil.copy(FIX / "eval_safety" / "xstest" / "xstest_v2_prompts.csv", d / "xstest.csv")
    (d / "preds.jsonl").write_text(json.dumps({"id": "0", "output": "So the answer is 3.", "reference": "3"}) + "\n")
    (d / "preds_badline.jsonl").write_text(json.dumps({"id": "0", "output": "1", "reference": "1"}) + "\n{not json\n")
    (d / "preds_nooutput.jsonl").write_text(json.dumps({"id": "0", "reference": "3"}) + "\n")
    (d / "preds_noref.jsonl").write_text(json.dumps({"id": "0", "output": "3"}) + "\n")
    (d / "preds_mmlu.jsonl").write_text(json.dumps({"id": "abstract_algebra/0", "output": "B", "reference": "B"}) + "\n")
    (d / "responses_short.jsonl").write_text("".join((FIX / "ifeval" / "responses.jsonl").read_text().splitlines(True)[:2]))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    d = tmp_path_factory.mktemp("lab")
    _build_lab(d)
    return d


RUN = ["eval", "run", "-o", "{L}/out"]
GSM = ["-t", "gsm_cot", "-d", "{L}/data"]
MMLU = ["-t", "mmlu_0shot", "-d", "{L}/data"]
M = ["-m", "{L}/model"]
API = ["-m", "some-api-model", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"]
SCORE = ["eval", "score"]

# (id, arguments, what the one error line must contain); {L} is the lab folder.
ROWS = [
    # ---- eval run: the model and tokenizer, checked before anything loads or any folder appears
    ("run-model-missing", [*RUN, *GSM, "-m", "{L}/nope"], "--model {L}/nope: no such folder (and not a Hugging Face model id"),
    ("run-model-hub-id-offline", [*RUN, *GSM, "-m", "someorg/no-such-model"], "--model someorg/no-such-model: no such folder, and not in the Hugging Face cache (HF_HUB_OFFLINE=1"),
    ("run-model-is-a-file", [*RUN, *GSM, "-m", "{L}/a_file"], "--model {L}/a_file: is a file, not a model folder"),
    ("run-model-no-config", [*RUN, *GSM, "-m", "{L}/model_empty"], "--model {L}/model_empty: no config.json in this folder (not a Hugging Face model folder)"),
    ("run-model-is-an-adapter", [*RUN, *GSM, "-m", "{L}/model_adapter"], "a PEFT adapter: merge it first with `tulu weights merge`"),
    ("run-model-config-bad-json", [*RUN, *GSM, "-m", "{L}/model_badjson"], "{L}/model_badjson/config.json: not valid JSON"),
    ("run-model-config-no-type", [*RUN, *GSM, "-m", "{L}/model_notype"], "{L}/model_notype/config.json: not a model config (no 'model_type' key)"),
    ("run-model-no-weights", [*RUN, *GSM, "-m", "{L}/model_noweights"], "--model {L}/model_noweights: no model weights found"),
    ("run-model-shard-missing", [*RUN, *GSM, "-m", "{L}/model_shard"], "model.safetensors.index.json: lists shard 'model-00001-of-00002.safetensors', which is missing"),
    ("run-model-truncated", [*RUN, *GSM, "-m", "{L}/model_trunc"], "{L}/model_trunc/model.safetensors: truncated safetensors file"),
    ("run-model-no-tokenizer", [*RUN, *GSM, "-m", "{L}/model_notok"], "--model {L}/model_notok: no tokenizer files in this folder"),
    ("run-tokenizer-missing", [*RUN, *GSM, *M, "--tokenizer", "{L}/nope"], "--tokenizer {L}/nope: no such folder"),
    ("run-tokenizer-no-files", [*RUN, *GSM, *M, "--tokenizer", "{L}/tok_empty"], "--tokenizer {L}/tok_empty: no tokenizer files in this folder"),
    ("run-dry-run-model-missing", [*RUN, *GSM, "-m", "{L}/nope", "--dry-run"], "--model {L}/nope: no such folder"),
    # ---- eval run: the output folder
    ("run-output-is-a-file", ["eval", "run", *GSM, *M, "-o", "{L}/a_file"], "--output-dir {L}/a_file: exists and is not a folder"),
    ("run-output-under-a-file", ["eval", "run", *GSM, *M, "-o", "{L}/a_file/out"], "--output-dir {L}/a_file/out: {L}/a_file is a file, not a folder"),
    ("run-cache-dir-is-a-file", [*RUN, "-t", "ifeval", "--input-file", "{L}/ifeval_input.jsonl", *API, "--cache-dir", "{L}/a_file"], "--cache-dir {L}/a_file: exists and is not a folder"),
    # ---- eval run: tasks and their --task-arg keys and values
    ("run-task-unknown", [*RUN, *M, "-t", "gsm_cott"], "--tasks: unknown task 'gsm_cott' (did you mean gsm_cot?)"),
    ("run-task-arg-typo", [*RUN, *MMLU, *M, "--task-arg", "subject=anatomy"], "--task-arg subject: not an option of mmlu_0shot (did you mean subjects?); known: mmlu_subjects, scoring, subjects"),
    ("run-task-arg-for-no-task", [*RUN, *GSM, *M, "--task-arg", "subjects=anatomy"], "--task-arg subjects: not an option of gsm_cot; known: none"),
    ("run-task-arg-no-equals", [*RUN, *MMLU, *M, "--task-arg", "subjects"], "--task-arg: 'subjects' is not KEY=VALUE"),
    ("run-mmlu-subject-unknown", [*RUN, *MMLU, *M, "--task-arg", "subjects=astrology"], "--task-arg subjects: unknown subject(s) astrology"),
    ("run-mmlu-scoring-bad", [*RUN, *MMLU, *M, "--task-arg", "scoring=bogus"], "--task-arg scoring: 'bogus' is not one of"),
    ("run-tydiqa-language-unknown", [*RUN, *M, "-t", "tydiqa_goldp_1shot", "--task-arg", "languages=klingon"], "--task-arg languages: unknown language(s) klingon"),
    ("run-tydiqa-max-tokens-bad", [*RUN, *M, "-t", "tydiqa_goldp_1shot", "--task-arg", "max_context_tokens=many"], "--task-arg max_context_tokens: not an integer"),
    ("run-toxigen-batch-zero", [*RUN, *M, "-t", "toxigen", "--task-arg", "classifier_batch_size=0"], "--task-arg classifier_batch_size: not a positive integer"),
    ("run-codex-timeout-negative", [*RUN, *M, "-t", "codex_eval_temp_0.1", "--task-arg", "timeout=-1"], "--task-arg timeout must be > 0"),
    ("run-xstest-judge-prompt-bad", [*RUN, *M, "-t", "xstest", "--input-file", "{L}/xstest.csv", "--task-arg", "judge_prompt=bogus"], "--task-arg judge_prompt=bogus: expected one of"),
    ("run-xstest-judge-concurrency-bad", [*RUN, *M, "-t", "xstest", "--input-file", "{L}/xstest.csv", "--task-arg", "judge_concurrency=lots"], "--task-arg judge_concurrency: not a positive integer"),
    ("run-alpaca-seed-bad", [*RUN, *M, "-t", "alpaca_eval", "-d", "{L}/data", "--task-arg", "annotator_seed=x"], "--task-arg annotator_seed: not an integer"),
    ("run-alpaca2-gamed-missing", [*RUN, *M, "-t", "alpaca_eval_2", "-d", "{L}/data", "--task-arg", "gamed_csv={L}/nope.csv"], "--task-arg gamed_csv: {L}/nope.csv does not exist"),
    ("run-truthfulqa-judge-batch-bad", [*RUN, *M, "-t", "truthfulqa", "-d", "{L}/data", "--truthfulqa-truth-judge", "{L}/judge", "--task-arg", "judge_batch_size=0"], "--task-arg judge_batch_size: not a positive integer or 'auto'"),
    ("run-truthfulqa-trim-bad", [*RUN, *M, "-t", "truthfulqa", "-d", "{L}/data", "--truthfulqa-truth-judge", "{L}/judge", "--task-arg", "trim_chat_answers=maybe"], "--task-arg trim_chat_answers=maybe: expected true or false"),
    # ---- eval run: other options and data
    ("run-n-shot-fixed-prompt", [*RUN, *M, "-t", "ifeval", "--n-shot", "3"], "--n-shot: task ifeval has a fixed prompt"),
    ("run-input-file-no-reader", [*RUN, *GSM, *M, "--input-file", "{L}/ifeval_input.jsonl"], "--input-file: none of the tasks (gsm_cot) reads an input file"),
    ("run-input-file-missing", [*RUN, *M, "-t", "ifeval", "--input-file", "{L}/nope.jsonl"], "--input-file: {L}/nope.jsonl does not exist"),
    ("run-data-dir-needed", [*RUN, *M, "-t", "gsm_cot"], "task gsm_cot needs --data-dir"),
    ("run-data-missing", [*RUN, *M, "-t", "bbh_cot", "-d", "{L}/data"], "task bbh_cot needs it. Create it with: tulu data prepare-eval bbh"),
    ("run-batch-size-bad", [*RUN, *GSM, *M, "--batch-size", "zero"], "--batch-size"),
    ("run-limit-zero", [*RUN, *GSM, *M, "--limit", "0"], "--limit must be at least 1"),
    ("run-backend-unknown", [*RUN, *GSM, *M, "--backend", "tgi"], "--backend"),
    ("run-chat-template-unknown", [*RUN, *GSM, *M, "--chat-template", "chatml"], "--chat-template"),
    ("run-flag-misspelt", [*RUN, *GSM, *M, "--task-args", "subjects=x"], "No such option: --task-args"),
    ("run-tasks-missing", [*RUN, *M], "--tasks"),
    # ---- eval score
    ("score-task-unknown", [*SCORE, "--task", "gsm_cott", "-p", "{L}/preds.jsonl"], "--task: unknown task 'gsm_cott' (did you mean gsm_cot?)"),
    ("score-flag-tasks", [*SCORE, "--tasks", "gsm_cot", "-p", "{L}/preds.jsonl"], "No such option: --tasks"),
    ("score-predictions-missing", [*SCORE, "--task", "gsm_cot", "-p", "{L}/nope.jsonl"], "--predictions {L}/nope.jsonl: does not exist"),
    ("score-predictions-folder", [*SCORE, "--task", "gsm_cot", "-p", "{L}/a_folder"], "{L}/a_folder: is a folder, not a JSONL file"),
    ("score-output-is-predictions", [*SCORE, "--task", "gsm_cot", "-p", "{L}/preds.jsonl", "--output", "{L}/preds.jsonl"], "--output {L}/preds.jsonl: is the predictions file"),
    ("score-output-under-a-file", [*SCORE, "--task", "gsm_cot", "-p", "{L}/preds.jsonl", "--output", "{L}/a_file/m.json"], "--output {L}/a_file/m.json: {L}/a_file is a file, not a folder"),
    ("score-output-is-a-folder", [*SCORE, "--task", "gsm_cot", "-p", "{L}/preds.jsonl", "--output", "{L}/a_folder"], "--output {L}/a_folder: is a folder; give a file name"),
    ("score-task-arg-typo", [*SCORE, "--task", "mmlu_0shot", "-p", "{L}/preds_mmlu.jsonl", "--task-arg", "subject=anatomy"], "--task-arg subject: not an option of mmlu_0shot (did you mean subjects?)"),
    ("score-bad-json-line", [*SCORE, "--task", "gsm_cot", "-p", "{L}/preds_badline.jsonl"], "{L}/preds_badline.jsonl:2: invalid JSON"),
    ("score-no-output-field", [*SCORE, "--task", "gsm_cot", "-p", "{L}/preds_nooutput.jsonl"], "{L}/preds_nooutput.jsonl:1: field 'output' is missing"),
    ("score-no-reference", [*SCORE, "--task", "gsm_cot", "-p", "{L}/preds_noref.jsonl"], "pass --data-dir"),
    ("score-choices-not-a-list", [*SCORE, "--task", "mmlu_0shot", "-p", "{L}/preds_mmlu.jsonl"], "row 1: field 'output' must be a list of log-likelihoods"),
    ("score-input-file-no-reader", [*SCORE, "--task", "gsm_cot", "-p", "{L}/preds.jsonl", "--input-file", "{L}/ifeval_input.jsonl"], "--input-file: none of the tasks (gsm_cot) reads an input file"),
    ("score-ifeval-response-missing", [*SCORE, "--task", "ifeval", "-p", "{L}/responses_short.jsonl", "--input-file", "{L}/ifeval_input.jsonl"], "no response for 1 of 3 prompts"),
    ("score-dry-run-predictions-missing", [*SCORE, "--task", "gsm_cot", "-p", "{L}/nope.jsonl", "--dry-run"], "--predictions {L}/nope.jsonl: does not exist"),
    # ---- eval list
    ("list-unknown-flag", ["eval", "list", "--tasks", "gsm"], "No such option: --tasks"),
    ("list-extra-argument", ["eval", "list", "gsm"], "unexpected extra argument"),
]


@pytest.fixture
def no_model(monkeypatch):
    """Every row fails before a backend is built: building one is a test failure."""

    def refuse(opts):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr("tulu_cli.evaluation.runner.load_backend", refuse)


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(lab, no_model, row):
    _, args, expect = row
    fill = lambda s: s.replace("{L}", str(lab))  # noqa: E731
    assert_bad_input([fill(a) for a in args], fill(expect), watch=[lab])


def test_the_table_covers_every_command():
    commands = {args[1] for _, args, _ in ROWS}
    assert commands == {"run", "score", "list"} and len(ROWS) >= 35


def test_output_folder_appears_only_after_the_model_loads(lab, tmp_path, monkeypatch):
    """A backend that fails to load (a model transformers refuses) leaves no output folder either."""
    from tulu_cli.errors import TuluError

    def broken(opts):
        raise TuluError(f"--model {opts.model}: cannot load the model (broken)")

    monkeypatch.setattr("tulu_cli.evaluation.runner.load_backend", broken)
    out = tmp_path / "out"
    assert_bad_input(["eval", "run", "-m", str(lab / "model"), "-t", "gsm_cot", "-d", str(lab / "data"), "-o", str(out)], "cannot load the model", watch=[tmp_path])
    assert not out.exists()


def test_flags_named_in_error_messages_exist():
    """Every --flag an eval error message names (TuluError, ValueError, or the flag given to check_output /
    get_task) is a real flag of the eval or prepare-eval commands: no --task-args, no --tasks for eval score."""
    import ast
    import re

    import typer

    from tulu_cli.cli.main import app

    command = typer.main.get_command(app)
    real = {"--help"}
    for group, sub in (("eval", "run"), ("eval", "score"), ("eval", "list"), ("data", "prepare-eval")):
        for p in command.commands[group].commands[sub].params:
            real.update(o for o in [*p.opts, *p.secondary_opts] if o.startswith("--"))
    root = Path(__file__).resolve().parents[1] / "tulu_cli"
    named: dict[str, str] = {}
    for path in [*(root / "evaluation").rglob("*.py"), root / "options" / "eval.py"]:
        if path.name in ("sandbox.py", "sandbox_boot.py"):
            continue  # bwrap's own flags
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("TuluError", "ValueError", "check_output", "get_task"):
                for const in ast.walk(node):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", const.value):
                            named.setdefault(flag, f"{path.relative_to(root)}:{const.lineno}")
    named.pop("--raw-dir", None)  # prepare.py names it only to replace it in the downloader's advice
    unknown = {flag: where for flag, where in named.items() if flag not in real}
    assert unknown == {}
    assert {"--task-arg", "--tasks", "--output-dir", "--model", "--input-file"} <= set(named)


# ---- permissions: as an ordinary user ------------------------------------------------------------

USER = "tulu-eval-test"
# What the permission rows import (whole top-level packages are copied): the CLI and its error line
# (rich), the eval preflight, and the ifeval scorer of the read-only row.
MODULES = ["tulu_cli.cli.main", "rich.console", "tulu_cli.evaluation.runner", "tulu_cli.evaluation.score", "tulu_cli.models",
           "tulu_cli.weights.checkpoint", "tulu_cli.evaluation.ifeval.scoring", "langdetect", "huggingface_hub"]  # fmt: skip


@pytest.fixture(scope="module")
def home():
    """Folders every user can reach (pytest's tmp folder is private to root), owned by the ordinary
    user, holding what it may not use: a read-only folder, a locked model, unreadable files."""
    base = Path(tempfile.mkdtemp(prefix="tulu-eval-perm-"))
    base.chmod(0o755)
    if os.geteuid() == 0:
        import pkgutil

        import tulu_cli.evaluation.tasks as tasks

        every_task = [f"{tasks.__name__}.{m.name}" for m in pkgutil.iter_modules(tasks.__path__)]  # the registry imports them all
        runner = unprivileged(USER, base, [*MODULES, *every_task])
    else:
        runner = None
    if isinstance(runner, str):
        shutil.rmtree(base)
        pytest.skip(runner)
    h = base / "home"
    h.mkdir()
    _build_lab(h)
    (h / "ro").mkdir()
    (h / "ro_run" / "ifeval").mkdir(parents=True)  # a finished run folder, made read-only
    (h / "ro_run" / "results.json").write_text("{}")
    shutil.copy(h / "responses.jsonl", h / "ro_run" / "ifeval" / "responses.jsonl")
    _model(h / "model_locked")
    _model(h / "model_secret_config")
    _model(h / "model_secret_weights")
    shutil.copy(h / "preds.jsonl", h / "secret.jsonl")
    if runner is not None:
        for dirpath, dirnames, filenames in os.walk(h):
            for name in [*dirnames, *filenames, ""]:
                os.chown(Path(dirpath, name), runner.uid, runner.gid)
    locks = [("ro", 0o555), ("ro_run/ifeval", 0o555), ("ro_run", 0o555), ("model_locked", 0), ("model_secret_config/config.json", 0),
             ("model_secret_weights/model.safetensors", 0), ("secret.jsonl", 0)]  # fmt: skip
    for path, mode in locks:
        (h / path).chmod(mode)
    yield runner, h
    for path, _ in locks:
        (h / path).chmod(0o755)
    shutil.rmtree(base)


PERMISSION_ROWS = [
    ("run-output-in-read-only-folder", ["eval", "run", *GSM, *M, "-o", "{L}/ro/out"], "--output-dir {L}/ro/out: cannot write into {L}/ro (permission denied or read-only)"),
    ("run-output-read-only", ["eval", "run", *GSM, *M, "-o", "{L}/ro"], "--output-dir {L}/ro: cannot write into this folder"),
    ("run-model-folder-locked", [*RUN, *GSM, "-m", "{L}/model_locked"], "--model {L}/model_locked: cannot read this folder (permission denied)"),
    ("run-model-config-unreadable", [*RUN, *GSM, "-m", "{L}/model_secret_config"], "{L}/model_secret_config/config.json: cannot read (Permission denied)"),
    ("run-model-weights-unreadable", [*RUN, *GSM, "-m", "{L}/model_secret_weights"], "{L}/model_secret_weights/model.safetensors: cannot read (permission denied)"),
    ("score-output-in-read-only-folder", [*SCORE, "--task", "gsm_cot", "-p", "{L}/preds.jsonl", "--output", "{L}/ro/m.json"], "--output {L}/ro/m.json: cannot write into {L}/ro"),
    ("score-predictions-unreadable", [*SCORE, "--task", "gsm_cot", "-p", "{L}/secret.jsonl"], "'--predictions' / '-p': path '{L}/secret.jsonl' is not readable"),
]


def _as_user(home, args: list[str]) -> tuple[int, str, str]:
    runner, h = home
    if runner is None:  # already an ordinary user
        from typer.testing import CliRunner

        from tulu_cli.cli.main import app

        res = CliRunner().invoke(app, args)
        return res.exit_code, res.stdout, res.stderr
    done = runner.run(args, cwd=h)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("row", PERMISSION_ROWS, ids=[r[0] for r in PERMISSION_ROWS])
def test_permission_as_an_ordinary_user(home, row):
    _, h = home
    _, args, expect = row
    fill = lambda s: s.replace("{L}", str(h))  # noqa: E731
    before = snapshot([h])
    code, out, err = _as_user(home, [fill(a) for a in args])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    context = f"exit={code}\nstdout={out[-1500:]}\nstderr={err[-3000:]}"
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, context
    assert fill(expect) in lines[0], context
    assert snapshot([h]) == before


def test_ifeval_score_in_a_read_only_run_folder(home):
    """Scoring still works; the result files are not written into the read-only folder, and stderr says so."""
    _, h = home
    folder = h / "ro_run" / "ifeval"
    before = snapshot([h])
    code, out, err = _as_user(home, ["eval", "score", "--task", "ifeval", "-p", str(folder / "responses.jsonl"), "--input-file", str(h / "ifeval_input.jsonl"), "--json"])
    assert code == 0, err
    assert json.loads(out)["ifeval"]["prompt_level_strict_acc"] == pytest.approx(1 / 3)
    assert f"{folder} is read-only; pass --output FILE" in " ".join(err.split()), err
    assert "Traceback" not in err and snapshot([h]) == before
