"""Options of `tulu weights diff | recover | merge`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import field_validator

from tulu_cli.options.base import Options, opt

OutDtype = Literal["auto", "float32", "bfloat16", "float16"]


def _check_size(value: str) -> str:
    import re

    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*([KMG]i?B|B)?\s*", value, flags=re.IGNORECASE):
        raise ValueError(f"'{value}' is not a size such as 5GB, 500MB or 2GiB")
    return value


class _WeightsOptions(Options):
    output: Path = opt(help="Folder to write. Created atomically: it appears complete or not at all.", flags=("--output", "-o"))
    overwrite: bool = opt(False, help="Replace an existing non-empty --output folder.", default_help="refuse")
    max_shard_size: str = opt("5GB", help="Largest safetensors shard, e.g. 5GB, 500MB, 2GiB.")

    @field_validator("max_shard_size")
    @classmethod
    def _size(cls, v: str) -> str:
        return _check_size(v)


class DiffOptions(_WeightsOptions):
    """`tulu weights diff`: tuned minus base, float32, in the released Alpaca / Tulu v1 format."""

    base: Path = opt(help="The untuned base model folder.")
    tuned: Path = opt(help="The fine-tuned model folder.")


class RecoverOptions(_WeightsOptions):
    """`tulu weights recover`: base plus diff, verified against the manifest and/or a check sum."""

    base: Path = opt(help="The base model folder the diff was made from.")
    diff: Path = opt(help="The weight diff folder (tulu, Alpaca or Tulu v1 format).")
    check_sum: Optional[float] = opt(
        None,
        help="Expected sum of all recovered float32 weights (the Alpaca script's naive integrity check, tolerance 0.01).",
        default_help="not checked",
    )
    dtype: OutDtype = opt("auto", help="Output dtype: auto, float32, bfloat16 or float16.", default_help="auto (see the command help)")


class MergeOptions(_WeightsOptions):
    """`tulu weights merge`: a LoRA (or QLoRA) adapter folded into its base."""

    adapter: Path = opt(help="PEFT LoRA adapter folder (adapter_config.json + adapter_model.*).")
    base: Optional[Path] = opt(None, help="Base model folder.", default_help="base_model_name_or_path from adapter_config.json")
    qlora: bool = opt(False, help="The adapter was trained with QLoRA: load the base in 4-bit nf4 (double quant), dequantize, then merge.")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = opt(
        "bfloat16", help="QLoRA only: the bnb compute dtype the adapter was trained with (bfloat16, float16, float32)."
    )
    dtype: OutDtype = opt("auto", help="Output dtype: auto, float32, bfloat16 or float16.", default_help="auto (see the command help)")
    save_tokenizer: bool = opt(True, help="Write the tokenizer (the adapter's if it has one, else the base's).")
