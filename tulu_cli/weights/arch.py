"""What a model's architecture says about its checkpoint keys: which are vocabulary embeddings, and their state_dict order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError

# Buffers that 2023-era transformers saved in checkpoints (and so in the released Alpaca / Tulu v1
# diffs) but that today's models rebuild from the config and no longer load.
NON_LEARNED_SUFFIXES = ("rotary_emb.inv_freq",)
FALLBACK_EMBEDDINGS = ("embed_tokens.weight", "lm_head.weight", "wte.weight", "embed_in.weight", "embed_out.weight", "word_embeddings.weight")


def is_non_learned(key: str) -> bool:
    return key.endswith(NON_LEARNED_SUFFIXES)


def meta_model(config: Any):
    """The architecture on the meta device: names and shapes, no memory."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def load_config(folder: Path):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001 - unknown model_type, bad fields: transformers raises several types
        raise TuluError(f"{Path(folder) / 'config.json'}: transformers cannot load this config ({' '.join(str(e).split())[:300]})") from None


def describe(folder: Path) -> tuple[set[str], list[str]]:
    """(names of the input/output embedding weights, state_dict key order) for the model in ``folder``.

    Falls back to common embedding names when the architecture cannot be instantiated.
    """
    try:
        model = meta_model(load_config(folder))
    except Exception:  # noqa: BLE001 - unknown or custom architecture: names are still a good guess
        return set(), []
    targets = []
    for getter in (model.get_input_embeddings, model.get_output_embeddings):
        try:
            module = getter()
        except (NotImplementedError, AttributeError):
            module = None
        if module is not None and getattr(module, "weight", None) is not None:
            targets.append(module.weight)
    names = {n for n, p in model.named_parameters(remove_duplicate=False) if any(p is t for t in targets)}
    return names, list(model.state_dict().keys())


def embedding_keys(folder: Path, keys: list[str]) -> set[str]:
    names, _ = describe(folder)
    if not names:
        names = {k for k in keys if k.endswith(FALLBACK_EMBEDDINGS)}
    return names & set(keys)


def ordered(keys: list[str], reference: list[str]) -> list[str]:
    """``keys`` in model (state_dict) order; a key the model lacks goes right after its module's siblings."""
    position = {k: float(i) for i, k in enumerate(reference)}
    out = []
    for i, k in enumerate(keys):
        if k in position:
            out.append((position[k], i, k))
            continue
        prefix = k.rsplit(".", 2)[0] + "."
        siblings = [position[r] for r in reference if r.startswith(prefix)]
        out.append(((max(siblings) + 0.5) if siblings else float(len(reference)) + i, i, k))
    return [k for _, _, k in sorted(out)]


def rotary_inv_freq(config: Any):
    """The rotary inverse frequencies old checkpoints stored per layer: 1 / theta^(2i/d)."""
    import torch

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    theta = getattr(config, "rope_theta", None)
    if theta is None:
        theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    return 1.0 / (float(theta) ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
