"""The bad-input promise for `tulu data`, `tulu weights` and `tulu quickstart`, one table row per bad input.

Each row: exit status 2, exactly one stderr line starting with "error:" that names the fault, no
traceback, nothing new or changed on disk (the row's output folder and every shared input). Rows
about permissions run as an unprivileged user: root passes every permission check.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from typer.testing import CliRunner

from tests._bad_input import assert_bad_input, snapshot
from tulu_cli.cli.main import app

REPO = Path(__file__).resolve().parents[1]
ALPACA = [{"instruction": "Add 2 and 3.", "input": "", "output": "5"}, {"instruction": "Say hi.", "input": "", "output": "hi"}]


@dataclass
class World:
    """Inputs shared by every row; no row may change them."""

    root: Path
    alpaca: Path  # a good alpaca-style JSON file
    good_jsonl: Path  # good {messages} rows
    afile: Path  # a plain file, to put outputs in or under
    empty: Path
    blank: Path
    empty_list: Path
    trunc: Path  # second line cut inside a string (a killed copy)
    trunc_chat: Path  # the same for {messages} rows
    bad_json: Path
    not_object: Path
    latin1: Path
    all_bad: Path  # two records without an output field
    bad_yaml: Path
    config_unknown_key: Path
    base: Path
    tuned: Path
    other_base: Path  # a different architecture size: the wrong base
    diff: Path  # a tulu diff of tuned over base
    bad_manifest: Path  # that diff with a garbled manifest
    trunc_model: Path
    no_config: Path
    bad_config: Path
    unknown_type: Path
    no_weights: Path
    bad_tokenizer: Path
    adapter: Path
    adapter_no_config: Path
    adapter_bad_config: Path
    adapter_no_weights: Path
    adapter_trunc_weights: Path
    adapter_remote_base: Path
    nonempty: Path  # a folder holding a file


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model) -> World:
    from tests._weights_helpers import make_adapter, make_tuned, run
    from tulu_cli.testing import make_tiny_model

    root = tmp_path_factory.mktemp("bad_input_world")
    d = root / "data"
    d.mkdir()
    (d / "alpaca.json").write_text(json.dumps(ALPACA))
    (d / "good.jsonl").write_text(json.dumps({"dataset": "x", "id": "x_0", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}) + "\n")
    (d / "afile").write_text("a file, not a folder")
    (d / "empty.jsonl").write_bytes(b"")
    (d / "blank.jsonl").write_text("\n  \n\n")
    (d / "empty_list.json").write_text("[]")
    (d / "trunc.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": "cut he\n')
    good_line = (d / "good.jsonl").read_text()
    (d / "trunc_chat.jsonl").write_text(good_line + good_line[: len(good_line) // 2] + "\n")
    (d / "bad.jsonl").write_text('{"instruction": "a" "output": "b"}\n')
    (d / "list.jsonl").write_text("[1, 2]\n")
    (d / "latin1.jsonl").write_bytes('{"instruction": "café", "output": "b"}\n'.encode("latin-1"))
    (d / "all_bad.jsonl").write_text('{"instruction": "a"}\n{"instruction": "b"}\n')
    (d / "bad.yaml").write_text("output: [unclosed\n")
    (d / "unknown_key.yaml").write_text("sft_epochz: 2\n")
    nonempty = root / "nonempty"
    nonempty.mkdir()
    (nonempty / "keep.txt").write_text("keep me")

    m = root / "models"
    base = _copy(tiny_model, m / "base")
    tuned = make_tuned(base, m / "tuned")
    other = make_tiny_model(m / "other", seed=1, hidden_size=32)
    assert run(["weights", "diff", "--base", str(base), "--tuned", str(tuned), "--output", str(m / "diff")]).exit_code == 0
    bad_manifest = _copy(m / "diff", m / "bad_manifest")
    (bad_manifest / "tulu_diff_manifest.json").write_text('{"format": "something else"}')
    trunc_model = _copy(base, m / "trunc")
    st = trunc_model / "model.safetensors"
    os.truncate(st, st.stat().st_size // 2)
    no_config = _copy(base, m / "no_config")
    (no_config / "config.json").unlink()
    bad_config = _copy(base, m / "bad_config")
    (bad_config / "config.json").write_text('{"model_type": "llama", "hidden_')
    unknown_type = _copy(base, m / "unknown_type")
    cfg = json.loads((unknown_type / "config.json").read_text())
    (unknown_type / "config.json").write_text(json.dumps({**cfg, "model_type": "no-such-architecture"}))
    no_weights = m / "no_weights"
    no_weights.mkdir()
    shutil.copy(base / "config.json", no_weights / "config.json")
    bad_tok = _copy(base, m / "bad_tokenizer")
    (bad_tok / "tokenizer.json").unlink()  # tokenizer_config.json left: transformers' several-line message

    adapter = make_adapter(base, m / "adapter", targets=("q_proj", "v_proj"))
    a_nocfg = _copy(adapter, m / "adapter_no_config")
    (a_nocfg / "adapter_config.json").unlink()
    a_badcfg = _copy(adapter, m / "adapter_bad_config")
    (a_badcfg / "adapter_config.json").write_text("{not json")
    a_now = _copy(adapter, m / "adapter_no_weights")
    (a_now / "adapter_model.safetensors").unlink()
    a_trunc = _copy(adapter, m / "adapter_trunc_weights")
    aw = a_trunc / "adapter_model.safetensors"
    os.truncate(aw, aw.stat().st_size // 2)
    a_remote = _copy(adapter, m / "adapter_remote_base")
    acfg = json.loads((a_remote / "adapter_config.json").read_text())
    (a_remote / "adapter_config.json").write_text(json.dumps({**acfg, "base_model_name_or_path": "meta-llama/Llama-2-7b-hf"}))
    return World(
        root=root, alpaca=d / "alpaca.json", good_jsonl=d / "good.jsonl", afile=d / "afile", empty=d / "empty.jsonl",
        blank=d / "blank.jsonl", empty_list=d / "empty_list.json", trunc=d / "trunc.jsonl", trunc_chat=d / "trunc_chat.jsonl", bad_json=d / "bad.jsonl",
        not_object=d / "list.jsonl", latin1=d / "latin1.jsonl", all_bad=d / "all_bad.jsonl", bad_yaml=d / "bad.yaml",
        config_unknown_key=d / "unknown_key.yaml", base=base, tuned=tuned, other_base=other, diff=m / "diff",
        bad_manifest=bad_manifest, trunc_model=trunc_model, no_config=no_config, bad_config=bad_config,
        unknown_type=unknown_type, no_weights=no_weights, bad_tokenizer=bad_tok, adapter=adapter,
        adapter_no_config=a_nocfg, adapter_bad_config=a_badcfg, adapter_no_weights=a_now,
        adapter_trunc_weights=a_trunc, adapter_remote_base=a_remote, nonempty=nonempty,
    )


Args = Callable[[World, Path], list]
P = pytest.param


def _prep(*args):
    return ["data", "prepare", *args]


# (arguments given the shared inputs W and the row's empty output folder T, what the error line must say)
DATA_PREPARE: list = [
    P(lambda w, t: _prep("alpaca", "-i", w.alpaca, "-o", w.afile / "x.jsonl"), "afile is a file, not a folder", id="prepare-output-under-a-file"),
    P(lambda w, t: _prep("alpaca", "-i", w.alpaca, "-o", w.afile / "a" / "b" / "x.jsonl"), "afile is a file, not a folder", id="prepare-output-deep-under-a-file"),
    P(lambda w, t: _prep("alpaca", "-i", w.alpaca, "-o", w.afile), ["--output", "exists and is not a folder"], id="prepare-output-folder-form-is-a-file"),
    P(lambda w, t: (t / "d.jsonl").mkdir() or _prep("alpaca", "-i", w.alpaca, "-o", t / "d.jsonl"), "d.jsonl: is a folder; give a file name", id="prepare-output-jsonl-is-a-folder"),
    P(lambda w, t: _prep("alpaca", "-i", w.alpaca, "-o", t / "x.json"), "output is JSONL", id="prepare-output-json-suffix"),
    P(lambda w, t: _prep("alpaca", "-i", w.alpaca, "-o", w.good_jsonl), "good.jsonl: already exists; pass --overwrite", id="prepare-output-exists"),
    P(lambda w, t: _prep("alpaca", "-i", w.empty, "-o", t / "x.jsonl"), "empty.jsonl: the file is empty", id="prepare-empty-input"),
    P(lambda w, t: _prep("alpaca", "-i", w.blank, "-o", t / "x.jsonl"), "blank.jsonl: the file is empty", id="prepare-blank-input"),
    P(lambda w, t: _prep("alpaca", "-i", w.empty_list, "-o", t / "x.jsonl"), "alpaca: no examples found in", id="prepare-empty-json-list"),
    P(lambda w, t: _prep("alpaca", "-i", w.all_bad, "-o", t / "x.jsonl", "--on-error", "skip"), ["all 2 records of", "are bad", "all_bad.jsonl:1:"], id="prepare-every-record-skipped"),
    P(lambda w, t: _prep("alpaca", "-i", w.trunc, "-o", t / "x.jsonl"), "trunc.jsonl:2: truncated JSON", id="prepare-truncated-line"),
    P(lambda w, t: _prep("alpaca", "-i", w.bad_json, "-o", t / "x.jsonl"), "bad.jsonl:1: invalid JSON: Expecting ',' delimiter (column 21)", id="prepare-invalid-json"),
    P(lambda w, t: _prep("alpaca", "-i", w.not_object, "-o", t / "x.jsonl"), "list.jsonl:1: expected a JSON object, got list", id="prepare-line-not-an-object"),
    P(lambda w, t: _prep("alpaca", "-i", w.latin1, "-o", t / "x.jsonl"), "latin1.jsonl:1: not valid UTF-8", id="prepare-not-utf8"),
    P(lambda w, t: _prep("alpaca", "-i", t / "missing.json", "-o", t / "x.jsonl"), "--input", id="prepare-input-missing"),
    P(lambda w, t: _prep("alpaca", "-o", t / "x.jsonl"), "pass --input FILE", id="prepare-generic-source-without-input"),
    P(lambda w, t: _prep("alpacca", "-i", w.alpaca, "-o", t / "x.jsonl"), "unknown source 'alpacca' (did you mean 'alpaca'?)", id="prepare-unknown-source"),
    P(lambda w, t: _prep("oasst1", "-s", "top_k_reply", "-o", t / "x.jsonl"), "--source-option: 'top_k_reply' is not KEY=VALUE", id="prepare-source-option-not-key-value"),
    P(lambda w, t: _prep("oasst1", "-s", "top_k=1", "--raw-dir", w.root, "-o", t / "x.jsonl"), ["--source-option", "has no option 'top_k'"], id="prepare-source-option-unknown-key"),
    P(lambda w, t: _prep("dolly", "--raw-dir", w.afile, "-o", t / "x.jsonl"), "--raw-dir", id="prepare-raw-dir-is-a-file"),
    P(lambda w, t: _prep("dolly", "--raw-dir", w.root, "-o", t / "x.jsonl"), ["--raw-dir", "source 'dolly' expects"], id="prepare-raw-dir-without-the-files"),
    P(lambda w, t: _prep("alpaca", "-i", w.alpaca, "--raw-dir", w.root, "-o", t / "x.jsonl"), "--input and --raw-dir", id="prepare-input-and-raw-dir"),
    P(lambda w, t: _prep("-o", t / "x.jsonl"), "name a SOURCE or MIXTURE", id="prepare-nothing-named"),
    P(lambda w, t: _prep("alpaca", "-i", w.alpaca), "--output is required", id="prepare-no-output"),
    P(lambda w, t: _prep("alpaca", "-i", w.alpaca, "-o", t / "x.jsonl", "--on-error", "ignore"), "--on-error", id="prepare-bad-on-error"),
    P(lambda w, t: _prep("alpaca", "-i", w.alpaca, "-o", t / "x.jsonl", "-n", "0"), "--max-examples", id="prepare-zero-max-examples"),
    P(lambda w, t: _prep("-m", t / "mix.yaml", "-o", t / "x.jsonl"), "mix.yaml: mixture file does not exist", id="prepare-mixture-file-missing"),
    P(lambda w, t: _prep("-m", w.bad_yaml, "-o", t / "x.jsonl"), "bad.yaml:", id="prepare-mixture-file-bad-yaml"),
    P(lambda w, t: _prep("alpaca", "-c", w.bad_yaml), ["bad.yaml:", "invalid YAML"], id="prepare-config-bad-yaml"),
    P(lambda w, t: _prep("dolly", "--cache-dir", w.afile / "cache", "-o", t / "x.jsonl"), ["--cache-dir", "afile is a file, not a folder"], id="prepare-cache-dir-under-a-file"),
    P(lambda w, t: _prep("alpaca", "-i", w.alpaca, "-o", w.afile / "x.jsonl", "--dry-run"), "afile is a file, not a folder", id="prepare-dry-run-output-under-a-file"),
    P(lambda w, t: _prep("alpaca", "-i", w.empty, "-o", t / "x.jsonl", "--dry-run"), "the file is empty", id="prepare-dry-run-empty-input"),
    P(lambda w, t: _prep("dolly", "--cache-dir", w.afile / "cache", "-o", t / "x.jsonl", "--dry-run"), "--cache-dir", id="prepare-dry-run-cache-dir-under-a-file"),
    P(lambda w, t: _prep("alpaca", "-i", w.alpaca, "-o", t / "x.jsonl", "--seed", "abc"), ["--seed", "valid integer"], id="prepare-seed-not-a-number"),
]

DATA_OTHER: list = [
    P(lambda w, t: ["data", "prepare-eval", "gsmm", "--data-dir", t / "e"], "unknown benchmark 'gsmm'", id="prepare-eval-unknown-benchmark"),
    P(lambda w, t: ["data", "prepare-eval", "--data-dir", t / "e"], "name the benchmarks to download", id="prepare-eval-nothing-named"),
    P(lambda w, t: ["data", "prepare-eval", "gsm", "--data-dir", w.afile], ["--data-dir", "exists and is not a folder"], id="prepare-eval-data-dir-is-a-file"),
    P(lambda w, t: ["data", "prepare-eval", "gsm", "--data-dir", w.afile / "eval"], ["--data-dir", "afile is a file, not a folder"], id="prepare-eval-data-dir-under-a-file"),
    P(lambda w, t: ["data", "prepare-eval", "gsm", "--data-dir", t / "e", "--cache-dir", w.afile / "c"], ["--cache-dir", "afile is a file"], id="prepare-eval-cache-dir-under-a-file"),
    P(lambda w, t: ["data", "prepare-eval", "gsm", "--data-dir", w.afile / "eval", "--dry-run"], "afile is a file, not a folder", id="prepare-eval-dry-run-data-dir-under-a-file"),
    P(lambda w, t: ["data", "prepare-eval", "gsmm", "--data-dir", t / "e", "--dry-run"], "unknown benchmark 'gsmm'", id="prepare-eval-dry-run-unknown-benchmark"),
    P(lambda w, t: ["data", "inspect", t / "missing.jsonl", "-t", w.base], "missing.jsonl: no such file", id="inspect-file-missing"),
    P(lambda w, t: ["data", "inspect", w.root, "-t", w.base], "is a folder, expected a JSONL file", id="inspect-file-is-a-folder"),
    P(lambda w, t: ["data", "inspect", w.good_jsonl, "-t", t / "nope"], ["--tokenizer", "no such directory"], id="inspect-tokenizer-missing"),
    P(lambda w, t: ["data", "inspect", w.good_jsonl, "-t", w.nonempty], ["--tokenizer", "no tokenizer in this folder"], id="inspect-folder-without-tokenizer"),
    P(lambda w, t: ["data", "inspect", w.good_jsonl, "-t", w.bad_tokenizer], ["--tokenizer", "cannot load a tokenizer from this folder"], id="inspect-damaged-tokenizer"),
    P(lambda w, t: ["data", "inspect", w.trunc_chat, "-t", w.base], "trunc_chat.jsonl:2: truncated JSON", id="inspect-truncated-line"),
    P(lambda w, t: ["data", "inspect", w.alpaca, "-t", w.base], "alpaca.json:1:", id="inspect-json-not-jsonl"),
    P(lambda w, t: ["data", "inspect", w.good_jsonl, "-t", w.base, "--template", "vicuna"], "--template", id="inspect-unknown-template"),
    P(lambda w, t: ["data", "inspect", w.good_jsonl, "-t", w.base, "--max-seq-length", "0"], "--max-seq-length", id="inspect-zero-max-seq-length"),
    P(lambda w, t: ["data", "inspect", w.good_jsonl], "--tokenizer DIR is required", id="inspect-no-tokenizer"),
    P(lambda w, t: ["data", "inspect", w.good_jsonl, "-t", t / "nope", "--dry-run"], "no such directory", id="inspect-dry-run-tokenizer-missing"),
]


def _w(cmd, *args):
    return ["weights", cmd, *args]


WEIGHTS: list = [
    P(lambda w, t: _w("diff", "--base", t / "nope", "--tuned", w.tuned, "-o", t / "d"), ["--base", "folder does not exist"], id="diff-base-missing"),
    P(lambda w, t: _w("diff", "--base", w.base, "--tuned", w.no_weights, "-o", t / "d"), ["--tuned", "no model weights found"], id="diff-tuned-without-weights"),
    P(lambda w, t: _w("diff", "--base", w.base, "--tuned", w.trunc_model, "-o", t / "d"), "truncated safetensors file", id="diff-tuned-truncated"),
    P(lambda w, t: _w("diff", "--base", w.base, "--tuned", w.no_config, "-o", t / "d"), ["--tuned", "config.json is missing"], id="diff-tuned-without-config"),
    P(lambda w, t: _w("diff", "--base", w.bad_config, "--tuned", w.tuned, "-o", t / "d"), ["bad_config/config.json", "cannot read the model config"], id="diff-base-config-garbled"),
    P(lambda w, t: _w("diff", "--base", w.other_base, "--tuned", w.tuned, "-o", t / "d"), ["--base", "wrong base"], id="diff-wrong-base"),
    P(lambda w, t: _w("diff", "--base", w.base, "--tuned", w.tuned, "-o", w.afile / "d"), "afile is a file, not a folder", id="diff-output-under-a-file"),
    P(lambda w, t: _w("diff", "--base", w.base, "--tuned", w.tuned, "-o", w.afile), "exists and is not a folder", id="diff-output-is-a-file"),
    P(lambda w, t: _w("diff", "--base", w.base, "--tuned", w.tuned, "-o", w.tuned / "sub"), "overlaps --tuned", id="diff-output-inside-tuned"),
    P(lambda w, t: _w("diff", "--base", w.base, "--tuned", w.tuned, "-o", w.nonempty), "pass --overwrite", id="diff-output-not-empty"),
    P(lambda w, t: _w("diff", "--base", w.base, "--tuned", w.tuned, "-o", t / "d", "--max-shard-size", "huge"), "--max-shard-size", id="diff-bad-shard-size"),
    P(lambda w, t: _w("diff", "--base", w.base, "--tuned", w.tuned), "--output is required", id="diff-no-output"),
    P(lambda w, t: _w("diff", "--base", w.base, "--tuned", w.trunc_model, "-o", t / "d", "--dry-run"), "truncated safetensors file", id="diff-dry-run-tuned-truncated"),
    P(lambda w, t: _w("diff", "--base", w.base, "--tuned", w.tuned, "-o", w.afile / "d", "--dry-run"), "afile is a file, not a folder", id="diff-dry-run-output-under-a-file"),
    P(lambda w, t: _w("recover", "--base", w.base, "--diff", w.bad_manifest, "-o", t / "r"), "corrupt diff manifest", id="recover-garbled-manifest"),
    P(lambda w, t: _w("recover", "--base", w.base, "--diff", w.diff, "-o", t / "r", "--check-sum", "1.0"), ["--check-sum 1.0", "integrity check failed"], id="recover-wrong-check-sum"),
    P(lambda w, t: _w("recover", "--base", w.other_base, "--diff", w.diff, "-o", t / "r"), "wrong base", id="recover-wrong-base"),
    P(lambda w, t: _w("recover", "--base", w.base, "--diff", w.diff, "-o", t / "r", "--dtype", "int8"), "--dtype", id="recover-bad-dtype"),
    P(lambda w, t: _w("recover", "--base", w.base, "--diff", w.adapter, "-o", t / "r"), "this is a PEFT adapter, not a full model", id="recover-diff-is-an-adapter"),
    P(lambda w, t: _w("recover", "--base", w.base, "--diff", w.diff, "-o", w.afile / "r", "--dry-run"), "afile is a file, not a folder", id="recover-dry-run-output-under-a-file"),
    P(lambda w, t: _w("merge", "--adapter", t / "nope", "-o", t / "m"), ["--adapter", "folder does not exist"], id="merge-adapter-missing"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter_no_config, "-o", t / "m"), "no adapter_config.json", id="merge-adapter-without-config"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter_bad_config, "-o", t / "m"), "cannot read the PEFT config", id="merge-adapter-config-garbled"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter_no_weights, "-o", t / "m"), "no adapter_model.safetensors or adapter_model.bin", id="merge-adapter-without-weights"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter_trunc_weights, "-o", t / "m"), "cannot read the adapter weights", id="merge-adapter-weights-truncated"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter_remote_base, "-o", t / "m"), ["not a local folder", "pass --base DIR"], id="merge-base-not-local"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter, "--base", w.no_config, "-o", t / "m"), ["--base", "config.json is missing"], id="merge-base-without-config"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter, "--base", w.trunc_model, "-o", t / "m"), "truncated safetensors file", id="merge-base-truncated"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter, "--base", w.unknown_type, "-o", t / "m"), ["unknown_type/config.json", "transformers cannot load this config"], id="merge-base-unknown-model-type"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter, "--base", w.other_base, "-o", t / "m"), "wrong base?", id="merge-wrong-base"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter, "-o", w.afile / "m"), "afile is a file, not a folder", id="merge-output-under-a-file"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter, "-o", w.afile), "exists and is not a folder", id="merge-output-is-a-file"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter, "-o", w.adapter / "merged"), "overlaps --adapter", id="merge-output-inside-adapter"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter, "-o", t / "m", "--compute-dtype", "int4"), "--compute-dtype", id="merge-bad-compute-dtype"),
    P(lambda w, t: _w("merge", "--adapter", t / "nope", "-o", t / "m", "--dry-run"), ["--adapter", "folder does not exist"], id="merge-dry-run-adapter-missing"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter, "-o", w.afile / "m", "--dry-run"), "afile is a file, not a folder", id="merge-dry-run-output-under-a-file"),
    P(lambda w, t: _w("merge", "--adapter", w.adapter, "--base", w.other_base, "-o", t / "m", "--dry-run"), "wrong base?", id="merge-dry-run-wrong-base"),
]

QUICKSTART: list = [
    P(lambda w, t: ["quickstart", "-o", w.afile], "--output", id="quickstart-output-is-a-file"),
    P(lambda w, t: ["quickstart", "-o", w.afile / "q"], "afile is a file, not a folder", id="quickstart-output-under-a-file"),
    P(lambda w, t: ["quickstart", "-o", w.nonempty], "pass --overwrite", id="quickstart-output-not-empty"),
    P(lambda w, t: ["quickstart", "-o", w.afile / "q", "--dry-run"], "afile is a file, not a folder", id="quickstart-dry-run-output-under-a-file"),
    P(lambda w, t: ["quickstart", "-o", t / "q", "--seed", "abc"], ["--seed", "valid integer"], id="quickstart-seed-not-a-number"),
    P(lambda w, t: ["quickstart", "-o", t / "q", "-c", w.config_unknown_key], "unknown key 'sft_epochz'", id="quickstart-config-unknown-key"),
]


@pytest.mark.parametrize("args,expect", DATA_PREPARE + DATA_OTHER + WEIGHTS + QUICKSTART)
def test_bad_input(world: World, tmp_path: Path, args: Args, expect) -> None:
    out = tmp_path / "out"
    out.mkdir()
    argv = args(world, out)
    assert_bad_input(argv, expect, watch=[out, world.root])


def test_table_size():
    """The issue asks for at least 50 rows across data, weights and quickstart (plus the permission rows)."""
    assert len(DATA_PREPARE + DATA_OTHER + WEIGHTS + QUICKSTART) + len(PERMISSION) >= 50


def test_prepare_eval_failed_download_leaves_nothing(tmp_path):
    """A benchmark whose second file is missing on the mirror: no half-filled folder, no staging left."""
    from tests._fileserver import serve

    mirror = tmp_path / "mirror" / "truthfulqa"
    mirror.mkdir(parents=True)
    (mirror / "TruthfulQA.csv").write_text("Type,Category,Question\n")  # the CSV is there, mc_task.json is not
    data = tmp_path / "data"
    data.mkdir()
    with serve(tmp_path / "mirror") as srv:
        r = CliRunner().invoke(app, ["data", "prepare-eval", "truthfulqa", "--data-dir", str(data), "--mirror", srv.base])
    lines = r.stderr.strip().splitlines()
    # Progress lines come first (two per file when stderr is not a terminal), then the one error line.
    assert r.exit_code == 2 and len(lines) == 4, lines
    assert lines[0] == f"downloading {srv.base}/truthfulqa/TruthfulQA.csv" and lines[1].startswith("downloaded TruthfulQA.csv: ")
    assert lines[2] == f"downloading {srv.base}/truthfulqa/data/mc_task.json"
    assert lines[-1].startswith("error: ") and "mc_task.json: HTTP 404" in lines[-1]
    assert "--raw-dir" not in lines[-1] and f"put it at {data}/truthfulqa/data/mc_task.json" in lines[-1]  # prepare-eval has no --raw-dir
    assert list(data.iterdir()) == []  # neither truthfulqa/TruthfulQA.csv nor a staging folder


# ---------------------------------------------------------------- as an unprivileged user

USER = "tulu-bad-input"
# What the commands import before their output checks (no torch, transformers or peft).
LIGHT_PACKAGES = (
    "typer", "rich", "pydantic", "pydantic_core", "annotated_types", "annotated_doc", "typing_extensions",
    "typing_inspection", "shellingham", "yaml", "_yaml", "markdown_it", "mdurl", "pygments", "certifi",
)


@dataclass
class Unprivileged:
    scratch: Path  # a folder that user can read; the rows' files live here
    run: Callable[[list], subprocess.CompletedProcess]


def _copy_packages(site: Path) -> None:
    import importlib

    for name in LIGHT_PACKAGES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        src = Path(mod.__file__)
        if src.name == "__init__.py":
            shutil.copytree(src.parent, site / src.parent.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, site / src.name)
    shutil.copytree(REPO / "tulu_cli", site / "tulu_cli", ignore=shutil.ignore_patterns("__pycache__"))


@pytest.fixture(scope="module")
def unprivileged():
    """Run `tulu` as a user for whom permissions apply: this user when not root, else a user made here.

    The pyenv Python under /root is not readable by other users; /usr/bin/python3 is, with copies of the
    light packages the checks need (no network, a few seconds).
    """
    scratch = Path(tempfile.mkdtemp(prefix="tulu-unprivileged-", dir="/tmp"))
    scratch.chmod(0o755)
    created = False
    try:
        if os.geteuid() != 0:
            def run_here(argv):
                return subprocess.run([sys.executable, "-m", "tulu_cli.cli.main", *map(str, argv)], capture_output=True, text=True, cwd=scratch)

            yield Unprivileged(scratch, run_here)
            return
        python = Path("/usr/bin/python3")
        runuser = shutil.which("runuser")
        if not (shutil.which("useradd") and runuser and python.is_file()):
            pytest.skip("running as root without useradd/runuser or /usr/bin/python3: cannot check permissions as another user")
        minor = subprocess.run([str(python), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True).stdout.strip()
        if minor != str(tuple(sys.version_info[:2])):
            pytest.skip(f"/usr/bin/python3 is {minor}, this is {tuple(sys.version_info[:2])}: the compiled packages cannot be shared with it")
        if subprocess.run(["id", "-u", USER], capture_output=True).returncode != 0:
            made = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], capture_output=True, text=True)
            if made.returncode != 0:
                pytest.skip(f"useradd {USER} failed: {made.stderr.strip()}")
            created = True
        site = scratch / "site"
        site.mkdir()
        _copy_packages(site)
        subprocess.run(["chmod", "-R", "a+rX", str(site)], check=True)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(scratch), "LANG": "C.UTF-8", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}

        def run_as_user(argv):
            return subprocess.run(
                [runuser, "-u", USER, "--", str(python), "-m", "tulu_cli.cli.main", *map(str, argv)],
                capture_output=True, text=True, cwd=scratch, env=env,
            )

        yield Unprivileged(scratch, run_as_user)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(scratch)], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
        if created:
            subprocess.run(["userdel", USER], capture_output=True)


def _ro(scratch: Path, name: str) -> Path:
    """A folder nobody but root may write into, holding one file (owned by root: the unprivileged user cannot change it)."""
    folder = scratch / name
    folder.mkdir(exist_ok=True)
    (folder / "keep.txt").write_text("keep me")
    folder.chmod(0o555)
    return folder


def _writable_inside_ro(scratch: Path) -> Path:
    """A non-empty folder anyone may write into, inside a read-only one: replacing it needs the parent."""
    parent = scratch / "ro2"
    inner = parent / "inner"
    inner.mkdir(parents=True, exist_ok=True)
    (inner / "old.txt").write_text("an earlier run")
    inner.chmod(0o777)
    parent.chmod(0o555)
    return inner


PERMISSION: list = [
    P(lambda s: ["data", "prepare", "alpaca", "-i", s / "alpaca.json", "-o", _ro(s, "ro") / "x.jsonl"], ["--output", "cannot write into", "permission denied"], id="prepare-output-in-read-only-folder"),
    P(lambda s: ["data", "prepare", "alpaca", "-i", s / "alpaca.json", "-o", _ro(s, "ro") / "sub" / "x.jsonl"], ["--output", "cannot write into", "/ro "], id="prepare-output-below-read-only-folder"),
    P(lambda s: ["data", "prepare", "alpaca", "-i", s / "alpaca.json", "-o", _ro(s, "ro")], ["--output", "cannot write into this folder"], id="prepare-output-folder-read-only"),
    P(lambda s: ["data", "prepare", "alpaca", "-i", s / "alpaca.json", "-o", _ro(s, "ro") / "x.jsonl", "--dry-run"], "cannot write into", id="prepare-dry-run-output-in-read-only-folder"),
    P(lambda s: ["data", "prepare", "dolly", "--cache-dir", _ro(s, "ro") / "cache", "-o", s / "w" / "x.jsonl"], ["--cache-dir", "cannot write into"], id="prepare-cache-dir-read-only"),
    P(lambda s: ["data", "prepare-eval", "gsm", "--data-dir", _ro(s, "ro")], ["--data-dir", "cannot write into this folder"], id="prepare-eval-data-dir-read-only"),
    P(lambda s: ["weights", "diff", "--base", s / "base", "--tuned", s / "tuned", "-o", _ro(s, "ro") / "d"], ["--output", "cannot write into"], id="diff-output-in-read-only-folder"),
    P(lambda s: ["weights", "merge", "--adapter", s / "adapter", "--base", s / "base", "-o", _ro(s, "ro") / "m"], ["--output", "cannot write into"], id="merge-output-in-read-only-folder"),
    P(lambda s: ["weights", "merge", "--adapter", s / "adapter", "--base", s / "base", "-o", _ro(s, "ro") / "m", "--dry-run"], "cannot write into", id="merge-dry-run-output-in-read-only-folder"),
    P(lambda s: ["quickstart", "-o", _ro(s, "ro") / "q"], ["--output", "cannot write into"], id="quickstart-output-in-read-only-folder"),
    P(lambda s: ["quickstart", "-o", _ro(s, "ro")], ["--output", "cannot write into this folder"], id="quickstart-output-folder-read-only"),
    P(lambda s: ["quickstart", "-o", _writable_inside_ro(s), "--overwrite"], ["--output", "cannot write into", "/ro2 "], id="quickstart-overwrite-in-read-only-parent"),
]


@pytest.mark.parametrize("args,expect", PERMISSION)
def test_bad_input_unprivileged(unprivileged: Unprivileged, args, expect) -> None:
    s = unprivileged.scratch
    if not (s / "alpaca.json").exists():
        (s / "alpaca.json").write_text(json.dumps(ALPACA))
        for name in ("base", "tuned", "adapter"):
            (s / name).mkdir()  # the output is refused before any input is read
        subprocess.run(["chmod", "-R", "a+rX", str(s)], check=True)
        (s / "w").mkdir(mode=0o777)  # somewhere the user may write
        (s / "w").chmod(0o777)
    argv = args(s)
    before = snapshot([s])
    r = unprivileged.run(argv)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    context = f"tulu {' '.join(map(str, argv))}\nexit={r.returncode}\nstdout={r.stdout[-2000:]}\nstderr={r.stderr[-3000:]}"
    assert r.returncode == 2, context
    assert "Traceback" not in r.stderr and len(lines) == 1 and lines[0].startswith("error:"), context
    for part in [expect] if isinstance(expect, str) else expect:
        assert part in lines[0], f"{part!r} not in the error line\n{context}"
    after = snapshot([s])
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}\n{context}"
