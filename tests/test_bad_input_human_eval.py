"""Bad input to `tulu human-eval serve | add-user | export | metrics`: one `error:` line naming the fault, exit 2, nothing left on disk.

The permission rows run as an ordinary user (root passes every permission check): through
runuser when the suite runs as root, in-process otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import tempfile
from pathlib import Path

import pytest

from _bad_input import assert_bad_input, snapshot
from _human_eval_helpers import COMPARISONS, make_users, unprivileged

from tulu_cli.human_eval import load_comparisons, store

BAD_JSON = '{"id": "q9" "prompt": "p"}'


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One folder of good and bad inputs, shared by the rows (each row asserts it changes nothing)."""
    d = tmp_path_factory.mktemp("lab")
    shutil.copy(COMPARISONS, d / "pairs.jsonl")
    (d / "bad.jsonl").write_text(COMPARISONS.read_text().splitlines()[0] + "\n" + BAD_JSON + "\n")
    (d / "empty.jsonl").write_text("\n")
    (d / "a_file").write_text("not a folder\n")
    (d / "a_folder").mkdir()
    (d / "empty.sqlite").write_bytes(b"")
    (d / "latin1.md").write_bytes("Richtlinien f\xfcr Annotatoren\n".encode("latin-1"))
    (d / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    # A study with one answer on q1, so a changed q1 in the comparisons must be refused.
    comps = load_comparisons(COMPARISONS)
    make_users(d / "study.sqlite", "alice")
    conn = store.open_db(d / "study.sqlite")
    store.sync_instances(conn, comps, "pairs.jsonl")
    row = conn.execute("SELECT id, order_seed FROM users").fetchone()
    store.save_answer(conn, store.User(row["id"], "alice", row["order_seed"]), comps[0], store.Answer("q1", False, True, False, 1), "sub-00000001")
    conn.close()
    changed = COMPARISONS.read_text().replace("adds two numbers", "adds three numbers", 1)
    assert changed != COMPARISONS.read_text()
    (d / "changed.jsonl").write_text(changed)
    other = sqlite3.connect(d / "other.db")  # another program's database
    other.execute("CREATE TABLE contacts (name TEXT)")
    other.commit()
    other.close()
    shutil.copy(d / "study.sqlite", d / "future.sqlite")
    future = sqlite3.connect(d / "future.sqlite")
    future.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    future.commit()
    future.close()
    return d


@pytest.fixture(scope="module")
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


SERVE = ["human-eval", "serve", "--port", "0"]
# (id, args with {d} for the lab folder and {busy} for a port in use, expected part of the error line)
ROWS = [
    ("serve-busy-port", ["human-eval", "serve", "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/new.sqlite", "--port", "{busy}"], "cannot listen on 127.0.0.1:{busy}: Address already in use"),
    ("serve-busy-port-dry-run", ["human-eval", "serve", "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/new.sqlite", "--port", "{busy}", "--dry-run"], "cannot listen on 127.0.0.1:{busy}"),
    ("serve-no-comparisons", [*SERVE, "--db", "{d}/new.sqlite"], "--comparisons: required"),
    ("serve-comparisons-missing", [*SERVE, "--comparisons", "{d}/nope.jsonl", "--db", "{d}/new.sqlite"], "nope.jsonl: comparisons file does not exist"),
    ("serve-comparisons-folder", [*SERVE, "--comparisons", "{d}/a_folder", "--db", "{d}/new.sqlite"], "a_folder: is a folder, not a comparisons file"),
    ("serve-comparisons-empty", [*SERVE, "--comparisons", "{d}/empty.jsonl", "--db", "{d}/new.sqlite"], "empty.jsonl: no comparisons"),
    ("serve-comparisons-bad-json", [*SERVE, "--comparisons", "{d}/bad.jsonl", "--db", "{d}/new.sqlite"], "bad.jsonl:2: invalid JSON: Expecting ',' delimiter"),
    ("serve-changed-annotated-instance", [*SERVE, "--comparisons", "{d}/changed.jsonl", "--db", "{d}/study.sqlite"], "changed.jsonl:1: instance 'q1' differs from the one already annotated"),
    ("serve-db-under-a-file", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/a_file/s.sqlite"], "a_file is a file, not a folder"),
    ("serve-db-is-a-folder", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/a_folder"], "--db {d}/a_folder: is a folder"),
    ("serve-db-folder-missing", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/nowhere/s.sqlite"], "folder {d}/nowhere does not exist"),
    ("serve-db-not-sqlite", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/pairs.jsonl"], "--db {d}/pairs.jsonl: not an SQLite database"),
    ("serve-db-of-another-program", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/other.db"], "an SQLite database of another program (tables: contacts)"),
    ("serve-db-newer-schema", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/future.sqlite"], "schema version 2"),
    ("serve-guidelines-missing", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/new.sqlite", "--guidelines", "{d}/nope.md"], "--guidelines {d}/nope.md: file does not exist"),
    ("serve-guidelines-folder", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/new.sqlite", "--guidelines", "{d}/a_folder"], "--guidelines {d}/a_folder: is a folder"),
    ("serve-guidelines-not-utf8", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/new.sqlite", "--guidelines", "{d}/latin1.md"], "latin1.md: not UTF-8 text (invalid start byte at byte 13)"),
    ("serve-tls-cert-missing", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/new.sqlite", "--tls-cert", "{d}/nope.pem", "--tls-key", "{d}/garbage.pem"], "--tls-cert {d}/nope.pem: file does not exist"),
    ("serve-tls-cert-garbage", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/new.sqlite", "--tls-cert", "{d}/garbage.pem", "--tls-key", "{d}/garbage.pem"], "--tls-cert/--tls-key: cannot load the certificate and key"),
    ("serve-tls-cert-without-key", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/new.sqlite", "--tls-cert", "{d}/garbage.pem"], "--tls-cert and --tls-key go together"),
    ("serve-host-empty", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/new.sqlite", "--host", ""], "--host: empty"),
    ("serve-host-not-here", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/new.sqlite", "--host", "203.0.113.7"], "cannot listen on 203.0.113.7:0: Cannot assign requested address"),
    ("serve-port-too-big", ["human-eval", "serve", "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/new.sqlite", "--port", "70000"], "--port: Input should be less than or equal to 65535"),
    ("serve-port-not-a-number", ["human-eval", "serve", "--comparisons", "{d}/pairs.jsonl", "--port", "http"], "Invalid value for '--port'"),
    ("serve-session-hours-zero", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--db", "{d}/new.sqlite", "--session-hours", "0"], "--session-hours: Input should be greater than 0"),
    ("serve-unknown-flag", [*SERVE, "--comparisons", "{d}/pairs.jsonl", "--prot", "80"], "No such option: --prot"),
    ("add-user-empty-name", ["human-eval", "add-user", "", "--db", "{d}/new.sqlite"], "user name '': use 1-64 letters"),
    ("add-user-name-with-newline", ["human-eval", "add-user", "bob\n", "--db", "{d}/new.sqlite"], "user name 'bob\\n'"),
    ("add-user-name-with-space", ["human-eval", "add-user", "bad name", "--db", "{d}/new.sqlite"], "user name 'bad name'"),
    ("add-user-name-starts-with-dash", ["human-eval", "add-user", "--db", "{d}/new.sqlite", "--", "-x"], "user name '-x'"),
    ("add-user-name-too-long", ["human-eval", "add-user", "a" * 65, "--db", "{d}/new.sqlite"], "use 1-64 letters"),
    ("add-user-bad-name-dry-run", ["human-eval", "add-user", "", "--db", "{d}/new.sqlite", "--dry-run"], "user name ''"),
    ("add-user-exists", ["human-eval", "add-user", "alice", "--db", "{d}/study.sqlite"], "user 'alice' already exists; pass --reset"),
    ("add-user-reset-unknown", ["human-eval", "add-user", "bob", "--db", "{d}/study.sqlite", "--reset"], "user 'bob' does not exist; drop --reset"),
    ("add-user-reset-no-db", ["human-eval", "add-user", "bob", "--db", "{d}/new.sqlite", "--reset"], "--db {d}/new.sqlite: annotation database does not exist"),
    ("add-user-db-under-a-file", ["human-eval", "add-user", "bob", "--db", "{d}/a_file/s.sqlite"], "a_file is a file, not a folder"),
    ("add-user-db-is-a-folder", ["human-eval", "add-user", "bob", "--db", "{d}/a_folder"], "is a folder; give a database file name"),
    ("add-user-db-not-sqlite", ["human-eval", "add-user", "bob", "--db", "{d}/latin1.md"], "latin1.md: not an SQLite database"),
    ("add-user-db-of-another-program", ["human-eval", "add-user", "bob", "--db", "{d}/other.db"], "an SQLite database of another program"),
    ("add-user-db-under-a-file-dry-run", ["human-eval", "add-user", "bob", "--db", "{d}/a_file/s.sqlite", "--dry-run"], "a_file is a file, not a folder"),
    ("export-db-missing", ["human-eval", "export", "--db", "{d}/nope.sqlite"], "--db {d}/nope.sqlite: annotation database does not exist"),
    ("export-db-empty-file", ["human-eval", "export", "--db", "{d}/empty.sqlite"], "empty file, not an annotation database"),
    ("export-db-is-a-folder", ["human-eval", "export", "--db", "{d}/a_folder"], "is a folder"),
    ("export-db-of-another-program", ["human-eval", "export", "--db", "{d}/other.db"], "another program (tables: contacts)"),
    ("export-output-is-the-db", ["human-eval", "export", "--db", "{d}/study.sqlite", "-o", "{d}/study.sqlite"], "is the annotation database itself"),
    ("export-output-is-the-wal", ["human-eval", "export", "--db", "{d}/study.sqlite", "-o", "{d}/study.sqlite-wal"], "is the annotation database itself"),
    ("export-output-is-a-folder", ["human-eval", "export", "--db", "{d}/study.sqlite", "-o", "{d}/a_folder"], "--output {d}/a_folder: is a folder"),
    ("export-output-under-a-file", ["human-eval", "export", "--db", "{d}/study.sqlite", "-o", "{d}/a_file/out.csv"], "a_file is a file, not a folder"),
    ("export-output-under-a-file-dry-run", ["human-eval", "export", "--db", "{d}/study.sqlite", "-o", "{d}/a_file/out.csv", "--dry-run"], "a_file is a file"),
    ("export-format-unknown", ["human-eval", "export", "--db", "{d}/study.sqlite", "--format", "xlsx"], "--format: Input should be 'jsonl' or 'csv'"),
    ("metrics-db-missing", ["human-eval", "metrics", "--db", "{d}/nope.sqlite"], "annotation database does not exist"),
    ("metrics-db-not-sqlite", ["human-eval", "metrics", "--db", "{d}/pairs.jsonl"], "not an SQLite database"),
    ("metrics-db-of-another-program", ["human-eval", "metrics", "--db", "{d}/other.db"], "another program"),
    ("metrics-db-newer-schema", ["human-eval", "metrics", "--db", "{d}/future.sqlite"], "schema version 2 (made by another tulu version)"),
    ("metrics-db-missing-dry-run", ["human-eval", "metrics", "--db", "{d}/nope.sqlite", "--dry-run"], "annotation database does not exist"),
]


def _fill(value: str, d: Path, busy: int) -> str:
    return value.replace("{d}", str(d)).replace("{busy}", str(busy))


@pytest.mark.parametrize("args, expect", [pytest.param(a, e, id=i) for i, a, e in ROWS])
def test_bad_input(lab, busy_port, monkeypatch, args, expect):
    monkeypatch.chdir(lab)  # the default --db (annotations.sqlite) would land here
    assert_bad_input([_fill(a, lab, busy_port) for a in args], _fill(expect, lab, busy_port), watch=[lab])


def test_the_table_covers_every_command():
    commands = {args[1] for _, args, _ in ROWS}
    assert commands == {"serve", "add-user", "export", "metrics"} and len(ROWS) >= 20


# ---- permissions: as an ordinary user ------------------------------------------------------------


@pytest.fixture(scope="module")
def home():
    """A folder reachable by every user (pytest's own tmp folder is private to root) holding the
    user's files: a read-only folder, a locked one, unreadable inputs, a read-only database."""
    base = Path(tempfile.mkdtemp(prefix="tulu-he-perm-"))
    base.chmod(0o755)
    runner = unprivileged(base) if os.geteuid() == 0 else None
    if isinstance(runner, str):
        shutil.rmtree(base)
        pytest.skip(runner)
    h = base / "home"
    h.mkdir()
    shutil.copy(COMPARISONS, h / "pairs.jsonl")
    make_users(h / "study.sqlite", "alice")
    (h / "ro").mkdir()
    make_users(h / "ro" / "study.sqlite", "alice")
    shutil.copy(h / "study.sqlite", h / "readonly.sqlite")
    shutil.copy(h / "study.sqlite", h / "secret.sqlite")
    shutil.copy(COMPARISONS, h / "secret.jsonl")
    (h / "secret.md").write_text("# Guidelines\n")
    (h / "locked").mkdir()
    if runner is not None:
        for dirpath, dirnames, filenames in os.walk(h):
            for name in [*dirnames, *filenames, ""]:
                os.chown(Path(dirpath, name), runner.uid, runner.gid)
    for path, mode in [("readonly.sqlite", 0o444), ("secret.sqlite", 0), ("secret.jsonl", 0), ("secret.md", 0), ("ro", 0o555), ("locked", 0)]:
        (h / path).chmod(mode)
    yield runner, base, h
    for path in ("ro", "locked"):
        (h / path).chmod(0o755)
    shutil.rmtree(base)


PERMISSION_ROWS = [
    ("add-user-folder-read-only", ["human-eval", "add-user", "bob", "--db", "{h}/ro/new.sqlite"], "--db {h}/ro/new.sqlite: cannot write into folder {h}/ro"),
    ("add-user-db-in-read-only-folder", ["human-eval", "add-user", "bob", "--db", "{h}/ro/study.sqlite"], "cannot write into folder {h}/ro (SQLite keeps study.sqlite-wal"),
    ("add-user-db-read-only", ["human-eval", "add-user", "bob", "--db", "{h}/readonly.sqlite"], "--db {h}/readonly.sqlite: the file is read-only"),
    ("add-user-folder-locked", ["human-eval", "add-user", "bob", "--db", "{h}/locked/s.sqlite"], "cannot look inside {h}/locked (permission denied)"),
    ("serve-folder-read-only", ["human-eval", "serve", "--port", "0", "--comparisons", "{h}/pairs.jsonl", "--db", "{h}/ro/new.sqlite"], "cannot write into folder {h}/ro"),
    ("serve-comparisons-unreadable", ["human-eval", "serve", "--port", "0", "--comparisons", "{h}/secret.jsonl", "--db", "{h}/new.sqlite"], "'--comparisons': path '{h}/secret.jsonl' is not readable"),
    ("serve-guidelines-unreadable", ["human-eval", "serve", "--port", "0", "--comparisons", "{h}/pairs.jsonl", "--db", "{h}/new.sqlite", "--guidelines", "{h}/secret.md"], "'--guidelines': path '{h}/secret.md' is not readable"),
    ("export-output-folder-read-only", ["human-eval", "export", "--db", "{h}/study.sqlite", "-o", "{h}/ro/answers.csv"], "--output {h}/ro/answers.csv: cannot write into {h}/ro"),
    ("export-db-unreadable", ["human-eval", "export", "--db", "{h}/secret.sqlite"], "'--db': path '{h}/secret.sqlite' is not readable"),
    ("metrics-db-unreadable", ["human-eval", "metrics", "--db", "{h}/secret.sqlite"], "is not readable"),
    ("metrics-folder-locked", ["human-eval", "metrics", "--db", "{h}/locked/s.sqlite"], "cannot look inside {h}/locked"),
]


def _as_user(home, args: list[str]) -> tuple[int, str, str]:
    runner, base, _ = home
    if runner is None:  # already an ordinary user
        from typer.testing import CliRunner

        from tulu_cli.cli.main import app

        r = CliRunner().invoke(app, args)
        return r.exit_code, r.stdout, r.stderr
    r = runner.run(args, cwd=base)
    return r.returncode, r.stdout, r.stderr


@pytest.mark.parametrize("args, expect", [pytest.param(a, e, id=i) for i, a, e in PERMISSION_ROWS])
def test_bad_input_permissions_as_an_ordinary_user(home, args, expect):
    h = home[2]
    args, expect = [a.replace("{h}", str(h)) for a in args], expect.replace("{h}", str(h))
    before = snapshot([h])
    code, out, err = _as_user(home, args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    context = f"tulu {' '.join(args)}\nexit={code}\nstdout={out[-2000:]}\nstderr={err[-3000:]}"
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), context
    assert "Traceback" not in out + err, context
    assert expect in lines[0], context
    assert snapshot([h]) == before, context


def test_an_ordinary_user_reads_a_study_in_a_read_only_folder_without_leaving_files(home):
    h = home[2]
    before = snapshot([h])
    code, out, err = _as_user(home, ["human-eval", "metrics", "--db", str(h / "ro" / "study.sqlite"), "--json"])
    assert code == 0, err
    assert '"annotators": {}' in out.replace("\n", "").replace("  ", "")
    code, out, err = _as_user(home, ["human-eval", "export", "--db", str(h / "ro" / "study.sqlite")])
    assert code == 0 and out == "", err
    assert snapshot([h]) == before  # no -wal/-shm left in the folder
