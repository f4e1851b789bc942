"""Options of `tulu train lora` and `tulu train qlora`: the LoRA adapter, 4-bit loading, the optimizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

from pydantic import field_validator, model_validator

from tulu_cli.options.base import Options, internal, opt
from tulu_cli.options.train import M, O, TrainOptions

P, Q = "LoRA", "QLoRA (4-bit base)"  # --help panels

Optimizer = Literal["adamw", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"]


class LoraFields(Options):
    """The adapter itself; shared by LoRA, QLoRA and DPO with --lora/--qlora."""

    lora_rank: int = opt(64, help="Rank r of the LoRA matrices.", panel=P, gt=0)
    lora_alpha: float = opt(16, help="LoRA scaling alpha (the update is scaled by alpha/r).", panel=P, gt=0)
    lora_dropout: float = opt(0.1, help="Dropout on the LoRA input.", panel=P, ge=0, lt=1)
    lora_target_modules: Optional[list[str]] = opt(
        None,
        help="Module names to adapt (repeat or comma-separate, e.g. q_proj,v_proj).",
        panel=P,
        default_help="every attention and MLP projection found in the model",
    )
    lora_modules_to_save: Optional[list[str]] = opt(
        None,
        help="Modules trained in full and saved with the adapter (e.g. embed_tokens,lm_head), or 'none'.",
        panel=P,
        default_help="the embeddings and output layer when the tokenizer gained tokens, else none",
    )

    @field_validator("lora_target_modules", "lora_modules_to_save", mode="before")
    @classmethod
    def _split_commas(cls, v):
        # `--lora-target-modules q_proj,v_proj` and a YAML list mean the same thing.
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            out = [s.strip() for item in v for s in str(item).split(",") if s.strip()]
            return out or None
        return v


class QuantFields(Options):
    """4-bit base loading (bitsandbytes) and the optimizers that go with it."""

    bnb_4bit_quant_type: Literal["nf4", "fp4"] = opt("nf4", help="4-bit data type: nf4 or fp4.", panel=Q)
    bnb_4bit_double_quant: bool = opt(True, help="Quantize the quantization constants too (saves ~0.4 bit/parameter).", panel=Q)
    bnb_4bit_compute_dtype: Literal["bf16", "fp16", "fp32"] = opt("bf16", help="dtype the 4-bit layers compute in: bf16, fp16 or fp32.", panel=Q)
    optimizer: Optimizer = opt(
        "adamw",
        help="adamw, adamw_8bit, paged_adamw_8bit or paged_adamw_32bit (bitsandbytes; paged needs a GPU to page, on CPU it runs unpaged).",
        panel=Q,
    )


def deepspeed_stage_of(opts: TrainOptions) -> int | None:
    """The ZeRO stage a run would use: --deepspeed-stage, or read from a --deepspeed-config file."""
    if opts.deepspeed_stage is not None:
        return opts.deepspeed_stage
    if opts.deepspeed_config is not None:
        try:
            return int(json.loads(Path(opts.deepspeed_config).read_text()).get("zero_optimization", {}).get("stage", 0))
        except (OSError, ValueError, AttributeError):
            return None  # the launcher's preflight reports an unreadable file with its own message
    return None


def require_bitsandbytes(opts, what: str) -> None:
    """4-bit loading and 8-bit/paged optimizers need bitsandbytes (the `qlora` extra); say so before anything loads."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(f"{what} needs the bitsandbytes package: pip install 'tulu-cli[qlora]'")


def refuse_model_parallel_qlora(opts: TrainOptions, flag: str) -> None:
    """QLoRA is data parallel only: ZeRO-3 (or any DeepSpeed) cannot partition bitsandbytes 4-bit weights."""
    if not opts.uses_deepspeed:
        return
    stage = deepspeed_stage_of(opts)
    what = "--deepspeed-config" if opts.deepspeed_config is not None else f"--deepspeed-stage {stage}"
    raise ValueError(
        f"{flag} is data parallel only: {what} asks DeepSpeed to shard the model (ZeRO-{stage}), but the 4-bit "
        "bitsandbytes base weights cannot be partitioned or gathered by DeepSpeed. Drop the DeepSpeed option and use "
        "--num-processes N (plain DDP: each process holds the whole 4-bit base, a 70B model fits one 48 GB GPU), "
        "or train with LoRA on a 16-bit base (`tulu train lora --deepspeed-stage 3`)"
    )


class LoraOptions(TrainOptions, LoraFields):
    """`tulu train lora`: LoRA on a 16-bit base; DDP or DeepSpeed (ZeRO-3 shards the frozen base too)."""

    recipe: Literal["lora"] = internal("lora")
    learning_rate: float = opt(1e-4, help="Peak learning rate (the Tulu 2 LoRA recipe's).", panel=O, flags=("--learning-rate", "--lr"), ge=0)


class QLoraOptions(TrainOptions, LoraFields, QuantFields):
    """`tulu train qlora`: the base in 4-bit (nf4, double quantization), LoRA on top; data parallel only."""

    recipe: Literal["qlora"] = internal("qlora")
    learning_rate: float = opt(1e-4, help="Peak learning rate (the Tulu 2 QLoRA recipe's).", panel=O, flags=("--learning-rate", "--lr"), ge=0)
    gradient_checkpointing: bool = opt(True, help="Recompute activations to save memory (on in the QLoRA recipe).", panel=M)

    @model_validator(mode="after")
    def _data_parallel_only(self):
        refuse_model_parallel_qlora(self, "QLoRA")
        require_bitsandbytes(self, "QLoRA")
        return self

