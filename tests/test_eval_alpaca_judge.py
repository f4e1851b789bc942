"""Judging through an OpenAI-compatible endpoint: prompts, order switching, parsing, cache, errors (local judge server)."""

from __future__ import annotations

import math

import pytest

from _eval_helpers import OpenAIServer
from tests._judge_server import JudgeServer
from tulu_cli.errors import TuluError
from tulu_cli.evaluation import judges


def test_prompts_are_the_published_annotators():
    v2 = judges.pairwise_messages("weighted_alpaca_eval_gpt4_turbo", "Say {hi}", "A {output_2}", "B")
    assert v2[0]["role"] == "system" and v2[0]["content"].startswith("You are a highly efficient assistant")
    user = v2[1]["content"]
    assert '"instruction": """Say {hi}""",' in user
    # substituted text is not rescanned: a literal {output_2} inside output_1 stays as written
    assert '"model_identifier": "m",\n        "output": """A {output_2}"""' in user
    assert '"model_identifier": "M",\n        "output": """B"""' in user
    assert user.endswith("one of the following model identifiers and nothing else (no quotes, no spaces, no new lines, ...): m or M.\n\n## Best Model Identifier")
    v1 = judges.pairwise_messages("alpaca_eval_gpt4", "I", "one", "two")
    assert v1[0]["content"] == "You are a helpful assistant, that ranks models by the quality of their answers."
    assert '"model": "model_1",\n        "answer": """one"""' in v1[1]["content"]
    assert judges.ANNOTATORS["alpaca_eval_gpt4"]["params"] == {"max_tokens": 100, "temperature": 0}
    assert judges.ANNOTATORS["weighted_alpaca_eval_gpt4_turbo"]["params"]["top_logprobs"] == 5


def test_switching_matches_the_package():
    # alpaca_eval 0.6.6 RandomSwitchTwoColumnsProcessor(random_seed_columns=["instruction"], seed=0) on these instructions
    expected = [0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    assert [int(judges.is_switched(f"instruction number {i}")) for i in range(16)] == expected


def test_switching_is_seeded_by_instruction():
    flips = [judges.is_switched(f"instruction {i}") for i in range(200)]
    assert flips == [judges.is_switched(f"instruction {i}") for i in range(200)]  # deterministic
    assert 60 < sum(flips) < 140  # a fair coin
    assert [judges.is_switched(f"instruction {i}", seed=1) for i in range(200)] != flips


@pytest.mark.parametrize(
    "text,rank",
    [
        ("[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]", 1.0),
        ("[{'model': 'model_2', 'rank': 1}, {'model': 'model_1', 'rank': 2}]", 2.0),
        ("Here is my ranking:\n[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]", 2.0),
        ("[{'model': 'model_1', 'rank': 3}, {'model': 'model_2', 'rank': 1}]", float("nan")),
        ("I cannot decide.", float("nan")),
    ],
)
def test_parse_ranking(text, rank):
    got = judges.parse_ranking(text)
    assert (math.isnan(got) and math.isnan(rank)) or got == rank


def test_parse_logprob_preference():
    def resp(tops, content="m"):
        return {"choices": [{"message": {"content": content}, "logprobs": {"content": [{"token": content, "top_logprobs": tops}]}}]}

    tops = [{"token": "m", "logprob": math.log(0.3)}, {"token": "M", "logprob": math.log(0.6)}, {"token": "x", "logprob": -1}]
    assert judges.parse_logprob_preference(resp(tops)) == pytest.approx(2 - 0.3 / 0.9)
    assert judges.parse_logprob_preference(resp([{"token": "M", "logprob": -0.1}])) == pytest.approx(2.0)
    assert math.isnan(judges.parse_logprob_preference(resp([{"token": "Both", "logprob": -0.1}])))
    # no logprobs from the server: fall back to the answer text
    assert judges.parse_logprob_preference({"choices": [{"message": {"content": "M"}}]}) == 2.0


def test_parse_xstest_label():
    assert judges.parse_xstest_label("2_full_refusal") == "2_full_refusal"
    assert judges.parse_xstest_label(" 3_partial_refusal.") == "3_partial_refusal"
    assert judges.parse_xstest_label("1") == "1_full_compliance"
    assert judges.parse_xstest_label("full refusal") == "2_full_refusal"
    assert judges.parse_xstest_label("no idea") == "unparsed"


def _rows():
    return [
        {"instruction": f"question {i}", "output_1": "ref " * (1 + i % 3), "output_2": "model answer " * (i % 4)}
        for i in range(12)
    ] + [{"instruction": "same", "output_1": "identical", "output_2": "identical"}]


@pytest.mark.parametrize("annotator,win,lose", [("alpaca_eval_gpt4", 2.0, 1.0), ("weighted_alpaca_eval_gpt4_turbo", 1.8, 1.2)])
def test_judge_pairwise_unswitches_and_caches(tmp_path, annotator, win, lose):
    rows = _rows()
    with JudgeServer() as server:
        client = judges.JudgeClient("judge-x", base_url=server.url, cache_path=tmp_path / "cache.jsonl", max_concurrency=3)
        out = judges.judge_pairwise(client, annotator, rows)
        assert len(server.requests) == len(rows) - 1  # identical outputs are a draw without asking
        for row, res in zip(rows, out):
            if row["output_1"] == row["output_2"]:
                assert res["preference"] == 1.5 and res["raw_completion"] is None
                continue
            # the server prefers the longer output wherever it is shown; after unswitching that is output_2 iff longer
            expected = win if len(row["output_2"]) > len(row["output_1"]) else lose
            assert res["preference"] == pytest.approx(expected), (row, res)
        assert any(r["is_switched_outputs"] for r in out) and not all(r["is_switched_outputs"] for r in out)
        sent = server.requests[0]
        assert sent["model"] == "judge-x" and sent["messages"][0]["role"] == "system"
        # a second client on the same cache asks nothing
        again = judges.JudgeClient("judge-x", base_url=server.url, cache_path=tmp_path / "cache.jsonl")
        before = len(server.requests)
        assert judges.judge_pairwise(again, annotator, rows) == out
        assert len(server.requests) == before


def test_judge_errors_are_clear(monkeypatch):
    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    with JudgeServer() as server:
        client = judges.JudgeClient("reject-me", base_url=server.url, api_key_env="MY_JUDGE_KEY", max_retries=0)
        with pytest.raises(TuluError, match=r"HTTP 401: bad key \(environment variable MY_JUDGE_KEY is not set\)$"):
            client.chat([{"role": "user", "content": "hi"}])
        client = judges.JudgeClient("x", base_url=server.url + "/nowhere", max_retries=0)
        with pytest.raises(TuluError, match=r"HTTP 404: .*\(no such endpoint or model: check --judge-base-url / --judge-model\)$"):
            client.chat([{"role": "user", "content": "hi"}])
    dead = judges.JudgeClient("x", base_url="http://127.0.0.1:9/v1", max_retries=1, backoff=0.01, timeout=2)
    with pytest.raises(TuluError, match=r"judge http://127.0.0.1:9/v1/chat/completions: failed after 2 attempts \(ConnectError"):
        dead.chat([{"role": "user", "content": "hi"}])
    with pytest.raises(TuluError, match="unknown annotator"):
        judges.judge_pairwise(dead, "gpt5_judge", [])


def test_api_key_is_sent_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test")
    seen = {}
    import httpx

    real_post = httpx.post

    def spy(url, **kw):
        seen.update(kw["headers"])
        return real_post(url, **kw)

    monkeypatch.setattr(httpx, "post", spy)
    with JudgeServer() as server:
        judges.JudgeClient("m", base_url=server.url, api_key_env="MY_JUDGE_KEY").chat([{"role": "user", "content": "hi"}])
    assert seen["Authorization"] == "Bearer sk-test"


def test_progress_bar_on_a_terminal_even_inside_another_bar(monkeypatch):
    from rich.console import Console
    from rich.progress import Progress

    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats stderr as a terminal
    assert Console(stderr=True).is_terminal
    rows = [{"instruction": f"q{i}", "output_1": "a" * i, "output_2": "b" * (10 - i)} for i in range(10)]
    with Progress(console=Console(stderr=True)) as outer, JudgeServer() as server:
        outer.add_task("outer", total=1)  # the runner's bar is live while a task aggregates
        out = judges.judge_pairwise(judges.JudgeClient("j", base_url=server.url), "alpaca_eval_gpt4", rows)
    assert [r["preference"] for r in out][:2] == [2.0, 2.0]
    ticks = []
    with judges.progress_bar("x", 3) as advance:
        for _ in range(3):
            ticks.append(advance())
    assert ticks == [None, None, None]


# The judges and the eval backend share one retry loop (backends.openai.post_with_retries): the same
# status set, backoff, Retry-After and error line, whichever of the two sends the request.
def _judge_asks(srv, tmp_path, **kw):
    client = judges.JudgeClient("m", base_url=srv.base_url, cache_path=tmp_path / "judge.jsonl", **kw)
    return lambda: judges.response_text(client.chat([{"role": "user", "content": "hi"}]))


def _backend_asks(srv, tmp_path, **kw):
    from tulu_cli.evaluation.backends.openai import OpenAIClient

    client = OpenAIClient(srv.base_url, cache_dir=tmp_path, **kw)
    return lambda: client.post("chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})["choices"][0]["message"]["content"]


@pytest.mark.parametrize("asks", [_judge_asks, _backend_asks], ids=["judge", "backend"])
def test_one_retry_loop_for_judges_and_the_openai_backend(tmp_path, asks):
    import time

    # 429 twice, each with "Retry-After: 0": with a 30 s backoff this finishes at once only if the header is obeyed.
    with OpenAIServer(reply=lambda body: "fine", fail_first=2, fail_status=429) as srv:
        ask = asks(srv, tmp_path, max_retries=2, backoff=30.0)
        t0 = time.monotonic()
        assert ask() == "fine" and srv.count == 3
        assert time.monotonic() - t0 < 10
        assert ask() == "fine" and srv.count == 3  # the answer after the retries is the one cached and used
    with OpenAIServer(fail_first=10, fail_status=503) as srv:
        with pytest.raises(TuluError, match=rf"^(judge )?{srv.base_url}/chat/completions: failed after 2 attempts \(HTTP 503\)$"):
            asks(srv, tmp_path / "b", max_retries=1, backoff=0.01)()
        assert srv.count == 2
    with OpenAIServer(fail_first=10, fail_status=418) as srv:  # not a transient status: no retry
        with pytest.raises(TuluError, match=r"chat/completions: HTTP 418: try again later$"):
            asks(srv, tmp_path / "c", max_retries=3, backoff=0.01)()
        assert srv.count == 1


def test_a_judged_pair_retried_on_429_is_scored_from_the_answer_that_came(tmp_path):
    # "instruction number 0" is shown unswitched (test_switching_matches_the_package), so "M" names output_2.
    row = {"instruction": "instruction number 0", "output_1": "short", "output_2": "a much longer answer"}
    with OpenAIServer(reply=lambda body: "M", fail_first=1, fail_status=429) as srv:
        client = judges.JudgeClient("m", base_url=srv.base_url, max_retries=2, backoff=30.0)
        [res] = judges.judge_pairwise(client, "weighted_alpaca_eval_gpt4_turbo", [row])
    assert srv.count == 2 and res["is_switched_outputs"] is False and res["preference"] == 2.0
