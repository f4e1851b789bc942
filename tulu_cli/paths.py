"""Output paths: refuse an unusable one before any work, and stage work under temp names beside it that later runs clean up."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Iterator, Literal

from tulu_cli.errors import TuluError

# ".NAME.tulu-tmp-HOST-PID": hidden, beside the final output (same filesystem, so publishing is one
# rename), and owned by a process that can be checked for life. The host keeps two machines sharing a
# folder (NFS) from deleting each other's work.
_STAGED = re.compile(r"^\..+\.tulu-(?:tmp|old)-(?P<host>.+)-(?P<pid>\d+)$")


def cache_root(*parts: str) -> Path:
    """tulu's cache root, the one rule every cache follows: $TULU_CACHE, else $XDG_CACHE_HOME/tulu, else
    ~/.cache/tulu; ``parts`` name the sub-folder (``cache_root("tokenized")``)."""
    env = os.environ.get("TULU_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "tulu"
    return root.joinpath(*parts)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _host() -> str:
    return socket.gethostname().replace("/", "_") or "localhost"


def temp_path(final: Path, tag: Literal["tmp", "old"] = "tmp") -> Path:
    """The staging name of ``final`` for this process (``old``: where a replaced output waits to be deleted)."""
    final = Path(final)
    return final.parent / f".{final.name}.tulu-{tag}-{_host()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale(folder: Path) -> list[Path]:
    """Delete the staging files and folders in ``folder`` whose process on this host is gone (killed runs); returns them."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:  # missing or unreadable: nothing of ours can be there
        return removed
    host = _host()
    for p in entries:
        m = _STAGED.match(p.name)
        if m is None or m["host"] != host or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:
            continue  # not ours to delete (permissions); it does no harm where it is
        removed.append(p)
    return removed


@contextlib.contextmanager
def new_folders_undone(folder: Path) -> Iterator[None]:
    """If the block fails, remove again the folders it created for ``folder`` (it and missing parents), when empty:
    a refused run leaves the disk as it found it."""
    missing = []
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        yield
    except BaseException:
        for d in missing:  # deepest first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def _kind(p: Path, where: str) -> str | None:
    """"dir", "file" or None (missing); a path hidden by permissions is the user's to fix, not a traceback."""
    try:
        return "dir" if p.is_dir() else ("file" if p.exists() else None)
    except PermissionError:
        raise TuluError(f"{where}: cannot look inside {p.parent} (permission denied)") from None


def check_output(path: Path, flag: str, kind: Literal["file", "folder"], in_place: bool = False) -> None:
    """Refuse, in one line naming ``flag``, an output path this process cannot create or replace.

    ``file``: a file written beside its temp copy. ``folder``: a folder created (or replaced) in one
    rename from a sibling temp folder; with ``in_place`` an existing folder is written into instead.
    Checks: the path is not the other kind, no parent is a file, and the folder that will receive
    the writes is writable by this user (root passes every permission check, other users may not).
    """
    path = Path(path)
    where = f"{flag} {path}"
    found = _kind(path, where)
    if found == "dir" and kind == "file":
        raise TuluError(f"{where}: is a folder; give a file name")
    if found == "file" and kind == "folder":
        raise TuluError(f"{where}: exists and is not a folder")
    if found == "dir" and not os.access(path, os.W_OK | os.X_OK):
        raise TuluError(f"{where}: cannot write into this folder (permission denied or read-only)")
    if found == "dir" and in_place:
        return
    parent = path.parent  # walked as typed, so the message names the path the user wrote
    while (parent_kind := _kind(parent, where)) is None:
        if parent.is_symlink():
            raise TuluError(f"{where}: {parent} is a broken symbolic link")
        if parent == parent.parent:
            break
        parent = parent.parent
    if parent_kind != "dir":
        raise TuluError(f"{where}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TuluError(f"{where}: cannot write into {parent} (permission denied or read-only)")
