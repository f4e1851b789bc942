"""Preference pairs for DPO: read and validate rows, encode both sides, cache them (Arrow), collate.

Rows are ``{"chosen": [messages], "rejected": [messages]}`` (the prompt turns shared, as the
UltraFeedback-binarized converter writes them) or ``{"prompt": str, "chosen": str, "rejected":
str}``; a ``prompt`` may also be a message list and the sides message lists or strings. Both sides
go through ``encode_messages``; pairs whose sides are identical or that leave one side without a
trainable token are reported and dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tulu_cli.data.tokenize import check_readable as check_first_row, parse_messages
from tulu_cli.errors import TuluError
from tulu_cli.jsonl import read_jsonl
from tulu_cli.paths import cache_root

CACHE_FORMAT = 1
IGNORE = -100


def parse_pair(row: dict[str, Any], where: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(chosen conversation, rejected conversation) of one row; errors say file:line and field."""
    if "chosen" not in row or "rejected" not in row:
        raise TuluError(f"{where}: a preference row needs 'chosen' and 'rejected' (keys: {', '.join(sorted(row)) or 'none'})")
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        prompt_msgs = [{"role": "user", "content": prompt}]
    elif prompt is None:
        prompt_msgs = []
    else:
        prompt_msgs = parse_messages(prompt, where, "prompt", or_string=True)
    sides = []
    for field in ("chosen", "rejected"):
        value = row[field]
        if isinstance(value, str):
            if not prompt_msgs:
                raise TuluError(f"{where}: field '{field}' is a string, which needs a 'prompt' field too")
            sides.append(prompt_msgs + [{"role": "assistant", "content": value}])
            continue
        msgs = parse_messages(value, where, field, or_string=True)
        # UltraFeedback-binarized style: the lists already start with the prompt turns.
        if prompt_msgs and not _starts_with(msgs, prompt_msgs) and msgs[0]["role"] == "assistant":
            msgs = prompt_msgs + msgs
        sides.append(msgs)
    for field, msgs in zip(("chosen", "rejected"), sides):
        if msgs[-1]["role"] != "assistant":
            raise TuluError(f"{where}: field '{field}' must end with an assistant message (the response being compared)")
    return sides[0], sides[1]


def _starts_with(msgs: list[dict], prefix: list[dict]) -> bool:
    return len(msgs) >= len(prefix) and all(a["role"] == b["role"] and a["content"].strip() == b["content"].strip() for a, b in zip(msgs, prefix))


def read_pairs(files: Sequence[str]) -> Iterator[tuple[list[dict], list[dict]]]:
    for name in files:
        for lineno, row in read_jsonl(name):
            yield parse_pair(row, f"{Path(name)}:{lineno}")


def check_readable(path: str | Path) -> None:
    """Fail fast on a missing or empty file or a malformed first row, before any model loads."""
    check_first_row(path, "preference file", read_pairs)


def _hub_pairs(dataset: str, config: str | None, split: str) -> Iterator[tuple[list[dict], list[dict]]]:
    from tulu_cli.data.tokenize import load_hub_dataset

    ds = load_hub_dataset(dataset, config, split)
    for i, row in enumerate(ds):
        yield parse_pair({k: row[k] for k in ("prompt", "chosen", "rejected") if k in row}, f"{dataset}[{split}][{i}]")


def encoder_hash() -> str:
    import inspect

    import tulu_cli.chat as chat

    h = hashlib.sha256(Path(__file__).read_bytes())
    src = inspect.getsourcefile(chat.encode_messages)
    if src and os.path.isfile(src):
        h.update(Path(src).read_bytes())
    return h.hexdigest()


def encode_pair(chosen, rejected, tokenizer, max_seq_length: int, template: str, add_bos: bool) -> tuple[dict | None, str | None]:
    """The encoded pair, or (None, reason) when it must be dropped."""
    from tulu_cli.chat import encode_messages

    c = encode_messages(chosen, tokenizer, max_seq_length, template=template, add_bos=add_bos)
    r = encode_messages(rejected, tokenizer, max_seq_length, template=template, add_bos=add_bos)
    c_ids, c_lab, r_ids, r_lab = list(c["input_ids"]), list(c["labels"]), list(r["input_ids"]), list(r["labels"])
    # The first label cannot be predicted (nothing precedes it), so it does not count.
    if not any(x != IGNORE for x in c_lab[1:]) or not any(x != IGNORE for x in r_lab[1:]):
        return None, "untrainable"
    if c_ids == r_ids and c_lab == r_lab:
        return None, "identical"
    return {"chosen_input_ids": c_ids, "chosen_labels": c_lab, "rejected_input_ids": r_ids, "rejected_labels": r_lab}, None


def preference_dataset(
    *,
    tokenizer,
    tokenizer_hash: str,
    train_files: Sequence[str],
    dataset: str | None = None,
    dataset_config: str | None = None,
    dataset_split: str = "train",
    template: str = "tulu",
    max_seq_length: int = 2048,
    add_bos: bool = False,
    max_train_samples: int | None = None,
    cache_dir: Path | None = None,
    overwrite_cache: bool = False,
    build: bool = True,
    quiet_hit: bool = False,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
):
    """The encoded pairs (memory-mapped Arrow, an ``index`` column numbering them) and a dict describing them.

    Cached under a hash of the data, the tokenizer, the template, the length limit and this
    encoder's source; ``build=False`` (non-zero ranks) only reads what rank 0 wrote.
    """
    import datasets

    from tulu_cli.data.tokenize import data_hashes, publish_cache, read_cache

    hashes = data_hashes(train_files, dataset, dataset_config, dataset_split)
    blob = json.dumps(
        {"format": CACHE_FORMAT, "data": hashes, "tokenizer": tokenizer_hash, "template": template, "max_seq_length": max_seq_length,
         "add_bos": add_bos, "max_train_samples": max_train_samples, "encoder": encoder_hash()},
        sort_keys=True,
    )
    key = hashlib.sha256(blob.encode()).hexdigest()[:24]
    root = Path(cache_dir) / "preference" if cache_dir else cache_root("preference")
    final = root / key
    info: dict[str, Any] = {"cache_key": key, "cache_path": str(final), "data_hashes": hashes}
    found = "encoded preference pairs found in cache {path}: skipped tokenization ({examples} pairs)"
    hit = read_cache(final, build=build, overwrite=overwrite_cache, quiet_hit=quiet_hit, log=log, found=found)
    if hit is not None:
        info.update(hit[1], cache_hit=True)
        return hit[0], info

    pairs = _hub_pairs(dataset, dataset_config, dataset_split) if dataset else read_pairs(train_files)
    rows: list[dict] = []
    dropped = {"identical": 0, "untrainable": 0}
    seen = 0
    for chosen, rejected in pairs:
        seen += 1
        enc, reason = encode_pair(chosen, rejected, tokenizer, max_seq_length, template, add_bos)
        if enc is None:
            dropped[reason] += 1
            continue
        enc["index"] = len(rows)
        enc["length"] = len(enc["chosen_input_ids"]) + len(enc["rejected_input_ids"])
        rows.append(enc)
        if max_train_samples is not None and len(rows) >= max_train_samples:
            break
    source = ", ".join(map(str, train_files)) or str(dataset)
    if dropped["identical"]:
        log(f"dropped {dropped['identical']} of {seen} pairs whose chosen and rejected sides are identical")
    if dropped["untrainable"]:
        log(f"dropped {dropped['untrainable']} of {seen} pairs with no response token left within --max-seq-length {max_seq_length}")
    if not rows:
        raise TuluError(f"{source}: no usable preference pair (identical: {dropped['identical']}, no response token within --max-seq-length: {dropped['untrainable']})")
    meta = {
        "examples": len(rows),
        "dropped_identical": dropped["identical"],
        "dropped_untrainable": dropped["untrainable"],
        "tokens": int(sum(r["length"] for r in rows)),
        "data_hashes": hashes,
    }
    root.mkdir(parents=True, exist_ok=True)
    work = root / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        publish_cache(datasets.Dataset.from_list(rows), meta, work, final, overwrite=overwrite_cache)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"encoded {len(rows)} preference pairs ({meta['tokens']} tokens), cached at {final}")
    info.update(meta, cache_hit=False)
    return datasets.load_from_disk(str(final / "data")), info


class PairCollator:
    """One batch of 2B rows: the B chosen sides, then the B rejected sides, right-padded to one width.

    Both sides go through the model in one forward pass (half the kernel launches and weight
    reads of two passes, and under ZeRO-3 one parameter gather instead of two).
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        seqs = [(r["chosen_input_ids"], r["chosen_labels"]) for r in rows] + [(r["rejected_input_ids"], r["rejected_labels"]) for r in rows]
        width = max(len(ids) for ids, _ in seqs)
        ids = torch.full((len(seqs), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, (x, y) in enumerate(seqs):
            ids[i, : len(x)] = torch.as_tensor(x, dtype=torch.long)
            labels[i, : len(y)] = torch.as_tensor(y, dtype=torch.long)
            mask[i, : len(x)] = 1
        index = torch.tensor([int(r["index"]) for r in rows], dtype=torch.long)
        return {"input_ids": ids, "labels": labels, "attention_mask": mask, "index": index}
