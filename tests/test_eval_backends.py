"""Backends: hf log-likelihood and next-token paths against a plain forward pass, auto batch size, stop
strings, padding; vllm's scoring on a stand-in vllm module; openai against a local server (cache,
retries, errors); the vllm extra's error."""

from __future__ import annotations

import json

import pytest

from _eval_helpers import OpenAIServer, invoke, last_user_message
from tulu_cli.errors import TuluError
from tulu_cli.evaluation.backends import GenerationRequest, LoglikelihoodRequest, NextTokenRequest


@pytest.fixture(scope="module")
def hf(tiny_model):
    from tulu_cli.evaluation.backends.hf import HFBackend

    return HFBackend(str(tiny_model), batch_size=4)


def _reference_logprob(backend, context: str, continuation: str) -> float:
    """Summed log-prob of the continuation from one unpadded forward pass (the textbook way)."""
    import torch

    ctx = backend.encode(context)
    full = backend.encode(context + continuation)
    with torch.no_grad():
        logits = backend.model(torch.tensor([full])).logits[0].float().log_softmax(-1)
    return float(sum(logits[p - 1, full[p]] for p in range(len(ctx), len(full))))


def test_loglikelihood_matches_plain_forward(hf):
    # One batch mixes context lengths (left padding), one-token choices (read from the context pass)
    # and multi-token ones (continued from a copy of the context's KV cache).
    reqs = [
        LoglikelihoodRequest("The capital of France is\nAnswer:", [" A", " B", " C", " D"]),  # one pass, 4 letters
        LoglikelihoodRequest("Q: is the sky blue?\nA:", [" yes it is blue", " no", " the grass is green today"]),
        LoglikelihoodRequest("Short", [" A", " B"]),
        LoglikelihoodRequest("Mixed lengths in one request:", [" A", " a much longer continuation here", ""]),
    ]
    seen = {}
    got = hf.loglikelihood(reqs, on_result=lambda i, v: seen.__setitem__(i, v))
    assert seen == dict(enumerate(got))
    for req, values in zip(reqs, got):
        for cont, v in zip(req.continuations, values):
            assert v == pytest.approx(_reference_logprob(hf, req.context, cont), abs=1e-4)


def _reference_next_token(backend, context: str, candidate: str) -> float:
    """Log-prob of the candidate's LAST token (encoded alone) right after the context, unpadded."""
    import torch

    token = backend.tokenizer(candidate, add_special_tokens=False)["input_ids"][-1]
    with torch.no_grad():
        logits = backend.model(torch.tensor([backend.encode(context)])).logits[0, -1].float()
    return float(logits.log_softmax(-1)[token])


def test_next_token_logprobs_match_plain_forward(hf):
    reqs = [
        NextTokenRequest("The capital of France is\nAnswer:", [" A", " B", " C", " D"]),
        NextTokenRequest("Short", [" A", " two words"]),  # a multi-token candidate: its last token is read
        NextTokenRequest("A much longer context, so that this batch is left-padded for the others:", [" yes", " no"]),
    ]
    seen = {}
    got = hf.next_token_logprobs(reqs, on_result=lambda i, v: seen.__setitem__(i, v))
    assert seen == dict(enumerate(got))
    for req, values in zip(reqs, got):
        assert values == pytest.approx([_reference_next_token(hf, req.context, c) for c in req.candidates], abs=1e-4)
    two_words = hf.tokenizer(" two words", add_special_tokens=False)["input_ids"]
    assert len(two_words) > 1 and hf.describe()["next_token_candidates"][" two words"]["id"] == two_words[-1]


class _FakeVLLM:
    """The slice of the vllm package the backend uses, answering prompt log-probs with a transformers model."""

    __version__ = "0.0-test"

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LLM:
        def __init__(self, model, tokenizer, **kwargs):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.model = AutoModelForCausalLM.from_pretrained(model).eval()
            self._tokenizer = AutoTokenizer.from_pretrained(tokenizer)

        def get_tokenizer(self):
            return self._tokenizer

        def generate(self, prompts, params, use_tqdm=False):
            import torch
            from types import SimpleNamespace

            assert params.kwargs["prompt_logprobs"] == 0 and params.kwargs["max_tokens"] == 1
            outs = []
            for p in prompts:
                ids = p["prompt_token_ids"]
                with torch.no_grad():
                    lp = self.model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
                # vLLM's shape: None for the first token, then {actual token id: Logprob} per position.
                steps = [None] + [{ids[i]: SimpleNamespace(logprob=float(lp[i - 1, ids[i]]))} for i in range(1, len(ids))]
                outs.append(SimpleNamespace(prompt_logprobs=steps))
            return outs


def test_vllm_scoring_reads_prompt_logprobs_at_the_right_tokens(hf, tiny_model, monkeypatch):
    import sys

    from tulu_cli.evaluation.backends.vllm import VLLMBackend

    monkeypatch.setitem(sys.modules, "vllm", _FakeVLLM)
    vb = VLLMBackend(str(tiny_model))
    nt = [NextTokenRequest("The capital of France is\nAnswer:", [" A", " B", " C", " D"]), NextTokenRequest("Short", [" two words"])]
    ll = [LoglikelihoodRequest("Q: is the sky blue?\nA:", [" yes it is blue", " no"])]
    assert [v for r in vb.next_token_logprobs(nt) for v in r] == pytest.approx([v for r in hf.next_token_logprobs(nt) for v in r], abs=1e-4)
    assert vb.loglikelihood(ll)[0] == pytest.approx(hf.loglikelihood(ll)[0], abs=1e-4)
    assert set(vb.describe()["next_token_candidates"]) == {" A", " B", " C", " D", " two words"}


def test_auto_batch_size_halves_on_oom(tiny_model, monkeypatch):
    from tulu_cli.evaluation.backends.hf import HFBackend

    b = HFBackend(str(tiny_model), batch_size="auto")
    assert b.batch_size == 64
    real = b._score_batch
    sizes = []

    def fake(rows):
        sizes.append(len(rows))
        if len(rows) > 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(rows)

    monkeypatch.setattr(b, "_score_batch", fake)
    reqs = [LoglikelihoodRequest(f"question {i} " * (i + 1), [" A", " B"]) for i in range(10)]
    got = b.loglikelihood(reqs)
    assert b.batch_size == 2 and sizes[:6] == [10, 5, 2, 2, 2, 2]
    b2 = HFBackend(str(tiny_model), batch_size=1)
    ref = b2.loglikelihood(reqs)
    assert [v for r in got for v in r] == pytest.approx([v for r in ref for v in r], abs=1e-4)
    # A fixed batch size that does not fit is a clear error, not a traceback.
    b3 = HFBackend(str(tiny_model), batch_size=8)
    monkeypatch.setattr(b3, "_score_batch", fake)
    with pytest.raises(TuluError, match="out of memory at batch size 8"):
        b3.loglikelihood(reqs)


def test_batched_generation_equals_one_by_one(hf, tiny_model):
    from tulu_cli.evaluation.backends.hf import HFBackend

    prompts = ["Hello there", "The quick brown fox jumps over the lazy dog and then", "A", "Once upon a time in a land"]
    reqs = [GenerationRequest(prompt=p, max_new_tokens=8) for p in prompts]
    batched = hf.generate(reqs)
    single = HFBackend(str(tiny_model), batch_size=1).generate(reqs)
    assert batched == single and all(len(o) == 1 for o in batched)


def test_shared_prompt_head_is_computed_once_and_changes_nothing(hf, monkeypatch):
    head = "Answer the following questions. Question: 1 + 1? Answer: 2. " * 4
    tails = ["Question: what is 2+2?\nAnswer:", "Q: hi\nA:", "Question: the quick brown fox jumps over\nAnswer:"]
    reqs = [GenerationRequest(prompt=head + t, max_new_tokens=8, stop=("\n",)) for t in tails]
    calls = []
    real = hf._shared_prefix
    monkeypatch.setattr(hf, "_shared_prefix", lambda seqs: calls.append(real(seqs)) or calls[-1])
    got = hf.generate(reqs)
    assert calls and calls[0] is not None and len(calls[0][0]) >= 32
    plain = [hf._generate_batch([hf.encode(r.prompt)], r)[0] for r in reqs]  # no cache reuse, no padding
    assert got == plain


def test_stop_strings_apply_per_sequence(hf):
    prompts = ["Hello there", "Once upon a time in a land"]
    free = hf.generate([GenerationRequest(prompt=p, max_new_tokens=12) for p in prompts])
    a, b = free[0][0], free[1][0]
    stop = next(a[i : i + 2] for i in range(2, len(a) - 1) if a[i : i + 2] not in b)
    stopped = hf.generate([GenerationRequest(prompt=p, max_new_tokens=12, stop=(stop,)) for p in prompts])
    assert stopped[0][0] == a[: a.index(stop)]
    assert stopped[1][0] == b  # the other row ran to its own end


def test_sampling_n_and_seed(hf):
    req = GenerationRequest(prompt="Once upon", max_new_tokens=6, temperature=1.0, top_p=0.95, n=3, seed=7)
    one = hf.generate([req])[0]
    assert len(one) == 3 and hf.generate([req])[0] == one


def test_kv_cache_passed_by_its_current_name(hf, monkeypatch):
    # transformers 5.x renamed `past_key_values` to `cache` (argument and output field; the old name goes
    # in 5.40 for forward, 6.0 for generate): the shared-prefix, generation and continuation paths use the new one.
    import warnings

    from transformers.utils import generic

    said = []
    monkeypatch.setattr(generic.logger, "warning_once", lambda msg, *a, **k: said.append(str(msg)), raising=False)
    head = "Answer the following questions. Question: 1 + 1? Answer: 2. " * 4  # >= 32 shared tokens: prefix path
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        hf.generate([GenerationRequest(prompt=head + t, max_new_tokens=4) for t in ("Q: a\nA:", "Q: bb\nA:")])
        hf.loglikelihood([LoglikelihoodRequest("Q: x\nA:", [" yes it is", " no"])])  # continues from the cache
    assert not [m for m in said if "deprecated" in m]


def test_vllm_missing_names_the_extra(tiny_model, tmp_path):
    # The data check comes first; give it data so the backend is what fails.
    (tmp_path / "gsm").mkdir()
    (tmp_path / "gsm/test.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "gsm_cot", "-o", str(tmp_path / "o"), "--backend", "vllm",
                  "-d", str(tmp_path)])
    assert res.exit_code == 2 and "pip install 'tulu-cli[vllm]'" in res.stderr


def _gsm_reply(body):
    return "Let me think. So the answer is 18." if "Janet" in last_user_message(body) else "I do not know, maybe 1."


def test_openai_chat_run_cache_and_rerun(shared_data, tmp_path):
    with OpenAIServer(reply=_gsm_reply) as srv:
        args = ["eval", "run", "-m", "gpt-test", "--backend", "openai", "--base-url", srv.base_url, "-t", "gsm_cot",
                "-d", str(shared_data / "eval"), "--limit", "3", "--cache-dir", str(tmp_path / "cache"), "--json"]
        res = invoke(args + ["-o", str(tmp_path / "a")])
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["gsm_cot"]["exact_match"] == pytest.approx(1 / 3)
        assert srv.count == 3 and all(p == "/v1/chat/completions" for p in srv.paths)
        body = srv.requests[0]
        assert body["model"] == "gpt-test" and body["temperature"] == 0 and "stop" not in body
        assert body["messages"][0]["content"].endswith("\nAnswer:")  # Tulu 2 sent the plain prompt
        # A fresh output dir: every answer comes from the response cache, nothing is sent.
        res = invoke(args + ["-o", str(tmp_path / "b")])
        assert res.exit_code == 0 and srv.count == 3
        results = json.loads((tmp_path / "b/results.json").read_text())
        assert results["backend"]["cache_hits"] == 3 and results["backend"]["requests_sent"] == 0


def test_openai_retries_then_succeeds(tmp_path):
    from tulu_cli.evaluation.backends.openai import OpenAIBackend

    with OpenAIServer(reply=lambda b: "fine", fail_first=2, fail_status=429) as srv:
        be = OpenAIBackend("m", base_url=srv.base_url, cache_dir=tmp_path, max_retries=3)
        assert be.generate([GenerationRequest(prompt="hi", messages=[{"role": "user", "content": "hi"}], n=2)]) == [["fine", "fine"]]
        assert srv.count == 3
        be.close()
    with OpenAIServer(fail_first=10, fail_status=503) as srv:
        be = OpenAIBackend("m", base_url=srv.base_url, cache_dir=tmp_path, max_retries=1)
        be.client.backoff = 0.01
        with pytest.raises(TuluError, match="failed after 2 attempts \\(HTTP 503\\)"):
            be.generate([GenerationRequest(prompt="x")])
        be.close()


def test_openai_auth_error_is_one_line(shared_data, tmp_path):
    with OpenAIServer() as srv:
        res = invoke(["eval", "run", "-m", "reject-me", "--backend", "openai", "--base-url", srv.base_url, "-t", "gsm_cot",
                      "-d", str(shared_data / "eval"), "--limit", "1", "-o", str(tmp_path), "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 2 and "HTTP 401: invalid api key" in res.stderr


def test_openai_completions_loglikelihood_and_stops(shared_data, tmp_path):
    from tulu_cli.evaluation.backends.openai import OpenAIBackend

    with OpenAIServer(reply=lambda b: "abc STOP def") as srv:
        be = OpenAIBackend("m", base_url=srv.base_url, api="completions", cache_dir=tmp_path)
        [[text]] = be.generate([GenerationRequest(prompt="p", stop=("STOP",))])
        assert text == "abc " and srv.requests[0]["stop"] == ["STOP"]
        sent = srv.count
        [vals] = be.loglikelihood([LoglikelihoodRequest("Answer:", [" A", " BB"])])
        assert vals == pytest.approx([-0.2, -0.3])  # the test server charges 0.1 per character of each token
        assert srv.count == sent + 1  # all continuations of a context in one request
        be.close()
        res = invoke(["eval", "run", "-m", "m", "--backend", "openai", "--openai-api", "completions", "--base-url",
                      srv.base_url, "-t", "mmlu_0shot", "-d", str(shared_data / "eval"), "--limit", "1", "-o",
                      str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "--chat-template", "none", "--json",
                      "--task-arg", "scoring=continuation"])
        assert res.exit_code == 0, res.stderr
        assert 0 <= json.loads(res.stdout)["mmlu_0shot"]["average_acc"] <= 1
        res = invoke(["eval", "run", "-m", "m", "--backend", "openai", "--base-url", srv.base_url, "-t", "mmlu_0shot",
                      "-d", str(shared_data / "eval"), "--limit", "1", "-o", str(tmp_path / "o2"), "--cache-dir", str(tmp_path / "c"),
                      "--task-arg", "scoring=continuation"])
        assert res.exit_code == 2 and "log-likelihood tasks need --openai-api completions" in res.stderr
        # MMLU's default rule reads next-token probabilities by token id: refused before anything is sent.
        sent = srv.count
        res = invoke(["eval", "run", "-m", "m", "--backend", "openai", "--openai-api", "completions", "--base-url",
                      srv.base_url, "-t", "mmlu_0shot", "-d", str(shared_data / "eval"), "-o", str(tmp_path / "o3")])
        assert res.exit_code == 2 and "add --task-arg scoring=continuation" in res.stderr and srv.count == sent
