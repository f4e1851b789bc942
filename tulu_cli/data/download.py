"""Downloads: resumable HTTP fetch with progress, a cache, sha256 checks, atomic completion; hub files via huggingface_hub metadata."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import NamedTuple

from tulu_cli.errors import TuluError
from tulu_cli.paths import cache_root, sha256_file

CHUNK = 1 << 16
ATTEMPTS = 5  # a dropped connection is retried (resuming) this many times before giving up
TIMEOUT = 60.0
RETRY_STATUS = (408, 429, 500, 502, 503, 504)  # transient server answers: retried like a dropped connection
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


def hf_endpoint() -> str:
    """Base URL of the Hugging Face hub: TULU_HF_ENDPOINT, else HF_ENDPOINT, else huggingface.co."""
    return (os.environ.get("TULU_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")


def hf_dataset_url(repo: str, filename: str, revision: str = "main") -> str:
    """URL of one file of a Hugging Face dataset repository (honours the endpoint override)."""
    return f"{hf_endpoint()}/datasets/{repo}/resolve/{revision}/{urllib.parse.quote(filename)}"


def resolve_url(url: str) -> str:
    """Expand ``hf://<owner>/<repo>/<file>[@rev]`` (how sources name Hugging Face dataset files).

    A URL written with the public hub's address goes to the configured endpoint instead, so a
    mirror set in HF_ENDPOINT serves every hub file, whichever way its task spelled it.
    """
    if url.startswith(DEFAULT_HF_ENDPOINT + "/"):
        return hf_endpoint() + url[len(DEFAULT_HF_ENDPOINT):]
    if not url.startswith("hf://"):
        return url
    rest, _, rev = url[len("hf://"):].partition("@")
    owner, repo, filename = rest.split("/", 2)
    return hf_dataset_url(f"{owner}/{repo}", filename, rev or "main")


def _file_name(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name
    return name or "download"


def _cache_path(key: str, cache_dir: Path, name: str) -> Path:
    # The key's hash (URL, plus the etag for hub files) keeps two files with the same base name (two repos'
    # train.jsonl, or one file before and after it changed upstream) apart.
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return cache_dir / f"{digest}-{name}"


def _hub_token() -> str | None:
    """The user's Hugging Face token as huggingface_hub finds it (HF_TOKEN, HUGGING_FACE_HUB_TOKEN, `hf auth login`)."""
    from huggingface_hub import get_token

    return get_token()


def _auth_headers(url: str) -> dict[str, str]:
    """A Hugging Face token is sent only to the hub's own host."""
    if urllib.parse.urlparse(url).netloc != urllib.parse.urlparse(hf_endpoint()).netloc:
        return {}
    token = _hub_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


class _ScopedRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, deciding the token afresh for each target.

    urllib copies a request's headers onto the redirected request, whatever its host; the hub
    redirects file downloads to a storage host that must never see the user's token.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.headers.pop("Authorization", None)
            new.unredirected_hdrs.pop("Authorization", None)
            for key, value in _auth_headers(newurl).items():
                new.add_unredirected_header(key, value)
        return new


_OPENER = urllib.request.build_opener(_ScopedRedirect)


class NeedsToken(TuluError):
    """HTTP 401/403: the file is gated or private."""


class Gone(TuluError):
    """HTTP 404/410: nothing at this address any more."""


def _http_error(url: str, code: int, reason: str) -> TuluError:
    if code in (401, 403):
        return NeedsToken(
            f"{url}: HTTP {code} ({reason}): this file needs a token or accepted terms of use. "
            "Accept the dataset's terms on its page, set HF_TOKEN, or download it yourself and pass --raw-dir"
        )
    if code in (404, 410):
        return Gone(
            f"{url}: HTTP {code} ({reason}): the file is gone from this address (removed or moved upstream). "
            "Get a copy elsewhere and pass --raw-dir"
        )
    return TuluError(f"{url}: HTTP {code} ({reason})")


class _Dropped(Exception):
    """The connection ended before the promised bytes arrived; the next attempt resumes."""


def _progress_bar(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )


def _download_once(url: str, part: Path, progress, task, label: str) -> None:
    """One HTTP request appending to ``part`` (resuming from its size); raises _Dropped on a short read.

    ``label`` is the address errors name: the user's, not a storage host's signed one the hub redirected to.
    """
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "tulu-cli"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    for key, value in _auth_headers(url).items():
        req.add_unredirected_header(key, value)  # not copied by urllib on a redirect (see _ScopedRedirect)
    try:
        resp = _OPENER.open(req, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            # The partial file does not fit the remote one any more (changed upstream): start over.
            part.unlink()
            raise _Dropped("range not satisfiable") from None
        if e.code in RETRY_STATUS:
            raise _Dropped(f"HTTP {e.code} ({e.reason})") from None
        raise _http_error(label, e.code, e.reason) from None
    except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise _Dropped(f"cannot connect: {reason}") from None
    with resp:
        status = resp.status
        mode = "ab"
        if status == 200:
            # The server ignored the Range header: restart from byte 0.
            have, mode = 0, "wb"
        elif status == 206:
            cr = resp.headers.get("Content-Range", "")
            start = cr.split(" ", 1)[-1].split("-", 1)[0]
            if not start.isdigit() or int(start) != have:
                part.unlink(missing_ok=True)
                raise _Dropped(f"server answered an unexpected range '{cr}'")
        length = resp.headers.get("Content-Length")
        expected = have + int(length) if length and length.isdigit() else None
        progress.update(task, total=expected, completed=have)
        got = have
        with open(part, mode) as f:
            try:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    got += len(block)
                    progress.update(task, completed=got)
            except (OSError, socket.timeout, http.client.HTTPException) as e:
                raise _Dropped(f"connection lost after {got} bytes: {e}") from None
        if expected is not None and got < expected:
            raise _Dropped(f"connection closed after {got} of {expected} bytes")


def _download(url: str, target: Path, progress: bool, label: str) -> None:
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    last = ""
    started = time.monotonic()
    with _progress_bar(progress) as bar:
        # Without a terminal (CI, batch jobs) the bar is off: one line per file instead.
        plain = progress and bar.disable
        if plain:
            bar.console.print(f"downloading {label}", highlight=False, soft_wrap=True)
        task = bar.add_task(_file_name(label), total=None)
        failures = 0  # consecutive attempts that added no byte: a flaky but moving download never gives up
        while True:
            size = part.stat().st_size if part.exists() else 0
            try:
                _download_once(url, part, bar, task, label)
                break
            except _Dropped as e:
                last = str(e)
                grew = part.exists() and part.stat().st_size > size
                failures = 0 if grew else failures + 1
                if failures >= ATTEMPTS:
                    kept = f"; the partial file {part} is kept and the next run resumes it" if part.exists() else ""
                    raise TuluError(
                        f"{label}: download failed after {ATTEMPTS} attempts ({last}){kept}. "
                        "Offline? Download the file yourself and pass --raw-dir"
                    ) from None
                time.sleep(min(0.2 * 2 ** max(failures - 1, 0), 5.0))
    os.replace(part, target)
    if plain:
        size = target.stat().st_size / 1e6
        bar.console.print(f"downloaded {target.name}: {size:,.1f} MB in {time.monotonic() - started:,.1f} s", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _exclusive(target: Path, lock_dir: Path):
    """Hold a lock beside ``target`` so two processes never append to the same .part file."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; concurrent runs there are on the user
        yield
        return
    # Locks live in the cache folder, not beside the file, so no debris is left next to outputs.
    key = hashlib.sha256(str(target.resolve()).encode("utf-8")).hexdigest()[:24]
    lock_path = lock_dir / "locks" / f"{key}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check_sha(url: str, path: Path, sha256: str | None) -> None:
    if sha256 is None:
        return
    actual = sha256_file(path)
    if actual.lower() != sha256.lower():
        path.unlink(missing_ok=True)
        raise TuluError(
            f"{url}: sha256 mismatch: expected {sha256.lower()}, got {actual} (the bad file was deleted; "
            "the upstream file may have changed)"
        )


_HUB_FILE = re.compile(r"/datasets/[^/]+/[^/]+/resolve/[^/]+/.+")  # /datasets/<owner>/<repo>/resolve/<revision>/<file>
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_SHA1 = re.compile(r"[0-9a-f]{40}")


def _is_hub_file(url: str) -> bool:
    """A dataset file on the configured hub (``resolve_url`` has already mapped hf:// and huggingface.co there)."""
    base = hf_endpoint()
    return url.startswith(base + "/") and _HUB_FILE.fullmatch(urllib.parse.urlparse(url).path) is not None


class HubFile(NamedTuple):
    """What the hub says about one file before its bytes are fetched."""

    etag: str  # a content hash (see _check_etag)
    location: str  # where the bytes are: the file itself, or the storage host the hub redirects to


def hub_metadata(url: str) -> HubFile:
    """HEAD a hub file through huggingface_hub (its auth, same-hub redirects, X-Repo-Commit and ETag headers).

    Transient failures (connection, 408/429/5xx) are retried like a download; the rest become the downloader's
    one-line errors (401/403 needs a token, 404 gone, HF_HUB_OFFLINE set).
    """
    from huggingface_hub import get_hf_file_metadata
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    last = ""
    for attempt in range(ATTEMPTS):
        try:
            meta = get_hf_file_metadata(url, token=_hub_token() or False, endpoint=hf_endpoint(), user_agent="tulu-cli")
            break
        except OfflineModeIsEnabled:
            raise TuluError(
                f"{url}: HF_HUB_OFFLINE is set, so hub files are not downloaded. Unset it, or download the file yourself and pass --raw-dir"
            ) from None
        except HfHubHTTPError as e:
            code = e.response.status_code
            if code not in RETRY_STATUS:
                raise _http_error(url, code, e.response.reason_phrase) from None
            last = f"HTTP {code} ({e.response.reason_phrase})"
        except (_transport_error(), OSError) as e:
            last = f"cannot connect: {e}"
        if attempt + 1 < ATTEMPTS:
            time.sleep(min(0.2 * 2**attempt, 5.0))
    else:
        raise TuluError(f"{url}: download failed after {ATTEMPTS} attempts ({last}). Offline? Download the file yourself and pass --raw-dir")
    if not meta.commit_hash or not meta.etag:
        raise TuluError(f"{url}: the server's answer lacks the hub's X-Repo-Commit/ETag headers: is HF_ENDPOINT a Hugging Face hub?")
    return HubFile(meta.etag, urllib.parse.urljoin(url, meta.location))


def _transport_error() -> type[Exception]:
    """The connection-level error class of the HTTP client huggingface_hub uses (httpx2 or httpx, by its version)."""
    try:
        from httpx2 import TransportError
    except ImportError:
        from httpx import TransportError
    return TransportError


def _git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_etag(url: str, path: Path, hub: HubFile) -> None:
    """The hub's etag is a content hash: sha256 for LFS/Xet files, the git blob sha1 for small ones; check whichever it is."""
    etag = hub.etag.lower()
    if _SHA256.fullmatch(etag):
        actual = sha256_file(path)
    elif _GIT_SHA1.fullmatch(etag):
        actual = _git_blob_sha1(path)
    else:
        return  # an etag of another form says nothing checkable about the bytes
    if actual != etag:
        path.unlink(missing_ok=True)
        raise TuluError(
            f"{url}: the downloaded bytes do not match the hub's etag {etag} (got {actual}; the file changed upstream "
            "during the download or was corrupted in transit); the bad file was deleted, run again"
        )


def _copy_atomic(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` and return the final path.

    ``dest`` is a file path, or an existing folder (the URL's file name is used inside it).
    A partial download is kept as ``<file>.part`` and resumed with an HTTP Range request, both
    within one call (dropped connections are retried) and across calls. With ``cache_dir``
    the file is downloaded once into the cache and copied to ``dest`` after. ``sha256`` is
    verified before the file appears at its final name. ``file://`` URLs and plain paths are
    copied; ``hf://owner/repo/file[@revision]`` means a Hugging Face dataset file (see ``hf_endpoint``): for
    those and for hub ``/datasets/.../resolve/...`` URLs huggingface_hub reads the file's metadata first (commit,
    etag, where the bytes are), the etag keys the cache and is checked against the bytes. Errors a user can act
    on (401/403 needs a token, 404 gone, checksum mismatch, network unreachable, HF_HUB_OFFLINE) raise TuluError.
    """
    url = resolve_url(url)
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / _file_name(url)
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file"):
        src = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else url)
        if not src.is_file():
            raise TuluError(f"{src}: file does not exist")
        if sha256 is not None and sha256_file(src).lower() != sha256.lower():
            raise TuluError(f"{src}: sha256 mismatch: expected {sha256.lower()}, got {sha256_file(src)}")
        if src.resolve() != dest.resolve():
            _copy_atomic(src, dest)
        return dest
    if parsed.scheme not in ("http", "https"):
        raise TuluError(f"{url}: unsupported URL scheme '{parsed.scheme}' (use http, https, file or a path)")

    if dest.is_file() and (sha256 is None or sha256_file(dest).lower() == sha256.lower()):
        return dest
    # A hub file is asked about first: its etag keys the cache (a branch that moved is a new file, never a stale
    # copy) and checks the bytes; they come from where the hub points, the token going to the hub's host only.
    hub = hub_metadata(url) if _is_hub_file(url) else None
    source = hub.location if hub is not None else url
    key = f"{url}@{hub.etag}" if hub is not None else url
    target = _cache_path(key, Path(cache_dir), _file_name(url)) if cache_dir is not None else dest
    with _exclusive(target, Path(cache_dir) if cache_dir is not None else cache_root()):
        if target.is_file() and sha256 is not None and sha256_file(target).lower() != sha256.lower():
            target.unlink()  # stale or corrupted copy: fetch it again rather than fail
        if not target.is_file():  # another process may have finished it while we waited
            _download(source, target, progress, label=url)
            if hub is not None:
                _check_etag(url, target, hub)
        _check_sha(url, target, sha256)
    if target != dest:
        _copy_atomic(target, dest)
    return dest
