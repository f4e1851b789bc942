"""`tulu weights diff | recover`: exact round trips, interop with the released Alpaca / Tulu v1 diff format, refusals."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests._weights_helpers import (
    load_state, make_tuned, no_leftovers, old_inv_freq, reference_make_diff, reference_recover, run, same_bits,
)
from tulu_cli.testing import make_tiny_model
from tulu_cli.weights.diff import FIXUPS, MANIFEST


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A LLaMA-like base without a pad token, and a bf16 'Tulu' tuned from it with [PAD] added (vocab +1)."""
    root = tmp_path_factory.mktemp("weights_diff")
    base = make_tiny_model(root / "base", seed=0, with_pad_token=False)
    tuned = make_tuned(base, root / "tuned", seed=1, add_pad=True, dtype=torch.bfloat16)
    return root, base, tuned


def test_diff_then_recover_is_bit_exact(models, tmp_path):
    root, base, tuned = models
    diff, out = tmp_path / "diff", tmp_path / "rec"
    r = run(["weights", "diff", "--base", str(base), "--tuned", str(tuned), "--output", str(diff)])
    assert r.exit_code == 0, r.output
    assert "grown by 1 mean row" in r.output
    d = load_state(diff)
    assert all(t.dtype == torch.float32 for t in d.values())  # the released diffs are float32
    assert json.loads((diff / "config.json").read_text()).get("dtype") == "float32"
    manifest = json.loads((diff / MANIFEST).read_text())
    assert manifest["base_rows_added"] == 1 and manifest["fixups"] is None
    assert (diff / "tokenizer.json").is_file()  # the tuned tokenizer travels with the diff

    r = run(["weights", "recover", "--base", str(base), "--diff", str(diff), "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert "bit-exact" in r.output
    want, got = load_state(tuned), load_state(out)
    assert want.keys() == got.keys()
    assert all(same_bits(want[k], got[k]) for k in want)  # bf16 restored in bf16, every bit
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).pad_token == "[PAD]"


def test_float32_elements_float_rounding_cannot_restore_become_fixups(tmp_path):
    """fp32: float32(float32(t - b) + b) != t when |b| dwarfs |t|; those elements are stored and restored exactly."""
    base = make_tiny_model(tmp_path / "base", seed=0)
    tuned = make_tuned(base, tmp_path / "tuned", seed=2)
    from safetensors.torch import load_file, save_file

    b = load_file(str(base / "model.safetensors"))
    t = load_file(str(tuned / "model.safetensors"))
    key = "model.layers.0.mlp.down_proj.weight"
    b[key][0, :3] = torch.tensor([3.0, -1e4, 1.0])
    t[key][0, :3] = torch.tensor([1e-12, 7e-3, 2.0**-30])
    save_file(b, str(base / "model.safetensors"), metadata={"format": "pt"})
    save_file(t, str(tuned / "model.safetensors"), metadata={"format": "pt"})
    r = run(["weights", "diff", "--base", str(base), "--tuned", str(tuned), "--output", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "d" / MANIFEST).read_text())
    assert manifest["fixups"] == FIXUPS and manifest["tensors"][key]["inexact_elements"] >= 2
    r = run(["weights", "recover", "--base", str(base), "--diff", str(tmp_path / "d"), "--output", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    got = load_state(tmp_path / "r")
    assert all(same_bits(t[k], got[k]) for k in t)


def test_released_format_diff_recovers_with_tulu(models, tmp_path):
    """A diff made the way the Alpaca / Tulu v1 scripts made theirs (.bin, float32, [PAD] mean row, inv_freq buffers)."""
    root, base, tuned = models
    diff = reference_make_diff(base, tuned, tmp_path / "ref_diff")
    ref_state, ref_sum = reference_recover(base, diff)
    # 2023 transformers also summed the stored rotary buffers; today's drops them on load.
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(diff)
    published = ref_sum + config.num_hidden_layers * float(old_inv_freq(config).sum())

    out = tmp_path / "rec"
    r = run(["weights", "recover", "--base", str(base), "--diff", str(diff), "--output", str(out), "--check-sum", f"{published:.4f}"])
    assert r.exit_code == 0, r.output
    assert "no tulu manifest" in r.output and "matches --check-sum" in r.output
    got = load_state(out)
    assert not any("inv_freq" in k for k in got)  # rebuilt by today's models, not written
    for k, v in got.items():
        assert v.dtype == torch.float32  # the scripts recovered in float32
        assert torch.equal(v, ref_state[k]), k  # same arithmetic, same bits as the reference procedure
    want = load_state(tuned)
    assert all(torch.equal(got[k].to(torch.bfloat16), want[k]) for k in want)
    out16 = tmp_path / "rec16"
    r = run(["weights", "recover", "--base", str(base), "--diff", str(diff), "--output", str(out16), "--dtype", "bfloat16"])
    assert r.exit_code == 0, r.output
    assert all(same_bits(v, want[k]) for k, v in load_state(out16).items())
    assert json.loads((out16 / "config.json").read_text())["dtype"] == "bfloat16"


def test_tulu_diff_recovers_with_released_procedure(models, tmp_path):
    root, base, tuned = models
    diff = tmp_path / "diff"
    assert run(["weights", "diff", "--base", str(base), "--tuned", str(tuned), "--output", str(diff)]).exit_code == 0
    state, allsum = reference_recover(base, diff)
    want = load_state(tuned)
    assert all(torch.equal(state[k].to(torch.bfloat16), want[k]) for k in want)
    manifest = json.loads((diff / MANIFEST).read_text())
    assert manifest["check_sum"] == pytest.approx(allsum, abs=1e-2)  # the value a user would publish for the Alpaca check


def test_sharded_output_loads_in_transformers(models, tmp_path):
    root, base, tuned = models
    diff, out = tmp_path / "diff", tmp_path / "rec"
    assert run(["weights", "diff", "--base", str(base), "--tuned", str(tuned), "--output", str(diff), "--max-shard-size", "200KB"]).exit_code == 0
    index = json.loads((diff / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 3
    assert run(["weights", "recover", "--base", str(base), "--diff", str(diff), "--output", str(out), "--max-shard-size", "300KB"]).exit_code == 0
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16
    want = load_state(tuned)
    assert all(torch.equal(p, want[n]) for n, p in model.state_dict().items())


# ---- refusals: one red line, exit 2, nothing written -------------------------------------------


@pytest.fixture(scope="module")
def tulu_diff(models):
    root, base, tuned = models
    diff = root / "tulu_diff"
    assert run(["weights", "diff", "--base", str(base), "--tuned", str(tuned), "--output", str(diff)]).exit_code == 0
    return diff


def _refused(args, output, *fragments):
    r = run(args)
    assert r.exit_code == 2, r.output
    assert "error:" in r.output and "Traceback" not in r.output
    for f in fragments:
        assert f in r.output, r.output
    if output is not None:
        assert no_leftovers(output)


def test_existing_output_needs_overwrite(models, tulu_diff, tmp_path):
    root, base, tuned = models
    out = tmp_path / "rec"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _refused(["weights", "recover", "--base", str(base), "--diff", str(tulu_diff), "--output", str(out)], None, "already exists", "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    r = run(["weights", "recover", "--base", str(base), "--diff", str(tulu_diff), "--output", str(out), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


def test_wrong_base_same_shapes_is_refused(models, tulu_diff, tmp_path):
    other = make_tiny_model(tmp_path / "other", seed=5, with_pad_token=False)
    _refused(["weights", "recover", "--base", str(other), "--diff", str(tulu_diff), "--output", str(tmp_path / "o")], tmp_path / "o", "wrong base", "differs from the base")


def test_wrong_base_shapes_is_refused(models, tulu_diff, tmp_path):
    other = make_tiny_model(tmp_path / "other", seed=0, with_pad_token=False, hidden_size=32, intermediate_size=88)
    _refused(["weights", "recover", "--base", str(other), "--diff", str(tulu_diff), "--output", str(tmp_path / "o")], tmp_path / "o", "wrong base", "has shape")
    _refused(["weights", "diff", "--base", str(other), "--tuned", str(models[2]), "--output", str(tmp_path / "d")], tmp_path / "d", "wrong base")


def test_corrupt_diff_data_is_refused(models, tulu_diff, tmp_path):
    root, base, _ = models
    bad = tmp_path / "bad"
    shutil.copytree(tulu_diff, bad)
    data = bytearray((bad / "model.safetensors").read_bytes())
    # The sign/exponent byte of a float32 inside the last tensor (a flipped low mantissa byte can
    # vanish in the bfloat16 rounding, and then the recovered tensor is still verified exact).
    data[-97] ^= 0x7F
    (bad / "model.safetensors").write_bytes(bytes(data))
    _refused(["weights", "recover", "--base", str(base), "--diff", str(bad), "--output", str(tmp_path / "o")], tmp_path / "o", "corrupt diff", "sha256")


def test_truncated_diff_is_refused_before_any_work(models, tulu_diff, tmp_path):
    root, base, _ = models
    bad = tmp_path / "bad"
    shutil.copytree(tulu_diff, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    _refused(["weights", "recover", "--base", str(base), "--diff", str(bad), "--output", str(tmp_path / "o")], tmp_path / "o", "truncated safetensors file")


def test_bad_check_sum_is_refused(models, tulu_diff, tmp_path):
    root, base, _ = models
    manifest = json.loads((tulu_diff / MANIFEST).read_text())
    wrong = manifest["check_sum"] + 1.0
    _refused(
        ["weights", "recover", "--base", str(base), "--diff", str(tulu_diff), "--output", str(tmp_path / "o"), "--check-sum", str(wrong)],
        tmp_path / "o", "--check-sum", "integrity check failed",
    )


def test_missing_folders_are_named(models, tmp_path):
    root, base, tuned = models
    _refused(["weights", "recover", "--base", str(tmp_path / "nope"), "--diff", str(tuned), "--output", str(tmp_path / "o")], tmp_path / "o", "--base", "does not exist")
    (tmp_path / "empty").mkdir()
    _refused(["weights", "diff", "--base", str(base), "--tuned", str(tmp_path / "empty"), "--output", str(tmp_path / "o")], tmp_path / "o", "--tuned", "no model weights")
    _refused(["weights", "diff", "--base", str(base), "--tuned", str(tuned)], None, "output", "required")
    _refused(["weights", "diff", "--base", str(base), "--tuned", str(tuned), "--output", str(tuned / "sub")], None, "overlaps --tuned")
    _refused(["weights", "diff", "--base", str(base), "--tuned", str(tuned), "--output", str(tmp_path / "o"), "--max-shard-size", "huge"], None, "--max-shard-size")


def test_dry_run_prints_resolved_options(models, tmp_path):
    root, base, tuned = models
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"base: {base}\ndiff: {tuned}\ncheck-sum: 12.5\n")
    r = run(["weights", "recover", "--config", str(cfg), "--output", str(tmp_path / "o"), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert '"check_sum": 12.5' in r.output and '"dtype": "auto"' in r.output
    assert not (tmp_path / "o").exists()
