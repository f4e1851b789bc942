"""`tulu train qlora`: 4-bit base on CPU (bitsandbytes) with decreasing loss; the data-parallel-only refusals."""

from __future__ import annotations

import json

import pytest

from tests._peft_helpers import adapter_config, adapter_weights, peft_args
from tests._train_helpers import metrics, run_cli, write_chat_data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_chat_data(tmp_path_factory.mktemp("qlora_data") / "train.jsonl", n=16)


def test_qlora_four_bit_base_loss_goes_down_and_resume_works(tiny_model, data, tmp_path):
    out = tmp_path / "run"
    common = dict(max_steps=8, per_device_batch_size=4, learning_rate=2e-2, lora_rank=8, lora_dropout=0, lr_scheduler="constant",
                  checkpointing_steps=4, optimizer="adamw_8bit")
    r = run_cli(peft_args("qlora", tiny_model, data, out, tmp_path / "cache", **common))
    assert r.exit_code == 0, r.output
    assert "base loaded in 4-bit nf4 with double quantization, compute in bf16" in r.output
    m = metrics(out)
    assert [x["step"] for x in m] == list(range(1, 9))
    first, last = sum(x["loss"] for x in m[:2]) / 2, sum(x["loss"] for x in m[-2:]) / 2
    assert last < first - 0.1, (first, last)
    cfg = adapter_config(out)
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 8 and "down_proj" in cfg["target_modules"]
    assert all("lora_" in k for k in adapter_weights(out))
    run = json.loads((out / "tulu_run.json").read_text())
    assert run["recipe"] == "qlora" and run["options"]["gradient_checkpointing"] is True
    assert run["options"]["bnb_4bit_quant_type"] == "nf4" and run["options"]["bnb_4bit_double_quant"] is True

    # A 4-bit base cannot be restored from its own state dict: checkpoints hold the adapter only and resume works.
    killed = tmp_path / "killed"
    (killed / "checkpoints").mkdir(parents=True)
    import shutil

    shutil.copytree(out / "checkpoints" / "step_00000004", killed / "checkpoints" / "step_00000004")
    r = run_cli(peft_args("qlora", tiny_model, data, killed, tmp_path / "cache", resume="auto", **common))
    assert r.exit_code == 0, r.output
    b = metrics(killed)
    assert [x["step"] for x in b] == [5, 6, 7, 8]
    for x, y in zip(m[4:], b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4)


@pytest.mark.parametrize(
    "extra, shown",
    [
        (["--deepspeed-stage", "3"], "--deepspeed-stage 3 asks DeepSpeed to shard the model (ZeRO-3)"),
        (["--deepspeed-stage", "2", "--num-processes", "2"], "--deepspeed-stage 2 asks DeepSpeed to shard the model (ZeRO-2)"),
    ],
)
def test_qlora_refuses_deepspeed_with_the_reason_and_the_alternative(tiny_model, data, tmp_path, extra, shown):
    r = run_cli(peft_args("qlora", tiny_model, data, tmp_path / "o", tmp_path / "c") + extra)
    assert r.exit_code == 2
    assert "QLoRA is data parallel only" in r.output and shown in r.output
    assert "use --num-processes N (plain DDP" in r.output and "tulu train lora --deepspeed-stage 3" in r.output
    assert not (tmp_path / "o").exists()


def test_qlora_refuses_a_user_deepspeed_config_too(tiny_model, data, tmp_path):
    cfg = tmp_path / "ds.json"
    cfg.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    r = run_cli(peft_args("qlora", tiny_model, data, tmp_path / "o", tmp_path / "c", deepspeed_config=cfg))
    assert r.exit_code == 2 and "QLoRA is data parallel only: --deepspeed-config asks DeepSpeed to shard the model (ZeRO-3)" in r.output


def test_qlora_dry_run_shows_data_parallel_launch(tiny_model, data, tmp_path):
    r = run_cli(peft_args("qlora", tiny_model, data, tmp_path / "o", tmp_path / "c", num_processes=2, optimizer="paged_adamw_8bit") + ["--dry-run"])
    assert r.exit_code == 0, r.output
    opts = json.JSONDecoder().raw_decode(r.stdout)[0]
    assert opts["recipe"] == "qlora" and opts["optimizer"] == "paged_adamw_8bit" and opts["lora_rank"] == 64
    assert "--multi_gpu" in r.stdout and "--use_deepspeed" not in r.stdout


def test_bad_lora_values_name_the_flag(tiny_model, data, tmp_path):
    r = run_cli(peft_args("qlora", tiny_model, data, tmp_path / "o", tmp_path / "c", lora_dropout=1.5))
    assert r.exit_code == 2 and "--lora-dropout" in r.output
    r = run_cli(peft_args("qlora", tiny_model, data, tmp_path / "o", tmp_path / "c", bnb_4bit_quant_type="int3"))
    assert r.exit_code == 2 and "--bnb-4bit-quant-type" in r.output
    r = run_cli(peft_args("lora", tiny_model, data, tmp_path / "o", tmp_path / "c", lora_rank=0))
    assert r.exit_code == 2 and "--lora-rank" in r.output


@pytest.mark.parametrize("name, command", [("lora_tulu2_7b.yaml", "lora"), ("qlora_tulu2_70b.yaml", "qlora")])
def test_example_recipes_pass_dry_run(name, command, monkeypatch):
    from pathlib import Path

    monkeypatch.setattr("tulu_cli.train.launch.preflight", lambda opts: None)  # hub model and data absent here; options only

    path = Path(__file__).resolve().parents[1] / "examples" / name
    r = run_cli(["train", command, "-c", str(path), "--dry-run"])
    assert r.exit_code == 0, r.output
    dec = json.JSONDecoder()
    opts, end = dec.raw_decode(r.stdout)
    launch, _ = dec.raw_decode(r.stdout[end:].lstrip())
    assert (opts["lora_rank"], opts["lora_alpha"], opts["lora_dropout"], opts["learning_rate"]) == (64, 16, 0.1, 1e-4)
    assert launch["accelerate"]["total_batch_size"] == 128
    if command == "lora":
        assert launch["deepspeed_config"]["zero_optimization"]["stage"] == 3
    else:
        assert launch["deepspeed_config"] is None and opts["bnb_4bit_quant_type"] == "nf4" and "--multi_gpu" in launch["command"]


def test_missing_bitsandbytes_is_one_clear_line(tiny_model, data, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    r = run_cli(peft_args("qlora", tiny_model, data, tmp_path / "o", tmp_path / "c"))
    assert r.exit_code == 2 and "QLoRA needs the bitsandbytes package: pip install 'tulu-cli[qlora]'" in r.output
    r = run_cli(peft_args("dpo", tiny_model, data, tmp_path / "o", tmp_path / "c", optimizer="adamw_8bit"))
    assert r.exit_code == 2 and "--optimizer adamw_8bit needs the bitsandbytes package" in r.output
