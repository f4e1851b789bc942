"""Options of `tulu train dpo`: the preference loss, the reference model, full/LoRA/QLoRA."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from tulu_cli.options.base import internal, opt
from tulu_cli.options.peft import LoraFields, QuantFields, refuse_model_parallel_qlora, require_bitsandbytes
from tulu_cli.options.train import O, TrainOptions

P = "DPO"  # --help panel


class DPOOptions(TrainOptions, LoraFields, QuantFields):
    """Direct preference optimisation on chosen/rejected pairs (Tulu 2 DPO defaults)."""

    recipe: Literal["dpo"] = internal("dpo")
    # The Tulu 2 DPO recipe's own defaults for three shared fields.
    learning_rate: float = opt(5e-7, help="Peak learning rate (Tulu 2 DPO; use ~5e-5 with --lora).", panel=O, flags=("--learning-rate", "--lr"), ge=0)
    warmup_ratio: float = opt(0.1, help="Fraction of steps spent warming up.", panel=O, ge=0, le=1)
    num_epochs: int = opt(3, help="Passes over the pairs.", panel=O, gt=0)

    beta: float = opt(0.1, help="Strength of the pull towards the reference model.", panel=P, gt=0)
    loss: Literal["sigmoid", "ipo", "hinge", "sigmoid_norm"] = opt(
        "sigmoid", help="sigmoid (DPO), ipo, hinge, or sigmoid_norm (DPO on log-probs averaged per response token).", panel=P
    )
    label_smoothing: float = opt(0.0, help="Conservative DPO: assumed fraction of flipped labels (sigmoid loss).", panel=P, ge=0, lt=0.5)
    reference: Literal["precompute", "live"] = opt(
        "precompute",
        help="precompute: reference log-probs computed once before training and cached on disk; live: a frozen reference model in memory.",
        panel=P,
    )
    lora: bool = opt(False, help="Train a LoRA adapter; the reference is the base with the adapter off (no: full fine-tuning).", panel=P)
    qlora: bool = opt(False, help="LoRA on a 4-bit base (data parallel only).", panel=P)

    @model_validator(mode="after")
    def _dpo_rules(self):
        if self.lora and self.qlora:
            raise ValueError("--lora and --qlora are exclusive (--qlora is LoRA on a 4-bit base)")
        if self.qlora:
            refuse_model_parallel_qlora(self, "--qlora")
            require_bitsandbytes(self, "--qlora")
        if self.optimizer != "adamw":
            require_bitsandbytes(self, f"--optimizer {self.optimizer}")
        if self.packing:
            raise ValueError("--packing does not apply to DPO: each pair's chosen and rejected sides are batched together, padded")
        if self.label_smoothing and self.loss != "sigmoid":
            raise ValueError("--label-smoothing applies to --loss sigmoid only (conservative DPO)")
        return self

    @property
    def peft(self) -> bool:
        return self.lora or self.qlora
