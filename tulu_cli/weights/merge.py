"""Merge a PEFT LoRA adapter into its base and write a plain Hugging Face model, tensor by tensor.

LoRA: each base tensor is read from the checkpoint, the adapter's delta (computed by peft's own
``get_delta_weight``, so scaling, rsLoRA, rank/alpha patterns and fan-in-fan-out follow peft) is
added in float32, and the result is written out. QLoRA: the base is loaded in 4-bit nf4 with
double quantization exactly as it was trained, each 4-bit linear layer is dequantized, then the
same delta is added: the Tulu QLoRA recipe's "merge into the dequantized model".
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable

from tulu_cli.errors import TuluError
from tulu_cli.weights import arch
from tulu_cli.weights.checkpoint import Checkpoint, torch_dtype
from tulu_cli.weights.diff import grow_rows
from tulu_cli.weights.writer import ShardedWriter, atomic_folder, check_output, copy_side_files, nbytes, parse_size, progress, set_config_fields

PEFT_PREFIX = "base_model.model."
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json",
    "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
)


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json"))


def _tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001 - transformers raises many types for damaged tokenizer files
        raise TuluError(f"{folder}: cannot load its tokenizer ({' '.join(str(e).split())[:300]})") from None


def read_adapter(adapter: Path) -> tuple[Any, dict[str, Any]]:
    """The adapter's PEFT config and state dict (small: LoRA matrices and any saved full modules)."""
    if not adapter.is_dir():
        raise TuluError(f"--adapter {adapter}: folder does not exist")
    if not (adapter / "adapter_config.json").is_file():
        raise TuluError(f"--adapter {adapter}: no adapter_config.json, this is not a PEFT adapter folder")
    from peft import PeftConfig

    try:
        config = PeftConfig.from_pretrained(str(adapter))
    except Exception as e:  # noqa: BLE001 - malformed config written by hand or by another version
        raise TuluError(f"{adapter / 'adapter_config.json'}: cannot read the PEFT config ({e})") from None
    if str(getattr(config, "peft_type", "")).split(".")[-1].upper() != "LORA":
        raise TuluError(f"--adapter {adapter}: peft_type is {config.peft_type}; only LoRA adapters can be merged")
    if getattr(config, "use_dora", False):
        raise TuluError(f"--adapter {adapter}: DoRA adapters are not supported (their merge needs the weight norms of the full model)")
    weights = adapter / "adapter_model.safetensors"
    try:
        if weights.is_file():
            from safetensors.torch import load_file

            state = load_file(str(weights))
        elif (adapter / "adapter_model.bin").is_file():
            import torch

            state = torch.load(adapter / "adapter_model.bin", map_location="cpu", weights_only=True)
        else:
            raise TuluError(f"--adapter {adapter}: no adapter_model.safetensors or adapter_model.bin")
    except TuluError:
        raise
    except Exception as e:  # noqa: BLE001
        raise TuluError(f"--adapter {adapter}: cannot read the adapter weights ({e})") from None
    return config, state


def split_adapter_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(LoRA matrices, full tensors that replace base tensors keyed by their checkpoint name).

    Full tensors are modules_to_save copies (``X.modules_to_save.weight``, which win), embedding
    layers peft saved because the vocabulary grew (``X.weight``) and trained biases; the frozen
    ``original_module`` copies are ignored.
    """
    lora, plain, trained = {}, {}, {}
    for key, value in state.items():
        name = key.removeprefix(PEFT_PREFIX)
        if ".lora_" in name:
            lora[key] = value
        elif ".original_module." in name:
            continue
        elif ".modules_to_save." in name:
            module, rest = name.split(".modules_to_save.", 1)
            rest = rest.split(".", 1)[1] if rest.startswith("default.") else rest
            trained[f"{module}.{rest}"] = value
        else:
            plain[name.replace(".base_layer.", ".")] = value
    plain.update(trained)
    return lora, plain


def lora_layers(base_config: Any, peft_config: Any, lora_state: dict[str, Any]) -> dict[str, Any]:
    """{checkpoint key of a base weight: peft LoRA layer holding the adapter} on a meta-device model.

    Only the small LoRA matrices are materialised; the base weights stay on the meta device and
    are streamed from the checkpoint when merging.
    """
    import copy

    from peft import get_peft_model
    from peft.tuners.lora import LoraLayer
    from peft.utils import set_peft_model_state_dict

    peft_config = copy.deepcopy(peft_config)
    peft_config.inference_mode = True
    # Whole-module copies are merged from the adapter's state dict directly (split_adapter_state).
    peft_config.modules_to_save = None
    with warnings.catch_warnings():  # deprecation chatter between peft and transformers versions, not the user's concern
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(arch.meta_model(base_config), peft_config)
    layers: dict[str, Any] = {}
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        for attr in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
            sub = getattr(module, attr, None)
            if sub is not None and len(sub):
                sub.to_empty(device="cpu")
        layers[name.removeprefix(PEFT_PREFIX) + ".weight"] = module
    try:
        result = set_peft_model_state_dict(model, lora_state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise TuluError(f"--adapter: its LoRA weights do not fit this base model (wrong base?): {first[1].strip() if len(first) > 1 else first[0]}") from None
    missing = [k for k in result.missing_keys if ".lora_" in k]
    if missing:
        raise TuluError(f"--adapter: adapter_model is missing LoRA tensor '{missing[0]}' ({len(missing)} missing)")
    return layers


def _need_bitsandbytes() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise TuluError("--qlora needs bitsandbytes: pip install 'tulu-cli[qlora]'") from None


def load_4bit(base_dir: Path, compute_dtype: str) -> Any:
    """The base in 4-bit nf4 with double quantization, the way QLoRA trained on it."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    _need_bitsandbytes()
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(compute_dtype),
    )
    return AutoModelForCausalLM.from_pretrained(
        str(base_dir), quantization_config=quant, dtype=torch_dtype(compute_dtype), device_map={"": "cpu"}
    )


def dequantized_getter(model: Any) -> Callable[[str], Any]:
    """Read a checkpoint key from a 4-bit model: 4-bit linear weights dequantized, everything else as loaded."""
    import bitsandbytes as bnb

    def get(key: str) -> Any:
        module_name, _, attr = key.rpartition(".")
        try:
            module = model.get_submodule(module_name)
            value = getattr(module, attr)
        except AttributeError:
            raise TuluError(f"--base: tensor '{key}' of the checkpoint is not in the 4-bit model") from None
        if isinstance(module, bnb.nn.Linear4bit) and attr == "weight":
            data, state = value.data, value.quant_state
            if getattr(state, "packing_format_for_cpu", False):  # repacked by a CPU forward pass: undo first
                data, state = bnb.functional._convert_weight_packed_for_cpu_inverse(data, state)
            return bnb.functional.dequantize_4bit(data, state)
        return value.data

    return get


def resolve_base(opts: Any, peft_config: Any) -> Path:
    if opts.base is not None:
        return Path(opts.base)
    named = getattr(peft_config, "base_model_name_or_path", None)
    if not named:
        raise TuluError(f"--adapter {opts.adapter}: adapter_config.json names no base model; pass --base DIR")
    if not Path(named).is_dir():
        raise TuluError(
            f"--adapter {opts.adapter}: adapter_config.json names base '{named}', which is not a local folder; pass --base DIR"
        )
    return Path(named)


def merge(opts: Any, check_only: bool = False) -> dict[str, Any]:
    """Write base + LoRA delta as a plain model folder; return a summary of what was done.

    ``check_only`` (dry run): read and check the adapter, the base and the output, then return
    before any work (for QLoRA, before the 4-bit load).
    """
    adapter = Path(opts.adapter)
    # The output first: reading the adapter imports peft and torch (seconds) and may be in vain.
    check_output(opts.output, opts.overwrite, [("--adapter", adapter)] + ([("--base", Path(opts.base))] if opts.base is not None else []))
    import torch

    peft_config, state = read_adapter(adapter)
    base_dir = resolve_base(opts, peft_config)
    base = Checkpoint(base_dir, "--base")
    base.config()  # the merged model takes it: a folder without one is refused now
    check_output(opts.output, opts.overwrite, [("--adapter", adapter), ("--base", base.folder)])
    config = arch.load_config(base.folder)
    emb = arch.embedding_keys(base.folder, base.keys())
    lora_state, full = split_adapter_state(state)

    # Vocabulary: the adapter's saved embeddings fix the size; else its tokenizer when larger than the base.
    rows = {k: base.shape[k][0] for k in emb}
    target = max(rows.values(), default=0)
    tokenizer_dir = adapter if _has_tokenizer(adapter) else (base.folder if _has_tokenizer(base.folder) else None)
    # Loaded now, not at save time, so a damaged tokenizer is refused before the merge.
    tokenizer = _tokenizer(tokenizer_dir) if tokenizer_dir is not None and (opts.save_tokenizer or tokenizer_dir == adapter) else None
    if tokenizer_dir == adapter:
        target = max(target, len(tokenizer))
    saved_rows = {full[k].shape[0] for k in emb if k in full}
    if saved_rows:
        target = max(saved_rows)
    if emb and hasattr(config, "vocab_size"):
        config.vocab_size = target

    layers = lora_layers(config, peft_config, lora_state)
    for key in layers:
        if key not in base.file_of and getattr(config, "tie_word_embeddings", False) and key in arch.describe(base.folder)[0]:
            raise TuluError(
                f"--adapter {adapter}: has LoRA on '{key}', which this base ties to its input embedding; "
                "a merged model would need untied embeddings (retrain without it in target modules)"
            )
        if key not in base.file_of:
            raise TuluError(f"--adapter {adapter}: targets '{key}', which the base checkpoint {base.folder} lacks (wrong base?)")
    for key, value in full.items():
        if key not in base.file_of:
            raise TuluError(f"--adapter {adapter}: holds a full tensor for '{key}', which the base checkpoint {base.folder} lacks (wrong base?)")

    def out_shape(k: str) -> tuple[int, ...]:
        shape = base.shape[k]
        return (target, *shape[1:]) if k in emb else shape

    for key, value in full.items():
        if tuple(value.shape) != out_shape(key):
            raise TuluError(f"--adapter {adapter}: tensor '{key}' has shape {list(value.shape)}, the base needs {list(out_shape(key))} (wrong base?)")
    for key, layer in layers.items():
        expected = tuple(layer.get_base_layer().weight.shape)
        if expected != out_shape(key):
            raise TuluError(f"--adapter {adapter}: LoRA on '{key}' expects shape {list(expected)}, the base has {list(base.shape[key])} (wrong base?)")

    def out_dtype(k: str) -> str:
        stored = base.dtype[k]
        if not stored.startswith(("float", "bfloat")):
            return stored
        if opts.dtype != "auto":
            return opts.dtype
        return opts.compute_dtype if opts.qlora else stored

    if check_only:
        if opts.qlora:
            _need_bitsandbytes()
        return {"output": str(opts.output), "base": str(base.folder), "lora_layers": len(layers), "replaced_tensors": len(full)}
    get = base.get
    if opts.qlora:
        get = dequantized_getter(load_4bit(base.folder, opts.compute_dtype))

    keys = base.keys()
    entries = [(k, out_dtype(k), out_shape(k)) for k in keys]
    with atomic_folder(opts.output) as tmp:
        writer = ShardedWriter(tmp, entries, parse_size(opts.max_shard_size))
        with progress("merge", writer.total_size) as advance, torch.no_grad():
            for k, dtype, shape in writer.order:
                if not dtype.startswith(("float", "bfloat")):
                    writer.write(k, get(k))
                    advance(nbytes(dtype, shape))
                    continue
                w = get(k).float()
                if k in emb:
                    w = grow_rows(w, target)[:target]
                if k in full:
                    w = full[k].float()
                if k in layers:
                    w = w + layers[k].get_delta_weight("default").float()
                writer.write(k, w.to(torch_dtype(dtype)))
                advance(nbytes(dtype, shape))
                del w
        writer.close()
        skip = TOKENIZER_FILES if tokenizer_dir is not None else ()
        copy_side_files(base.folder, tmp, skip=skip + ("adapter_config.json",))
        if opts.save_tokenizer and tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        fields: dict[str, Any] = {}
        if emb:
            fields["vocab_size"] = target
        dtypes = {e[1] for e in entries if e[1].startswith(("float", "bfloat"))}
        if len(dtypes) == 1:
            fields["dtype"] = dtypes.pop()
        set_config_fields(tmp, **fields)
        _drop_quantization_config(tmp)
    return {
        "output": str(opts.output),
        "base": str(base.folder),
        "lora_layers": len(layers),
        "replaced_tensors": len(full),
        "vocab_rows": target if emb else None,
        "added_rows": (target - max(rows.values())) if rows else 0,
        "shards": len(writer.names),
        "tokenizer": str(tokenizer_dir) if opts.save_tokenizer and tokenizer_dir is not None else None,
        "qlora": bool(opts.qlora),
    }


def _drop_quantization_config(folder: Path) -> None:
    """A merged model is plain weights: a quantization block copied from a pre-quantized base would mislead loaders."""
    path = folder / "config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
        if cfg.pop("quantization_config", None) is not None:
            path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
