"""Chat templating for evaluation prompts: the Tulu 2 eval format, the tokenizer's own template, or none."""

from __future__ import annotations

from typing import Any, Callable

from tulu_cli.errors import TuluError

CHAT_TEMPLATES = ("tulu", "tokenizer", "none")


def render_tulu(messages: list[dict[str, str]]) -> str:
    """open-instruct's eval format: contents unstripped, no BOS (the tokenizer adds it), assistant header last."""
    parts = []
    for m in messages:
        role = m["role"]
        if role not in ("system", "user", "assistant"):
            raise TuluError(f"chat message role '{role}' is not one of system, user, assistant")
        if role == "assistant":
            parts.append(f"<|assistant|>\n{m['content'].strip()}</s>\n")
        else:
            parts.append(f"<|{role}|>\n{m['content']}\n")
    return "".join(parts) + "<|assistant|>\n"


def adds_bos(tokenizer: Any) -> bool:
    """Whether encoding text with special tokens (as the backends do) puts the BOS id first."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return False
    ids = tokenizer("x")["input_ids"]
    return bool(ids) and ids[0] == bos_id


def make_renderer(template: str, tokenizer: Any = None) -> Callable[[list[dict[str, str]]], str] | None:
    """A function messages -> prompt text for --chat-template; None for 'none' (plain prompts)."""
    if template == "none":
        return None
    if template == "tulu":
        return render_tulu
    if template == "tokenizer":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise TuluError(
                "--chat-template tokenizer: the model's tokenizer has no chat template; use --chat-template tulu or none"
            )
        # The backends tokenize prompts with special tokens: when that adds BOS, a template that
        # writes BOS too would double it, so its leading BOS goes. Otherwise (ChatML tokenizers whose
        # "BOS" is <|im_start|> and is never added) the text stays as rendered, like open-instruct's.
        bos = getattr(tokenizer, "bos_token", None) if adds_bos(tokenizer) else None

        def render(messages: list[dict[str, str]]) -> str:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            if bos and text.startswith(bos):
                text = text[len(bos):]
            return text

        return render
    raise TuluError(f"--chat-template: '{template}' is not one of {', '.join(CHAT_TEMPLATES)}")


def template_source(template: str, tokenizer: Any = None) -> str:
    """The text that defines the template (for results.json's hash)."""
    if template == "tulu":
        return render_tulu([{"role": "system", "content": "{s}"}, {"role": "user", "content": "{u}"}, {"role": "assistant", "content": "{a}"}])
    if template == "tokenizer":
        return str(getattr(tokenizer, "chat_template", "") or "")
    return ""
