"""Unit tests for the sharp parts of tulu_cli.weights: shard writer, checkpoint reader, row growth, key order, atomic output."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from tulu_cli import paths
from tulu_cli.errors import TuluError
from tulu_cli.weights import arch
from tulu_cli.weights.checkpoint import Checkpoint
from tulu_cli.weights.diff import grow_rows
from tulu_cli.weights.merge import split_adapter_state
from tulu_cli.weights.writer import ShardedWriter, atomic_folder, check_output, parse_size


def test_parse_size_units_like_save_pretrained():
    assert parse_size("5GB") == 5 * 10**9
    assert parse_size("2GiB") == 2 * 2**30
    assert parse_size("500MB") == 500 * 10**6
    assert parse_size("1024") == 1024
    assert parse_size(7) == 7


def test_sharded_writer_roundtrip_every_dtype(tmp_path):
    tensors = {
        "a": torch.randn(300, 7),
        "b": torch.randn(5, 3).bfloat16(),
        "c": torch.arange(10, dtype=torch.int64),
        "d": torch.tensor(3.5, dtype=torch.float16),  # 0-dim
        "e": torch.randn(1000),
    }
    entries = [(k, str(v.dtype).removeprefix("torch."), tuple(v.shape)) for k, v in tensors.items()]
    w = ShardedWriter(tmp_path, entries, max_shard_size=4000)
    for k, _, _ in w.order:
        w.write(k, tensors[k])
    w.close()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in tensors.values())
    shards = sorted(set(index["weight_map"].values()))
    assert shards[0] == "model-00001-of-00003.safetensors" and len(shards) == 3  # 8400 B > 4000: own shard, as HF does
    for k, v in tensors.items():
        with safe_open(str(tmp_path / index["weight_map"][k]), "pt") as f:
            got = f.get_tensor(k)
            assert f.metadata() == {"format": "pt"}
        assert got.dtype == v.dtype and torch.equal(got, v)
    ckpt = Checkpoint(tmp_path, "--x")
    assert ckpt.shape["a"] == (300, 7) and ckpt.dtype["b"] == "bfloat16"


def test_writer_rejects_out_of_plan_tensor(tmp_path):
    w = ShardedWriter(tmp_path, [("a", "float32", (2,))], 100)
    with pytest.raises(RuntimeError, match="expected a float32"):
        w.write("a", torch.zeros(3))


def test_checkpoint_reads_sharded_bin(tmp_path):
    torch.save({"x": torch.ones(2, 2)}, tmp_path / "p1.bin")
    torch.save({"y": torch.zeros(3)}, tmp_path / "p2.bin", _use_new_zipfile_serialization=False)  # legacy: cannot be mmapped
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"x": "p1.bin", "y": "p2.bin"}}))
    ckpt = Checkpoint(tmp_path, "--diff")
    assert ckpt.format == "bin" and set(ckpt.keys()) == {"x", "y"}
    assert torch.equal(ckpt.get("x"), torch.ones(2, 2)) and torch.equal(ckpt.get("y"), torch.zeros(3))


def test_checkpoint_refuses_missing_shard_and_garbage(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "gone.safetensors"}}))
    with pytest.raises(TuluError, match="lists shard 'gone.safetensors', which is missing"):
        Checkpoint(tmp_path, "--base")
    other = tmp_path / "o"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(TuluError, match="corrupt safetensors file"):
        Checkpoint(other, "--base")
    bad_bin = tmp_path / "b"
    bad_bin.mkdir()
    (bad_bin / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(TuluError, match="cannot read pytorch checkpoint"):
        Checkpoint(bad_bin, "--diff")


def test_grow_rows_is_the_smart_resize_mean():
    w = torch.randn(10, 4)
    g = grow_rows(w, 12)
    assert torch.equal(g[:10], w)
    assert torch.equal(g[10], w.mean(dim=0)) and torch.equal(g[11], w.mean(dim=0))
    assert grow_rows(w, 10) is w


def test_ordered_places_old_buffers_after_their_module():
    ref = ["emb", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.up_proj.weight", "norm"]
    keys = ["norm", "model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.rotary_emb.inv_freq", "emb", "model.layers.0.self_attn.o_proj.weight", "model.layers.0.self_attn.q_proj.weight"]
    assert arch.ordered(keys, ref) == [
        "emb", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.o_proj.weight",
        "model.layers.0.self_attn.rotary_emb.inv_freq", "model.layers.0.mlp.up_proj.weight", "norm",
    ]


def test_split_adapter_state_prefers_modules_to_save():
    t = {k: torch.full((1,), float(i)) for i, k in enumerate([
        "base_model.model.lm_head.modules_to_save.weight",
        "base_model.model.lm_head.original_module.weight",
        "base_model.model.lm_head.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias",
    ])}
    lora, full = split_adapter_state(t)
    assert list(lora) == ["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    assert float(full["lm_head.weight"]) == 0.0  # the trained copy, not the saved base embedding (2.0)
    assert "model.layers.0.self_attn.q_proj.bias" in full


def test_atomic_folder_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError):
        with atomic_folder(out) as tmp:
            (tmp / "half.safetensors").write_bytes(b"x")
            raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(out) as tmp:
        (tmp / "done").write_text("ok")
    assert (out / "done").read_text() == "ok" and len(list(tmp_path.iterdir())) == 1


def test_atomic_folder_removes_what_killed_runs_left_and_the_folders_it_made(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    left = tmp_path / f".merged.tulu-tmp-{host}-{gone.pid}"  # a merge killed mid-write
    (left / "model-00001-of-00002.safetensors").parent.mkdir()
    (left / "model-00001-of-00002.safetensors").write_bytes(b"x" * 4096)
    replaced = tmp_path / f".other.tulu-old-{host}-{gone.pid}"  # killed between the two renames of a replace
    replaced.mkdir()
    with atomic_folder(tmp_path / "new") as tmp:
        assert tmp == paths.temp_path(tmp_path / "new")
        (tmp / "done").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]
    with pytest.raises(ValueError):  # a refused run leaves no empty parent folders behind
        with atomic_folder(tmp_path / "a" / "b" / "out"):
            raise ValueError("refused")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]


def test_check_output_rules(tmp_path):
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", False, [])  # an empty folder is fine
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(TuluError, match="already exists"):
        check_output(tmp_path / "full", False, [])
    check_output(tmp_path / "full", True, [])
    with pytest.raises(TuluError, match="overlaps --base"):
        check_output(tmp_path / "full", True, [("--base", tmp_path / "full" / "sub")])
    (tmp_path / "file").write_text("x")
    with pytest.raises(TuluError, match="not a folder"):
        check_output(tmp_path / "file", True, [])


def test_rotary_inv_freq_matches_llama_2023_buffer():
    from transformers import LlamaConfig

    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4)
    expected = 1.0 / (10000 ** (torch.arange(0, 16, 2).float() / 16))
    torch.testing.assert_close(arch.rotary_inv_freq(cfg), expected)
