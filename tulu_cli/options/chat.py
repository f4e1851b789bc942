"""Options of `tulu data inspect`: which file, which tokenizer and template, how much to show."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Optional

from pydantic import Field

from tulu_cli.options.base import Options

# Mirrors tulu_cli.chat.TEMPLATE_NAMES (kept literal here so option parsing stays import-light).
TemplateName = Literal["tulu", "tokenizer", "llama2", "zephyr", "chatml", "olmo"]


class InspectOptions(Options):
    """`tulu data inspect FILE --tokenizer DIR`: encode a JSONL file and report what would be trained on."""

    cli_names: ClassVar[dict[str, str]] = {"file": "FILE", "json_output": "--json"}

    # Optional here so a missing one is reported as the flag the user must add, not a pydantic message.
    file: Optional[Path] = Field(None, description="JSONL of {dataset, id, messages} or {prompt, completion} rows")
    tokenizer: Optional[Path] = Field(None, description="Folder holding the tokenizer (tokenizer.json / tokenizer_config.json)")
    template: TemplateName = "tulu"
    max_seq_length: int = Field(2048, gt=0)
    num_examples: int = Field(3, ge=0, description="Examples printed with trained tokens highlighted")
    limit: Optional[int] = Field(None, gt=0, description="Encode only the first N rows (default: all)")
    add_bos: bool = Field(False, description="Write the bos token in front (tokenizers that do not add one)")
    json_output: bool = Field(False, description="Print the summary as JSON on stdout instead of tables")
