"""Training data to token ids and label masks on `datasets` (Arrow), cached by a hash of every input.

The cache key covers the data's content (file bytes, or a hub dataset's fingerprint), the
tokenizer, the template, the maximum length, packing, BOS handling and the encoder's own source,
so any change re-tokenizes and an identical second run skips tokenization entirely.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from tulu_cli.errors import TuluError
from tulu_cli.jsonl import read_jsonl
from tulu_cli.paths import cache_root, sha256_file

CACHE_FORMAT = 1
CACHE_MARKER = "tulu_cache.json"
COLUMNS = ("input_ids", "labels", "length")
ROLES = ("system", "user", "assistant")


def data_hashes(train_files, dataset: str | None, dataset_config: str | None, split: str) -> dict[str, str]:
    """What a cache key records of the data's content, so that any change re-tokenizes.

    Files: each file's sha256. ``--dataset`` as a local folder (or file): the sha256 of every
    file in it, by relative path. A hub dataset: the fingerprint `datasets` gives the loaded
    split, which follows the files of the revision it resolved (a new commit, a new fingerprint).
    """
    if not dataset:
        return {str(Path(f).resolve()): sha256_file(f) for f in train_files}
    name = f"{dataset}:{dataset_config}:{split}"
    local = Path(dataset)
    if local.is_file():
        return {f"{name}:{local.name}": sha256_file(local)}
    if local.is_dir():
        # datasets skips hidden files and folders (its own .cache among them), so these do not count
        files = sorted(p for p in local.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(local).parts))
        return {f"{name}:{p.relative_to(local).as_posix()}": sha256_file(p) for p in files}
    return {f"hf:{name}": "fingerprint:" + load_hub_dataset(dataset, dataset_config, split)._fingerprint}


def load_hub_dataset(dataset: str, config: str | None, split: str):
    import datasets

    try:
        return datasets.load_dataset(dataset, config, split=split)
    except Exception as e:  # noqa: BLE001 - hub/network errors come in many types
        raise TuluError(f"--dataset {dataset}: cannot load it ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def read_cache(final: Path, *, build: bool, overwrite: bool, quiet_hit: bool, log: Callable[[str], None], found: str):
    """(dataset, meta) of the cache folder ``final``, or None when it must be built.

    ``found`` is the cache-hit message (``{path}`` and ``{examples}`` filled in). Non-zero ranks
    (``build=False``) only read what rank 0 wrote, so a missing cache there is a bug, not user input.
    """
    import datasets

    if (final / CACHE_MARKER).is_file() and not (overwrite and build):
        meta = json.loads((final / CACHE_MARKER).read_text())
        if build and not quiet_hit:
            log(found.format(path=final, examples=meta["examples"]))
        return datasets.load_from_disk(str(final / "data")), meta
    if not build:
        raise RuntimeError(f"cache {final} missing on a non-main rank")
    return None


def publish_cache(ds, meta: dict[str, Any], stage: Path, final: Path, *, overwrite: bool = False) -> None:
    """Write the dataset and its marker under ``stage`` (same folder as ``final``), then move it in place.

    A complete cache that appeared meanwhile is kept unless ``overwrite``: the launchers of a
    multi-machine run tokenize into one shared cache at the same time, and workers may already
    be reading the first one published.
    """
    ds.save_to_disk(str(stage / "data"))
    (stage / CACHE_MARKER).write_text(json.dumps(meta, indent=2) + "\n")
    if (final / CACHE_MARKER).is_file() and not overwrite:
        shutil.rmtree(stage)
        return
    if final.exists():  # overwrite_cache, or a stale partial from a crash
        shutil.rmtree(final)
    os.replace(stage, final)


def check_readable(path: str | Path, what: str = "training file", rows: Callable[[list[str]], Iterator[Any]] | None = None) -> None:
    """Fail fast (before any model loads) on a missing, unreadable or empty file or a malformed first row.

    ``rows`` reads the file's rows (default: training rows); ``what`` names the file in the message."""
    p = Path(path)
    if not p.is_file():
        raise TuluError(f"{p}: {what} does not exist")
    try:
        for _ in (rows or read_rows)([str(p)]):
            return
    except OSError as e:
        raise TuluError(f"{p}: cannot read the {what} ({e})") from None
    raise TuluError(f"{p}: {what} is empty")


def parse_messages(value: Any, where: str, field: str, or_string: bool = False) -> list[dict[str, str]]:
    """A message list of a training or preference row as ``{role, content}`` dicts; errors name the field."""
    if not isinstance(value, list) or not value:
        alternative = " messages or a string" if or_string else ""
        raise TuluError(f"{where}: field '{field}' must be a non-empty list of {{role, content}}{alternative}")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise TuluError(f"{where}: field '{field}[{i}]' needs string 'role' and 'content'")
        if m["role"] not in ROLES:
            raise TuluError(f"{where}: field '{field}[{i}].role': unknown role {m['role']!r} (system, user, assistant)")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _check_row(row: dict[str, Any], where: str) -> dict[str, Any]:
    if "messages" in row:
        return {"messages": parse_messages(row["messages"], where, "messages"), "prompt": None, "completion": None}
    if "prompt" in row and "completion" in row:
        if not isinstance(row["prompt"], str) or not isinstance(row["completion"], str):
            raise TuluError(f"{where}: fields 'prompt' and 'completion' must be strings")
        return {"messages": [], "prompt": row["prompt"], "completion": row["completion"]}
    raise TuluError(f"{where}: row has neither 'messages' nor 'prompt'+'completion' (keys: {', '.join(sorted(row)) or 'none'})")


def read_rows(files: list[str]) -> Iterator[dict[str, Any]]:
    """Every row of the JSONL files, validated; errors name file and line."""
    for name in files:
        for lineno, row in read_jsonl(name):
            yield _check_row(row, f"{Path(name)}:{lineno}")


def _features():
    from datasets import Features, List, Value

    return Features(
        {
            "messages": List({"role": Value("string"), "content": Value("string")}),
            "prompt": Value("string"),
            "completion": Value("string"),
        }
    )


def _encoder_source_hash() -> str:
    import tulu_cli.chat as chat

    h = hashlib.sha256()
    for fn in (chat.encode_messages, getattr(chat, "encode_prompt_completion", None)):
        if fn is not None:
            src = inspect.getsourcefile(fn)
            if src and os.path.isfile(src):
                h.update(Path(src).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def cache_key(
    *,
    data_hashes: dict[str, str],
    tokenizer_hash: str,
    template: str,
    max_seq_length: int,
    packing: bool,
    add_bos: bool,
    max_train_samples: int | None,
) -> str:
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "data": data_hashes,
            "tokenizer": tokenizer_hash,
            "template": template,
            "max_seq_length": max_seq_length,
            "packing": packing,
            "add_bos": add_bos,
            "max_train_samples": max_train_samples,
            "encoder": _encoder_source_hash(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class _Encoder:
    """Picklable batch encoder for ``Dataset.map(num_proc=...)``."""

    def __init__(self, tokenizer, template: str, max_seq_length: int, add_bos: bool):
        self.tokenizer = tokenizer
        self.template = template
        self.max_seq_length = max_seq_length
        self.add_bos = add_bos

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        from tulu_cli.chat import encode_messages, encode_prompt_completion

        out: dict[str, list] = {"input_ids": [], "labels": [], "length": []}
        tok, n = self.tokenizer, self.max_seq_length
        for msgs, prompt, completion in zip(batch["messages"], batch["prompt"], batch["completion"]):
            if msgs:
                enc = encode_messages(msgs, tok, n, template=self.template, add_bos=self.add_bos)
            else:
                enc = encode_prompt_completion(prompt, completion, tok, n, add_bos=self.add_bos)
            ids, labels = list(enc["input_ids"]), list(enc["labels"])
            out["input_ids"].append(ids)
            out["labels"].append(labels)
            out["length"].append(len(ids))
        return out


def _has_target(row: dict[str, Any]) -> bool:
    # The first label can never be predicted (nothing precedes it), so it does not count.
    return any(x != -100 for x in row["labels"][1:])


def _load_source(train_files: list[str], dataset: str | None, dataset_config: str | None, split: str, work_dir: Path):
    import datasets

    if dataset:
        ds = load_hub_dataset(dataset, dataset_config, split)
        if "messages" not in ds.column_names:
            raise TuluError(f"--dataset {dataset}: has no 'messages' column (columns: {', '.join(ds.column_names)})")
        ds = ds.map(
            lambda b: {"messages": b["messages"], "prompt": [None] * len(b["messages"]), "completion": [None] * len(b["messages"])},
            batched=True,
            remove_columns=ds.column_names,
            features=_features(),
        )
        return ds
    # Streamed to Arrow on disk (under the temporary work folder) rather than held as Python objects:
    # the Tulu v2 mixture is 326k conversations.
    # datasets' "Generating train split" bar is noise for a local file (tokenization has its own
    # progress) and would stand before the one error line of a bad row.
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        ds = datasets.Dataset.from_generator(
            read_rows, gen_kwargs={"files": list(train_files)}, features=_features(), cache_dir=str(work_dir / "raw"), keep_in_memory=False
        )
    except Exception as e:  # noqa: BLE001 - datasets wraps the generator's errors; ours carry file:line
        cause = e
        while cause is not None and not isinstance(cause, TuluError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    if len(ds) == 0:
        raise TuluError(f"{', '.join(train_files)}: no training rows")
    return ds


def tokenized_dataset(
    *,
    tokenizer,
    tokenizer_hash: str,
    train_files: list[str],
    dataset: str | None = None,
    dataset_config: str | None = None,
    dataset_split: str = "train",
    template: str = "tulu",
    max_seq_length: int = 2048,
    packing: bool = False,
    add_bos: bool = False,
    max_train_samples: int | None = None,
    num_workers: int | None = None,
    cache_dir: Path | None = None,
    overwrite_cache: bool = False,
    build: bool = True,
    quiet_hit: bool = False,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
):
    """The tokenized training set (memory-mapped Arrow) and a dict describing it.

    ``build=False`` is for non-zero ranks: they only read the cache rank 0 wrote. ``quiet_hit``
    skips the cache-hit message (the workers after the launcher already tokenized).
    """
    import datasets

    hashes = data_hashes(train_files, dataset, dataset_config, dataset_split)
    key = cache_key(
        data_hashes=hashes,
        tokenizer_hash=tokenizer_hash,
        template=template,
        max_seq_length=max_seq_length,
        packing=packing,
        add_bos=add_bos,
        max_train_samples=max_train_samples,
    )
    root = Path(cache_dir) if cache_dir else cache_root("tokenized")
    final = root / key
    info: dict[str, Any] = {"cache_key": key, "cache_path": str(final), "data_hashes": hashes}
    found = "tokenized data found in cache {path}: skipped tokenization ({examples} examples)"
    hit = read_cache(final, build=build, overwrite=overwrite_cache, quiet_hit=quiet_hit, log=log, found=found)
    if hit is not None:
        info.update(hit[1], cache_hit=True)
        return hit[0], info

    root.mkdir(parents=True, exist_ok=True)
    work = root / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        raw = _load_source(train_files, dataset, dataset_config, dataset_split, work)
        log(f"tokenizing {len(raw)} rows (template {template}, max length {max_seq_length}, {num_workers or 1} worker(s))")
        enc = raw.map(
            _Encoder(tokenizer, template, max_seq_length, add_bos),
            batched=True,
            batch_size=256,
            num_proc=num_workers if num_workers and num_workers > 1 else None,
            remove_columns=raw.column_names,
            desc="tokenizing",
            load_from_cache_file=False,
        )
        before = len(enc)
        enc = enc.filter(_has_target, num_proc=num_workers if num_workers and num_workers > 1 else None, desc="dropping rows without targets")
        dropped = before - len(enc)
        if dropped:
            log(f"dropped {dropped} of {before} examples with no assistant token left after truncation")
        if len(enc) == 0:
            raise TuluError(f"{', '.join(train_files) or dataset}: no example has a trainable (assistant) token within --max-seq-length {max_seq_length}")
        if max_train_samples is not None and max_train_samples < len(enc):
            enc = enc.select(range(max_train_samples))
        lengths = enc["length"]
        meta = {
            "examples": len(enc),
            "dropped": dropped,
            "tokens": int(sum(lengths)),
            "max_length": int(max(lengths)),
            "data_hashes": hashes,
        }
        publish_cache(enc, meta, work / "out", final, overwrite=overwrite_cache)
        del enc, raw
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"tokenized {meta['examples']} examples ({meta['tokens']} tokens), cached at {final}")
    info.update(meta, cache_hit=False)
    return datasets.load_from_disk(str(final / "data")), info
