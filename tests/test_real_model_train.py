"""QLoRA, DPO and weight diff/recover on the real SmolLM2-135M-Instruct: few steps on one repeated batch, exact round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests._peft_helpers import adapter_weights, write_preference_data
from tests._train_helpers import write_chat_data
from tests._weights_helpers import load_state, same_bits
from tulu_cli.cli.main import app

pytestmark = pytest.mark.slow

STEPS = 3


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One folder (and one tokenized-data cache) for the whole module."""
    return tmp_path_factory.mktemp("real_train")


@pytest.fixture(scope="module")
def dpo_model(real_model, work) -> tuple[Path, list[dict]]:
    """Full DPO for a few steps: the fine-tuned model the diff/recover test starts from, and its logged steps."""
    prefs = write_preference_data(work / "prefs.jsonl", n=2)
    out = work / "dpo"
    steps = _train("dpo", real_model, prefs, out, work / "cache", "--per-device-batch-size", "2", "--learning-rate", "5e-6")
    return out, steps


def _train(kind: str, model: Path, data: Path, out: Path, cache: Path, *extra: str) -> list[dict]:
    """`tulu train KIND` for STEPS steps, all rows in the one batch (so every step sees the same batch)."""
    args = ["train", kind, "--model", str(model), "--train-files", str(data), "--output-dir", str(out), "--cache-dir", str(cache),
            "--dtype", "fp32", "--max-seq-length", "64", "--warmup-ratio", "0", "--lr-scheduler", "constant",
            "--max-steps", str(STEPS), "--logging-steps", "1", *extra]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.stderr + res.stdout
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [s["loss"] for s in steps]
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1))
    assert all(math.isfinite(x) for x in losses), losses
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses  # the same batch each step: it must fall
    return steps


def test_qlora_loss_falls_on_a_repeated_batch(real_model, work):
    data = write_chat_data(work / "chat.jsonl", n=4)
    out = work / "qlora"
    # fp32 compute: bf16 matmuls on a CPU without bf16 units are many times slower than fp32 ones
    steps = _train("qlora", real_model, data, out, work / "cache", "--per-device-batch-size", "4", "--learning-rate", "2e-3",
                   "--lora-rank", "4", "--lora-alpha", "8", "--lora-dropout", "0", "--bnb-4bit-compute-dtype", "fp32")
    print("qlora losses", [round(s["loss"], 4) for s in steps])
    weights = adapter_weights(out)
    assert weights and all("lora_" in k for k in weights)
    # rank 4 on the 7 projections of each of SmolLM2's 30 layers: an A and a B matrix each
    assert len(weights) == 30 * 7 * 2


def test_dpo_starts_at_log_2_and_its_loss_falls(dpo_model):
    _, steps = dpo_model
    print("dpo losses", [round(s["loss"], 4) for s in steps], "margins", [round(s["rewards/margin"], 4) for s in steps])
    # step 1: the policy is the reference, every reward is 0 and the loss is -log sigmoid(0) = log 2
    assert steps[0]["loss"] == pytest.approx(0.693147, abs=1e-5)
    assert steps[0]["rewards/margin"] == pytest.approx(0.0, abs=1e-5)
    assert steps[-1]["rewards/margin"] > 0


def test_weights_diff_then_recover_gives_the_fine_tuned_tensors_bit_for_bit(real_model, dpo_model, work):
    tuned, _ = dpo_model
    diff, recovered = work / "diff", work / "recovered"
    res = CliRunner().invoke(app, ["weights", "diff", "--base", str(real_model), "--tuned", str(tuned), "--output", str(diff)])
    assert res.exit_code == 0, res.stderr + res.stdout
    res = CliRunner().invoke(app, ["weights", "recover", "--base", str(real_model), "--diff", str(diff), "--output", str(recovered)])
    assert res.exit_code == 0, res.stderr + res.stdout
    assert "bit-exact" in res.stdout + res.stderr
    want, got = load_state(tuned), load_state(recovered)
    assert want.keys() == got.keys()
    differs = [k for k in want if not same_bits(want[k], got[k])]
    assert not differs, differs
    base = load_state(real_model)
    assert any(not same_bits(base[k], want[k]) for k in want if k in base)  # DPO did change the model
