"""The annotation web server: standard-library HTTP, cookie sessions, CSRF tokens, a strict CSP."""

from __future__ import annotations

import errno
import hmac
import json
import os
import re
import secrets
import selectors
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

from tulu_cli.errors import TuluError
from tulu_cli.human_eval import render, store
from tulu_cli.human_eval.comparisons import Comparison, load_comparisons

if TYPE_CHECKING:
    from tulu_cli.options.human_eval import ServeOptions

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
MAX_BODY = 256 * 1024
MAX_TEXT = 5000
# Sign-in limits. Every attempt, known name or not, costs one scrypt hash (~16 MiB and one core for
# tens of ms): 40 concurrent bad sign-ins once took the server from 70 to 676 MB and its health
# check from 3 to 806 ms. So only HASH_SLOTS hashes run at once (leaving at least half the cores
# for pages), at most HASH_QUEUE attempts wait for one (a waiting attempt costs a worker, not
# memory), and failures count per user name and per client address over a window, attempts in
# progress counting against their address.
LOGIN_WINDOW_S = 300
LOGIN_MAX_FAILURES = 5  # per user name
ADDRESS_MAX_FAILURES = 30  # per client address, attempts in progress included (behind a proxy all share one)
HASH_SLOTS = max(1, min(2, (os.cpu_count() or 2) // 2))
HASH_QUEUE = 64
HASH_WAIT_S = 10.0
RETRY_AFTER_S = 5
BUSY = "The server is busy signing others in; try again in a few seconds."
_SUBMISSION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
CHOICES = {1: "A is better", 2: "A is slightly better", 3: "Tie", 4: "B is slightly better", 5: "B is better"}


class SignInLimits:
    """Sign-in throttling and the bound on password hashing, shared by all request threads.

    Hashes run on HASH_SLOTS threads of their own, not on the request's thread: glibc gives each
    thread that allocates a malloc arena of its own and keeps freed memory there, so scrypt's
    16 MiB spread over dozens of request threads stayed resident (hundreds of MB) even when
    only one hash ran at a time.
    """

    def __init__(self, slots: int, queue: int, wait_s: float):
        self._hasher = ThreadPoolExecutor(slots, thread_name_prefix="tulu-he-hash")
        self._capacity, self._wait_s = slots + queue, wait_s
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._pending: Counter[str] = Counter()  # admitted attempts per address

    def _recent(self, key: tuple[str, str], now: float) -> int:
        q = self._failures.get(key)
        if q is None:
            return 0
        while q and q[0] < now - LOGIN_WINDOW_S:
            q.popleft()
        if not q:
            del self._failures[key]  # names tried once must not pile up in memory
        return len(q)

    @contextmanager
    def attempt(self, name: str, address: str) -> Iterator[tuple[int, str, int]]:
        """Admits one sign-in: yields (0, "", 0), else (HTTP status, message, Retry-After seconds) saying why not."""
        now = time.monotonic()
        with self._lock:
            if self._recent(("address", address), now) + self._pending[address] >= ADDRESS_MAX_FAILURES:
                refusal = (HTTPStatus.TOO_MANY_REQUESTS, "Too many failed sign-ins from your address; wait a few minutes.", LOGIN_WINDOW_S)
            elif self._recent(("user", name), now) >= LOGIN_MAX_FAILURES:
                refusal = (HTTPStatus.TOO_MANY_REQUESTS, "Too many failed sign-ins for this user; wait a few minutes.", LOGIN_WINDOW_S)
            elif sum(self._pending.values()) >= self._capacity:
                refusal = (HTTPStatus.SERVICE_UNAVAILABLE, BUSY, RETRY_AFTER_S)
            else:
                refusal = None
                self._pending[address] += 1
        if refusal is not None:
            yield refusal
            return
        try:
            yield 0, "", 0
        finally:
            with self._lock:
                self._pending[address] -= 1
                if not self._pending[address]:
                    del self._pending[address]

    def check_password(self, password: str, stored: str) -> bool | None:
        """The scrypt check on a hashing thread; None when none came free within HASH_WAIT_S."""
        future = self._hasher.submit(store.verify_password, password, stored)
        try:
            return future.result(timeout=self._wait_s)
        except TimeoutError:
            future.cancel()
            return None

    def close(self) -> None:
        self._hasher.shutdown(wait=False, cancel_futures=True)

    def failed(self, name: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (("user", name), ("address", address)):
                self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > 10_000:
                for key in list(self._failures):
                    self._recent(key, now)


class App:
    """State shared by request threads: the comparisons, the connection pool, sign-in limits."""

    def __init__(
        self,
        comparisons: list[Comparison],
        db: Path,
        *,
        shuffle: bool,
        secure_cookies: bool,
        session_hours: float,
        guidelines: str,
    ):
        self.guidelines_html = render.render_markdown(guidelines)
        self.comparisons = {c.id: c for c in comparisons}
        self.ids = [c.id for c in comparisons]
        self.pool = store.ConnectionPool(db)
        self.shuffle = shuffle
        self.secure = secure_cookies
        self.session_hours = session_hours
        self.name_cookies(0)
        self.sign_in = SignInLimits(HASH_SLOTS, HASH_QUEUE, HASH_WAIT_S)
        self._lock = threading.Lock()
        self._orders: dict[str, list[str]] = {}

    def name_cookies(self, port: int) -> None:
        # Browsers share cookies across ports of one host: the port in the name keeps two studies
        # served from one machine from signing each other out.
        prefix = "__Host-" if self.secure else ""
        self.session_cookie = f"{prefix}tulu_session_{port}"
        self.login_cookie = f"{prefix}tulu_login_{port}"

    def close(self) -> None:
        self.pool.close()
        self.sign_in.close()

    def order(self, user: store.User) -> list[str]:
        with self._lock:
            if user.order_seed not in self._orders:
                self._orders[user.order_seed] = store.annotator_order(user.order_seed, self.ids, self.shuffle)
            return self._orders[user.order_seed]


class Handler(BaseHTTPRequestHandler):
    """One request; routes are matched in ``_dispatch``. ``app`` is set on a subclass per server."""

    app: App
    protocol_version = "HTTP/1.1"
    server_version = "tulu-human-eval"
    sys_version = ""
    timeout = 60  # a stalled client cannot hold a worker forever
    access_log = False
    keep_alive = False  # set by handle(): the server then waits for this connection's next request

    # ---- plumbing --------------------------------------------------------------------------------

    def handle(self) -> None:
        # One request, plus any pipelined ones already read into our buffer (the server's selector
        # cannot see those); then the connection goes back to the server to wait without a thread.
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection and self._buffered():
            self.handle_one_request()
        self.keep_alive = not self.close_connection

    def _buffered(self) -> bool:
        sock = self.connection
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        sock.setblocking(False)
        try:
            return bool(self.rfile.peek(1))
        except OSError:  # nothing there yet (would block), or the peer is gone
            return False
        finally:
            sock.settimeout(self.timeout)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed by the base class
        if self.access_log:
            sys.stderr.write(f"{self.address_string()} [{self.log_date_time_string()}] {format % args}\n")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self._cookies_out: list[str] = []
        try:
            path = urlsplit(self.path).path
            for m, pattern, fn in ROUTES:
                if m == method and (match := pattern.fullmatch(path)):
                    fn(self, *match.groups())
                    return
            if any(pattern.fullmatch(path) for _, pattern, _ in ROUTES):
                self.send_text(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
            else:
                self.send_text(HTTPStatus.NOT_FOUND, "not found")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # a bug must not take the server down; the traceback goes to the log
            traceback.print_exc(file=sys.stderr)
            self.close_connection = True
            try:
                self.send_text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
            except OSError:
                pass

    def send(self, status: int, body: bytes, content_type: str, extra: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        if isinstance(self.connection, ssl.SSLSocket):
            self.send_header("Strict-Transport-Security", "max-age=31536000")
        for c in self._cookies_out:
            self.send_header("Set-Cookie", c)
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_html(self, status: int, body: bytes) -> None:
        self.send(status, body, "text/html; charset=utf-8")

    def send_text(self, status: int, text: str) -> None:
        self.send(status, text.encode() + b"\n", "text/plain; charset=utf-8")

    def send_json(self, status: int, obj: Any) -> None:
        self.send(status, json.dumps(obj).encode(), "application/json")

    def redirect(self, location: str) -> None:
        self.send(HTTPStatus.SEE_OTHER, b"", "text/plain", [("Location", location)])

    def set_cookie(self, name: str, value: str, max_age: int) -> None:
        attrs = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
        if self.app.secure:
            attrs.append("Secure")
        self._cookies_out.append("; ".join(attrs))

    def cookie(self, name: str) -> str | None:
        raw = self.headers.get("Cookie")
        if not raw:
            return None
        # Parsed leniently by hand: other apps on the same host may send cookies that the strict
        # http.cookies parser rejects, which would otherwise hide ours.
        for part in raw.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                return value.strip().strip('"')
        return None

    def read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.send_text(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
            return None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self.send_text(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
            return None
        return self.rfile.read(length)

    def read_form(self) -> dict[str, str] | None:
        body = self.read_body()
        if body is None:
            return None
        if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            self.send_text(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "expected a form (application/x-www-form-urlencoded)")
            return None
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=32)
        except (UnicodeDecodeError, ValueError):
            self.send_text(HTTPStatus.BAD_REQUEST, "malformed form")
            return None
        return {k: v[-1] for k, v in parsed.items()}

    def cross_site(self) -> bool:
        # Browsers say where a request comes from; a cross-site POST is refused before any token check.
        return self.headers.get("Sec-Fetch-Site", "") == "cross-site"

    def session(self) -> store.Session | None:
        with self.app.pool.get() as conn:
            return store.get_session(conn, self.cookie(self.app.session_cookie))

    def csrf_ok(self, sess: store.Session, supplied: str | None) -> bool:
        return bool(supplied) and not self.cross_site() and hmac.compare_digest(supplied.encode(), sess.csrf_token.encode())

    def refuse_csrf(self) -> None:
        self.send_text(HTTPStatus.FORBIDDEN, "CSRF check failed: reload the page and try again")

    # ---- sign-in ---------------------------------------------------------------------------------

    def login_page(self, status: int = 200, error: str = "", username: str = "", retry_after: int = 0) -> None:
        token = secrets.token_urlsafe(24)
        self.set_cookie(self.app.login_cookie, token, 3600)
        body = render.fill(
            "login.html",
            csrf=token,
            error=f'<p class="error">{render.esc(error)}</p>' if error else "",
            username=render.esc(username),
        )
        extra = [("Retry-After", str(retry_after))] if retry_after else []
        self.send(status, render.page("Sign in", body), "text/html; charset=utf-8", extra)

    def get_login(self) -> None:
        if self.session():
            self.redirect("/annotate")
        else:
            self.login_page()

    def post_login(self) -> None:
        form = self.read_form()
        if form is None:
            return
        expected = self.cookie(self.app.login_cookie)
        supplied = form.get("csrf_token", "")
        if self.cross_site() or not expected or not hmac.compare_digest(expected.encode(), supplied.encode()):
            self.refuse_csrf()
            return
        name, password = form.get("username", "").strip(), form.get("password", "")
        address = self.client_address[0]
        with self.app.sign_in.attempt(name, address) as (status, refusal, retry_after):
            if status:
                self.login_page(status, refusal, name, retry_after=retry_after)
                return
            with self.app.pool.get() as conn:
                found = store.find_user(conn, name)
            # An unknown name is checked against a dummy hash: it costs the same as a wrong password.
            ok = self.app.sign_in.check_password(password, found[1] if found else store.DUMMY_HASH)
            if ok is None:
                self.login_page(HTTPStatus.SERVICE_UNAVAILABLE, BUSY, name, retry_after=RETRY_AFTER_S)
                return
            user = found[0] if found and ok else None
            if user is None:
                self.app.sign_in.failed(name, address)  # while still pending, so the address count never dips
        if user is None:
            self.login_page(HTTPStatus.UNAUTHORIZED, "Wrong user name or password.", name)
            return
        with self.app.pool.get() as conn:
            token, _ = store.create_session(conn, user, self.app.session_hours)
        self.set_cookie(self.app.session_cookie, token, int(self.app.session_hours * 3600))
        self.set_cookie(self.app.login_cookie, "", 0)
        self.redirect("/annotate")

    def post_logout(self) -> None:
        form = self.read_form()
        if form is None:
            return
        sess = self.session()
        if sess is not None:
            if not self.csrf_ok(sess, form.get("csrf_token")):
                self.refuse_csrf()
                return
            with self.app.pool.get() as conn:
                store.delete_session(conn, self.cookie(self.app.session_cookie) or "")
        self.set_cookie(self.app.session_cookie, "", 0)
        self.redirect("/login")

    # ---- annotation pages ------------------------------------------------------------------------

    def require_session(self) -> store.Session | None:
        sess = self.session()
        if sess is None:
            if self.command == "GET":
                self.redirect("/login")
            else:
                self.send_text(HTTPStatus.UNAUTHORIZED, "sign in first")
        return sess

    def get_root(self) -> None:
        self.redirect("/annotate")

    def get_next(self) -> None:
        sess = self.require_session()
        if sess is None:
            return
        order = self.app.order(sess.user)
        with self.app.pool.get() as conn:
            done = store.answered_ids(conn, sess.user)
        nxt = next((i for i, cid in enumerate(order, 1) if cid not in done), None)
        self.redirect(f"/annotate/{nxt}" if nxt else "/overview")

    def nav(self, sess: store.Session) -> str:
        return '<a href="/annotate">Continue</a><a href="/overview">Overview</a><a href="/guidelines">Guidelines</a>'

    def get_annotate(self, pos: str) -> None:
        sess = self.require_session()
        if sess is None:
            return
        order = self.app.order(sess.user)
        n = int(pos)
        if not 1 <= n <= len(order):
            self.send_text(HTTPStatus.NOT_FOUND, f"no instance {n}: positions run from 1 to {len(order)}")
            return
        with self.app.pool.get() as conn:
            prev = store.latest_answer(conn, sess.user, order[n - 1])
            answered = len(store.answered_ids(conn, sess.user) & set(order))
        self.annotate_page(sess, n, answered, prev, HTTPStatus.OK)

    def annotate_page(
        self, sess: store.Session, n: int, answered: int, prev: Any, status: int, form: dict | None = None, error: str = ""
    ) -> None:
        order = self.app.order(sess.user)
        c = self.app.comparisons[order[n - 1]]
        swapped = store.is_swapped(sess.user.order_seed, c.id)
        left, right = (c.completion_2, c.completion_1) if swapped else (c.completion_1, c.completion_2)
        # Pre-fill: the values just submitted (after an error), else the latest stored answer, shown on its screen side.
        if form is not None:
            v = {k: form.get(k, "") for k in ("acceptable_a", "acceptable_b", "choice", "feedback_a", "feedback_b", "comment")}
        elif prev is not None:
            # Stored in model order; mapped to the sides this page shows.
            acc_l, acc_r = (
                (prev["acceptable_2"], prev["acceptable_1"]) if swapped else (prev["acceptable_1"], prev["acceptable_2"])
            )
            fb_l, fb_r = (prev["feedback_2"], prev["feedback_1"]) if swapped else (prev["feedback_1"], prev["feedback_2"])
            choice = 3 - prev["preference"] if swapped else prev["preference"] + 3
            v = {
                "acceptable_a": "yes" if acc_l else "no", "acceptable_b": "yes" if acc_r else "no", "choice": str(choice),
                "feedback_a": fb_l, "feedback_b": fb_r, "comment": prev["comment"],
            }  # fmt: skip
        else:
            v = {}
        checked = lambda key, value: " checked" if v.get(key) == value else ""  # noqa: E731
        total = len(order)
        prev_link = (
            f'<a class="button" rel="prev" href="/annotate/{n - 1}">&larr; Previous</a>'
            if n > 1
            else '<a class="button disabled" rel="prev">&larr; Previous</a>'
        )
        next_link = (
            f'<a class="button" rel="next" href="/annotate/{n + 1}">Skip &rarr;</a>'
            if n < total
            else '<a class="button" rel="next" href="/overview">Overview &rarr;</a>'
        )
        body = render.fill(
            "annotate.html",
            position=str(n), total=str(total), answered=str(answered),
            status=' <span class="tag">answered · saving again records a new revision</span>' if prev is not None else "",
            error=f'<p class="error">{render.esc(error)}</p>' if error else "",
            prompt=render.render_markdown(c.prompt), left=render.render_markdown(left), right=render.render_markdown(right),
            csrf=render.esc(sess.csrf_token), instance_id=render.esc(c.id), submission_id=secrets.token_urlsafe(16),
            shown_at=str(int(time.time() * 1000)),
            acc_a_yes=checked("acceptable_a", "yes"), acc_a_no=checked("acceptable_a", "no"),
            acc_b_yes=checked("acceptable_b", "yes"), acc_b_no=checked("acceptable_b", "no"),
            c1=checked("choice", "1"), c2=checked("choice", "2"), c3=checked("choice", "3"), c4=checked("choice", "4"), c5=checked("choice", "5"),
            feedback_a=render.esc(v.get("feedback_a", "")), feedback_b=render.esc(v.get("feedback_b", "")),
            comment=render.esc(v.get("comment", "")), prev_link=prev_link, next_link=next_link,
        )  # fmt: skip
        self.send_html(
            status, render.page(f"{n} of {total}", body, user=sess.user.name, csrf=sess.csrf_token, nav=self.nav(sess))
        )

    def post_annotate(self, pos: str) -> None:
        form = self.read_form()
        if form is None:
            return
        sess = self.require_session()
        if sess is None:
            return
        if not self.csrf_ok(sess, form.get("csrf_token")):
            self.refuse_csrf()
            return
        order = self.app.order(sess.user)
        n = int(pos)
        if not 1 <= n <= len(order):
            self.send_text(HTTPStatus.NOT_FOUND, f"no instance {n}")
            return
        try:
            answer, submission_id = self.parse_answer(sess, form, order[n - 1])
        except ValueError as e:
            with self.app.pool.get() as conn:
                answered = len(store.answered_ids(conn, sess.user) & set(order))
            self.annotate_page(sess, n, answered, None, HTTPStatus.BAD_REQUEST, form, str(e))
            return
        with self.app.pool.get() as conn:
            store.save_answer(conn, sess.user, self.app.comparisons[order[n - 1]], answer, submission_id)
        self.redirect(f"/annotate/{n + 1}" if n < len(order) else "/overview")

    def parse_answer(self, sess: store.Session, form: dict[str, Any], expected_id: str) -> tuple[store.Answer, str]:
        """Validate a submission (form strings or JSON values); ValueError carries the message for the annotator."""
        if str(form.get("instance_id", "")) != expected_id:
            raise ValueError("This page was out of date (the instance changed); please answer again.")
        submission_id = str(form.get("submission_id", ""))
        if not _SUBMISSION_ID.match(submission_id):
            raise ValueError("Missing submission id; reload the page.")

        def yes_no(key: str, label: str) -> bool:
            value = form.get(key)
            if value in ("yes", True):
                return True
            if value in ("no", False):
                return False
            raise ValueError(f"Say whether response {label} is acceptable.")

        acc_a, acc_b = yes_no("acceptable_a", "A"), yes_no("acceptable_b", "B")
        raw = form.get("choice")
        choice = int(raw) if (isinstance(raw, str) and raw.isdigit()) or type(raw) is int else 0
        if choice not in CHOICES:
            raise ValueError("Choose which response is better (1-5).")
        texts = {}
        for key in ("feedback_a", "feedback_b", "comment"):
            t = form.get(key) or ""
            if not isinstance(t, str) or len(t) > MAX_TEXT:
                raise ValueError(f"'{key}' must be text of at most {MAX_TEXT} characters.")
            texts[key] = t.strip()
        elapsed = None
        try:
            elapsed = max(0, min(int(time.time() * 1000) - int(form.get("shown_at", "")), 86_400_000))
        except (TypeError, ValueError):
            pass
        swapped = store.is_swapped(sess.user.order_seed, expected_id)
        answer = store.Answer(
            expected_id, swapped, acc_a, acc_b, choice, texts["feedback_a"], texts["feedback_b"], texts["comment"], elapsed
        )
        return answer, submission_id

    def get_overview(self) -> None:
        sess = self.require_session()
        if sess is None:
            return
        order = self.app.order(sess.user)
        with self.app.pool.get() as conn:
            done = store.answered_ids(conn, sess.user)
        answered = sum(1 for cid in order if cid in done)
        cells = "".join(
            f'<li><a href="/annotate/{i}"{" class=done" if cid in done else ""} title="{"answered" if cid in done else "not answered yet"}">{i}</a></li>'
            for i, cid in enumerate(order, 1)
        )
        finished = answered == len(order)
        body = render.fill(
            "overview.html",
            headline="All done, thank you!" if finished else "Overview",
            answered=str(answered), total=str(len(order)), cells=cells,
            continue_label="Review from the start" if finished else "Continue with the next unanswered instance",
        )  # fmt: skip
        self.send_html(200, render.page("Overview", body, user=sess.user.name, csrf=sess.csrf_token, nav=self.nav(sess)))

    def get_guidelines(self) -> None:
        sess = self.require_session()
        if sess is None:
            return
        body = f'<section class="card md guidelines">{self.app.guidelines_html}</section>'
        self.send_html(200, render.page("Guidelines", body, user=sess.user.name, csrf=sess.csrf_token, nav=self.nav(sess)))

    # ---- JSON API (same rules: a session cookie plus the CSRF token in X-CSRF-Token) ----------------

    def get_api_progress(self) -> None:
        sess = self.session()
        if sess is None:
            self.send_json(HTTPStatus.UNAUTHORIZED, {"error": "sign in first"})
            return
        order = self.app.order(sess.user)
        with self.app.pool.get() as conn:
            done = store.answered_ids(conn, sess.user)
        nxt = next((i for i, cid in enumerate(order, 1) if cid not in done), None)
        self.send_json(
            200, {"user": sess.user.name, "answered": sum(c in done for c in order), "total": len(order), "next_position": nxt}
        )

    def get_api_instance(self, pos: str) -> None:
        sess = self.session()
        if sess is None:
            self.send_json(HTTPStatus.UNAUTHORIZED, {"error": "sign in first"})
            return
        order = self.app.order(sess.user)
        n = int(pos)
        if not 1 <= n <= len(order):
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"positions run from 1 to {len(order)}"})
            return
        c = self.app.comparisons[order[n - 1]]
        swapped = store.is_swapped(sess.user.order_seed, c.id)
        with self.app.pool.get() as conn:
            prev = store.latest_answer(conn, sess.user, c.id)
        latest = None
        if prev is not None:
            acc = (prev["acceptable_2"], prev["acceptable_1"]) if swapped else (prev["acceptable_1"], prev["acceptable_2"])
            latest = {
                "acceptable_a": bool(acc[0]), "acceptable_b": bool(acc[1]), "choice": prev["shown_choice"],
                "comment": prev["comment"], "created_at": prev["created_at"],
            }  # fmt: skip
        # Model names stay hidden here too: the annotator (or their script) only ever sees A and B.
        self.send_json(200, {
            "position": n, "total": len(order), "instance_id": c.id, "prompt": c.prompt,
            "response_a": c.completion_2 if swapped else c.completion_1,
            "response_b": c.completion_1 if swapped else c.completion_2,
            "latest": latest, "submission_id": secrets.token_urlsafe(16),
        })  # fmt: skip

    def post_api_annotation(self) -> None:
        body = self.read_body()
        if body is None:
            return
        sess = self.session()
        if sess is None:
            self.send_json(HTTPStatus.UNAUTHORIZED, {"error": "sign in first"})
            return
        if not self.csrf_ok(sess, self.headers.get("X-CSRF-Token")):
            self.send_json(HTTPStatus.FORBIDDEN, {"error": "CSRF check failed: send the page's csrf-token in X-CSRF-Token"})
            return
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            self.send_json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "expected application/json"})
            return
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            cid = str(data.get("instance_id", ""))
            if cid not in self.app.comparisons:
                raise ValueError(f"unknown instance_id {cid!r}")
            answer, submission_id = self.parse_answer(sess, data, cid)
        except ValueError as e:
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            return
        with self.app.pool.get() as conn:
            stored = store.save_answer(conn, sess.user, self.app.comparisons[cid], answer, submission_id)
        self.send_json(
            HTTPStatus.CREATED if stored else HTTPStatus.OK,
            {"saved": True, "duplicate": not stored, "preference": answer.preference},
        )

    # ---- static files and health -------------------------------------------------------------------

    def get_static(self, name: str) -> None:
        kind = STATIC.get(name)
        if kind is None:
            self.send_text(HTTPStatus.NOT_FOUND, "not found")
            return
        self.send(200, render.asset(name), kind)

    def get_health(self) -> None:
        self.send_text(200, "ok")

    def get_favicon(self) -> None:
        self.send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")


STATIC = {"style.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}

ROUTES: list[tuple[str, re.Pattern[str], Callable[..., None]]] = [
    (m, re.compile(p), fn)
    for m, p, fn in [
        ("GET", r"/", Handler.get_root),
        ("GET", r"/login", Handler.get_login),
        ("POST", r"/login", Handler.post_login),
        ("POST", r"/logout", Handler.post_logout),
        ("GET", r"/annotate", Handler.get_next),
        ("GET", r"/annotate/(\d{1,9})", Handler.get_annotate),
        ("POST", r"/annotate/(\d{1,9})", Handler.post_annotate),
        ("GET", r"/overview", Handler.get_overview),
        ("GET", r"/guidelines", Handler.get_guidelines),
        ("GET", r"/api/progress", Handler.get_api_progress),
        ("GET", r"/api/instances/(\d{1,9})", Handler.get_api_instance),
        ("POST", r"/api/annotations", Handler.post_api_annotation),
        ("GET", r"/static/([a-z]+\.(?:css|js))", Handler.get_static),
        ("GET", r"/healthz", Handler.get_health),
        ("GET", r"/favicon.ico", Handler.get_favicon),
    ]
]


class _Conn:
    """One client connection while the server holds it: waiting in the selector (``since`` = idle since) or in a worker."""

    __slots__ = ("sock", "address", "since")

    def __init__(self, sock: socket.socket, address: Any):
        self.sock, self.address, self.since = sock, address, time.monotonic()


_LISTEN, _WAKE = object(), object()


def _peer_closed(sock: socket.socket) -> bool:
    """Whether a readable connection was closed by the client (peeks at the raw bytes, TLS or not; never blocks)."""
    try:
        return socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


class Server(HTTPServer):
    """One thread accepts connections and watches the idle ones; a bounded pool of workers runs requests.

    A thread per connection (ThreadingHTTPServer) turned 1200 idle keep-alive connections into 1200
    threads blocked in a read; when the clients closed them all at once, every thread woke up and
    their contention for the interpreter lock stalled all other requests for seconds. Here an idle
    connection is only a socket in a selector, and one the client closed is dropped by the loop
    thread without waking a worker.
    """

    request_queue_size = 128
    max_workers = 128  # requests in progress at once; each holds a worker while it reads and writes
    idle_timeout = 60.0  # seconds a keep-alive connection may wait for its next request
    app: App

    def __init__(self, address: tuple, handler: type[BaseHTTPRequestHandler]):
        # Set up first: a failed bind calls server_close() from the base constructor.
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._workers = ThreadPoolExecutor(self.max_workers, thread_name_prefix="tulu-he")
        self._idle: dict[socket.socket, _Conn] = {}  # loop thread only
        self._returned: deque[_Conn] = deque()  # handed back by workers after a keep-alive request
        self._open: set[_Conn] = set()
        self._lock = threading.Lock()
        self._stop, self._stopped = threading.Event(), threading.Event()
        self._stopped.set()
        super().__init__(address, handler)

    # ---- the loop thread -----------------------------------------------------------------------------

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        self.socket.setblocking(False)
        self._selector.register(self.socket, selectors.EVENT_READ, _LISTEN)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        next_sweep = time.monotonic() + 1.0
        try:
            while not self._stop.is_set():
                for key, _ in self._selector.select(poll_interval):
                    if key.data is _LISTEN:
                        self._accept()
                    elif key.data is _WAKE:
                        self._take_back()
                    elif key.fileobj in self._idle:
                        self._readable(key.data)
                if time.monotonic() >= next_sweep:
                    self._drop_idle(time.monotonic() - self.idle_timeout)
                    next_sweep = time.monotonic() + 1.0
        finally:
            for s in (self.socket, self._wake_r):
                try:
                    self._selector.unregister(s)
                except (KeyError, ValueError):
                    pass
            self._stopped.set()

    def _accept(self) -> None:
        for _ in range(64):  # a burst at a time, so the other sockets get their turn
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE) and self._idle:
                    # Out of file descriptors: make room by dropping the connection idle the longest.
                    self._drop(min(self._idle.values(), key=lambda c: c.since))
                    continue
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    time.sleep(0.05)  # nothing to drop: do not spin on a listening socket that stays readable
                return
            sock.setblocking(True)
            conn = _Conn(sock, address)
            with self._lock:
                self._open.add(conn)
            self._watch(conn)

    def _watch(self, conn: _Conn) -> None:
        if self._stop.is_set():
            self._close(conn)
            return
        conn.since = time.monotonic()
        self._idle[conn.sock] = conn
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _forget(self, conn: _Conn) -> None:
        del self._idle[conn.sock]
        self._selector.unregister(conn.sock)

    def _drop(self, conn: _Conn) -> None:
        self._forget(conn)
        self._close(conn)

    def _readable(self, conn: _Conn) -> None:
        self._forget(conn)
        if _peer_closed(conn.sock):
            self._close(conn)
        else:
            self._workers.submit(self._serve, conn)

    def _take_back(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._returned:
            self._watch(self._returned.popleft())

    def _drop_idle(self, cutoff: float) -> None:
        for conn in [c for c in self._idle.values() if c.since < cutoff]:
            self._drop(conn)

    # ---- workers ---------------------------------------------------------------------------------------

    def _serve(self, conn: _Conn) -> None:
        keep = False
        try:
            keep = self.RequestHandlerClass(conn.sock, conn.address, self).keep_alive
        except OSError:
            pass  # the client went away mid-request (reset, failed TLS handshake)
        except Exception:  # a bug must not take the server down; the traceback goes to the log
            traceback.print_exc(file=sys.stderr)
        if keep and not self._stop.is_set():
            self._returned.append(conn)
            self._wake()
        else:
            self._close(conn)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # buffer full (a wake-up is already pending) or closed at shutdown
            pass

    def _close(self, conn: _Conn) -> None:
        with self._lock:
            self._open.discard(conn)
        self.shutdown_request(conn.sock)

    # ---- stopping --------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop serve_forever (from another thread) and wait until it has returned."""
        self._stop.set()
        self._wake()
        self._stopped.wait()

    def server_close(self) -> None:
        self._stop.set()
        self._wake()
        self._stopped.wait(10)
        super().server_close()
        with self._lock:
            busy = list(self._open)
        for conn in busy:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)  # wakes a worker blocked reading from it
            except OSError:
                pass
        for conn in list(self._idle.values()):
            self._drop(conn)
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


class Server6(Server):
    address_family = socket.AF_INET6


def _read_guidelines(path: Path | None) -> str:
    if path is None:
        return render.asset("guidelines.md").decode("utf-8")
    where = f"--guidelines {path}"
    if path.is_dir():
        raise TuluError(f"{where}: is a folder; give a markdown file")
    if not path.is_file():
        raise TuluError(f"{where}: file does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TuluError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise TuluError(f"{where}: cannot read the file ({e.strerror or e})") from None


def _tls_context(opts: "ServeOptions") -> ssl.SSLContext | None:
    if not opts.tls_cert:
        return None
    for flag, path in (("--tls-cert", opts.tls_cert), ("--tls-key", opts.tls_key)):
        if not path.is_file():
            raise TuluError(f"{flag} {path}: " + ("is a folder" if path.is_dir() else "file does not exist"))
        if not os.access(path, os.R_OK):
            raise TuluError(f"{flag} {path}: cannot read the file (permission denied)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(opts.tls_cert), str(opts.tls_key))
    except (OSError, ssl.SSLError) as e:
        raise TuluError(f"--tls-cert/--tls-key: cannot load the certificate and key: {e}") from None
    return ctx


def _preflight(opts: "ServeOptions") -> tuple[list[Comparison], str, ssl.SSLContext | None, bool]:
    """Every check of ``serve`` that needs neither the port nor a write: comparisons, guidelines, TLS
    files, --db path (the last value: whether the database exists)."""
    if not opts.host.strip():
        raise TuluError("--host: empty; give an address such as 127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces)")
    comparisons = load_comparisons(opts.comparisons)
    guidelines = _read_guidelines(opts.guidelines)
    tls = _tls_context(opts)
    exists = store.check_db_path(opts.db, write=True, must_exist=False)
    return comparisons, guidelines, tls, exists


def _bind(opts: "ServeOptions", handler: type[BaseHTTPRequestHandler]) -> Server:
    cls = Server6 if ":" in opts.host else Server
    try:
        return cls((opts.host, opts.port), handler)
    except (OSError, OverflowError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise TuluError(f"--host/--port: cannot listen on {opts.host}:{opts.port}: {reason}") from None


def check_serve(opts: "ServeOptions") -> None:
    """What ``serve --dry-run`` checks: everything a real start checks, with the port bound and
    released and the database only read."""
    comparisons, _, _, exists = _preflight(opts)
    if exists and opts.db.stat().st_size:
        conn = store.open_db_for_reading(opts.db, allow_empty=True)
        try:
            store.check_instances(conn, comparisons, str(opts.comparisons))
        finally:
            conn.close()
    _bind(opts, BaseHTTPRequestHandler).server_close()


def make_server(opts: "ServeOptions") -> Server:
    """Check everything, bind (port 0 picks a free port; see ``server.server_address``), then store
    the comparisons. A refused start leaves no database file behind."""
    comparisons, guidelines, tls, exists = _preflight(opts)
    app = App(
        comparisons, opts.db, shuffle=opts.shuffle, secure_cookies=bool(opts.secure_cookies or opts.tls_cert),
        session_hours=opts.session_hours, guidelines=guidelines,
    )  # fmt: skip
    handler = type("BoundHandler", (Handler,), {"app": app, "access_log": opts.access_log})
    server = _bind(opts, handler)
    try:
        conn = store.open_db(opts.db)
        try:
            store.sync_instances(conn, comparisons, str(opts.comparisons))
        finally:
            conn.close()
    except BaseException:
        server.server_close()
        if not exists:
            store.remove_db_files(opts.db)
        raise
    server.app = app
    app.name_cookies(server.server_address[1])
    if tls is not None:
        # The handshake happens in a worker, so a slow client does not block accept().
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return server


def serve(opts: "ServeOptions") -> None:
    """Run until Ctrl+C or SIGTERM; every answer is committed before its response is sent."""
    server = make_server(opts)
    previous = None
    try:
        host, port = server.server_address[:2]
        scheme = "https" if opts.tls_cert else "http"
        with server.app.pool.get() as conn:
            users = store.list_users(conn)
        print(
            f"tulu human-eval: {len(server.app.ids)} comparisons, database {opts.db}, {len(users)} annotator account(s)", flush=True
        )
        if not users:
            print(f"  no accounts yet: create one with  tulu human-eval add-user NAME --db {opts.db}", flush=True)
        if host not in ("127.0.0.1", "::1", "localhost") and not opts.tls_cert:
            print("  warning: listening beyond loopback without TLS; passwords and cookies cross the network in clear."
                  " Use --tls-cert/--tls-key, or a TLS reverse proxy with --secure-cookies.", flush=True)  # fmt: skip
        shown = f"[{host}]" if ":" in host else host
        print(f"listening on {scheme}://{shown}:{port}/  (Ctrl+C to stop)", flush=True)

        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, stop)
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        server.server_close()
        server.app.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
