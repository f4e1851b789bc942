"""End-to-end single-process `tulu train sft` on the tiny model: outputs, cache, resume, packing, reduction."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests._train_helpers import base_args, load_weights, metrics, run_cli, write_chat_data, one_torch_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("sft_data")
    return write_chat_data(d / "train.jsonl", n=16, prompt_completion=4)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sft_cache")


def test_sft_end_to_end_loss_goes_down_and_outputs(tiny_model, data, cache, tmp_path):
    out = tmp_path / "run"
    r = run_cli(base_args(tiny_model, data, out, cache, max_steps=12, per_device_batch_size=4, learning_rate=5e-3, lr_scheduler="constant",
                                              checkpointing_steps=4, keep_last_checkpoints=2))
    assert r.exit_code == 0, r.output
    m = metrics(out)
    assert [x["step"] for x in m] == list(range(1, 13))
    assert {"step", "loss", "lr", "tokens_per_second", "grad_norm"} <= set(m[0])
    first, last = sum(x["loss"] for x in m[:3]) / 3, sum(x["loss"] for x in m[-3:]) / 3
    assert last < first - 1.0, (first, last)

    run = json.loads((out / "tulu_run.json").read_text())
    assert run["recipe"] == "sft" and run["steps_done"] == 12
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000008", "step_00000012"]
    assert run["options"]["learning_rate"] == 5e-3
    assert run["versions"]["torch"] and run["data"]["examples"] == 20
    assert list(run["data"]["data_hashes"].values())[0] == __import__("hashlib").sha256(data.read_bytes()).hexdigest()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    assert "<|assistant|>" in tok.chat_template
    model = AutoModelForCausalLM.from_pretrained(out)
    before = load_weights(tiny_model)
    after = load_weights(out)
    assert not torch.equal(before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"])
    assert model.config.pad_token_id == tok.pad_token_id

    # tulu train plot writes a PNG
    r = run_cli(["train", "plot", str(out)])
    assert r.exit_code == 0, r.output
    png = out / "metrics.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_second_run_skips_tokenization_and_changes_invalidate(tiny_model, data, tmp_path):
    cache = tmp_path / "cache"
    args = dict(max_steps=1, per_device_batch_size=4)
    first = run_cli(base_args(tiny_model, data, tmp_path / "a", cache, **args))
    assert first.exit_code == 0 and "skipped tokenization" not in first.output
    second = run_cli(base_args(tiny_model, data, tmp_path / "b", cache, **args))
    assert second.exit_code == 0 and "tulu] tokenized data found in cache" in second.output
    assert "skipped tokenization" in second.output
    # a different max length is a different cache entry: tokenized again
    third = run_cli(base_args(tiny_model, data, tmp_path / "c", cache, **{**args, "max_seq_length": 128}, preprocessing_num_workers=2))
    assert third.exit_code == 0 and "tulu] tokenizing 20 rows (template tulu, max length 128, 2 worker(s))" in third.output
    assert len(list(cache.glob("*/tulu_cache.json"))) == 2


def test_resume_equals_uninterrupted(tiny_model, data, cache, tmp_path):
    common = dict(max_steps=6, per_device_batch_size=2, gradient_accumulation_steps=2, learning_rate=2e-3, checkpointing_steps=3, warmup_steps=2)
    full = tmp_path / "full"
    assert run_cli(base_args(tiny_model, data, full, cache, **common)).exit_code == 0

    # The "killed" run: its folder as it was right after the step-3 checkpoint, plus a half-written
    # checkpoint (no completion marker) that auto-resume must ignore.
    killed = tmp_path / "killed"
    killed.mkdir()
    shutil.copytree(full / "checkpoints" / "step_00000003", killed / "checkpoints" / "step_00000003")
    partial = killed / "checkpoints" / "step_00000006"
    shutil.copytree(full / "checkpoints" / "step_00000006", partial)
    (partial / "COMPLETE").unlink()
    (killed / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in metrics(full)[:4]))  # died during step 4

    r = run_cli(base_args(tiny_model, data, killed, cache, resume="auto", **common))
    assert r.exit_code == 0, r.output
    a, b = metrics(full), metrics(killed)
    assert [x["step"] for x in b] == [1, 2, 3, 4, 5, 6]
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-6, abs=1e-7)
        assert x["lr"] == pytest.approx(y["lr"])
    wa, wb = load_weights(full), load_weights(killed)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("command", ["sft", "lora"])
def test_resume_auto_without_a_complete_checkpoint_starts_a_clean_run(tiny_model, data, cache, tmp_path, command):
    # killed during step 3, before its first checkpoint was complete
    out = tmp_path / "run"
    common = dict(max_steps=3, per_device_batch_size=4, checkpointing_steps=3)
    args = base_args(tiny_model, data, out, cache, **common)
    args[1] = command
    assert run_cli(args).exit_code == 0
    (out / "tulu_run.json").unlink()
    (out / "checkpoints" / "step_00000003" / "COMPLETE").unlink()
    r = run_cli(args + ["--resume", "auto"])
    assert r.exit_code == 0, r.output
    assert "--resume auto: no complete checkpoint in" in r.output and "starting a clean run" in r.output
    assert [x["step"] for x in metrics(out)] == [1, 2, 3]  # not 1, 2, 1, 2, 3
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_00000003"]
    # a finished run without checkpoints is not silently trained again
    shutil.rmtree(out / "checkpoints")
    r = run_cli(args + ["--resume", "auto"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1].startswith(f"error: --resume auto: {out} holds a finished run and no checkpoint")


def test_packing_gives_the_same_losses_as_padding(tiny_model, data, cache, tmp_path):
    common = dict(max_steps=4, per_device_batch_size=5, learning_rate=1e-3)
    assert run_cli(base_args(tiny_model, data, tmp_path / "pad", cache, **common)).exit_code == 0
    r = run_cli(base_args(tiny_model, data, tmp_path / "pack", cache, packing=True, **common))
    assert r.exit_code == 0, r.output
    for x, y in zip(metrics(tmp_path / "pad"), metrics(tmp_path / "pack")):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4)
    wa, wb = load_weights(tmp_path / "pad"), load_weights(tmp_path / "pack")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-3, atol=1e-5)


def test_sum_reduction_batch1_accum8_equals_batch8_accum1(tiny_model, data, cache, tmp_path):
    common = dict(max_steps=2, learning_rate=1e-3, reduce_loss="sum", lr_scheduler="constant")
    assert run_cli(base_args(tiny_model, data, tmp_path / "b1", cache, per_device_batch_size=1, gradient_accumulation_steps=8, **common)).exit_code == 0
    assert run_cli(base_args(tiny_model, data, tmp_path / "b8", cache, per_device_batch_size=8, gradient_accumulation_steps=1, **common)).exit_code == 0
    wa, wb = load_weights(tmp_path / "b1"), load_weights(tmp_path / "b8")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-6)
    # mean reduction weighs micro-batches, not tokens: the same comparison differs
    common["reduce_loss"] = "mean"
    assert run_cli(base_args(tiny_model, data, tmp_path / "m1", cache, per_device_batch_size=1, gradient_accumulation_steps=8, **common)).exit_code == 0
    wm = load_weights(tmp_path / "m1")
    assert any(not torch.allclose(wm[k], wb[k], rtol=1e-4, atol=1e-6) for k in wb)


def test_tokenizer_without_pad_gets_one_and_embeddings_grow(tmp_path, data, cache):
    from tulu_cli.testing import make_tiny_model

    model = make_tiny_model(tmp_path / "nopad", with_pad_token=False, vocab_size=1023)
    out = tmp_path / "run"
    r = run_cli(base_args(model, data, out, cache, max_steps=1, per_device_batch_size=4))
    assert r.exit_code == 0, r.output
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    assert tok.pad_token == "<pad>"
    w = load_weights(out)
    assert w["model.embed_tokens.weight"].shape[0] == len(tok) == 1024


def test_python_entry_with_a_local_datasets_folder(tiny_model, tmp_path):
    """`tulu_cli.train.sft.run(options)` (what the quickstart calls), reading `--dataset` from a folder."""
    from tulu_cli.options.train import SFTOptions
    from tulu_cli.train import sft

    folder = tmp_path / "ds"
    folder.mkdir()
    write_chat_data(folder / "train.jsonl", n=10)
    out = sft.run(SFTOptions(model=str(tiny_model), dataset=str(folder), output_dir=tmp_path / "run", cache_dir=tmp_path / "c",
                             dtype="fp32", max_steps=2, per_device_batch_size=2, max_train_samples=6,
                             gradient_checkpointing=True, cpu_threads=1))
    assert (out / "model.safetensors").is_file()
    run = json.loads((out / "tulu_run.json").read_text())
    assert run["data"]["examples"] == 6 and run["total_steps"] == 2


def test_worker_tokenizes_on_rank_0_when_no_cache_exists(tiny_model, data, tmp_path):
    """Launching the worker module directly (own accelerate launch): rank 0 builds the cache itself."""
    from tulu_cli.options.train import SFTOptions
    from tulu_cli.train.worker import main, reset_accelerate_state

    opts = SFTOptions(model=str(tiny_model), train_files=[str(data)], output_dir=tmp_path / "run", cache_dir=tmp_path / "fresh",
                      dtype="fp32", max_steps=1, per_device_batch_size=2)
    (tmp_path / "run").mkdir()
    spec = tmp_path / "run" / "tulu_options.json"
    spec.write_text(json.dumps({"recipe": "sft", "options": json.loads(opts.model_dump_json()), "deepspeed_config": None}))
    try:
        assert main([str(spec)]) == 0
    finally:
        reset_accelerate_state()
    assert list((tmp_path / "fresh").glob("*/tulu_cache.json"))
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_report_to_tensorboard_writes_event_files(tiny_model, data, cache, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard)")
    out = tmp_path / "tb"
    r = run_cli(base_args(tiny_model, data, out, cache, max_steps=2, per_device_batch_size=4, report_to="tensorboard"))
    assert r.exit_code == 0, r.output
    assert list(out.rglob("events.out.tfevents.*"))
