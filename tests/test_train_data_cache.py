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


def test_training_and_preference_files_go_through_the_one_jsonl_reader(tmp_path):
    from tulu_cli.data import preference
    from tulu_cli.errors import TuluError

    # A BOM (Windows editors), CRLF endings, a blank line and a U+2028 inside a string: all one row each.
    sft = tmp_path / "sft.jsonl"
    sft.write_bytes('\ufeff{"prompt": "a\u2028b", "completion": "c"}\r\n\n{"messages": [{"role": "user", "content": "q"}]}\n'.encode())
    tokenize.check_readable(sft)
    assert list(tokenize.read_rows([str(sft)])) == [
        {"messages": [], "prompt": "a\u2028b", "completion": "c"},
        {"messages": [{"role": "user", "content": "q"}], "prompt": None, "completion": None},
    ]
    import gzip

    with gzip.open(tmp_path / "sft.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write('{"prompt": "p", "completion": "c"}\n')
    assert list(tokenize.read_rows([str(tmp_path / "sft.jsonl.gz")])) == [{"messages": [], "prompt": "p", "completion": "c"}]
    pref = tmp_path / "p.jsonl"
    pref.write_bytes(b'\xef\xbb\xbf{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    preference.check_readable(pref)
    assert list(preference.read_pairs([str(pref)])) == [
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
         [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}])
    ]
    # Not UTF-8 is one line at file:line (it used to name no line), and a non-object is named as such.
    sft.write_bytes(b'{"prompt": "caf\xe9", "completion": "x"}\n')
    with pytest.raises(TuluError, match=rf"^{sft}:1: not valid UTF-8 \(invalid continuation byte at byte 15\)$"):
        tokenize.check_readable(sft)
    pref.write_text('\n["q", "a", "b"]\n')
    with pytest.raises(TuluError, match=rf"^{pref}:2: expected a JSON object, got list$"):
        preference.check_readable(pref)
