"""`tulu quickstart --model smollm2`: the pipeline on the real SmolLM2-135M-Instruct (LoRA, merge, base vs LoRA eval)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tulu_cli.cli.main import app

pytestmark = pytest.mark.slow


def test_quickstart_on_the_real_model(real_model, tmp_path):
    # Fewer steps and sums than a user's run (4 and 20); the stages and what they write are the same.
    config = tmp_path / "qs.yaml"
    config.write_text("lora_steps: 3\neval_limit: 4\n")
    out = tmp_path / "qs"
    r = CliRunner().invoke(app, ["quickstart", "--model", "smollm2", "--output", str(out), "--config", str(config)])
    assert r.exit_code == 0, r.stderr + r.stdout
    summary = json.loads((out / "quickstart_summary.json").read_text())
    assert summary["model"] == "smollm2"
    stages = {s["name"]: s for s in summary["stages"]}
    assert list(stages) == ["get SmolLM2-135M-Instruct", "prepare SFT data", "LoRA fine-tuning", "merge LoRA into base", "evaluate base and LoRA"]
    # the converted model is used where the cache keeps it (the fixture converted it), not copied
    assert stages["get SmolLM2-135M-Instruct"]["output"] == str(real_model)
    assert stages["get SmolLM2-135M-Instruct"]["result"].startswith("Llama, hidden 576, 30 layers, vocab 49152")
    assert not (out / "base-model").exists()
    assert stages["prepare SFT data"]["result"] == "160 examples"
    m = summary["metrics"]
    assert m["lora_last_loss"] < m["lora_first_loss"], m
    assert [json.loads(x)["step"] for x in (out / "lora-adapter" / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert json.loads((out / "lora-adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(real_model)
    assert (out / "lora-merged" / "model.safetensors").is_file()
    for name in ("base", "lora"):
        results = json.loads((out / "eval" / name / "results.json").read_text())
        assert results["results"]["gsm_direct"]["num_examples"] == 4
        assert m[f"{name}_gsm_direct_exact_match"] == results["results"]["gsm_direct"]["metrics"]["exact_match"]
    # the first sum of the shipped file (ids keep file order), and what each model wrote for it
    example = m["example"]
    assert example["question"] == "What is 21 + 10?"
    assert example["base"] and example["lora"]
    assert f"'What is 21 + 10?': base {example['base']!r}, lora {example['lora']!r}" in stages["evaluate base and LoRA"]["result"]
    assert "evaluate base and LoRA\t" in r.stdout  # the closing table, tab-separated when not a terminal
    assert f"LORA model {out.resolve()}/lora-merged: gsm_direct on 4 sums" in r.stderr
