"""OpenAI-compatible API backend: chat or completions endpoint, bounded concurrency, retries, response cache.

Every response is stored in a SQLite cache keyed by the endpoint and the exact request body, so a
rerun (or a resumed run) sends nothing already answered. Log-likelihoods need the completions
endpoint with ``echo`` + ``logprobs`` (vLLM's and most self-hosted servers support it; OpenAI's chat
models do not). Next-token log-probs of given token ids are not offered: the API's tokenizer is not
known here, so the base class refuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Mapping

from tulu_cli.errors import TuluError
from tulu_cli.paths import cache_root
from tulu_cli.evaluation.backends.base import Backend, GenerationRequest, LoglikelihoodRequest, OnResult

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_WAIT = 60.0  # seconds, the longest pause between two attempts
MAX_API_STOPS = 4  # OpenAI accepts at most 4 stop sequences; the rest are applied here


class ResponseCache:
    """Thread-safe SQLite map from request key to response JSON."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, response TEXT NOT NULL)")
        self._db.commit()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, response: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)", (key, json.dumps(response)))
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def request_key(url: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"url": url, "body": body}, sort_keys=True).encode("utf-8")).hexdigest()


def post_with_retries(
    send: Callable[[], Any], where: str, *, max_retries: int, backoff: float, hints: Mapping[int, str] | None = None
) -> Any:
    """The one retry loop for OpenAI-compatible endpoints (this backend and the judges): the parsed JSON of a 200.

    ``send()`` makes one POST and returns the httpx response. A network error, a 200 that is not JSON
    or a status in ``RETRY_STATUS`` is tried again, up to ``max_retries`` more times, after
    ``backoff * 2**attempt`` seconds (at most ``MAX_WAIT``) times a jitter in [0.5, 1.5) so that
    parallel requests do not retry in step, or after the server's ``Retry-After`` when it sends one.
    Any other status fails at once: ``where: HTTP status: the server's message`` plus ``hints[status]``.
    """
    import httpx

    last = ""
    for attempt in range(max_retries + 1):
        wait = min(MAX_WAIT, backoff * 2**attempt) * (0.5 + random.random())
        try:
            resp = send()
        except httpx.RequestError as e:
            last = f"{type(e).__name__}: {e}"
        else:
            if resp.status_code == 200:
                try:
                    return resp.json()
                except ValueError:
                    last = "response is not JSON"
            elif resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}"
                after = resp.headers.get("Retry-After", "")
                if after.replace(".", "", 1).isdigit():
                    wait = min(MAX_WAIT, float(after))
            else:
                raise TuluError(f"{where}: HTTP {resp.status_code}: {_error_message(resp)}{(hints or {}).get(resp.status_code, '')}")
        if attempt < max_retries:
            time.sleep(wait)
    raise TuluError(f"{where}: failed after {max_retries + 1} attempts ({last})")


def failure_hints(unset_key_env: str | None, flags: str) -> dict[int, str]:
    """What to add to a refused request's error: the unset key variable for 401/403, the flags to check for 404."""
    hints = {404: f" (no such endpoint or model: check {flags})"}
    if unset_key_env:
        hints[401] = hints[403] = f" (environment variable {unset_key_env} is not set)"
    return hints


class OpenAIClient:
    """POST JSON to an OpenAI-compatible server with retries (exponential backoff, Retry-After) and caching."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        cache_dir: Path | None = None,
        max_retries: int = 6,
        timeout: float = 120.0,
        backoff: float = 0.5,
    ):
        import httpx

        self.base_url = base_url.rstrip("/")
        key = os.environ.get(api_key_env)
        if not key and "api.openai.com" in self.base_url:
            raise TuluError(f"--api-key-env: environment variable {api_key_env} is not set (needed for {self.base_url})")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(headers=headers, timeout=timeout)
        self.hints = failure_hints(None if key else api_key_env, "--base-url / --model")
        self.cache = ResponseCache(Path(cache_dir or cache_root("openai")) / "responses.sqlite")
        self.max_retries = max_retries
        self.backoff = backoff
        self.sent = 0  # requests that reached the network (cache misses), for tests and logs
        self.cache_hits = 0

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/{path.lstrip('/')}"
        key = request_key(url, body)
        cached = self.cache.get(key)
        if cached is not None:
            self.cache_hits += 1
            return cached
        data = post_with_retries(
            lambda: self._send(url, body), url, max_retries=self.max_retries, backoff=self.backoff, hints=self.hints
        )
        self.cache.put(key, data)
        return data

    def _send(self, url: str, body: dict[str, Any]) -> Any:
        self.sent += 1
        return self._http.post(url, json=body)

    def close(self) -> None:
        self._http.close()
        self.cache.close()


def _error_message(resp: Any) -> str:
    try:
        err = resp.json().get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if err:
            return str(err)
    except (ValueError, AttributeError):
        pass
    return resp.text[:200]


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str = "OPENAI_API_KEY",
        api: str = "chat",
        concurrency: int = 8,
        cache_dir: Path | None = None,
        max_retries: int = 6,
        timeout: float = 120.0,
    ):
        self.model = model
        self.api = api
        self.concurrency = concurrency
        self.client = OpenAIClient(base_url, api_key_env=api_key_env, cache_dir=cache_dir, max_retries=max_retries, timeout=timeout)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "openai",
            "model": self.model,
            "base_url": self.client.base_url,
            "api": self.api,
            "concurrency": self.concurrency,
            "requests_sent": self.client.sent,
            "cache_hits": self.client.cache_hits,
        }

    def _map(self, fn: Any, items: list[Any], on_result: OnResult | None) -> list[Any]:
        results: list[Any] = [None] * len(items)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            try:
                for fut in as_completed(futures):
                    i = futures[fut]
                    results[i] = fut.result()
                    if on_result is not None:
                        on_result(i, results[i])
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return results

    def _generate_one(self, req: GenerationRequest) -> list[str]:
        from tulu_cli.evaluation.backends.hf import trim_at_stop

        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": req.max_new_tokens,
            "temperature": req.temperature,
            "n": req.n,
        }
        if req.temperature > 0:
            body["top_p"] = req.top_p
            if req.seed is not None:
                body["seed"] = req.seed
        if req.stop:
            body["stop"] = list(req.stop[:MAX_API_STOPS])
        if self.api == "chat":
            body["messages"] = req.messages or [{"role": "user", "content": req.prompt}]
            data = self.client.post("chat/completions", body)
            texts = [(c.get("message") or {}).get("content") or "" for c in _choices(data)]
        else:
            body["prompt"] = req.prompt
            data = self.client.post("completions", body)
            texts = [c.get("text") or "" for c in _choices(data)]
        return [trim_at_stop(t, req.stop) for t in texts]

    def generate(self, requests: list[GenerationRequest], on_result: OnResult | None = None) -> list[list[str]]:
        return self._map(self._generate_one, requests, on_result)

    def _loglik_one(self, req: LoglikelihoodRequest) -> list[float]:
        # One request per context: the completions endpoint takes a list of prompts.
        body = {
            "model": self.model,
            "prompt": [req.context + cont for cont in req.continuations],
            "max_tokens": 0,
            "echo": True,
            "logprobs": 1,
            "temperature": 0,
        }
        data = self.client.post("completions", body)
        choices = _choices(data)
        if len(choices) != len(req.continuations):
            raise TuluError(f"{self.client.base_url}: {len(choices)} choices for {len(req.continuations)} prompts")
        out = []
        for choice in choices:
            lp = choice.get("logprobs") or {}
            offsets, values = lp.get("text_offset"), lp.get("token_logprobs")
            if not offsets or values is None:
                raise TuluError(f"{self.client.base_url}: the server returned no echoed logprobs (needs echo + logprobs support)")
            out.append(sum(v for o, v in zip(offsets, values) if o >= len(req.context) and v is not None))
        return out

    def loglikelihood(self, requests: list[LoglikelihoodRequest], on_result: OnResult | None = None) -> list[list[float]]:
        if self.api != "completions":
            raise TuluError("--backend openai: log-likelihood tasks need --openai-api completions (a server with echo + logprobs)")
        return self._map(self._loglik_one, requests, on_result)

    def close(self) -> None:
        self.client.close()


def _choices(data: dict[str, Any]) -> list[dict[str, Any]]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise TuluError(f"API response has no choices: {json.dumps(data)[:200]}")
    return sorted(choices, key=lambda c: c.get("index", 0))
