"""Baize: self-chat transcripts with [|Human|] / [|AI|] markers, four topic files."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from tulu_cli.data.io import read_records
from tulu_cli.data.sources.base import Context, Example, RawFile, Source, static, turn

TOPICS = ("alpaca", "medical", "quora", "stackoverflow")
BASE = "https://github.com/project-baize/baize-chatbot/raw/786102995acd62bead1cfe947969639443999b79/data"  # main's last change of the four files


def parse_transcript(text: str) -> list[dict[str, str]]:
    """Split on the speaker markers; the preamble before the first human turn and unanswered turns are dropped."""
    messages = []
    for chunk in text.split("[|Human|]")[1:]:
        if "[|AI|]" not in chunk or not chunk.strip():
            continue
        human, _, ai = chunk.partition("[|AI|]")
        # A second AI marker in one round would be a malformed transcript; keep it as text.
        messages += [turn("user", human.strip()), turn("assistant", ai.strip())]
    return messages


def _convert(files: list[Path], ctx: Context) -> Iterator[Example]:
    for path in files:
        for where, rec in read_records(path, ctx.bad):
            if not isinstance(rec.get("input"), str):
                ctx.bad(where, "field 'input' must be a string")
                continue
            yield Example(parse_transcript(rec["input"]), where)


SOURCE = Source(
    name="baize",
    title="Baize",
    description="ChatGPT self-chat seeded from Alpaca, MedQuAD, Quora and StackOverflow questions.",
    homepage="https://github.com/project-baize/baize-chatbot",
    file_sets=static([RawFile(f"{t}_chat_data.json", f"{BASE}/{t}_chat_data.json") for t in TOPICS]),
    convert=_convert,
)
