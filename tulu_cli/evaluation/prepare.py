"""`tulu data prepare-eval`: download each benchmark's declared files into open-instruct's data/eval layout."""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.tasks import DataFile, data_names
from tulu_cli.paths import check_output, clean_stale, new_folders_undone, temp_path

MIRROR_ENV = "TULU_EVAL_MIRROR"


def files_for(name: str) -> list[DataFile]:
    """Every file the tasks using prepare-eval name ``name`` declare (deduplicated by path)."""
    seen: dict[str, DataFile] = {}
    for task in data_names().get(name, []):
        for f in task.data_files:
            seen.setdefault(f.path, f)
    return list(seen.values())


def _unpack(archive: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                root = into.resolve()
                for member in z.namelist():
                    if not (into / member).resolve().is_relative_to(root):
                        raise TuluError(f"{archive}: member '{member}' would land outside {into}")
                z.extractall(into)
        else:
            with tarfile.open(archive) as t:
                t.extractall(into, filter="data")  # refuses absolute paths, '..' and device files
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as e:
        raise TuluError(f"{archive}: cannot unpack ({e})") from None


def _staging(root: Path, name: str) -> Path:
    """Where a benchmark's files gather before they are moved into place. Not per process: a failed or
    killed run leaves its finished files and ``.part`` downloads here, and the next run resumes them."""
    return root / f".{name}.tulu-partial"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One run at a time per staging folder (two runs of one benchmark would unpack over each other)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks
        yield
        return
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _publish(stage: Path, root: Path, units: list[str]) -> None:
    """Move each finished file or unpacked folder from ``stage`` to its place under ``root`` (one rename each)."""
    for unit in units:
        src, dst = stage / unit, root / unit
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and dst.exists():
            old = temp_path(dst, "old")
            os.replace(dst, old)
            os.replace(src, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(src, dst)


def _offline_hint(e: TuluError, dest: Path) -> TuluError:
    # The downloader's advice names `data prepare`'s --raw-dir; here the file goes straight into --data-dir.
    return TuluError(e.message.replace("pass --raw-dir", f"put it at {dest} (or serve the data/eval layout with --mirror URL)"))


def _gather(name: str, stage: Path, root: Path, tasks: list[Any], opts: Any, mirror: str | None) -> list[str]:
    """Download (and unpack) one benchmark into ``stage``; returns the files and folders to move into place."""
    from tulu_cli.data.download import fetch

    # Archives first: the files declared inside an unpack folder then land in the unpacked tree.
    files = sorted(files_for(name), key=lambda f: f.unpack_to is None)
    folders = [f.unpack_to for f in files if f.unpack_to is not None]
    units = folders + [f.path for f in files if f.unpack_to is None and not any(f.path.startswith(d + "/") for d in folders)]
    for f in files:
        url = f"{mirror.rstrip('/')}/{f.path}" if mirror else f.url
        try:
            fetch(url, stage / f.path, sha256=f.sha256, cache_dir=opts.cache_dir, progress=True)
        except TuluError as e:
            raise _offline_hint(e, root / f.path) from None
        if f.unpack_to is not None:
            # Into a sibling first: an unpack cut short must never pass for a finished folder.
            unpacking = stage / f"{f.unpack_to}.unpacking"
            shutil.rmtree(unpacking, ignore_errors=True)
            _unpack(stage / f.path, unpacking)
            shutil.rmtree(stage / f.unpack_to, ignore_errors=True)  # the archive (cached by fetch with --cache-dir) or an earlier unpack
            os.replace(unpacking, stage / f.unpack_to)
    required = sorted({r for t in tasks for r in t.required})
    missing = [r for r in required if not (stage / r).exists()]
    if missing:
        raise TuluError(f"{root / missing[0]}: still missing after downloading {name}'s files (archive layout changed?)")
    return units


def preflight(opts: Any) -> dict[str, list[Any]]:
    """The checks made before any download (also the whole of a dry run): known names, usable folders."""
    known = data_names()
    for name in opts.benchmarks:
        if name not in known:
            raise TuluError(f"unknown benchmark '{name}'; known: {', '.join(sorted(known))}")
    check_output(Path(opts.data_dir), "--data-dir", "folder", in_place=True)
    if opts.cache_dir is not None:
        check_output(Path(opts.cache_dir), "--cache-dir", "folder", in_place=True)
    return known


def prepare_eval(opts: Any) -> dict[str, list[str]]:
    """Download (and unpack) the data of each benchmark named in ``opts.benchmarks``; returns paths written.

    A benchmark's files are gathered in a hidden staging folder under --data-dir and moved into
    place only when all of them arrived (and unpacked): a failure leaves no half-filled benchmark folder.
    """
    known = preflight(opts)
    root = Path(opts.data_dir)
    clean_stale(root)  # what a run killed while moving folders into place left
    mirror = opts.mirror or os.environ.get(MIRROR_ENV)
    done: dict[str, list[str]] = {}
    with new_folders_undone(root):
        for name in opts.benchmarks:
            done[name] = _prepare_one(name, known[name], root, opts, mirror)
    return done


def _prepare_one(name: str, tasks: list[Any], root: Path, opts: Any, mirror: str | None) -> list[str]:
    """One benchmark: nothing to do when its files are there, else gather in staging and move into place."""
    required = sorted({r for t in tasks for r in t.required})
    if required and all((root / r).exists() for r in required) and not opts.force:
        return []  # already there
    stage = _staging(root, name)
    if opts.force:
        shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(stage):
            units = _gather(name, stage, root, tasks, opts, mirror)
            _publish(stage, root, units)
    except TuluError:
        # A download cut short keeps its .part file here for the next run to resume (the downloader
        # says so); anything else (404, checksum, bad archive) leaves nothing behind.
        if not any(stage.rglob("*.part")):
            shutil.rmtree(stage, ignore_errors=True)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    return [str(root / u) for u in units]
