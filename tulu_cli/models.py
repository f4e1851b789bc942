"""Loading causal LMs and tokenizers for training: pad tokens, embedding resize, dtype, attention."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def read_model_config(path: str, revision: str | None = None, trust_remote_code: bool = False) -> dict[str, Any]:
    """The model's config.json as a dict (a local file read, or the hub's when reachable)."""
    local = Path(path) / "config.json"
    if local.is_file():
        return json.loads(local.read_text(encoding="utf-8"))
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code).to_dict()
    except Exception as e:  # noqa: BLE001 - the hub raises many kinds; the user needs one line
        raise TuluError(f"--model {path}: not a local model folder and not loadable from the hub ({type(e).__name__})") from None


# Files one of which every tokenizer folder holds (fast, SentencePiece, BPE/WordPiece vocabularies, or
# the config of a tokenizer that needs no vocabulary file): none of them means AutoTokenizer will fail.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE (or the older TRANSFORMERS_OFFLINE) as huggingface_hub reads it."""
    return any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _resolve_source(name: str, flag: str) -> Path | None:
    """The local folder ``name`` stands for: itself, or its snapshot in the Hugging Face cache when
    offline; None for a hub id that will be downloaded. Refuses what can be neither."""
    path = Path(name).expanduser()
    where = f"{flag} {name}"
    try:
        exists = path.exists()
    except PermissionError:
        raise TuluError(f"{where}: cannot look inside {path.parent} (permission denied)") from None
    if exists:
        if not path.is_dir():
            raise TuluError(f"{where}: is a file, not a model folder")
        if not os.access(path, os.R_OK | os.X_OK):
            raise TuluError(f"{where}: cannot read this folder (permission denied)")
        return path
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise TuluError(f"{where}: no such folder (and not a Hugging Face model id such as org/name)") from None
    if not _hub_offline():
        return None  # transformers downloads it; the backend reports what the hub says
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json" if flag == "--model" else "tokenizer_config.json")
    if not isinstance(cached, str):
        raise TuluError(f"{where}: no such folder, and not in the Hugging Face cache (HF_HUB_OFFLINE=1 downloads nothing); give a model folder or download it first")
    return Path(cached).parent


def _check_tokenizer_folder(folder: Path, where: str, hint: str) -> None:
    present = [n for n in _TOKENIZER_FILES if (folder / n).is_file()] + [p.name for p in folder.glob("*.model")]
    if not present:
        raise TuluError(f"{where}: no tokenizer files in this folder ({', '.join(_TOKENIZER_FILES)}){hint}")
    unreadable = [n for n in present if not os.access(folder / n, os.R_OK)]
    if unreadable:
        raise TuluError(f"{where}: cannot read {folder / unreadable[0]} (permission denied)")


def check_model_source(model: str, tokenizer: str | None = None) -> None:
    """Preflight of ``--model`` (and ``--tokenizer``) before anything loads or any output is written: a
    local folder needs a readable config.json, complete weights (every shard of an index, safetensors
    headers that fit their files) and tokenizer files; a hub id must be cached when HF_HUB_OFFLINE=1."""
    from tulu_cli.weights.checkpoint import read_safetensors_header, weight_files

    folder = _resolve_source(model, "--model")
    if folder is not None:
        where = f"--model {model}"
        config = folder / "config.json"
        if not config.is_file():
            adapter = " (a PEFT adapter: merge it first with `tulu weights merge`)" if (folder / "adapter_config.json").is_file() else ""
            raise TuluError(f"{where}: no config.json in this folder (not a Hugging Face model folder){adapter}")
        try:
            loaded = json.loads(config.read_text(encoding="utf-8"))
        except OSError as e:
            raise TuluError(f"{config}: cannot read ({e.strerror or e})") from None
        except ValueError as e:
            raise TuluError(f"{config}: not valid JSON ({e})") from None
        if not isinstance(loaded, dict) or "model_type" not in loaded:
            raise TuluError(f"{config}: not a model config (no 'model_type' key)")
        files, fmt = weight_files(folder, "--model")
        for f in sorted(set(files.values())):
            if not os.access(f, os.R_OK):
                raise TuluError(f"{f}: cannot read (permission denied)")
            if fmt == "safetensors":
                read_safetensors_header(f)
        if tokenizer is None:
            _check_tokenizer_folder(folder, where, "; pass --tokenizer DIR")
    if tokenizer is not None:
        tok_folder = _resolve_source(tokenizer, "--tokenizer")
        if tok_folder is not None:
            _check_tokenizer_folder(tok_folder, f"--tokenizer {tokenizer}", "")


def model_max_length(config: dict[str, Any]) -> int | None:
    """Longest sequence the architecture supports, from the usual config keys."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_tokenizer(name: str, *, revision: str | None = None, trust_remote_code: bool = False, use_slow: bool = False):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            name, revision=revision, trust_remote_code=trust_remote_code, use_fast=not use_slow
        )
    except (OSError, ValueError) as e:
        raise TuluError(f"--tokenizer {name}: cannot load a tokenizer there ({str(e).splitlines()[0]})") from None


def prepare_tokenizer(tokenizer, model_type: str | None, *, chat_template: str | None = None) -> int:
    """Give the tokenizer the special tokens training needs, as open-instruct did; return how many were added.

    Llama: make sure bos/eos/unk/pad exist (Llama 2 ships without pad). GPT-NeoX (Pythia):
    add a pad. OLMo has no bos: its eos doubles as bos (then pass --add-bos). Anything else
    without a pad token gets ``<pad>`` so padding never reuses a token the model must learn.
    """
    added = 0
    mt = (model_type or "").lower()
    if mt.startswith("olmo") and tokenizer.bos_token is None:
        tokenizer.bos_token = tokenizer.eos_token
    if mt == "llama":
        wanted = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
        missing = {k: v for k, v in wanted.items() if getattr(tokenizer, k) is None}
        if missing:
            added += tokenizer.add_special_tokens(missing)
    if tokenizer.pad_token is None:
        added += tokenizer.add_special_tokens({"pad_token": "<pad>"})
    if chat_template and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = chat_template
    return added


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of everything about a tokenizer that changes token ids (vocab, merges, specials, template)."""
    import hashlib

    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    h.update(str(len(tokenizer)).encode())
    h.update(str(getattr(tokenizer, "chat_template", "") or "").encode())
    h.update(str(getattr(tokenizer, "add_bos_token", "")).encode())
    return h.hexdigest()


def check_attention(attn_implementation: str) -> None:
    if attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise TuluError("--attn-implementation flash_attention_2: the flash-attn package is not installed (pip install flash-attn), or use sdpa")


def load_causal_lm(
    name: str,
    *,
    dtype: str = "fp32",
    attn_implementation: str = "sdpa",
    revision: str | None = None,
    trust_remote_code: bool = False,
    config_name: str | None = None,
    low_cpu_mem_usage: bool = False,
):
    """Load a causal LM in the given dtype ('bf16'/'fp16'/'fp32') with the chosen attention kernel.

    Under an active ZeRO-3 DeepSpeed config (set up by accelerate before this call) transformers
    partitions the weights while loading, so a 70B model never sits whole in one process.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if attn_implementation != PACKED_SDPA:
        check_attention(attn_implementation)
    kwargs: dict[str, Any] = {
        "revision": revision,
        "trust_remote_code": trust_remote_code,
        "dtype": getattr(torch, DTYPES[dtype]),
        "attn_implementation": attn_implementation,
    }
    if config_name:
        kwargs["config"] = AutoConfig.from_pretrained(config_name, trust_remote_code=trust_remote_code)
    if low_cpu_mem_usage:
        kwargs["low_cpu_mem_usage"] = True
    return AutoModelForCausalLM.from_pretrained(name, **kwargs)


def embedding_rows(model) -> int:
    """Rows of the input embedding; works when ZeRO-3 has partitioned the weight to an empty shape."""
    emb = model.get_input_embeddings()
    rows = getattr(emb, "num_embeddings", None)
    if rows is None:
        weight = emb.weight
        rows = getattr(weight, "ds_shape", weight.shape)[0]
    return int(rows)


def resize_for_tokenizer(model, tokenizer) -> bool:
    """Grow the embeddings when the tokenizer has more tokens than the model; True if resized.

    transformers gathers ZeRO-3 partitions inside ``resize_token_embeddings``; the new rows
    start at the mean of the old ones so the added pad token does not disturb the softmax.
    """
    if len(tokenizer) <= embedding_rows(model):
        return False
    model.resize_token_embeddings(len(tokenizer))
    return True


def sync_special_token_ids(model, tokenizer) -> None:
    """Record the tokenizer's pad/bos/eos in the model and generation configs (saved with the model)."""
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, key, None)
        if value is not None:
            setattr(model.config, key, value)
            gen = getattr(model, "generation_config", None)
            if gen is not None:
                setattr(gen, key, value)


PACKED_SDPA = "tulu_packed_sdpa"


def _packed_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """Causal SDPA run separately on each packed example (the CPU/sdpa analogue of flash-attention varlen).

    transformers' own sdpa path turns packed position ids into one dense block-diagonal mask over
    the whole row, which costs (sum of lengths)^2 and loses most of what padding-free batching
    saves; per-example causal calls cost the sum of squared lengths and use the fast causal kernel.
    """
    import torch
    import torch.nn.functional as F

    positions = kwargs.get("position_ids")
    length = query.shape[2]
    if positions is None or query.shape[0] != 1 or attention_mask is not None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    starts = (positions[0] == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    bounds = starts + [length]
    gqa = key.shape[1] != query.shape[1]
    pieces = [
        F.scaled_dot_product_attention(
            query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], is_causal=True, scale=scaling, dropout_p=dropout, enable_gqa=gqa
        )
        for s, e in zip(bounds[:-1], bounds[1:])
        if e > s
    ]
    out = torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0]
    return out.transpose(1, 2).contiguous(), None


def register_packed_sdpa() -> str:
    """Register the per-example SDPA kernel with transformers; return its attn_implementation name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PACKED_SDPA, _packed_sdpa_forward)
    # Packed rows need no mask tensor: example boundaries come from the position ids.
    AttentionMaskInterface.register(PACKED_SDPA, lambda *args, **kwargs: None)
    return PACKED_SDPA
