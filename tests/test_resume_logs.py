"""tulu's own append logs (predictions.jsonl, the judge cache) read through the one JSONL reader: cut lines skipped."""

from __future__ import annotations

import json

from _eval_helpers import OpenAIServer
from tulu_cli.evaluation import judges
from tulu_cli.evaluation.results import read_done_rows


def test_done_rows_drop_a_last_line_without_its_line_break(tmp_path):
    p = tmp_path / "predictions.jsonl"
    # U+2028 inside a string is not a line break; a row without "id" or a cut row makes the file dirty.
    p.write_text('{"id": "a", "output": "x\u2028y"}\n\n{"id": "b", "output": "z"}\n', encoding="utf-8")
    assert read_done_rows(p) == ([{"id": "a", "output": "x\u2028y"}, {"id": "b", "output": "z"}], False)
    with p.open("a", encoding="utf-8") as f:
        f.write('{"id": "c", "output": "w"}')  # complete JSON, but the process died before the "\n"
    assert read_done_rows(p) == ([{"id": "a", "output": "x\u2028y"}, {"id": "b", "output": "z"}], True)
    p.write_bytes(b'{"id": "a"}\n{"output": "no id"}\n\xff\n{"id": "b", "out\n')
    assert read_done_rows(p) == ([{"id": "a"}], True)


def test_judge_cache_survives_cut_and_foreign_lines(tmp_path):
    cache = tmp_path / "cache.jsonl"
    question = [{"role": "user", "content": "hi"}]
    with OpenAIServer(reply=lambda body: "line\u2028separator") as server:  # U+2028 is not a line break in JSONL
        first = judges.JudgeClient("m", base_url=server.base_url, cache_path=cache).chat(question)
    assert judges.response_text(first) == "line\u2028separator"
    with cache.open("a", encoding="utf-8") as f:
        f.write('["not", "an", "object"]\n{"key": 3, "response": {}}\n{"key": "abc", "resp')  # an append cut short
    # Nothing listens on port 9: the answer can only come from the cache.
    dead = judges.JudgeClient("m", base_url="http://127.0.0.1:9/v1", cache_path=cache, max_retries=0, timeout=2)
    assert dead.chat(question) == first
    assert json.loads(cache.read_text(encoding="utf-8").split("\n")[0])["response"] == first
