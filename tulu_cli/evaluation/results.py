"""Result files: predictions.jsonl (append + flush per example, resumable), metrics.json, results.json."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import IO, Any, Iterable

from tulu_cli.jsonl import read_jsonl
from tulu_cli.paths import temp_path


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file beside ``path``, then rename: readers never see half a file (a
    killed writer's temp file is removed by the next run's ``clean_stale`` of the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


def is_run_task_folder(folder: Path) -> bool:
    """``folder`` is ``RUN/<task>`` of a ``tulu eval run`` output folder (its metrics.json, or RUN's results.json)."""
    return (folder / "metrics.json").is_file() or (folder.parent / "results.json").is_file()


def read_done_rows(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """Rows already written by an earlier run, and whether the file needs rewriting.

    A run killed mid-write leaves a last line without its newline (or not valid JSON): that row
    is dropped and will be generated again.
    """
    if not path.is_file():
        return [], False
    bad: list[str] = []
    rows = [row for _, row in read_jsonl(path, lambda where, message: bad.append(where), whole_lines=True)]
    done = [row for row in rows if "id" in row]
    return done, bool(bad) or len(done) < len(rows)


def rewrite_rows(path: Path, rows: Iterable[dict[str, Any]], ensure_ascii: bool = False) -> None:
    """Write a JSONL file whole: a temporary file in the same folder, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=ensure_ascii) + "\n")
    os.replace(tmp, path)


class PredictionWriter:
    """Appends one JSON line per finished example and flushes it to the OS immediately."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f: IO[str] = open(path, "a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_paths(root: Path, rels: tuple[str, ...] | list[str]) -> dict[str, str]:
    """sha256 of each data file a task reads (folders: one hash over their sorted files)."""
    from tulu_cli.paths import sha256_file

    out: dict[str, str] = {}
    for rel in rels:
        p = root / rel
        if p.is_file():
            out[rel] = sha256_file(p)
        elif p.is_dir():
            h = hashlib.sha256()
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                h.update(f.relative_to(p).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\n")
            out[rel] = h.hexdigest()
    return out


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("tulu-cli", "torch", "transformers", "tokenizers", "vllm", "httpx"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
