"""IFEval scoring: read prompts and responses, check every instruction strictly and loosely, aggregate."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tulu_cli.errors import TuluError
from tulu_cli.jsonl import read_jsonl

from .checkers import CHECKERS, check, validate_kwargs


@dataclass
class IFEvalInput:
    """One IFEval prompt with its verifiable instructions."""

    key: int | str
    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict] = field(default_factory=list)


@dataclass
class IFEvalExample:
    """The verdicts for one prompt's response."""

    key: int | str
    prompt: str
    response: str
    instruction_id_list: list[str]
    follow_instruction_list_strict: list[bool]
    follow_instruction_list_loose: list[bool]

    @property
    def follow_all_strict(self) -> bool:
        return all(self.follow_instruction_list_strict)

    @property
    def follow_all_loose(self) -> bool:
        return all(self.follow_instruction_list_loose)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["follow_all_instructions_strict"] = self.follow_all_strict
        d["follow_all_instructions_loose"] = self.follow_all_loose
        return d


# ------------------------------------------------------------------------------------ loading


def _jsonl_rows(path: Path) -> Iterable[tuple[int, dict]]:
    if not path.is_file():
        raise TuluError(f"{path}: file not found")
    return read_jsonl(path)


def parse_input(row: dict, where: str = "", default_key: int | str = 0) -> IFEvalInput:
    """Validate one row of IFEval's ``input_data.jsonl``; errors are prefixed with ``where``.

    A row without ``key`` gets ``default_key`` (its line number when read from a file)."""
    prefix = f"{where}: " if where else ""
    for name, typ in (("prompt", str), ("instruction_id_list", list), ("kwargs", list)):
        if name not in row:
            raise TuluError(f"{prefix}missing field '{name}'")
        if not isinstance(row[name], typ):
            raise TuluError(f"{prefix}field '{name}' must be a {typ.__name__}")
    ids, kwargs = row["instruction_id_list"], row["kwargs"]
    if len(ids) != len(kwargs):
        raise TuluError(
            f"{prefix}'instruction_id_list' has {len(ids)} entries but 'kwargs' has {len(kwargs)}"
        )
    clean = []
    for iid, kw in zip(ids, kwargs):
        if iid not in CHECKERS:
            raise TuluError(f"{prefix}unknown instruction id {iid!r} (known: {', '.join(sorted(CHECKERS))})")
        if not isinstance(kw, dict):
            raise TuluError(f"{prefix}field 'kwargs': each entry must be an object")
        try:
            clean.append(validate_kwargs(iid, kw))
        except ValueError as exc:
            raise TuluError(f"{prefix}field 'kwargs': {exc}") from None
    key = row.get("key", default_key)
    return IFEvalInput(key=key, prompt=row["prompt"], instruction_id_list=list(ids), kwargs=clean)


def load_inputs(path: str | Path) -> list[IFEvalInput]:
    """Read IFEval prompts (``key``, ``prompt``, ``instruction_id_list``, ``kwargs`` per line)."""
    path = Path(path)
    inputs, seen = [], {}
    for lineno, row in _jsonl_rows(path):
        inp = parse_input(row, f"{path}:{lineno}", default_key=lineno)
        if "key" in row:
            if inp.key in seen:
                raise TuluError(f"{path}:{lineno}: key {inp.key!r} appears twice (first at line {seen[inp.key]})")
            seen[inp.key] = lineno
        inputs.append(inp)
    if not inputs:
        raise TuluError(f"{path}: no prompts in the file")
    return inputs


def load_responses(path: str | Path) -> dict[str, str]:
    """Read ``{"prompt", "response"}`` lines into a prompt -> response map (last one wins)."""
    path = Path(path)
    responses: dict[str, str] = {}
    for lineno, row in _jsonl_rows(path):
        for name in ("prompt", "response"):
            if not isinstance(row.get(name), str):
                what = "missing" if name not in row else f"not a string ({type(row[name]).__name__})"
                raise TuluError(f"{path}:{lineno}: field '{name}' is {what}")
        responses[row["prompt"]] = row["response"]
    return responses


# ------------------------------------------------------------------------------------ scoring


def loose_variants(response: str) -> list[str]:
    """The response and its relaxations: without the first, last or both lines, without '*'."""
    lines = response.split("\n")
    no_first = "\n".join(lines[1:]).strip()
    no_last = "\n".join(lines[:-1]).strip()
    no_both = "\n".join(lines[1:-1]).strip()
    variants = [response, no_first, no_last, no_both]
    return variants + [v.replace("*", "") for v in variants]


def evaluate_example(inp: IFEvalInput, response: str) -> IFEvalExample:
    variants = loose_variants(response)
    strict, loose = [], []
    for iid, kw in zip(inp.instruction_id_list, inp.kwargs):
        ok = check(iid, response, kw)
        strict.append(ok)
        loose.append(ok or any(check(iid, v, kw) for v in variants[1:]))
    return IFEvalExample(inp.key, inp.prompt, response, list(inp.instruction_id_list), strict, loose)


def _as_response_map(responses: Mapping[str, str] | Iterable[dict]) -> dict[str, str]:
    if isinstance(responses, Mapping):
        return dict(responses)
    return {r["prompt"]: r["response"] for r in responses}


def evaluate_ifeval(
    inputs: Iterable[IFEvalInput | dict], responses: Mapping[str, str] | Iterable[dict]
) -> list[IFEvalExample]:
    """Per-prompt verdicts; responses are matched to prompts by exact prompt text."""
    inputs = [i if isinstance(i, IFEvalInput) else parse_input(i, f"input {n}", default_key=n)
              for n, i in enumerate(inputs, 1)]
    by_prompt = _as_response_map(responses)
    missing = [i for i in inputs if i.prompt not in by_prompt]
    if missing:
        raise TuluError(
            f"no response for {len(missing)} of {len(inputs)} prompts (first: key {missing[0].key}, "
            f"prompt {missing[0].prompt[:60]!r}...); responses are matched by exact prompt text"
        )
    return [evaluate_example(i, by_prompt[i.prompt]) for i in inputs]


def summarize(examples: list[IFEvalExample]) -> dict:
    """Prompt- and instruction-level accuracy, strict and loose, plus per-instruction accuracy."""
    if not examples:
        raise TuluError("no IFEval examples to score")
    metrics: dict = {}
    n_inst = sum(len(e.instruction_id_list) for e in examples)
    for mode in ("strict", "loose"):
        follows = [getattr(e, f"follow_instruction_list_{mode}") for e in examples]
        metrics[f"prompt_level_{mode}_acc"] = sum(all(f) for f in follows) / len(examples)
        metrics[f"inst_level_{mode}_acc"] = sum(map(sum, follows)) / n_inst
    metrics["num_prompts"] = len(examples)
    metrics["num_instructions"] = n_inst
    for level in ("instruction", "category"):
        table: dict[str, dict[str, float]] = {}
        for mode in ("strict", "loose"):
            total: dict[str, int] = defaultdict(int)
            hit: dict[str, int] = defaultdict(int)
            for e in examples:
                for iid, ok in zip(e.instruction_id_list, getattr(e, f"follow_instruction_list_{mode}")):
                    name = iid if level == "instruction" else iid.split(":")[0]
                    total[name] += 1
                    hit[name] += ok
            for name in sorted(total):
                table.setdefault(name, {"count": total[name]})[mode] = hit[name] / total[name]
        metrics[f"per_{level}"] = table
    return metrics


def score_ifeval(
    inputs: Iterable[IFEvalInput | dict], responses: Mapping[str, str] | Iterable[dict]
) -> dict:
    """Metrics dict for responses to IFEval prompts (see :func:`summarize` for the keys)."""
    return summarize(evaluate_ifeval(inputs, responses))
