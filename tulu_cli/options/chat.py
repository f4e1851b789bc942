"""Options of `tulu data inspect`: which file, which tokenizer and template, how much to show."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from tulu_cli.options.base import Options, opt

# Mirrors tulu_cli.chat.TEMPLATE_NAMES (kept literal here so option parsing stays import-light).
TemplateName = Literal["tulu", "tokenizer", "llama2", "zephyr", "chatml", "olmo"]


class InspectOptions(Options):
    """`tulu data inspect FILE --tokenizer DIR`: encode a JSONL file and report what would be trained on."""

    # Optional here so a missing one is reported as the flag the user must add, not a pydantic message.
    file: Optional[Path] = opt(None, help="JSONL file: {dataset, id, messages} or {prompt, completion} rows.", argument="FILE", required=True)
    tokenizer: Optional[Path] = opt(None, help="Tokenizer folder.", flags=("--tokenizer", "-t"), required=True)
    template: TemplateName = opt("tulu", help="Chat template: tulu, tokenizer (its own chat_template), llama2, zephyr, chatml, olmo.")
    max_seq_length: int = opt(2048, help="Truncate examples to this many tokens.", gt=0)
    num_examples: int = opt(3, help="Examples to print with their masks.", flags=("--num-examples", "-n"), ge=0)
    limit: Optional[int] = opt(None, help="Encode only the first N rows of a big file.", default_help="all", gt=0)
    add_bos: bool = opt(False, help="Write the bos token in front (tokenizers that add none).")
    json_output: bool = opt(False, help="Print the summary as JSON on stdout, nothing else.", flags=("--json/--no-json",))
