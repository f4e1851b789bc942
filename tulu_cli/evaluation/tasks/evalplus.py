"""HumanEval+ and MBPP+ the EvalPlus way (release files, differential testing): tulu's presets beside open-instruct's."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any, Callable, Sequence

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.tasks import DataFile, Example, GenerationSettings, TaskContext
from tulu_cli.evaluation.tasks.codex import (
    ANSWER, CLOSE_FENCE, CODEX_STOP, FENCE, INSTRUCTION, CodeTask, as_module, problem_digest, read_problems,
)  # fmt: skip

FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol")

# Code shared by the two programs below. Every name starts with _t_ so it cannot clash with a
# solution's own names. The comparison follows EvalPlus: exact equality first, then the special
# oracles of a few problems, then a float tolerance (atol, at least 1e-6 for float outputs, rtol 1e-7).
_COMMON = r'''
import base64 as _t_b64, json as _t_json, math as _t_math, os as _t_os, pickle as _t_pickle, sys as _t_sys, time as _t_time

_T_SET_EQ = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
             "larg_nnum", "intersection_array", "find_dissimilar", "Diff"}
_T_NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}

def _t_all_tuples(x):
    return tuple(_t_all_tuples(i) for i in x) if isinstance(x, list) else x

def _t_restore(number, inputs):
    """MBPP+ stores tuples, sets and complex numbers as JSON lists and strings; EvalPlus turns them back per task."""
    T = tuple
    if number in (2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726, 740, 744, 809):
        return [[T(a) for a in inp] for inp in inputs]
    if number in (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780):
        return [[[T(b) for b in a] for a in inp] for inp in inputs]
    if number in (75, 413, 444, 753):
        return [[[T(b) for b in inp[0]], inp[1]] for inp in inputs]
    if number in (106, 750):
        return [[inp[0], T(inp[1])] for inp in inputs]
    if number == 115:
        return [[[set(a) if isinstance(a, list) and len(a) else {} for a in inp[0]]] for inp in inputs]
    if number == 124:
        return [(float(inp[0]), complex(inp[1])) for inp in inputs]
    if number in (250, 405, 446, 617, 720, 763, 808):
        return [[T(inp[0]), inp[1]] for inp in inputs]
    if number in (259, 401, 445):
        return [[T(T(b) for b in a) for a in inp] for inp in inputs]
    if number == 278:
        return [[T(T(a) if isinstance(a, list) else a for a in inp[0])] for inp in inputs]
    if number == 307:
        return [[T(inp[0]), inp[1], inp[2]] for inp in inputs]
    if number == 722:
        return [[{k: T(v) for k, v in inp[0].items()}] + inp[1:] for inp in inputs]
    if number == 252:
        return [[complex(inp[0])] for inp in inputs]
    if number in (580, 615, 791):
        return [_t_all_tuples(inp) for inp in inputs]
    return inputs

def _t_inputs(text):
    data = _t_json.loads(text)
    if _T_DATASET == "mbpp":
        number = int(_T_TASK_ID.split("/")[-1])
        data = {k: _t_restore(number, v) for k, v in data.items()}
    return data

def _t_is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return type(x).__name__ == "ndarray" and str(getattr(x, "dtype", "")) in ("float64", "float32")

def _t_close(out, exp, atol):
    if isinstance(exp, (list, tuple)) or isinstance(out, (list, tuple)):
        try:
            return len(out) == len(exp) and all(_t_close(o, e, atol) for o, e in zip(out, exp))
        except TypeError:
            return False
    try:
        o, e = float(out), float(exp)
    except (TypeError, ValueError, OverflowError):
        return False
    if _t_math.isinf(o) or _t_math.isinf(e):
        return o == e
    return abs(o - e) <= atol + 1e-7 * abs(e)

def _t_poly(xs, x):
    return sum(c * _t_math.pow(x, i) for i, c in enumerate(xs))

def _t_surface_area(base_edge, height):
    slant = _t_math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 2 * base_edge * slant)

def _t_digit_distance(a, b):
    a, b = str(a), str(b)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width)))

def _t_same(inp, out, exp, atol):
    try:
        exact = bool(out == exp)
    except Exception:
        exact = False
    if _T_DATASET == "mbpp":
        if _T_ENTRY == "are_equivalent":
            exact = True
        elif _T_ENTRY == "sum_div":
            exact = exact or out == 0
        elif _T_ENTRY == "surface_Area":
            exact = exact or abs(out - _t_surface_area(*inp)) <= atol
        elif _T_ENTRY == "digit_distance_nums":
            exact = exact or out == _t_digit_distance(*inp)
        elif _T_ENTRY in _T_SET_EQ:
            exact = set(out) == set(exp)
        elif _T_ENTRY in _T_NOT_NONE:
            exact = out == exp if isinstance(out, bool) else exp == (out is not None)
    elif _T_ENTRY == "find_zero":
        return abs(_t_poly(*inp, out)) <= atol
    if atol == 0 and _t_is_floats(exp):
        atol = 1e-6
    if not exact and atol != 0:
        if type(out) is not type(exp):
            return False
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False
        return _t_close(out, exp, atol)
    return exact
'''

# Runs the canonical solution on every input and prints the outputs (pickled, base64) and timings.
_EXPECTED = r'''
_t_sys.stdout = open(_t_os.devnull, "w")
_t_fn = globals()[_T_ENTRY]
_t_data = _t_inputs(_T_INPUTS)
_t_result, _t_times = {}, {}
for _t_split in ("base", "plus"):
    _t_start = _t_time.perf_counter()
    _t_outs = [_t_fn(*_t_inp) for _t_inp in _t_data[_t_split]]
    _t_times[_t_split] = _t_time.perf_counter() - _t_start
    if _T_DATASET == "mbpp" and _T_ENTRY in _T_NOT_NONE:
        _t_outs = [_t_o is not None for _t_o in _t_outs]
    _t_result[_t_split] = _t_outs
_t_os.write(1, b"\nTULU_EXPECTED " + _t_b64.b64encode(_t_pickle.dumps(_t_result, protocol=4)) + b"\n")
_t_os.write(1, ("TULU_TIMES " + _t_json.dumps(_t_times) + "\n").encode())
'''

# Checks a solution: base inputs, a marker line, then the extra inputs. A program that reaches its end
# passed base+plus; one that prints the marker and fails later passed the base tests only.
_CHECK = r'''
_t_fn = globals().get(_T_ENTRY)
if not callable(_t_fn):
    raise NameError("the solution does not define " + _T_ENTRY)
_t_data = _t_inputs(_T_INPUTS)
_t_expected = _t_pickle.loads(_t_b64.b64decode(_T_EXPECTED))
for _t_split in ("base", "plus"):
    for _t_i, (_t_inp, _t_exp) in enumerate(zip(_t_data[_t_split], _t_expected[_t_split])):
        _t_out = _t_fn(*_t_inp)
        if not _t_same(_t_inp, _t_out, _t_exp, _T_ATOL):
            raise AssertionError("%s input #%d: wrong output" % (_t_split, _t_i))
    if _t_split == "base":
        _t_os.write(1, ("\nTULU_BASE_OK " + _T_TOKEN + "\n").encode())
'''

_FUTURE = re.compile(r"^from __future__ import[^\n]*\n?", re.M)


def _constants(problem: dict[str, Any], dataset: str) -> str:
    inputs = json.dumps({"base": problem["base_input"], "plus": problem["plus_input"]})
    return (
        f"_T_DATASET = {dataset!r}\n_T_TASK_ID = {problem['task_id']!r}\n_T_ENTRY = {problem['entry_point']!r}\n"
        f"_T_ATOL = {float(problem.get('atol') or 0)!r}\n_T_INPUTS = {inputs!r}\n"
    )


def expected_program(problem: dict[str, Any], dataset: str) -> str:
    """The program that computes the expected outputs: prompt + canonical solution, as EvalPlus does."""
    code = problem["prompt"] + problem["canonical_solution"]
    return as_module(code + "\n\n" + _constants(problem, dataset) + _COMMON + _EXPECTED)


def check_program(problem: dict[str, Any], dataset: str, solution: str, expected_b64: str, token: str) -> str:
    """The program that checks one solution against the expected outputs of every base and extra input."""
    futures = "".join(m.group(0).rstrip("\n") + "\n" for m in _FUTURE.finditer(solution))
    body = _FUTURE.sub("", solution)
    # The solution's prints go nowhere: a chatty solution must not hit the output limit.
    head = futures + "import sys as _t_sys0, os as _t_os0\n_t_sys0.stdout = open(_t_os0.devnull, 'w')\n"
    tail = _constants(problem, dataset) + f"_T_EXPECTED = {expected_b64!r}\n_T_TOKEN = {token!r}\n"
    return as_module(head + body + "\n\n" + tail + _COMMON + _CHECK)


def mbpp_header(problem: dict[str, Any]) -> str:
    """The imports and ``def`` line of the canonical solution: what the model continues on MBPP+ ("" if none)."""
    code, ep = problem["canonical_solution"], problem["entry_point"]
    m = re.search(rf"^def\s+{re.escape(ep)}\s*\(", code, re.M)
    if m is None:  # not a plain top-level def: the model writes the whole function
        return ""
    imports = [line for line in code[: m.start()].splitlines() if line.startswith(("import ", "from "))]
    header = []
    for line in code[m.start() :].splitlines():
        header.append(line.rstrip())
        if line.split("#")[0].rstrip().endswith(":"):
            break
    return "\n".join(imports + header) + "\n"


class _LazyPrograms(Sequence[str]):
    """Programs built when a worker asks for them: with their inputs and expected outputs inlined,
    all 3,280 HumanEval+ checks at once would take gigabytes."""

    def __init__(self, make: Callable[[int], str], size: int):
        self.make, self.size = make, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self.make(i) for i in range(*index.indices(self.size))]
        if not 0 <= index < self.size:
            raise IndexError(index)
        return self.make(index)


class EvalPlusTask(CodeTask):
    """EvalPlus's harness: the canonical solution's outputs on the base and extra inputs are the oracle;
    completions are unwrapped from code blocks (a whole function replaces the stub)."""

    default_timeout = 10.0
    splits = ("passed", "base_passed")
    options = {
        "timeout": "seconds per program, at least (default 10; a problem gets 4x its canonical solution's time, as EvalPlus)",
        "workers": "programs run at once (default: one per core)",
    }

    def __init__(
        self, name: str, *, stem: str, version: str, url: str, dataset: str, temperature: float, metrics: tuple[str, ...],
        description: str, source: str,
    ):  # fmt: skip
        self.name = self.data_name = name  # type: ignore[misc]
        self.source = source  # type: ignore[misc]
        self.stem, self.dataset = stem, dataset
        self.release_path = f"evalplus/{stem}-{version}.jsonl.gz"
        self.data_files = (DataFile(self.release_path, url),)  # type: ignore[misc]
        self.generation = GenerationSettings(max_new_tokens=512, temperature=temperature, top_p=0.95, n=20, stop=CODEX_STOP)  # type: ignore[misc]
        self.chat_stop = CODEX_STOP + (CLOSE_FENCE,)  # type: ignore[misc]
        self.metrics = metrics  # type: ignore[misc]
        self.description = description  # type: ignore[misc]
        self._expected: dict[str, tuple[str, float] | None] = {}  # by problem digest

    # ---- data ---------------------------------------------------------------------------------
    def data_path(self, ctx: TaskContext) -> Path:
        given = self.given_input(ctx)
        if given is not None:
            return given
        if ctx.data_dir is None:
            raise TuluError(f"task {self.name} needs --data-dir (create it with: {self.prepare_command('DIR')})")
        if (ctx.data_dir / self.release_path).is_file():
            return ctx.data_dir / self.release_path
        # Any other release (or an uncompressed copy) in the same folder will do.
        found = sorted((ctx.data_dir / "evalplus").glob(f"{self.stem}*.jsonl*"))
        if found:
            return found[-1]
        raise TuluError(
            f"{ctx.data_dir / self.release_path}: not found; task {self.name} needs it. "
            f"Create it with: {self.prepare_command(ctx.data_dir)}"
        )

    def problems(self, ctx: TaskContext) -> list[dict[str, Any]]:
        path = self.data_path(ctx)
        problems = read_problems(path, FIELDS)
        for p in problems:
            if not isinstance(p["base_input"], list) or not isinstance(p["plus_input"], list):
                raise TuluError(f"{path}: {p['task_id']}: 'base_input' and 'plus_input' must be lists of argument lists")
        return problems

    def code_prompt(self, problem: dict[str, Any]) -> str:
        if self.dataset == "mbpp":
            return problem["prompt"].rstrip() + "\n" + mbpp_header(problem)
        return problem["prompt"]

    def solution_prefix(self, problem: dict[str, Any]) -> str:
        # MBPP+ prompts are a docstring only; a whole solution brings its own imports.
        return "" if self.dataset == "mbpp" else problem["prompt"]

    # ---- prompting ------------------------------------------------------------------------------
    def chat_turns(self, example: Example, ctx: TaskContext) -> tuple[str, str]:
        # open-instruct's later wording, with the code repeated in the block so the model writes the body.
        code = example.data["code"]
        return INSTRUCTION + code, ANSWER + FENCE + code

    def program(self, text: str, meta: dict[str, Any], sample_format: str | None) -> str:
        return self.unwrapped_program(text, meta, sample_format)

    # ---- execution --------------------------------------------------------------------------------
    def expected_outputs(self, problems: list[dict[str, Any]], workers: int | None) -> dict[str, tuple[str, float] | None]:
        """Per task id: (pickled outputs in base64, seconds a check may need), or None if the canonical solution failed."""
        from tulu_cli.evaluation.sandbox import SandboxLimits, run_programs

        todo = [p for p in problems if problem_digest(p) not in self._expected]
        if todo:
            limits = SandboxLimits(timeout=120.0, file_size_mb=256, output_bytes=256 << 20)
            results = run_programs([expected_program(p, self.dataset) for p in todo], limits, max_workers=workers)
            for p, r in zip(todo, results):
                value = None
                if r.passed:
                    lines = dict(line.split(" ", 1) for line in r.stdout_tail.splitlines() if line.startswith("TULU_"))
                    if "TULU_EXPECTED" in lines and "TULU_TIMES" in lines:
                        # The check does the same loading work (and the calls): budget for both.
                        value = (lines["TULU_EXPECTED"], 4 * sum(json.loads(lines["TULU_TIMES"]).values()) + 2 * r.duration)
                self._expected[problem_digest(p)] = value
        return {p["task_id"]: self._expected[problem_digest(p)] for p in problems}

    def execute(self, jobs: list[tuple[dict[str, Any], str]], ctx: TaskContext, progress: Any) -> list[dict[str, Any]]:
        from tulu_cli.evaluation.sandbox import SandboxLimits, run_programs

        timeout, workers = self.sandbox_settings(ctx)
        unique = list({p["task_id"]: p for p, _ in jobs}.values())
        expected = self.expected_outputs(unique, workers)
        out: list[dict[str, Any] | None] = [None] * len(jobs)
        runnable, limits = [], []
        for i, (p, _) in enumerate(jobs):
            ref = expected[p["task_id"]]
            if ref is None:
                out[i] = {"passed": False, "base_passed": False, "status": "reference_failed", "duration": 0.0,
                          "error": "the canonical solution failed on these inputs"}  # fmt: skip
                progress.advance()
                continue
            runnable.append(i)
            # Like EvalPlus: four times the canonical solution's time (plus loading the inputs), never
            # less than the base timeout.
            limits.append(SandboxLimits(timeout=round(min(120.0, max(timeout, ref[1] + 2)), 1)))
        tokens = [secrets.token_hex(8) for _ in runnable]
        programs = _LazyPrograms(
            lambda k: check_program(jobs[runnable[k]][0], self.dataset, jobs[runnable[k]][1],
                                    expected[jobs[runnable[k]][0]["task_id"]][0], tokens[k]),  # type: ignore[index]
            len(runnable),
        )  # fmt: skip
        results = run_programs(programs, limits, max_workers=workers, on_result=progress.advance)
        for i, tok, r in zip(runnable, tokens, results):
            base = r.passed or f"TULU_BASE_OK {tok}" in r.stdout_tail
            out[i] = {"passed": r.passed, "base_passed": base, "status": r.status, "duration": r.duration,
                      "error": r.stderr_tail[-400:] if not r.passed else ""}  # fmt: skip
        return [o for o in out if o is not None]

    def aggregate(self, rows: list[dict[str, Any]], ctx: TaskContext) -> dict[str, Any]:
        metrics = super().aggregate(rows, ctx)
        known = self.problem_map(ctx)
        broken = sorted({r["id"] for r in rows if self._expected.get(problem_digest(known[r["id"]]), "") is None})
        if broken:
            metrics["reference_failures"] = broken
        return metrics


_OURS = "tulu: EvalPlus harness ({}), open-instruct's chat wording with the code repeated in the assistant turn"

TASKS = [
    EvalPlusTask(
        "humanevalplus_evalplus",
        stem="HumanEvalPlus",
        version="v0.1.10",
        url="https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus-v0.1.10.jsonl.gz",
        dataset="humaneval",
        temperature=0.8,
        metrics=("pass@10", "pass@1", "base_pass@10", "base_pass@1"),
        description="HumanEval+ the EvalPlus way: 20 samples at temperature 0.8, pass@k on base and base+extra tests in the sandbox",
        source=_OURS.format("evalplus/humanevalplus_release v0.1.10"),
    ),
    EvalPlusTask(
        "mbppplus_evalplus",
        stem="MbppPlus",
        version="v0.1.0",
        url="https://github.com/evalplus/mbppplus_release/releases/download/v0.1.0/MbppPlus-v0.1.0.jsonl.gz",
        dataset="mbpp",
        temperature=0.1,
        metrics=("pass@1", "pass@10", "base_pass@1", "base_pass@10"),
        description="MBPP+ the EvalPlus way: 20 samples at temperature 0.1, pass@k on base and base+extra tests in the sandbox",
        source=_OURS.format("evalplus/mbppplus_release v0.1.0"),
    ),
]
