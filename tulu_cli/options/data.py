"""Options of `tulu data prepare` (the defaults live here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, field_validator, model_validator

from tulu_cli.errors import TuluError
from tulu_cli.options.base import Options, key_value_pairs

MIXTURE_NAMES = ("tulu_v1", "tulu_v2")


class PrepareOptions(Options):
    """What to build, from where, and how strictly."""

    cli_names: ClassVar[dict[str, str]] = {"target": "SOURCE_OR_MIXTURE", "source_options": "--source-option"}

    target: Optional[str] = None  # a source name or a published mixture (tulu_v1, tulu_v2)
    output: Optional[Path] = None
    input: Optional[Path] = None
    mixture_file: Optional[Path] = None
    raw_dir: Optional[Path] = None
    cache_dir: Optional[Path] = None
    seed: int = 42
    on_error: Literal["skip", "fail"] = "fail"
    max_examples: Optional[int] = Field(default=None, gt=0)
    source_options: dict[str, Any] = {}
    tokenizer: Optional[str] = None
    keyword_filter: Optional[bool] = None  # None: the mixture's own default (on for tulu_v2)
    overwrite: bool = False
    download_only: bool = False

    @field_validator("source_options", mode="before")
    @classmethod
    def _parse_pairs(cls, v):
        return key_value_pairs(v)

    @model_validator(mode="after")
    def _consistent(self) -> "PrepareOptions":
        # TuluError (not ValueError) so the message names the flags exactly as typed.
        if self.target is None and self.mixture_file is None:
            raise TuluError("name a SOURCE or MIXTURE to prepare, or pass --mixture-file (see `tulu data prepare --list`)")
        if self.target is not None and self.mixture_file is not None:
            raise TuluError("give either a SOURCE/MIXTURE name or --mixture-file, not both")
        if self.output is None and not self.download_only:
            raise TuluError("--output is required (a *.jsonl file or a folder)")
        if self.input is not None and (self.mixture_file is not None or self.target in MIXTURE_NAMES):
            raise TuluError("--input applies to a single source; in a mixture file give each component a path")
        if self.input is not None and self.raw_dir is not None:
            raise TuluError("--input and --raw-dir both say where the raw data is: give one")
        return self
