"""transformers backend: batched generation (left padding, per-sequence stop strings), log-likelihoods, next-token log-probs.

Work is sorted longest first, so if a batch size does not fit in memory it fails on the first
batch; with ``batch_size="auto"`` the batch is halved until it fits and stays there.
Generation: continuous batching (hf_generation.py): a row leaves the batch the step it finishes and
is reported at once, a waiting prompt takes its slot; the head all prompts share (few-shot
exemplars) is run once and every new row starts from a copy of its KV cache.
Multiple choice: the context shared by all choices runs through the model ONCE (only its last
position's logits are computed): one-token continuations (MMLU's " A".." D") are read from there;
longer ones continue from the context's KV cache, copied per continuation, in a second short pass.
Next-token log-probs are that first pass alone, read at the candidates' ids. Left padding with
positions taken from the attention mask gives every row the logits it would get unpadded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.backends.base import Backend, GenerationRequest, LoglikelihoodRequest, NextTokenRequest, OnResult, is_oom
from tulu_cli.evaluation.backends.hf_generation import (
    CPU_SLOTS,
    ContinuousBatcher,
    cache_kwarg,
    generation_is_plain,
    output_cache,
    trim_at_stop,
)

AUTO_START = 64
MIN_SHARED_PREFIX = 32  # tokens; shorter common heads are not worth a separate pass


def _dtype_kwarg() -> str:
    """transformers renamed from_pretrained's torch_dtype to dtype in 4.56."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


class _StopOnStrings:
    """Per-row stopping: a row is done once its generated text contains a stop string."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...], prompt_len: int):
        self.tokenizer = tokenizer
        self.stops = stops
        self.prompt_len = prompt_len
        # Decoding only a tail is enough: a stop string spans at most this many tokens (1 char >= 1 token).
        self.window = max(len(s) for s in stops) + 8

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        start = max(self.prompt_len, input_ids.shape[1] - self.window)
        tails = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stops) for t in tails], dtype=torch.bool, device=input_ids.device)


class HFBackend(Backend):
    name = "hf"

    def __init__(
        self,
        model: str,
        *,
        tokenizer: str | None = None,
        batch_size: int | str = "auto",
        dtype: str = "auto",
        device: str | None = None,
        max_length: int | None = None,
        model_obj: Any = None,
        tokenizer_obj: Any = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = tokenizer_obj or AutoTokenizer.from_pretrained(tokenizer or model)
        except (OSError, ValueError) as e:
            raise TuluError(f"--model {tokenizer or model}: cannot load the tokenizer ({str(e).splitlines()[0]})") from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if dtype == "auto":
            # Checkpoints are often bf16; on CPU that is slow, so compute in float32 there.
            torch_dtype: Any = "auto" if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)
        if model_obj is None:
            if Path(model).exists() and not (Path(model) / "config.json").is_file():
                raise TuluError(f"--model {model}: no config.json in this folder (not a transformers model)")
            # Several GPUs and no --device: spread the layers over them (as Tulu 2 did for big models).
            spread = device is None and self.device == "cuda" and torch.cuda.device_count() > 1
            kwargs: dict[str, Any] = {_dtype_kwarg(): torch_dtype}
            if spread:
                kwargs["device_map"] = "auto"
            try:
                model_obj = AutoModelForCausalLM.from_pretrained(model, **kwargs)
            except (OSError, ValueError) as e:
                raise TuluError(f"--model {model}: cannot load the model ({str(e).splitlines()[0]})") from None
            if not spread:
                model_obj.to(self.device)
        self.model = model_obj.eval()
        self.input_device = self.model.get_input_embeddings().weight.device
        self.dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        self.auto = batch_size == "auto"
        self.batch_size = AUTO_START if self.auto else int(batch_size)
        cfg = self.model.config
        self.max_length = max_length or getattr(cfg, "max_position_embeddings", None) or 2048

    # ---- helpers ------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=True)["input_ids"]

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "hf",
            "model": self.model_name,
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": "auto" if self.auto else self.batch_size,
            "final_batch_size": self.batch_size,
            "max_length": self.max_length,
            **({"next_token_candidates": dict(self.candidate_tokens)} if self.candidate_tokens else {}),
        }

    def _batches(self, items: list[int], run: Callable[[list[int]], None], size: Callable[[], int] | None = None) -> None:
        """Run ``items`` in batches of ``size()`` (default: the batch size); on out-of-memory with auto batch
        size, halve and retry."""
        i = 0
        while i < len(items):
            batch = items[i : i + (size() if size is not None else self.batch_size)]
            try:
                run(batch)
            except Exception as e:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_oom(e):
                    raise
                self._free()
                if not self.auto or self.batch_size == 1:
                    raise TuluError(
                        f"out of memory at batch size {self.batch_size}; lower --batch-size (or use auto)"
                        + (" or --max-length" if self.batch_size == 1 else "")
                    ) from None
                self.batch_size = max(1, min(self.batch_size, len(batch)) // 2)
                continue
            i += len(batch)

    def _free(self) -> None:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _left_pad(self, seqs: list[list[int]]) -> tuple[Any, Any]:
        import torch

        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[r, width - len(s) :] = 1
        return ids.to(self.input_device), mask.to(self.input_device)

    # ---- generation ---------------------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest], on_result: OnResult | None = None) -> list[list[str]]:
        results: list[list[str] | None] = [None] * len(requests)
        encoded = [self._truncate(self.encode(r.prompt), r.max_new_tokens) for r in requests]
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            key = (r.max_new_tokens, r.temperature, r.top_p, r.n, tuple(r.stop), r.seed)
            groups.setdefault(key, []).append(i)

        def done(i: int, texts: list[str]) -> None:
            results[i] = texts
            if on_result is not None:
                on_result(i, texts)

        for idx in groups.values():
            idx.sort(key=lambda i: -len(encoded[i]))
            req = requests[idx[0]]
            if generation_is_plain(self.model, req.temperature > 0):
                prefix = self._shared_prefix([encoded[i] for i in idx])
                ContinuousBatcher(self, req, prefix, done).run([(i, encoded[i]) for i in idx])
                continue
            # The model's generation config adds logits processing (a repetition penalty...): transformers'
            # generate applies it, in static batches that each run until their last row stops.
            prefix = self._shared_prefix([encoded[i] for i in idx]) if req.n == 1 else None

            def run(batch: list[int]) -> None:
                for i, o in zip(batch, self._generate_batch([encoded[i] for i in batch], requests[batch[0]], prefix)):
                    done(i, o)

            self._batches(idx, run, self.generation_slots)
        return [r if r is not None else [] for r in results]

    def generation_slots(self) -> int:
        """Rows generated at once: the batch size; with auto on CPU at most CPU_SLOTS (more rows per step
        stop paying off once the cores are busy, and every row waits for the slowest)."""
        if self.auto and not self.device.startswith("cuda"):
            return min(self.batch_size, CPU_SLOTS)
        return self.batch_size

    def _shared_prefix(self, seqs: list[list[int]]) -> tuple[list[int], Any] | None:
        """Few-shot prompts share a long head: run it once and keep its KV cache for every batch."""
        import torch

        n = min(len(s) for s in seqs) - 1  # every row keeps at least one token of its own
        first = seqs[0]
        common = 0
        while common < n and all(s[common] == first[common] for s in seqs):
            common += 1
        if common < MIN_SHARED_PREFIX:
            return None
        head = first[:common]
        with torch.inference_mode():
            out = self._forward(input_ids=torch.tensor([head], device=self.input_device), use_cache=True, logits_to_keep=1)
        cache = output_cache(out)
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):  # legacy tuple caches: no reuse
            return None
        return head, cache

    def _generate_batch(
        self, seqs: list[list[int]], req: GenerationRequest, prefix: tuple[list[int], Any] | None = None
    ) -> list[list[str]]:
        import copy

        import torch
        from transformers import StoppingCriteriaList

        extra: dict[str, Any] = {}
        if prefix is None:
            ids, mask = self._left_pad(seqs)
        else:
            # [shared head][padding][own tail]: the head's cache is reused; positions come from the mask,
            # so the padding in the middle changes nothing for the real tokens.
            head, cache = prefix
            tails, tail_mask = self._left_pad([s[len(head) :] for s in seqs])
            head_ids = torch.tensor([head] * len(seqs), dtype=torch.long, device=tails.device)
            ids = torch.cat([head_ids, tails], dim=1)
            mask = torch.cat([torch.ones_like(head_ids), tail_mask], dim=1)
            cache = copy.deepcopy(cache)
            cache.batch_repeat_interleave(len(seqs))
            extra[cache_kwarg(self.model.generate)] = cache
        width = ids.shape[1]
        kwargs: dict[str, Any] = {
            "max_new_tokens": req.max_new_tokens,
            "num_return_sequences": req.n,
            "pad_token_id": self.tokenizer.pad_token_id,
            "use_cache": True,
        }
        if req.temperature > 0:
            kwargs.update(do_sample=True, temperature=req.temperature, top_p=req.top_p)
            if req.seed is not None:
                torch.manual_seed(req.seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if req.stop:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopOnStrings(self.tokenizer, req.stop, width)])
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs, **extra)
        texts = self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        texts = [trim_at_stop(t, req.stop) for t in texts]
        return [texts[k * req.n : (k + 1) * req.n] for k in range(len(seqs))]

    # ---- log-likelihood -----------------------------------------------------------------------
    def _split(self, context: str, continuation: str, ctx_ids: list[int]) -> list[int]:
        """Continuation tokens as the model would see them after the context."""
        full = self.encode(context + continuation)
        if full[: len(ctx_ids)] == ctx_ids and len(full) > len(ctx_ids):
            return full[len(ctx_ids) :]
        return self.tokenizer(continuation, add_special_tokens=False)["input_ids"]

    def loglikelihood(self, requests: list[LoglikelihoodRequest], on_result: OnResult | None = None) -> list[list[float]]:
        items: list[tuple[list[int], list[list[int]]]] = []
        for r in requests:
            ctx_ids = self.encode(r.context)
            conts = [self._split(r.context, c, ctx_ids) for c in r.continuations]
            items.append((self._truncate(ctx_ids, max((len(c) for c in conts), default=0)), conts))
        return self._score(items, on_result)

    def next_token_logprobs(self, requests: list[NextTokenRequest], on_result: OnResult | None = None) -> list[list[float]]:
        # A one-token "continuation" per candidate: read from the context pass, no second pass.
        items = [(self._truncate(self.encode(r.context), 0), [[self.candidate_token_id(c)] for c in r.candidates]) for r in requests]
        return self._score(items, on_result)

    def _score(self, items: list[tuple[list[int], list[list[int]]]], on_result: OnResult | None) -> list[list[float]]:
        """Summed log-probs of each (context ids, continuation ids...) item, in batches, longest first."""
        results: list[list[float]] = [[] for _ in items]
        todo = []
        for i, (_, conts) in enumerate(items):
            if conts:
                todo.append(i)
            elif on_result is not None:
                on_result(i, [])
        todo.sort(key=lambda i: -(len(items[i][0]) + max(len(c) for c in items[i][1])))

        def run(batch: list[int]) -> None:
            for i, vals in zip(batch, self._score_batch([items[i] for i in batch])):
                results[i] = vals
                if on_result is not None:
                    on_result(i, vals)

        self._batches(todo, run)
        return results

    def _forward(self, **kwargs: Any) -> Any:
        try:
            return self.model(**kwargs)
        except TypeError:  # architectures without logits_to_keep compute every position
            kwargs.pop("logits_to_keep", None)
            return self.model(**kwargs)

    def _score_batch(self, items: list[tuple[list[int], list[list[int]]]]) -> list[list[float]]:
        """Summed log-probs of each continuation: one pass over the contexts, one over the continuations."""
        import torch

        ids, mask = self._left_pad([ctx for ctx, _ in items])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        rows = [(b, j, c) for b, (_, conts) in enumerate(items) for j, c in enumerate(conts) if len(c) > 1]
        with torch.inference_mode():
            out = self._forward(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=bool(rows), logits_to_keep=1
            )
            first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
            values = [[float(first[b, c[0]]) if c else 0.0 for c in conts] for b, (_, conts) in enumerate(items)]
            if not rows:
                return values
            # Each multi-token continuation continues from a copy of its context's cache.
            pick = torch.tensor([b for b, _, _ in rows], device=ids.device)
            cache = output_cache(out)
            cache.reorder_cache(pick)
            width = max(len(c) - 1 for _, _, c in rows)
            cont_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long, device=ids.device)
            cont_mask = torch.zeros((len(rows), width), dtype=torch.long, device=ids.device)
            for r, (_, _, c) in enumerate(rows):
                cont_ids[r, : len(c) - 1] = torch.tensor(c[:-1], device=ids.device)
                cont_mask[r, : len(c) - 1] = 1
            start = mask.sum(-1)[pick]
            out2 = self.model(
                input_ids=cont_ids,
                attention_mask=torch.cat([mask[pick], cont_mask], dim=1),
                position_ids=start[:, None] + torch.arange(width, device=ids.device)[None, :],
                use_cache=True,
                **{cache_kwarg(self.model.forward): cache},
            )
            logprobs = torch.log_softmax(out2.logits.float(), dim=-1)
            for r, (b, j, c) in enumerate(rows):
                # Token t of c (t >= 1) is predicted at continuation position t - 1.
                targets = torch.tensor(c[1:], device=ids.device)
                values[b][j] += float(logprobs[r, torch.arange(len(c) - 1, device=ids.device), targets].sum())
        return values
