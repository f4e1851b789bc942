"""The requests every backend answers and the Backend base class (the interface is described in backends/__init__.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tulu_cli.errors import TuluError

BACKENDS = ("hf", "vllm", "openai")

OnResult = Callable[[int, Any], None]


@dataclass
class GenerationRequest:
    prompt: str  # full prompt text (chat template already applied)
    messages: list[dict[str, str]] | None = None  # what a chat API receives instead
    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class LoglikelihoodRequest:
    context: str
    continuations: list[str] = field(default_factory=list)


@dataclass
class NextTokenRequest:
    """Log-probs, in the distribution right after ``context``, of one token per candidate: the LAST
    token of the candidate encoded alone without special tokens (``encode(" A")[-1]``), which on
    SentencePiece tokenizers is not the token the candidate becomes after the context."""

    context: str
    candidates: list[str] = field(default_factory=list)


class Backend:
    """Interface; see the module docstring. ``tokenizer`` is None for API backends."""

    name = "base"
    tokenizer: Any = None
    max_length: int | None = None  # context length in tokens; prompts are cut from the left to fit

    def _truncate(self, ids: list[int], room: int) -> list[int]:
        """``ids`` cut from the left so that ``room`` more tokens still fit in ``max_length`` (warns once)."""
        if self.max_length is None:
            return ids
        limit = max(1, self.max_length - room)
        if len(ids) <= limit:
            return ids
        if not self.__dict__.get("_warned_truncation"):
            from rich.console import Console

            Console(stderr=True).print(
                f"[yellow]warning:[/yellow] prompts longer than {limit} tokens are cut from the left "
                f"(model length {self.max_length})"
            )
            self._warned_truncation = True
        return ids[-limit:]

    def generate(self, requests: list[GenerationRequest], on_result: OnResult | None = None) -> list[list[str]]:
        raise NotImplementedError

    def loglikelihood(self, requests: list[LoglikelihoodRequest], on_result: OnResult | None = None) -> list[list[float]]:
        raise TuluError(f"the {self.name} backend cannot score log-likelihoods; use --backend hf or vllm for this task")

    def next_token_logprobs(self, requests: list[NextTokenRequest], on_result: OnResult | None = None) -> list[list[float]]:
        raise TuluError(
            f"the {self.name} backend cannot read next-token log-probs of given tokens (it has no tokenizer); "
            "use --backend hf or vllm"
        )

    def candidate_token_id(self, text: str) -> int:
        """The token a NextTokenRequest candidate stands for; remembered for ``describe()``."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise TuluError(f"next-token candidate {text!r} encodes to no token")
        self.candidate_tokens[text] = {"id": ids[-1], "token": self.tokenizer.convert_ids_to_tokens(ids[-1])}
        return ids[-1]

    @property
    def candidate_tokens(self) -> dict[str, dict[str, Any]]:
        """Candidate text -> the token id and string read for it (results.json shows which tokens were compared)."""
        return self.__dict__.setdefault("_candidate_tokens", {})

    def count_tokens(self, text: str) -> int | None:
        if self.tokenizer is None:
            return None
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def describe(self) -> dict[str, Any]:
        """Backend facts for results.json (model path, dtype, batch size...)."""
        return {"backend": self.name}

    def close(self) -> None:
        pass


def is_oom(err: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU allocator's (the hf backend halves its batch on either)."""
    import torch

    if isinstance(err, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    msg = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)
