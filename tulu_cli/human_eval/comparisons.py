"""Read and validate the comparisons file: one prompt and two models' completions per JSONL line."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tulu_cli.errors import TuluError
from tulu_cli.jsonl import read_jsonl


@dataclass(frozen=True)
class Comparison:
    """One instance to annotate; ``model_1``/``completion_1`` is the first entry of ``completions``."""

    id: str
    prompt: str
    model_1: str
    completion_1: str
    model_2: str
    completion_2: str
    line: int = 0


def _field(where: str, obj: dict, key: str, *, allow_empty: bool = False) -> str:
    if key not in obj:
        raise TuluError(f"{where}: missing field '{key}'")
    value = obj[key]
    if not isinstance(value, str):
        raise TuluError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise TuluError(f"{where}: field '{key}' is empty")
    return value


def parse_comparison(obj: object, where: str) -> Comparison:
    """Validate one decoded JSONL row; ``where`` is ``file:line`` for error messages."""
    if not isinstance(obj, dict):
        raise TuluError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    raw_id = obj.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise TuluError(f"{where}: field 'id' must be a string or an integer" + ("" if "id" in obj else " (missing)"))
    cid = str(raw_id).strip()
    if not cid:
        raise TuluError(f"{where}: field 'id' is empty")
    prompt = _field(where, obj, "prompt")
    comps = obj.get("completions")
    if not isinstance(comps, list) or len(comps) != 2:
        got = "missing" if comps is None else (f"{len(comps)} entries" if isinstance(comps, list) else type(comps).__name__)
        raise TuluError(f"{where}: field 'completions' must be a list of exactly 2 objects, got {got}")
    pairs = []
    for i, c in enumerate(comps):
        sub = f"{where}: completions[{i}]"
        if not isinstance(c, dict):
            raise TuluError(f"{sub}: expected an object with 'model' and 'completion', got {type(c).__name__}")
        # An empty completion is a real (bad) model output that annotators should be able to judge.
        pairs.append((_field(sub, c, "model").strip(), _field(sub, c, "completion", allow_empty=True)))
    if pairs[0][0] == pairs[1][0]:
        raise TuluError(
            f"{where}: both completions come from model '{pairs[0][0]}'; a comparison needs two different model names"
        )
    return Comparison(cid, prompt, pairs[0][0], pairs[0][1], pairs[1][0], pairs[1][1])


def load_comparisons(path: str | Path) -> list[Comparison]:
    """All comparisons of a JSONL (or .jsonl.gz) file, in file order; any problem raises TuluError naming file:line."""
    p = Path(path)
    if p.is_dir():
        raise TuluError(f"{p}: is a folder, not a comparisons file")
    if not p.is_file():
        raise TuluError(f"{p}: comparisons file does not exist")
    if not os.access(p, os.R_OK):
        raise TuluError(f"{p}: cannot read the comparisons file (permission denied)")
    out: list[Comparison] = []
    seen: dict[str, int] = {}
    for lineno, obj in read_jsonl(p):
        where = f"{p}:{lineno}"
        c = parse_comparison(obj, where)
        if c.id in seen:
            raise TuluError(f"{where}: duplicate id '{c.id}' (first seen on line {seen[c.id]})")
        seen[c.id] = lineno
        out.append(Comparison(c.id, c.prompt, c.model_1, c.completion_1, c.model_2, c.completion_2, lineno))
    if not out:
        raise TuluError(f"{p}: no comparisons (the file is empty)")
    return out
