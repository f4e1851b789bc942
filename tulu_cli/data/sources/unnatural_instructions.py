"""Unnatural Instructions (core set): instruction + per-instance input, output and constraints."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Iterator

from tulu_cli.data.io import read_jsonl
from tulu_cli.data.sources.base import Context, Example, RawFile, Source, static, turn
from tulu_cli.data.templates import encode_instruction
from tulu_cli.errors import TuluError


def _lines(path: Path, ctx: Context) -> Iterator[tuple[str, dict]]:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            member = next((n for n in z.namelist() if n.endswith("core_data.jsonl")), None)
            if member is None:
                raise TuluError(f"{path}: archive has no core_data.jsonl")
            with z.open(member) as f:
                for lineno, line in enumerate(io.TextIOWrapper(f, encoding="utf-8"), 1):
                    if not line.strip():
                        continue
                    try:
                        yield f"{path}!{member}:{lineno}", json.loads(line)
                    except json.JSONDecodeError as e:
                        ctx.bad(f"{path}!{member}:{lineno}", f"invalid JSON: {e.msg}")
        return
    for lineno, rec in read_jsonl(path, ctx.bad):
        yield f"{path}:{lineno}", rec


def _convert(files: list[Path], ctx: Context) -> Iterator[Example]:
    for where, task in _lines(files[0], ctx):
        instruction = task.get("instruction")
        instances = task.get("instances")
        if not isinstance(instruction, str) or not isinstance(instances, list):
            ctx.bad(where, "needs a string 'instruction' and a list 'instances'")
            continue
        for j, inst in enumerate(instances):
            if not isinstance(inst, dict) or not isinstance(inst.get("input"), str) or not isinstance(inst.get("output"), str):
                ctx.bad(f"{where}: instance {j}", "needs string 'input' and 'output'")
                continue
            constraints = inst.get("constraints")
            text = instruction
            # "None"/"None." constraints carry no information and were left out.
            if isinstance(constraints, str) and constraints and constraints.lower() not in ("none", "none."):
                text = instruction + "\n" + constraints
            prompt, completion = encode_instruction(text, inst["input"], inst["output"], ctx.rng)
            yield Example([turn("user", prompt), turn("assistant", completion)], f"{where}: instance {j}")


SOURCE = Source(
    name="unnatural_instructions",
    title="Unnatural Instructions",
    description="68K model-generated instances (core set); constraints are appended to the instruction.",
    homepage="https://github.com/orhonovich/unnatural-instructions",
    file_sets=static(
        [RawFile("core_data.jsonl")],
        [RawFile("core_data.zip", "https://github.com/orhonovich/unnatural-instructions/raw/a9cf886b1e9d10f336b091a95814e1905eaeb6cf/data/core_data.zip")],
    ),
    convert=_convert,
)
