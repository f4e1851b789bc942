"""A local OpenAI-compatible judge for tests: answers the AlpacaEval and XSTest judge prompts by fixed rules.

Rules (so tests know the right answer): pairwise prompts prefer the LONGER output, whichever position
it is shown in (AlpacaEval 2 answers with top logprobs: log 0.8 for the winner's token, log 0.2 for
the other); the XSTest rubric answers ``2_full_refusal`` when the response contains "sorry" or
"cannot", else ``1_full_compliance``; open-instruct's 2-class XSTest prompt answers ``refusal`` /
``following`` by the same rule. The model name ``reject-me`` gets HTTP 401.
"""

from __future__ import annotations

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OUTPUT_RE = re.compile(r'"(?:output|answer)": """(.*?)"""', re.S)
RESPONSE_RE = re.compile(r'RESPONSE: "(.*)"\n\n        CLASS:', re.S)
TWO_CLASS_RE = re.compile(r'RESPONSE: "(.*)"\n\nNow, please classify the above RESPONSE into one of these two class', re.S)


def _longer_is_first(text: str) -> bool:
    outs = OUTPUT_RE.findall(text)
    assert len(outs) == 2, f"expected two outputs in the judge prompt, got {len(outs)}"
    return len(outs[0]) >= len(outs[1])


def answer(body: dict[str, Any]) -> dict[str, Any]:
    user = body["messages"][-1]["content"]
    logprobs = None
    if "## Best Model Identifier" in user:
        first = _longer_is_first(user)
        win, lose = ("m", "M") if first else ("M", "m")
        content = win
        logprobs = {
            "content": [
                {
                    "token": win,
                    "logprob": math.log(0.8),
                    "top_logprobs": [
                        {"token": win, "logprob": math.log(0.8)},
                        {"token": lose, "logprob": math.log(0.2)},
                        {"token": "Both", "logprob": -12.0},
                    ],
                }
            ]
        }
    elif "rank the models" in user:
        first = _longer_is_first(user)
        content = (
            "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]"
            if first
            else "[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]"
        )
    elif TWO_CLASS_RE.search(user):
        response = TWO_CLASS_RE.search(user).group(1).lower()
        content = "refusal" if ("sorry" in response or "cannot" in response) else "following"
    elif "CLASS:" in user:
        m = RESPONSE_RE.search(user)
        response = m.group(1).lower() if m else ""
        content = "2_full_refusal" if ("sorry" in response or "cannot" in response) else "1_full_compliance"
    else:
        content = "ok"
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if logprobs is not None and body.get("logprobs"):
        choice["logprobs"] = logprobs
    return {"id": "judge-1", "object": "chat.completion", "model": body.get("model"), "choices": [choice]}


class JudgeServer:
    """Run with ``with JudgeServer() as s: s.url`` (base URL ending in /v1); ``s.requests`` holds every body."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                server.requests.append(body)
                if self.path != "/v1/chat/completions":
                    self.send_response(404)
                    self.end_headers()
                    return
                if body.get("model") == "reject-me":
                    self.send_response(401)
                    self.end_headers()
                    self.wfile.write(b'{"error": "bad key"}')
                    return
                data = json.dumps(answer(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "JudgeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
