"""The annotation database: SQLite in WAL mode holding instances, accounts, sessions and every submission."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import queue
import random
import re
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from tulu_cli.errors import TuluError
from tulu_cli.human_eval.comparisons import Comparison

SCHEMA_VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    order_seed TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    csrf_token TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    model_1 TEXT NOT NULL,
    completion_1 TEXT NOT NULL,
    model_2 TEXT NOT NULL,
    completion_2 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS annotations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id),
    instance_id TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    model_1 TEXT NOT NULL,
    model_2 TEXT NOT NULL,
    swapped INTEGER NOT NULL,
    acceptable_1 INTEGER NOT NULL,
    acceptable_2 INTEGER NOT NULL,
    preference INTEGER NOT NULL,
    shown_choice INTEGER NOT NULL,
    feedback_1 TEXT NOT NULL DEFAULT '',
    feedback_2 TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    elapsed_ms INTEGER,
    created_at TEXT NOT NULL,
    UNIQUE (user_id, submission_id)
);
CREATE INDEX IF NOT EXISTS annotations_by_user_instance ON annotations (user_id, instance_id, id);
"""

# Matched with fullmatch: "$" would also accept a trailing newline, a name nobody could type at sign-in.
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def check_user_name(name: str) -> None:
    """Refuse a user name before anything is written."""
    if not USER_NAME.fullmatch(name):
        raise TuluError(f"user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")


# scrypt at n=2**14, r=8 costs ~16 MiB and tens of milliseconds: cheap for a sign-in, slow for guessing.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


# Compared against when the user name is unknown, so a wrong name costs as much time as a wrong password.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def now_iso() -> str:
    """UTC timestamp with milliseconds, e.g. 2024-05-01T12:00:00.123Z."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _settings(conn: sqlite3.Connection) -> sqlite3.Connection:
    """The settings every writer needs: WAL, full fsync, waits instead of failing when busy."""
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a commit the client was told about survives a killed server and a power cut.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def connect(path: str | Path) -> sqlite3.Connection:
    """A writer's connection to an existing annotation database (the server's pool)."""
    return _settings(sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False))


_SQLITE_HEADER = b"SQLite format 3\x00"
SIDE_FILES = ("-wal", "-shm", "-journal")  # what SQLite may keep beside NAME


def check_db_path(path: str | Path, *, write: bool, must_exist: bool) -> bool:
    """Refuse, in one line naming --db, a database path this process cannot use; returns whether the file exists.

    Runs before anything is created. A writer also needs its folder writable: in WAL mode SQLite
    keeps two side files (NAME-wal, NAME-shm) next to the database.
    """
    p = Path(path)
    where = f"--db {p}"
    try:
        if p.is_dir():
            raise TuluError(f"{where}: is a folder; give a database file name")
        exists = p.exists()
        if not exists:
            if must_exist:
                raise TuluError(f"{where}: annotation database does not exist")
            folder = p.parent
            if not folder.is_dir():
                above = folder
                while not above.exists() and above != above.parent:
                    above = above.parent
                if above.exists() and not above.is_dir():
                    raise TuluError(f"{where}: {above} is a file, not a folder")
                raise TuluError(f"{where}: folder {folder} does not exist")
    except PermissionError:
        raise TuluError(f"{where}: cannot look inside {p.parent} (permission denied)") from None
    if exists:
        try:
            with p.open("rb") as f:
                header = f.read(len(_SQLITE_HEADER))
        except OSError as e:
            raise TuluError(f"{where}: cannot read the file ({e.strerror or e})") from None
        if header and header != _SQLITE_HEADER:
            raise TuluError(f"{where}: not an SQLite database")
        if not header and not write:
            raise TuluError(f"{where}: empty file, not an annotation database")
        if write and not os.access(p, os.W_OK):
            raise TuluError(f"{where}: the file is read-only (permission denied)")
    if write and not os.access(p.parent, os.W_OK | os.X_OK):
        raise TuluError(f"{where}: cannot write into folder {p.parent} (SQLite keeps {p.name}-wal and {p.name}-shm there)")
    return exists


def _check_ours(conn: sqlite3.Connection, p: Path, *, allow_empty: bool) -> None:
    """Refuse another program's SQLite file (before adding tables to it) and a newer tulu's schema."""
    where = f"--db {p}"
    tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    if not tables:
        if allow_empty:
            return
        raise TuluError(f"{where}: empty database, not an annotation database")
    version = None
    if "meta" in tables:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = row[0] if row else None
    if version is None:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise TuluError(f"{where}: an SQLite database of another program (tables: {shown}), not an annotation database")
    if version != SCHEMA_VERSION:
        raise TuluError(f"{where}: schema version {version} (made by another tulu version); this one reads version {SCHEMA_VERSION}")


def remove_db_files(p: str | Path) -> None:
    """Delete a database and its side files (one this command created and must not leave behind)."""
    for suffix in ("", *SIDE_FILES):
        Path(f"{p}{suffix}").unlink(missing_ok=True)


def open_db(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """Open an annotation database for writing, creating it when missing (unless not ``create``).

    Every check runs before the file is created; a file created here is removed again when
    anything fails, so a refused command leaves nothing behind.
    """
    p = Path(path)
    existed = check_db_path(p, write=True, must_exist=not create)
    try:
        conn = sqlite3.connect(str(p), timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            _check_ours(conn, p, allow_empty=True)  # before the WAL pragma rewrites a foreign file's header
            _settings(conn)
            conn.executescript(SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        except BaseException:
            conn.close()
            raise
    except BaseException as e:
        if not existed:
            remove_db_files(p)
        if isinstance(e, sqlite3.DatabaseError):
            raise TuluError(f"--db {p}: not a usable SQLite database ({e})") from None
        raise
    return conn


def open_db_for_reading(path: str | Path, *, allow_empty: bool = False) -> sqlite3.Connection:
    """Open an existing annotation database to read it, changing nothing (export, metrics).

    With write access this is a plain connection, which removes the WAL side files when it
    closes; a read-only connection would leave them behind. Without write access (a copy in a
    read-only folder) it reads the file as it is, or through its existing WAL when one holds writes.
    """
    p = Path(path)
    check_db_path(p, write=False, must_exist=True)
    if os.access(p, os.W_OK) and os.access(p.parent, os.W_OK | os.X_OK):
        target, uri = str(p), False
    else:
        wal = Path(f"{p}-wal")
        mode = "mode=ro" if wal.exists() and wal.stat().st_size > 0 else "immutable=1"
        target, uri = f"{p.absolute().as_uri()}?{mode}", True
    try:
        conn = sqlite3.connect(target, uri=uri, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            _check_ours(conn, p, allow_empty=allow_empty)
        except BaseException:
            conn.close()
            raise
    except sqlite3.DatabaseError as e:
        raise TuluError(f"--db {p}: cannot read the database ({e})") from None
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # IMMEDIATE takes the write lock up front, so two writers never deadlock upgrading read locks.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class ConnectionPool:
    """Connections handed to request threads one at a time (sqlite3 connections are not shared concurrently)."""

    def __init__(self, path: str | Path, size: int = 32):
        self.path = Path(path)
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._size = size

    @contextmanager
    def get(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = connect(self.path)
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if self._idle.qsize() < self._size:
                self._idle.put(conn)
            else:
                conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


# ---- accounts ---------------------------------------------------------------------------------


def add_user(conn: sqlite3.Connection, name: str, *, reset: bool = False) -> str:
    """Create an annotator (or give an existing one a new password with ``reset``); returns the new password."""
    check_user_name(name)
    password = secrets.token_urlsafe(12)
    hashed = hash_password(password)
    with transaction(conn):
        row = conn.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
        if row is not None and not reset:
            raise TuluError(f"user '{name}' already exists; pass --reset to issue a new password")
        if row is None and reset:
            raise TuluError(f"user '{name}' does not exist; drop --reset to create it")
        if row is None:
            conn.execute(
                "INSERT INTO users (name, password_hash, order_seed, created_at) VALUES (?, ?, ?, ?)",
                (name, hashed, secrets.token_hex(8), now_iso()),
            )
        else:
            conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, row["id"]))
            # A new password signs the account out everywhere.
            conn.execute("DELETE FROM sessions WHERE user_id = ?", (row["id"],))
    return password


def list_users(conn: sqlite3.Connection) -> list[str]:
    return [r["name"] for r in conn.execute("SELECT name FROM users ORDER BY id")]


@dataclass(frozen=True)
class User:
    id: int
    name: str
    order_seed: str


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str


def find_user(conn: sqlite3.Connection, name: str) -> tuple[User, str] | None:
    """(user, stored password hash), or None for an unknown name."""
    row = conn.execute("SELECT id, name, password_hash, order_seed FROM users WHERE name = ?", (name,)).fetchone()
    return None if row is None else (User(row["id"], row["name"], row["order_seed"]), row["password_hash"])


def check_login(conn: sqlite3.Connection, name: str, password: str) -> User | None:
    found = find_user(conn, name)
    ok = verify_password(password, found[1] if found else DUMMY_HASH)
    return found[0] if found and ok else None


def _token_hash(token: str) -> str:
    # Only a hash is stored, so a copy of the database does not hand out live sessions.
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(conn: sqlite3.Connection, user: User, hours: float) -> tuple[str, str]:
    """Returns (session token for the cookie, CSRF token for forms)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = time.time()
    with transaction(conn):
        conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (_token_hash(token), user.id, csrf, now, now + hours * 3600),
        )
    return token, csrf


def get_session(conn: sqlite3.Connection, token: str | None) -> Session | None:
    if not token:
        return None
    row = conn.execute(
        "SELECT s.csrf_token, s.expires_at, u.id, u.name, u.order_seed FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.token_hash = ?",
        (_token_hash(token),),
    ).fetchone()
    if row is None or row["expires_at"] < time.time():
        return None
    return Session(User(row["id"], row["name"], row["order_seed"]), row["csrf_token"])


def delete_session(conn: sqlite3.Connection, token: str) -> None:
    conn.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))


# ---- instances and per-annotator order ------------------------------------------------------------


def check_instances(conn: sqlite3.Connection, comparisons: Sequence[Comparison], source: str) -> None:
    """Refuse to silently change an instance that already has answers."""
    annotated = {r[0] for r in conn.execute("SELECT DISTINCT instance_id FROM annotations")}
    for c in comparisons:
        if c.id not in annotated:
            continue
        old = conn.execute("SELECT * FROM instances WHERE id = ?", (c.id,)).fetchone()
        if old is not None and tuple(old[k] for k in ("prompt", "model_1", "completion_1", "model_2", "completion_2")) != (
            c.prompt, c.model_1, c.completion_1, c.model_2, c.completion_2,
        ):  # fmt: skip
            raise TuluError(
                f"{source}:{c.line}: instance '{c.id}' differs from the one already annotated in this database;"
                " give changed instances new ids or use a new --db"
            )


def sync_instances(conn: sqlite3.Connection, comparisons: Sequence[Comparison], source: str) -> None:
    """Store the comparisons so export works without the file (after ``check_instances``)."""
    with transaction(conn):
        check_instances(conn, comparisons, source)
        for pos, c in enumerate(comparisons):
            conn.execute(
                "INSERT OR REPLACE INTO instances (id, position, prompt, model_1, completion_1, model_2, completion_2)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (c.id, pos, c.prompt, c.model_1, c.completion_1, c.model_2, c.completion_2),
            )


def annotator_order(seed: str, ids: Sequence[str], shuffle: bool) -> list[str]:
    """The order one annotator sees: file order, or a per-annotator shuffle that is stable across restarts."""
    if not shuffle:
        return list(ids)
    # Keyed by a hash of (seed, id), so instances added later slot in without reshuffling the rest.
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}\x00order\x00{i}".encode()).digest())


def is_swapped(seed: str, instance_id: str) -> bool:
    """Whether this annotator sees completion 2 on the left for this instance (stable, ~50% of instances)."""
    return bool(random.Random(hashlib.sha256(f"{seed}\x00side\x00{instance_id}".encode()).digest()).getrandbits(1))


# ---- answers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One submission, as shown on screen (left/right) and in model order (1/2)."""

    instance_id: str
    swapped: bool
    acceptable_left: bool
    acceptable_right: bool
    shown_choice: int  # 1 = left (A) clearly better ... 3 = tie ... 5 = right (B) clearly better
    feedback_left: str = ""
    feedback_right: str = ""
    comment: str = ""
    elapsed_ms: int | None = None

    @property
    def preference(self) -> int:
        """-2 model 1 clearly better ... 0 tie ... +2 model 2 clearly better."""
        return (3 - self.shown_choice) if self.swapped else (self.shown_choice - 3)


def save_answer(conn: sqlite3.Connection, user: User, c: Comparison, a: Answer, submission_id: str) -> bool:
    """Append a submission; returns False when this submission id was already stored (a resent form)."""
    acc = (a.acceptable_right, a.acceptable_left) if a.swapped else (a.acceptable_left, a.acceptable_right)
    fb = (a.feedback_right, a.feedback_left) if a.swapped else (a.feedback_left, a.feedback_right)
    with transaction(conn):
        cur = conn.execute(
            "INSERT OR IGNORE INTO annotations (user_id, instance_id, submission_id, model_1, model_2, swapped,"
            " acceptable_1, acceptable_2, preference, shown_choice, feedback_1, feedback_2, comment, elapsed_ms, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                user.id, c.id, submission_id, c.model_1, c.model_2, int(a.swapped), int(acc[0]), int(acc[1]),
                a.preference, a.shown_choice, fb[0], fb[1], a.comment, a.elapsed_ms, now_iso(),
            ),
        )  # fmt: skip
    return cur.rowcount == 1


def latest_answer(conn: sqlite3.Connection, user: User, instance_id: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM annotations WHERE user_id = ? AND instance_id = ? ORDER BY id DESC LIMIT 1", (user.id, instance_id)
    ).fetchone()


def answered_ids(conn: sqlite3.Connection, user: User) -> set[str]:
    return {r[0] for r in conn.execute("SELECT DISTINCT instance_id FROM annotations WHERE user_id = ?", (user.id,))}
