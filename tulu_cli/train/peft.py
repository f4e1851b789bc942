"""LoRA/QLoRA setup shared by `train lora`, `train qlora` and `train dpo --lora/--qlora`.

Finds the projections to adapt by name, loads a 4-bit base for QLoRA, wraps the model with
PEFT with gradient checkpointing really on, builds 8-bit/paged optimizers and saves only the
adapter (PEFT format) plus the tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError

# Attention and MLP projection names of the common causal LM families (leaf module names):
# Llama/Mistral/Qwen/Gemma/OLMo-2, GPT-NeoX/Pythia, GPT-2/StarCoder, OPT/Falcon, OLMo-1, MPT/Phi, Mixtral experts.
KNOWN_PROJECTIONS = (
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    "query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h",
    "c_attn", "c_proj", "c_fc",
    "out_proj", "fc1", "fc2",
    "att_proj", "attn_out", "ff_proj", "ff_out",
    "Wqkv", "qkv_proj", "gate_up_proj",
    "w1", "w2", "w3",
)  # fmt: skip


def _is_linear(module) -> bool:
    import torch

    if isinstance(module, torch.nn.Linear):
        return True
    # bitsandbytes Linear4bit/Linear8bitLt subclass nn.Linear; GPT-2's Conv1D is a linear layer too.
    return type(module).__name__ in ("Conv1D", "Linear4bit", "Linear8bitLt")


def linear_module_names(model) -> list[str]:
    """Leaf names of the linear layers inside the transformer blocks (the output head excluded)."""
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names: set[str] = set()
    for name, module in model.named_modules():
        if _is_linear(module) and module is not out_emb:
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def find_target_modules(model, requested: list[str] | None) -> list[str]:
    """The module names LoRA adapts: the requested ones (all must exist) or the known projections present."""
    candidates = linear_module_names(model)
    if requested:
        missing = [m for m in requested if m not in candidates]
        if missing:
            raise TuluError(
                f"--lora-target-modules: {', '.join(missing)} not found in this model; its linear layers are: {', '.join(candidates) or 'none'}"
            )
        return list(requested)
    found = [m for m in KNOWN_PROJECTIONS if m in candidates]
    if not found:
        raise TuluError(
            "--lora-target-modules: none of the usual attention/MLP projection names are in this model; "
            f"pick some of its linear layers: {', '.join(candidates) or 'none'}"
        )
    return found


def check_target_modules(opts) -> None:
    """Preflight of --lora-target-modules: the architecture built on the ``meta`` device (no weights, no
    memory) lists the module names, so a bad name stops the run before tokenization."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(opts.config_name or opts.model, revision=opts.revision, trust_remote_code=opts.trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=opts.trust_remote_code)
    find_target_modules(model, opts.lora_target_modules)


def embedding_module_names(model) -> list[str]:
    """Leaf names of the input embedding and (when not tied to it) the output head."""
    wanted = [model.get_input_embeddings()]
    out = model.get_output_embeddings()
    if out is not None and out.weight is not wanted[0].weight:
        wanted.append(out)
    names = []
    for name, module in model.named_modules():
        if any(module is w for w in wanted):
            names.append(name.rsplit(".", 1)[-1])
    return names


def tokens_were_added(opts, tokenizer) -> bool:
    from tulu_cli.models import read_model_config

    vocab = read_model_config(opts.config_name or opts.model, opts.revision, opts.trust_remote_code).get("vocab_size")
    return isinstance(vocab, int) and len(tokenizer) > vocab


def enable_gradient_checkpointing(model) -> None:
    """Recompute activations in the frozen base; the inputs must require grad or no gradient reaches LoRA.

    open-instruct passed the flag but never applied it to PEFT models; here it is switched on
    before wrapping, and ``enable_input_require_grads`` keeps the reentrant variant working too.
    """
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.enable_input_require_grads()


def apply_lora(model, opts, tokenizer, log=None):
    """Wrap ``model`` in a PEFT LoRA model configured from ``opts`` (LoraFields)."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets = find_target_modules(model, opts.lora_target_modules)
    to_save = opts.lora_modules_to_save
    if to_save is None:
        # New tokens' embedding rows must be learned and shipped with the adapter, else a merge has nothing for them.
        to_save = embedding_module_names(model) if tokens_were_added(opts, tokenizer) else []
    elif [m.lower() for m in to_save] == ["none"]:
        to_save = []
    else:
        known = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        missing = [m for m in to_save if m not in known]
        if missing:
            raise TuluError(f"--lora-modules-to-save: {', '.join(missing)} not found in this model (e.g. {', '.join(embedding_module_names(model))})")
    if getattr(opts, "gradient_checkpointing", False):
        enable_gradient_checkpointing(model)
    config = LoraConfig(
        r=opts.lora_rank,
        lora_alpha=opts.lora_alpha,
        lora_dropout=opts.lora_dropout,
        target_modules=targets,
        modules_to_save=to_save or None,
        bias="none",
        task_type=TaskType.CAUSAL_LM,
    )
    peft_model = get_peft_model(model, config)
    if log is not None:
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        log(f"LoRA rank {opts.lora_rank}, alpha {opts.lora_alpha:g}, dropout {opts.lora_dropout:g} on {', '.join(targets)}"
            + (f"; trained in full: {', '.join(to_save)}" if to_save else "") + f" ({trainable:,} trainable parameters)")
    return peft_model


def load_4bit_base(opts, device):
    """The base model with every linear layer in 4-bit (bitsandbytes), the rest in fp32."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig

    from tulu_cli.models import DTYPES, check_attention

    check_attention(opts.attn_implementation)
    compute = getattr(torch, DTYPES[opts.bnb_4bit_compute_dtype])
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=opts.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=opts.bnb_4bit_double_quant,
        bnb_4bit_compute_dtype=compute,
    )
    kwargs: dict[str, Any] = dict(
        quantization_config=quant,
        dtype=torch.float32,
        attn_implementation=opts.attn_implementation,
        revision=opts.revision,
        trust_remote_code=opts.trust_remote_code,
        # each data-parallel process holds the whole 4-bit model on its own device
        device_map={"": device.index if device.type == "cuda" else str(device)},
    )
    if opts.config_name:
        kwargs["config"] = AutoConfig.from_pretrained(opts.config_name, trust_remote_code=opts.trust_remote_code)
    return AutoModelForCausalLM.from_pretrained(opts.model, **kwargs)


def prepare_4bit(model, opts):
    """Freeze the base, upcast the non-quantized weights to fp32, checkpointing as asked."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=opts.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )


def build_optimizer(name: str, groups, opts):
    """AdamW in 32-bit (torch), or bitsandbytes' 8-bit / paged variants (paged falls back to plain on CPU)."""
    import torch

    kw = dict(lr=opts.learning_rate, betas=(opts.adam_beta1, opts.adam_beta2), eps=opts.adam_epsilon)
    if name == "adamw":
        return torch.optim.AdamW(groups, **kw)
    import bitsandbytes as bnb

    cls = {"adamw_8bit": bnb.optim.AdamW8bit, "paged_adamw_8bit": bnb.optim.PagedAdamW8bit, "paged_adamw_32bit": bnb.optim.PagedAdamW32bit}[name]
    return cls(groups, **kw)


def trainable_state(accelerator, model) -> dict[str, Any]:
    """The trainable tensors by name, on CPU; gathered from every rank when ZeRO-3 partitions them."""
    import contextlib

    unwrapped = accelerator.unwrap_model(model)
    named = [(n, p) for n, p in unwrapped.named_parameters() if p.requires_grad]
    ctx = contextlib.nullcontext()
    if any(hasattr(p, "ds_id") for _, p in named):
        import deepspeed

        ctx = deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None)
    with ctx:
        return {n: p.detach().to("cpu", copy=True) for n, p in named}


def save_adapter(accelerator, model, tokenizer, target: Path) -> None:
    """Every rank calls this (ZeRO-3 gathers); rank 0 writes adapter_config.json, adapter_model.safetensors, the tokenizer."""
    state = trainable_state(accelerator, model)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(str(target), state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(str(target))


def adapter_only_checkpoints(accelerator) -> None:
    """Make checkpoints hold only the trainable tensors (the adapter), not the frozen base.

    A 4-bit base cannot be reloaded from its own state dict (bitsandbytes' quantization state
    keys are not parameters), and rewriting a 70B base every checkpoint would be wasteful.
    DeepSpeed engines save through their own path and are left alone.
    """

    def keep_trainable(models, weights, output_dir):
        for model, state in zip(models, weights):
            names = {n for n, p in model.named_parameters() if p.requires_grad}
            for key in [k for k in state if k not in names]:
                del state[key]

    def load_trainable(models, input_dir):
        from safetensors.torch import load_file

        for i, model in enumerate(models):
            path = Path(input_dir) / (f"model_{i}.safetensors" if i else "model.safetensors")
            if not path.is_file():
                return  # an older layout: let accelerate load it (and complain if it cannot)
            result = model.load_state_dict(load_file(str(path)), strict=False)
            trainable = {n for n, p in model.named_parameters() if p.requires_grad}
            missing = [k for k in result.missing_keys if k in trainable]
            if result.unexpected_keys or missing:
                raise TuluError(f"--resume {input_dir}: checkpoint does not match this adapter (unexpected {result.unexpected_keys[:3]}, missing {missing[:3]})")
        models.clear()  # loaded here; accelerate must not try a strict full load

    accelerator.register_save_state_pre_hook(keep_trainable)
    accelerator.register_load_state_pre_hook(load_trainable)
