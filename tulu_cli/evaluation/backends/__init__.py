"""Model backends behind one interface: generate text, score continuations, or read next-token log-probs.

A backend knows nothing about benchmarks. It receives lists of requests and returns one result
per request in the same order; ``on_result(index, result)`` is called as soon as each result is
known (the runner writes it to disk at once, so an interrupted run loses nothing). Backends may
reorder work internally (the hf backend runs the longest prompts first).

    generate(list[GenerationRequest])        -> list[list[str]]    (n completions each)
    loglikelihood(list[LoglikelihoodRequest]) -> list[list[float]]  (one summed log-prob per continuation)
    next_token_logprobs(list[NextTokenRequest]) -> list[list[float]] (one next-token log-prob per candidate)
"""

from __future__ import annotations

from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.backends.base import (  # noqa: F401  (the package is where callers import them from)
    BACKENDS,
    Backend,
    GenerationRequest,
    LoglikelihoodRequest,
    NextTokenRequest,
    OnResult,
)


def load_backend(opts: Any) -> Backend:
    """Build the backend named by ``opts.backend`` from the run options."""
    if opts.backend == "hf":
        from tulu_cli.evaluation.backends.hf import HFBackend

        return HFBackend(
            opts.model,
            tokenizer=opts.tokenizer,
            batch_size=opts.batch_size,
            dtype=opts.dtype,
            device=opts.device,
            max_length=opts.max_length,
        )
    if opts.backend == "vllm":
        from tulu_cli.evaluation.backends.vllm import VLLMBackend

        return VLLMBackend(
            opts.model,
            tokenizer=opts.tokenizer,
            dtype=opts.dtype,
            max_length=opts.max_length,
            tensor_parallel_size=opts.tensor_parallel_size,
        )
    if opts.backend == "openai":
        from tulu_cli.evaluation.backends.openai import OpenAIBackend

        return OpenAIBackend(
            opts.model,
            base_url=opts.base_url,
            api_key_env=opts.api_key_env,
            api=opts.openai_api,
            concurrency=opts.concurrency,
            cache_dir=opts.cache_dir,
            max_retries=opts.max_retries,
            timeout=opts.request_timeout,
        )
    raise TuluError(f"--backend: '{opts.backend}' is not one of {', '.join(BACKENDS)}")
