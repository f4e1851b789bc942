"""`tulu weights merge`: merged logits equal the adapter-wrapped model's (LoRA and QLoRA), vocab resize, refusals."""

from __future__ import annotations

import json

import pytest
import torch

from tests._weights_helpers import IDS, adapter_logits, load_4bit, load_state, make_adapter, model_logits, no_leftovers, run
from tulu_cli.testing import make_tiny_model


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    # intermediate_size 256: bitsandbytes' CPU 4-bit kernel needs out_features divisible by 32.
    return make_tiny_model(tmp_path_factory.mktemp("weights_merge") / "base", seed=0, intermediate_size=256)


def fp32_model(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def test_lora_merge_matches_adapter_logits(base, tmp_path):
    adapter = make_adapter(base, tmp_path / "adapter", use_rslora=True)
    out = tmp_path / "merged"
    r = run(["weights", "merge", "--adapter", str(adapter), "--output", str(out)])  # base from adapter_config.json
    assert r.exit_code == 0, r.output
    assert "14 LoRA layer(s)" in r.output
    want = adapter_logits(fp32_model(base), adapter, IDS)
    got = model_logits(out, IDS)
    assert (want - model_logits(base, IDS)).abs().max() > 0.05  # the adapter really changes the model
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not (out / "adapter_config.json").exists()
    assert json.loads((out / "config.json").read_text()).get("dtype") == "float32"


def test_lora_merge_with_added_tokens_resizes_embeddings(base, tmp_path):
    adapter = make_adapter(base, tmp_path / "adapter", new_tokens=["<|tool|>", "<|result|>"], modules_to_save=["embed_tokens", "lm_head"], targets=("q_proj", "v_proj"))
    out = tmp_path / "merged"
    r = run(["weights", "merge", "--adapter", str(adapter), "--base", str(base), "--output", str(out), "--dtype", "bfloat16"])
    assert r.exit_code == 0, r.output
    assert "1026 rows (+2)" in r.output and "2 tensor(s) taken whole" in r.output
    state = load_state(out)
    assert state["model.embed_tokens.weight"].shape == (1026, 64) and state["lm_head.weight"].dtype == torch.bfloat16
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 1026
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(out)) == 1026  # the adapter's tokenizer, not the base's
    ids = torch.cat([IDS, torch.tensor([[1024, 1025]] * 2)], dim=1)
    want = adapter_logits(fp32_model(base), adapter, ids, vocab=1026)
    got = model_logits(out, ids)
    assert (got - want).abs().max() < 0.05  # bfloat16 output: within its rounding (logits ~1)


def test_merge_dtype_and_no_tokenizer(base, tmp_path):
    adapter = make_adapter(base, tmp_path / "adapter", targets=("o_proj",))
    for f in adapter.glob("tokenizer*"):
        f.unlink()
    out = tmp_path / "merged"
    r = run(["weights", "merge", "--adapter", str(adapter), "--output", str(out), "--no-save-tokenizer", "--max-shard-size", "100KB"])
    assert r.exit_code == 0, r.output
    assert not (out / "tokenizer.json").exists()
    assert (out / "model.safetensors.index.json").is_file()
    torch.testing.assert_close(model_logits(out, IDS), adapter_logits(fp32_model(base), adapter, IDS), atol=1e-5, rtol=1e-5)


def test_qlora_merge_matches_the_4bit_model_it_was_trained_on(base, tmp_path):
    """QLoRA: merge into the dequantized nf4 base. Measured on this tiny model (logits ~0.7):
    merged vs the 4-bit adapter-wrapped model 0.004-0.005 (bfloat16 compute rounding in the
    wrapped model), while the nf4 quantization error itself is ~0.09 and merged vs the
    unquantized base + adapter is ~0.10; with float32 compute the merge matches to ~1e-6.
    """
    adapter = make_adapter(base, tmp_path / "adapter", qlora=True)
    out = tmp_path / "merged"
    r = run(["weights", "merge", "--adapter", str(adapter), "--output", str(out), "--qlora"])
    assert r.exit_code == 0, r.output
    assert "dequantized 4-bit base" in r.output
    assert load_state(out)["model.layers.0.mlp.up_proj.weight"].dtype == torch.bfloat16  # auto = compute dtype
    merged = model_logits(out, IDS)
    wrapped = adapter_logits(load_4bit(base), adapter, IDS)
    unquantized = adapter_logits(fp32_model(base), adapter, IDS)
    with torch.no_grad():
        quant_error = (load_4bit(base)(IDS).logits.float() - model_logits(base, IDS)).abs().max()
    assert quant_error > 0.02  # nf4 really changed the base
    assert (merged - wrapped).abs().max() < min(0.02, 0.25 * quant_error)
    assert (merged - unquantized).abs().max() < 1.5 * quant_error


def test_qlora_merge_float32_equals_dequantized_base_plus_adapter(base, tmp_path):
    """Exact check of the recipe: transformers' own ``dequantize()`` of the nf4 base, then the adapter.

    (Not the 4-bit model's forward: bitsandbytes' CPU kernel rounds like bfloat16 even with float32
    compute, ~0.003 on these logits.)
    """
    adapter = make_adapter(base, tmp_path / "adapter", qlora=True, seed=3)
    out = tmp_path / "merged"
    r = run(["weights", "merge", "--adapter", str(adapter), "--output", str(out), "--qlora", "--compute-dtype", "float32"])
    assert r.exit_code == 0, r.output
    reference = adapter_logits(load_4bit(base, torch.float32).dequantize(), adapter, IDS)
    torch.testing.assert_close(model_logits(out, IDS), reference, atol=1e-5, rtol=1e-5)
    # The plain LoRA merge of the same adapter lands a quantization error away from it.
    plain = tmp_path / "plain"
    assert run(["weights", "merge", "--adapter", str(adapter), "--output", str(plain)]).exit_code == 0
    assert (model_logits(plain, IDS) - reference).abs().max() > 0.02


def _refused(args, output, *fragments):
    r = run(args)
    assert r.exit_code == 2, r.output
    assert "error:" in r.output and "Traceback" not in r.output
    for f in fragments:
        assert f in r.output, r.output
    if output is not None:
        assert no_leftovers(output)


def test_merge_refusals(base, tmp_path):
    adapter = make_adapter(base, tmp_path / "adapter", targets=("q_proj",))
    o = tmp_path / "o"
    _refused(["weights", "merge", "--adapter", str(tmp_path / "missing"), "--output", str(o)], o, "--adapter", "does not exist")
    _refused(["weights", "merge", "--adapter", str(base), "--output", str(o)], o, "no adapter_config.json")
    _refused(["weights", "merge", "--adapter", str(adapter), "--base", str(adapter), "--output", str(o)], o, "PEFT adapter, not a full model")
    other = make_tiny_model(tmp_path / "other", seed=0, hidden_size=32, intermediate_size=64)
    _refused(["weights", "merge", "--adapter", str(adapter), "--base", str(other), "--output", str(o)], o, "wrong base")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "meta-llama/Llama-2-7b-hf"
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    _refused(["weights", "merge", "--adapter", str(adapter), "--output", str(o)], o, "not a local folder", "--base")
    o.mkdir()
    (o / "x").write_text("x")
    _refused(["weights", "merge", "--adapter", str(adapter), "--base", str(base), "--output", str(o)], None, "already exists")
    _refused(["weights", "merge", "--adapter", str(adapter), "--base", str(base), "--output", str(tmp_path / "p"), "--dtype", "int8"], None, "--dtype")


def test_merge_dry_run(base, tmp_path):
    adapter = make_adapter(base, tmp_path / "adapter", targets=("q_proj", "v_proj"))
    r = run(["weights", "merge", "--adapter", str(adapter), "--output", str(tmp_path / "o"), "--qlora", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert '"qlora": true' in r.output and '"compute_dtype": "bfloat16"' in r.output
    assert "4 LoRA layer(s) of --adapter fit the base" in r.stderr  # q and v of 2 layers
    assert no_leftovers(tmp_path / "o")
    # Dry run checks what a run checks: a folder without an adapter is refused, not "validated".
    r = run(["weights", "merge", "--adapter", str(tmp_path / "none"), "--output", str(tmp_path / "o"), "--dry-run"])
    assert r.exit_code == 2 and "--adapter" in r.stderr and "does not exist" in r.stderr


def test_tied_embeddings_lora_on_embedding(tmp_path):
    base = make_tiny_model(tmp_path / "base", seed=0, tie_word_embeddings=True)
    adapter = make_adapter(base, tmp_path / "adapter", targets=("embed_tokens", "q_proj"))
    out = tmp_path / "merged"
    r = run(["weights", "merge", "--adapter", str(adapter), "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert "lm_head.weight" not in load_state(out)  # still tied
    torch.testing.assert_close(model_logits(out, IDS), adapter_logits(fp32_model(base), adapter, IDS), atol=1e-5, rtol=1e-5)
    tied_head = make_adapter(base, tmp_path / "adapter2", targets=("q_proj", "lm_head"))
    _refused(["weights", "merge", "--adapter", str(tied_head), "--output", str(tmp_path / "o")], tmp_path / "o", "ties to its input embedding")
