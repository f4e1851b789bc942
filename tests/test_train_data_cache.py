"""The tokenized-data caches follow the data's content: --dataset folders, hub fingerprints, DPO's reference log-probs."""

from __future__ import annotations

import json

import pytest

from tests._peft_helpers import peft_args, write_preference_data
from tests._train_helpers import write_chat_data, one_torch_thread  # noqa: F401 (autouse fixture)
from tulu_cli.data import tokenize


def _encode(tiny_model, cache, **source):
    from transformers import AutoTokenizer

    from tulu_cli.models import tokenizer_fingerprint

    tok = AutoTokenizer.from_pretrained(tiny_model)
    args = {"train_files": [], **source}
    return tokenize.tokenized_dataset(tokenizer=tok, tokenizer_hash=tokenizer_fingerprint(tok), cache_dir=cache, max_seq_length=128, log=lambda m: None, **args)


def test_editing_a_local_dataset_folder_re_tokenizes(tiny_model, tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    write_chat_data(folder / "train.jsonl", n=5)
    ds, info = _encode(tiny_model, tmp_path / "c", dataset=str(folder))
    assert len(ds) == 5 and not info["cache_hit"]
    assert list(info["data_hashes"]) == [f"{folder}:None:train:train.jsonl"]
    _, info = _encode(tiny_model, tmp_path / "c", dataset=str(folder))
    assert info["cache_hit"]
    write_chat_data(folder / "train.jsonl", n=9)
    ds, edited = _encode(tiny_model, tmp_path / "c", dataset=str(folder))
    assert len(ds) == 9 and not edited["cache_hit"] and edited["cache_key"] != info["cache_key"]
    # a file added beside it counts too; datasets' own hidden .cache folder does not
    (folder / ".cache").mkdir()
    (folder / ".cache" / "junk").write_text("x")
    assert tokenize.data_hashes([], str(folder), None, "train") == edited["data_hashes"]
    write_chat_data(folder / "train_more.jsonl", n=2, seed=4)  # a name datasets puts in the train split
    ds, added = _encode(tiny_model, tmp_path / "c", dataset=str(folder))
    assert len(ds) == 11 and not added["cache_hit"]


def test_hub_dataset_key_is_its_fingerprint(monkeypatch):
    import datasets

    rows = {"v1": [{"messages": [{"role": "user", "content": "hi"}]}], "v2": [{"messages": [{"role": "user", "content": "hello"}]}]}
    current = {"rev": "v1"}
    monkeypatch.setattr(tokenize, "load_hub_dataset", lambda name, config, split: datasets.Dataset.from_list(rows[current["rev"]]))
    first = tokenize.data_hashes([], "org/mix", None, "train")
    assert list(first) == ["hf:org/mix:None:train"] and first["hf:org/mix:None:train"].startswith("fingerprint:")
    assert tokenize.data_hashes([], "org/mix", None, "train") == first
    current["rev"] = "v2"  # the hub moved on
    assert tokenize.data_hashes([], "org/mix", None, "train") != first


@pytest.mark.slow
def test_dpo_reference_log_probs_follow_an_edited_dataset_folder(tiny_model, tmp_path):
    from tests._train_helpers import run_cli

    folder = tmp_path / "prefs"
    folder.mkdir()
    write_preference_data(folder / "train.jsonl", n=5)
    cache = tmp_path / "cache"

    def dpo(out):
        args = peft_args("dpo", tiny_model, folder / "train.jsonl", out, cache, max_steps=1, per_device_batch_size=4)
        i = args.index("--train-files")
        r = run_cli(args[:i] + ["--dataset", str(folder)] + args[i + 2 :])
        assert r.exit_code == 0, r.output
        return r.output, json.loads((out / "tulu_run.json").read_text())["data"]

    log, first = dpo(tmp_path / "a")
    assert "computing reference log-probs for 5 pairs" in log
    log, again = dpo(tmp_path / "b")
    assert "skipped the reference pass" in log and again["reference"]["path"] == first["reference"]["path"]
    write_preference_data(folder / "train.jsonl", n=9)
    log, edited = dpo(tmp_path / "c")
    assert "encoded 9 preference pairs" in log and "computing reference log-probs for 9 pairs" in log
    assert edited["reference"]["path"] != first["reference"]["path"]
