"""Options of `tulu data prepare` (the defaults live here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import field_validator, model_validator

from tulu_cli.errors import TuluError
from tulu_cli.options.base import Options, key_value_pairs, opt

MIXTURE_NAMES = ("tulu_v1", "tulu_v2")


class PrepareOptions(Options):
    """What to build, from where, and how strictly."""

    target: Optional[str] = opt(
        None,
        help="A source (dolly, sharegpt, oasst1, alpaca, ...) or a published mixture (tulu_v1, tulu_v2). See --list.",
        argument="SOURCE_OR_MIXTURE",
        default_help="none (give --mixture-file)",
    )
    output: Optional[Path] = opt(None, help="A *.jsonl file, or a folder (then NAME_data.jsonl inside).", flags=("--output", "-o"), required=True)
    input: Optional[Path] = opt(None, help="Raw file or folder of a single source (required for the generic formats).", flags=("--input", "-i"))
    mixture_file: Optional[Path] = opt(None, help="YAML list of {source, path|url, count|fraction, options}.", flags=("--mixture-file", "-m"))
    raw_dir: Optional[Path] = opt(
        None, help="Use raw files already on disk (DIR/SOURCE/FILE or DIR/FILE); never download.", default_help="download"
    )
    cache_dir: Optional[Path] = opt(
        None, help="Where downloads are kept and resumed.", default_help="$TULU_CACHE, else $XDG_CACHE_HOME/tulu, else ~/.cache/tulu"
    )
    seed: int = opt(42, help="Seed of templates and sampling (same seed, same output).")
    on_error: Literal["skip", "fail"] = opt("fail", help="A bad input record: 'fail' (stop, naming file:line) or 'skip' (report and go on).")
    max_examples: Optional[int] = opt(
        None, help="At most N examples per source (seeded sample).", flags=("--max-examples", "-n"), default_help="no cap", gt=0
    )
    source_options: dict[str, Any] = opt(
        {},
        help="KEY=VALUE for a source setting (SOURCE.KEY=VALUE inside a mixture), e.g. top_k_reply=1. Repeatable. See --list.",
        flags=("--source-option", "-s"),
    )
    tokenizer: Optional[str] = opt(None, help="Tokenizer folder or name used to split ShareGPT under its token limit.")
    keyword_filter: Optional[bool] = opt(
        None,
        help="Move rows mentioning OpenAI, ChatGPT, GPT-4, Claude, ... to NAME_data.filtered_out.jsonl.",
        default_help="on for tulu_v2 only",  # None: the mixture's own default
    )
    overwrite: bool = opt(False, help="Replace existing output files.", flags=("--overwrite",), default_help="refuse")
    download_only: bool = opt(
        False, help="Fetch the raw files into the cache (CACHE/raw/SOURCE/, a valid --raw-dir) and exit.", flags=("--download-only",)
    )

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


class ListFlag(Options):
    """`tulu data prepare --list`: print the catalogue instead of preparing anything."""

    list_: bool = opt(False, help="List the sources, their raw files and options, and the mixtures; then exit.", flags=("--list",))
