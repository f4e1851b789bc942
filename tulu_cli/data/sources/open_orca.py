"""Open-Orca, GPT-4 part: FLAN prompts with a system prompt and a GPT-4 explanation-style answer (parquet)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from tulu_cli.data.io import read_records
from tulu_cli.data.sources.base import Context, Example, RawFile, Source, need, static, turn


def _convert(files: list[Path], ctx: Context) -> Iterator[Example]:
    for where, rec in read_records(files[0], ctx.bad):
        if not need(rec, where, ctx, "question", "response"):
            continue
        # Every row keeps its system turn, an empty one too, as open-instruct's convert_open_orca_data
        # (it then trains as "<|system|>\n\n" before the user turn).
        messages = [turn("system", rec.get("system_prompt")), turn("user", rec["question"]), turn("assistant", rec["response"])]
        yield Example(messages, where)


SOURCE = Source(
    name="open_orca",
    title="Open-Orca (GPT-4)",
    description="The ~1M GPT-4-augmented FLAN questions of OpenOrca; the system prompt is kept, empty or not (as open-instruct).",
    homepage="https://huggingface.co/datasets/Open-Orca/OpenOrca",
    file_sets=static([RawFile("1M-GPT4-Augmented.parquet", "hf://Open-Orca/OpenOrca/1M-GPT4-Augmented.parquet")]),
    convert=_convert,
)
