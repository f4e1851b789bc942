"""The annotation server through a real HTTP client: sign-in, CSRF, safe rendering, separate annotators, edits, crashes."""

from __future__ import annotations

import json
import re
import shutil
import signal
import ssl
import subprocess
from html.parser import HTMLParser

import pytest

from _human_eval_helpers import COMPARISONS, Client, db_rows, make_users, running_server, server_process, write_jsonl

from tulu_cli.errors import TuluError
from tulu_cli.human_eval import render_markdown, store


@pytest.fixture
def study(tmp_path):
    db = tmp_path / "study.sqlite"
    return db, make_users(db, "alice", "bob")


def position_of(db, user: str, instance_id: str) -> int:
    seed = db_rows(db, "SELECT order_seed FROM users WHERE name = ?", (user,))[0]["order_seed"]
    return store.annotator_order(seed, ["q1", "q2", "q3", "q4", "q5"], shuffle=True).index(instance_id) + 1


def test_everything_requires_sign_in_and_there_is_no_default_account(tmp_path):
    db = tmp_path / "empty.sqlite"
    with running_server(db) as port:
        c = Client(port)
        for path in ("/", "/annotate", "/annotate/1", "/overview"):
            r = c.get(path)
            assert r.status == 303 and r.header("Location") in ("/login", "/annotate"), path
        assert c.get("/annotate/1").header("Location") == "/login"
        assert c.post_form("/annotate/1", {"choice": "1"}).status == 401
        assert c.get("/api/progress").status == 401
        assert c.post_json("/api/annotations", {}).status == 401
        for name, pw in [("admin", "admin"), ("admin", ""), ("", "")]:
            r = c.login(name, pw)
            assert r.status == 401 and "Wrong user name or password" in r.text
            assert not any(k.startswith("tulu_session") for k in c.cookies)
        assert c.get("/healthz").status == 200
        assert c.get("/static/app.js").status == 200
        assert c.get("/static/../store.py").status == 404


def test_sign_in_sets_hardened_cookie_and_security_headers(study):
    db, pw = study
    with running_server(db) as port:
        c = Client(port)
        r = c.login("alice", "not-the-password")
        assert r.status == 401
        r = c.login("alice", pw["alice"])
        assert r.status == 303 and r.header("Location") == "/annotate"
        cookie = next(v for v in r.headers_named("Set-Cookie") if v.startswith(f"tulu_session_{port}="))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback: a Secure cookie would never come back
        page = c.get("/annotate/1")
        assert page.status == 200
        csp = page.header("Content-Security-Policy")
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert page.header("X-Content-Type-Options") == "nosniff" and page.header("X-Frame-Options") == "DENY"
        assert page.header("Cache-Control") == "no-store"
        # Signing out ends the session on the server, not just in the browser.
        stolen = dict(c.cookies)
        assert c.post_form("/logout", {"csrf_token": page.hidden("csrf_token")}).status == 303
        thief = Client(port)
        thief.cookies = stolen
        assert thief.get("/annotate/1").header("Location") == "/login"
    with running_server(db, secure_cookies=True) as port:
        r = Client(port).get("/login")
        assert any(v.startswith(f"__Host-tulu_login_{port}=") and "; Secure" in v for v in r.headers_named("Set-Cookie"))


def test_repeated_wrong_passwords_are_throttled(study):
    db, pw = study
    with running_server(db) as port:
        c = Client(port)
        for _ in range(5):
            assert c.login("bob", "guess").status == 401
        r = c.login("bob", pw["bob"])
        assert r.status == 429 and "Too many failed sign-ins" in r.text
        assert c.login("alice", pw["alice"]).status == 303  # other accounts unaffected


def test_csrf_is_required_on_every_form_and_api_call(study):
    db, pw = study
    with running_server(db) as port:
        c = Client(port)
        # Sign-in form: the token must match the cookie set with the form.
        page = c.get("/login")
        assert c.post_form("/login", {"csrf_token": "forged", "username": "alice", "password": pw["alice"]}).status == 403
        c.cookies.clear()
        assert (
            c.post_form("/login", {"csrf_token": page.hidden("csrf_token"), "username": "alice", "password": pw["alice"]}).status
            == 403
        )
        assert c.login("alice", pw["alice"]).status == 303
        page = c.get("/annotate/1")
        token = page.hidden("csrf_token")
        good = {
            "instance_id": page.hidden("instance_id"), "submission_id": page.hidden("submission_id"),
            "acceptable_a": "yes", "acceptable_b": "no", "choice": "1",
        }  # fmt: skip
        assert c.post_form("/annotate/1", good).status == 403
        r = c.post_form("/annotate/1", {**good, "csrf_token": "x" * 43})
        assert r.status == 403 and "CSRF" in r.text
        assert c.post_form("/annotate/1", {**good, "csrf_token": token}, {"Sec-Fetch-Site": "cross-site"}).status == 403
        assert c.post_form("/logout", {"csrf_token": "nope"}).status == 403
        api = {"instance_id": "q1", "submission_id": "api-0001", "acceptable_a": True, "acceptable_b": False, "choice": 2}
        assert c.post_json("/api/annotations", api).status == 403
        assert c.post_json("/api/annotations", api, {"X-CSRF-Token": "wrong"}).status == 403
        assert db_rows(db, "SELECT COUNT(*) AS n FROM annotations")[0]["n"] == 0
        # The same requests with the token go through.
        r = c.post_json("/api/annotations", api, {"X-CSRF-Token": token})
        assert r.status == 201 and json.loads(r.text)["saved"]
        assert c.post_form("/annotate/1", {**good, "csrf_token": token}).status == 303
        assert db_rows(db, "SELECT COUNT(*) AS n FROM annotations")[0]["n"] == 2


def test_script_in_a_completion_is_shown_as_text(study):
    db, pw = study
    with running_server(db) as port:
        c = Client(port)
        c.login("alice", pw["alice"])
        page = c.get(f"/annotate/{position_of(db, 'alice', 'q3')}")
        assert page.status == 200
        # markdown-it-py escapes & < > " (a quote ' is harmless in text: its attributes use double quotes)
        assert "&lt;script&gt;window.__pwned = 1; alert('xss')&lt;/script&gt;" in page.text
        assert "&lt;img src=x onerror=&quot;window.__pwned=2&quot;&gt;" in page.text
        assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/static/app.js">']
        assert "<img" not in page.text and "<b>" not in page.text
        assert "&lt;p&gt;Hello&lt;/p&gt;" in page.text  # inside the other response's code block


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs.update(f"{tag}.{k}" for k, _ in attrs)


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "```\n</code></pre><script>alert(1)</script>\n```",
        '```"><img src=x onerror=alert(1)>\ncode\n```',
        "**<img src=x onerror=alert(1)>** `<iframe>` *<svg onload=alert(1)>*",
        "# <a href=javascript:alert(1)>x</a>\n- <style>*{}</style>\n> <object data=x>\n| <embed> |",
        "[click](javascript:alert(1)) <a href='x'>a</a> &lt;already&gt; &amp;",
    ],
)
def test_markdown_subset_only_emits_its_own_tags(text):
    out = render_markdown(text)
    p = _Tags()
    p.feed(out)
    assert p.tags <= {"p", "br", "pre", "code", "strong", "em", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "hr"}
    assert p.attrs <= {"code.class", "pre.class"}


def test_markdown_renders_code_lists_and_emphasis():
    out = render_markdown("Intro **bold** and `x < y`\n\n```python\nif a < b:\n    pass\n```\n\n1. one\n2. two\n\n- a\n- b")
    assert "<strong>bold</strong>" in out and "<code>x &lt; y</code>" in out
    assert '<pre><code class="language-python">if a &lt; b:\n    pass\n</code></pre>' in out
    assert "<ol>\n<li>one</li>\n<li>two</li>\n</ol>" in out and "<ul>\n<li>a</li>\n<li>b</li>\n</ul>" in out
    # CommonMark: intraword _ is not emphasis, intraword * is
    assert render_markdown("snake_case_name and 2*3*4") == "<p>snake_case_name and 2<em>3</em>4</p>"
    assert render_markdown("one\ntwo") == "<p>one<br>\ntwo</p>"  # a model's newline is a line break
    assert render_markdown("# Title\n#### Four") == "<h3>Title</h3>\n<h6>Four</h6>"  # below the page's own headings


def test_markdown_table_is_escaped_monospace_source():
    out = render_markdown("| a | b |\n|:--|--:|\n| <b>1</b> | 2 |\n\nafter")
    assert out == '<pre class="md-table">| a | b |\n|:--|--:|\n| &lt;b&gt;1&lt;/b&gt; | 2 |</pre>\n<p>after</p>'


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
        ("<div>\n<script>alert(1)</script>\n</div>", "<p>&lt;div&gt;<br>\n&lt;script&gt;alert(1)&lt;/script&gt;<br>\n&lt;/div&gt;</p>"),
        ("[click](javascript:alert(1))", "<p>[click](javascript:alert(1))</p>"),
        ("[docs](https://example.org/x)", "<p>[docs](https://example.org/x)</p>"),  # no link leaves the page
        ("[x](data:text/html;base64,PHNjcmlwdD4=)", "<p>[x](data:text/html;base64,PHNjcmlwdD4=)</p>"),
        ("![pic](https://evil.example/t.png)", "<p>![pic](https://evil.example/t.png)</p>"),
        ("![pic](data:image/png;base64,iVBORw0KGgo=)", "<p>![pic](data:image/png;base64,iVBORw0KGgo=)</p>"),
        ("<javascript:alert(1)> <https://evil.example>", "<p>&lt;javascript:alert(1)&gt; &lt;https://evil.example&gt;</p>"),
        ("[r]\n\n[r]: javascript:alert(1)", "<p>[r]</p>\n<p>[r]: javascript:alert(1)</p>"),
        ('**<img src=x onerror="alert(1)">**', "<p><strong>&lt;img src=x onerror=&quot;alert(1)&quot;&gt;</strong></p>"),
        ("`<iframe src=x>`", "<p><code>&lt;iframe src=x&gt;</code></p>"),
    ],
)
def test_hostile_markdown_renders_as_text(text, expected):
    """Raw HTML, javascript:/data: links, images, autolinks and reference links: nothing clickable,
    fetched or run; each shows as its escaped text."""
    out = render_markdown(text)
    assert out == expected
    tags = _Tags()
    tags.feed(out)
    assert tags.tags <= {"p", "br", "strong", "code"} and not tags.attrs  # no a/img/script, no href/src


def test_two_annotators_answers_are_kept_apart(study):
    db, pw = study
    with running_server(db) as port:
        alice, bob = Client(port), Client(port)
        alice.login("alice", pw["alice"])
        bob.login("bob", pw["bob"])
        a_pos, b_pos = position_of(db, "alice", "q2"), position_of(db, "bob", "q2")
        assert alice.answer(a_pos, "yes", "yes", 1, comment="alice says").status == 303
        assert bob.answer(b_pos, "no", "no", 5, comment="bob says").status == 303
        a_page, b_page = alice.get(f"/annotate/{a_pos}"), bob.get(f"/annotate/{b_pos}")
        assert "alice says" in a_page.text and "bob says" not in a_page.text
        assert "bob says" in b_page.text and "alice says" not in b_page.text
        assert json.loads(alice.get("/api/progress").text)["answered"] == 1
        # Bob's CSRF token is worthless in Alice's session.
        forged = {"csrf_token": b_page.hidden("csrf_token"), "instance_id": "q2", "submission_id": "forged-01",
                  "acceptable_a": "no", "acceptable_b": "no", "choice": "3"}  # fmt: skip
        assert alice.post_form(f"/annotate/{a_pos}", forged).status == 403
    rows = {r["name"]: r for r in db_rows(db, "SELECT a.*, u.name FROM annotations a JOIN users u ON u.id = a.user_id")}
    assert set(rows) == {"alice", "bob"}
    assert rows["alice"]["comment"] == "alice says" and rows["alice"]["shown_choice"] == 1
    assert rows["bob"]["comment"] == "bob says" and rows["bob"]["shown_choice"] == 5
    assert (rows["alice"]["acceptable_1"], rows["alice"]["acceptable_2"]) == (1, 1)
    assert (rows["bob"]["acceptable_1"], rows["bob"]["acceptable_2"]) == (0, 0)


def test_going_back_and_editing_keeps_every_revision(study):
    db, pw = study
    with running_server(db, shuffle=False) as port:
        c = Client(port)
        c.login("alice", pw["alice"])
        assert c.answer(1, "yes", "no", 2).header("Location") == "/annotate/2"
        assert c.answer(2, "no", "yes", 4).header("Location") == "/annotate/3"
        assert c.get("/annotate").header("Location") == "/annotate/3"  # continue where I left off
        back = c.get("/annotate/1")
        assert 'value="2" checked' in back.text and "answered" in back.text
        edited = c.answer(1, "yes", "yes", 3, comment="changed my mind")
        assert edited.status == 303
        assert 'value="3" checked' in c.get("/annotate/1").text
        # A form sent twice (double click, retry) is stored once.
        page = c.get("/annotate/5")
        form = {"csrf_token": page.hidden("csrf_token"), "instance_id": "q5", "submission_id": page.hidden("submission_id"),
                "acceptable_a": "yes", "acceptable_b": "yes", "choice": "3"}  # fmt: skip
        assert c.post_form("/annotate/5", form).header("Location") == "/overview"
        assert c.post_form("/annotate/5", form).status == 303
        overview = c.get("/overview")
        assert "3 of 5 instances answered" in overview.text
        # Exporting while the server runs (WAL lets readers and the writer work side by side).
        from typer.testing import CliRunner

        from tulu_cli.cli.main import app

        r = CliRunner().invoke(app, ["human-eval", "export", "--db", str(db), "--all-revisions"])
        assert r.exit_code == 0 and len(r.stdout.splitlines()) == 4
        assert c.answer(4, "no", "no", 3).status == 303
    rows = db_rows(db, "SELECT instance_id, shown_choice, comment FROM annotations ORDER BY id")
    assert [(r["instance_id"], r["shown_choice"]) for r in rows] == [("q1", 2), ("q2", 4), ("q1", 3), ("q5", 3), ("q4", 3)]


def test_incomplete_or_stale_submissions_are_refused_with_a_message(study):
    db, pw = study
    with running_server(db, shuffle=False) as port:
        c = Client(port)
        c.login("alice", pw["alice"])
        page = c.get("/annotate/1")
        base = {"csrf_token": page.hidden("csrf_token"), "instance_id": "q1", "submission_id": page.hidden("submission_id")}
        r = c.post_form("/annotate/1", {**base, "acceptable_a": "yes", "acceptable_b": "no"})
        assert r.status == 400 and "Choose which response is better" in r.text and 'value="yes" required checked' in r.text
        r = c.post_form("/annotate/1", {**base, "acceptable_a": "yes", "choice": "2"})
        assert r.status == 400 and "Say whether response B is acceptable" in r.text
        r = c.post_form("/annotate/1", {**base, "instance_id": "q2", "acceptable_a": "yes", "acceptable_b": "no", "choice": "2"})
        assert r.status == 400 and "out of date" in r.text
        assert c.get("/annotate/6").status == 404
    assert db_rows(db, "SELECT COUNT(*) AS n FROM annotations")[0]["n"] == 0


def test_killed_server_loses_nothing_and_sessions_survive(study, tmp_path):
    db, pw = study
    with server_process(db) as (proc, port):
        c = Client(port)
        assert c.login("alice", pw["alice"]).status == 303
        assert c.answer(1, "yes", "no", 1).status == 303
        assert c.answer(2, "no", "no", 3).status == 303
        open_page = c.get("/annotate/3")  # a form on screen when the server dies
        proc.send_signal(signal.SIGKILL)  # no shutdown hook, no flush: only committed data survives
        proc.wait(10)
    assert db_rows(db, "SELECT COUNT(*) AS n FROM annotations")[0]["n"] == 2
    assert db_rows(db, "PRAGMA journal_mode")[0][0] == "wal"
    with server_process(db, port=port) as (proc, port):  # same address, as a restarted service would have
        c2 = Client(port)
        c2.cookies = dict(c.cookies)  # the same browser, after the restart
        assert c2.get("/annotate").header("Location") == "/annotate/3"
        # Submitting the form that was open during the crash still works (session and token survived).
        form = {name: open_page.hidden(name) for name in ("csrf_token", "instance_id", "submission_id", "shown_at")}
        r = c2.post_form("/annotate/3", {**form, "acceptable_a": "yes", "acceptable_b": "yes", "choice": "5"})
        assert r.status == 303 and r.header("Location") == "/annotate/4"
    assert db_rows(db, "SELECT COUNT(*) AS n FROM annotations")[0]["n"] == 3


def test_sides_are_randomized_per_annotator_and_stable():
    ids = [f"i{k}" for k in range(400)]
    swapped = sum(store.is_swapped("seed-a", i) for i in ids)
    assert 150 < swapped < 250
    assert [store.is_swapped("seed-a", i) for i in ids] == [store.is_swapped("seed-a", i) for i in ids]
    assert [store.is_swapped("seed-a", i) for i in ids] != [store.is_swapped("seed-b", i) for i in ids]
    order_a = store.annotator_order("seed-a", ids, shuffle=True)
    assert sorted(order_a) == sorted(ids) and order_a != ids
    assert order_a != store.annotator_order("seed-b", ids, shuffle=True)
    # Adding instances later keeps the relative order of the old ones.
    grown = store.annotator_order("seed-a", ids + ["new1", "new2"], shuffle=True)
    assert [i for i in grown if i in set(ids)] == order_a
    assert store.annotator_order("seed-a", ids, shuffle=False) == ids


def test_changed_instance_in_an_annotated_database_is_refused(study, tmp_path):
    db, pw = study
    with running_server(db, shuffle=False) as port:
        c = Client(port)
        c.login("alice", pw["alice"])
        c.answer(1, "yes", "no", 1)
    rows = [json.loads(line) for line in COMPARISONS.read_text().splitlines()]
    rows[0]["completions"][0]["completion"] = "edited"
    changed = write_jsonl(tmp_path / "changed.jsonl", rows)
    with pytest.raises(TuluError, match=r"changed.jsonl:1: instance 'q1' differs"):
        with running_server(db, comparisons=changed):
            pass


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
def test_https_with_tls_cert_marks_cookies_secure(study, tmp_path):
    db, pw = study
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    import http.client

    with running_server(db, tls_cert=cert, tls_key=key) as port:
        ctx = ssl.create_default_context(cafile=str(cert))  # trust exactly this self-signed certificate
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        conn.request("GET", "/login")
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        assert "; Secure" in r.getheader("Set-Cookie") and r.getheader("Set-Cookie").startswith("__Host-")
        assert r.getheader("Strict-Transport-Security")
        conn.close()


def test_guidelines_page_default_and_custom(study, tmp_path):
    db, pw = study
    with running_server(db) as port:
        c = Client(port)
        assert c.get("/guidelines").header("Location") == "/login"
        c.login("alice", pw["alice"])
        page = c.get("/guidelines")
        assert page.status == 200 and "Is the response acceptable?" in page.text
    custom = tmp_path / "g.md"
    custom.write_text("# Our rules\n\nPrefer **short** answers. <script>x()</script>\n")
    with running_server(db, guidelines=custom) as port:
        c = Client(port)
        c.login("alice", pw["alice"])
        page = c.get("/guidelines")
        assert "<h3>Our rules</h3>" in page.text and "<strong>short</strong>" in page.text
        assert "&lt;script&gt;x()" in page.text


def test_two_studies_on_one_host_and_foreign_cookies_do_not_interfere(study, tmp_path):
    db, pw = study
    db2 = tmp_path / "other.sqlite"
    pw2 = make_users(db2, "alice")
    with running_server(db) as port1, running_server(db2) as port2:
        jar = {"jupyter token": '"x;y"', "bad": "a b c", "_xsrf": "2|abc|def"}  # cookies other local apps set
        c1, c2 = Client(port1), Client(port2)
        c1.cookies = c2.cookies = jar  # a browser shares cookies across ports of one host
        assert c1.login("alice", pw["alice"]).status == 303
        assert c2.login("alice", pw2["alice"]).status == 303
        assert c1.get("/annotate/1").status == 200 and c2.get("/annotate/1").status == 200


def test_json_api_round_trip_keeps_models_hidden(study):
    db, pw = study
    with running_server(db) as port:
        c = Client(port)
        assert c.get("/api/instances/1").status == 401
        c.login("alice", pw["alice"])
        page = c.get("/annotate/1")
        token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text).group(1)
        inst = json.loads(c.get("/api/instances/1").text)
        assert inst["position"] == 1 and inst["total"] == 5 and inst["latest"] is None
        assert "tulu-2-7b" not in json.dumps(inst) and "llama-2-7b-chat" not in json.dumps(inst)
        body = {"instance_id": inst["instance_id"], "submission_id": inst["submission_id"],
                "acceptable_a": False, "acceptable_b": True, "choice": 4, "comment": "via api"}  # fmt: skip
        r = c.post_json("/api/annotations", body, {"X-CSRF-Token": token})
        assert r.status == 201 and json.loads(r.text)["duplicate"] is False
        r = c.post_json("/api/annotations", body, {"X-CSRF-Token": token})
        assert r.status == 200 and json.loads(r.text)["duplicate"] is True
        again = json.loads(c.get("/api/instances/1").text)
        assert again["latest"]["choice"] == 4 and again["latest"]["acceptable_b"] is True
        assert (
            c.post_json("/api/annotations", {**body, "choice": 9, "submission_id": "x" * 10}, {"X-CSRF-Token": token}).status
            == 400
        )
        assert c.get("/api/instances/99").status == 404
    rows = db_rows(db, "SELECT * FROM annotations")
    assert len(rows) == 1 and rows[0]["comment"] == "via api"


def test_feedback_is_stored_per_model_and_shown_on_the_same_side(study):
    db, pw = study
    with running_server(db) as port:
        c = Client(port)
        c.login("alice", pw["alice"])
        for pos in range(1, 6):
            assert c.answer(pos, "yes", "no", 2, feedback_a=f"left {pos}", feedback_b=f"right {pos}").status == 303
        seed = db_rows(db, "SELECT order_seed FROM users WHERE name = 'alice'")[0]["order_seed"]
        order = store.annotator_order(seed, ["q1", "q2", "q3", "q4", "q5"], shuffle=True)
        for r in db_rows(db, "SELECT * FROM annotations"):
            pos = order.index(r["instance_id"]) + 1
            swapped = store.is_swapped(seed, r["instance_id"])
            assert bool(r["swapped"]) == swapped
            left_fb, right_fb = (r["feedback_2"], r["feedback_1"]) if swapped else (r["feedback_1"], r["feedback_2"])
            assert (left_fb, right_fb) == (f"left {pos}", f"right {pos}")
            assert (r["acceptable_2"], r["acceptable_1"]) == ((1, 0) if swapped else (0, 1))
            assert r["preference"] == (1 if swapped else -1)
            page = c.get(f"/annotate/{pos}").text
            assert page.index(f"left {pos}") < page.index(f"right {pos}")


def test_ipv6_loopback(study):
    import socket

    db, pw = study
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with running_server(db, host="::1") as port:
        c = Client(port, host="::1")
        assert c.login("alice", pw["alice"]).status == 303
        assert c.get("/annotate/1").status == 200
