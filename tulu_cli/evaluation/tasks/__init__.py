"""The task interface every benchmark implements, and the registry that finds tasks by preset name.

Writing a task (read this first)
================================
A benchmark is one module in this package, ``tulu_cli/evaluation/tasks/<name>.py``, that subclasses
``Task`` and lists its instances in a module-level ``TASKS = [...]`` (one instance per preset name:
``gsm_direct`` and ``gsm_cot`` are two instances of one class). Nothing else registers it: the
registry imports every module of this package the first time a task is looked up. A module may
import optional dependencies inside methods only, so ``tulu eval list`` always works.

Class attributes (data, mostly):
    name          preset name, as in DESIGN.md (``mmlu_0shot``, ``codex_eval_temp_0.8``...)
    description   one line for ``tulu eval list``
    data_name     argument of ``tulu data prepare-eval`` that creates this task's data (``"mmlu"``);
                  tasks sharing data share it. ``None``: the task needs no data dir.
    data_files    ``DataFile``s: where ``prepare-eval`` downloads from, and where the file lands
                  relative to ``--data-dir`` (open-instruct's ``data/eval`` layout).
    required      paths relative to ``--data-dir`` that must exist before ``load`` (a missing one
                  makes ``eval run`` print the ``prepare-eval`` command). Empty: nothing checked.
    kind          ``"generate"`` (backend samples text) or ``"choices"`` (backend scores
                  continuations of one context by log-likelihood, in one forward pass; or, when
                  the query sets ``next_token``, reads each choice's token off the next-token
                  distribution).
    generation    ``GenerationSettings`` of the preset (max tokens, temperature, top-p, n, stop);
                  every field can be overridden from the command line.
    chat_stop     stop sequences used instead of ``generation.stop`` when a chat template is on
                  (Tulu 2 relied on EOS for chat models: usually ``()``).
    default_chat_template  the chat template the reference job used for this preset when
                  ``--chat-template`` is not given: ``"tulu"``, or ``"none"`` for presets it ran
                  without chat format (codex).
    n_shot        number of in-context examples (reported in results.json).
    max_n_shot    largest ``--n-shot`` the task can honour (it must then build prompts from
                  ``self.n_shot``); ``None``: the prompt is fixed and ``--n-shot`` is refused.
    max_examples  Tulu 2 subsample size (``None``: all), drawn with ``random.Random(seed)``.
    sample_by     ``meta`` key whose groups are subsampled separately (BBH: per subtask).
    metrics       metric names, the primary one first (shown by ``tulu eval list``).
    takes_input_file  ``--input-file`` may replace the task's data file (read it with
                  ``given_input``/``find_input``, which also resolve the ``TASK=PATH`` form).
    source        where the preset's definition comes from: the reference repository, commit and
                  script it reproduces (``"open-instruct f3424591 eval/gsm/run_eval.py"``), or
                  ``"tulu"`` for a preset of our own; shown by ``tulu eval list``.
    options       EVERY ``--task-arg`` key the task reads, with one line of help: opt-in deviations
                  from the reference (e.g. ``lenient``) and settings (judge paths, batch sizes).
                  A key that no task of the run declares is refused before anything runs; ``check``
                  must validate the values; ``results.json`` records the given ones per task
                  (``task_args``). Defaults are the reference's behaviour.

Methods (called by the runner in this order; ``ctx`` is a ``TaskContext``):
    check(ctx)                           everything the task needs (data files, --input-file, judges,
                                         classifiers) is there and every --task-arg value it reads
                                         is valid: a TuluError otherwise. Called for every task
                                         BEFORE the model is loaded (and by --dry-run); must be cheap.
    load(ctx) -> list[Example]           read the data (``ctx.data_dir`` is the --data-dir root)
    build(example, ctx) -> Query         the prompt; use ``ctx.query(...)`` so chat templating and
                                         the chat-API messages stay uniform across tasks
    extract(output, row) -> answer       answer from ONE raw output (a str; for "choices" tasks a
                                         list of log-likelihoods, one per choice)
    score(row) -> {metric: float}        per-example metrics from a predictions row
    aggregate(rows, ctx) -> {metric: v}  task metrics from all rows (may call judges/classifiers:
                                         ``ctx.options`` holds every run option)
    read_predictions(path, ctx) -> rows  for ``eval score``: override to accept foreign formats

A predictions row (one JSON line of ``predictions.jsonl``) is a dict with keys ``id``, ``prompt``,
``output`` (str; a list of str when ``n > 1``; a list of floats for "choices"), ``answer``
(extracted; a list when ``n > 1``), ``reference``, ``metrics`` (from ``score``), ``meta`` (the
example's meta) and ``prompt_hash``. ``extract``/``score`` must depend on the row only, never on the
model, so ``tulu eval score`` can re-score a file.
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Literal

from tulu_cli.errors import TuluError

__all__ = [
    "DataFile",
    "Example",
    "GenerationSettings",
    "Query",
    "Task",
    "TaskContext",
    "all_tasks",
    "get_task",
    "mean",
    "read_csv_lines",
    "read_jsonl_lines",
    "read_jsonl_rows",
    "read_predictions_or",
]


@dataclass(frozen=True)
class DataFile:
    """One published file a task needs: where it comes from and where it goes under --data-dir."""

    path: str  # relative to --data-dir, e.g. "gsm/test.jsonl" or "mmlu/data.tar"
    url: str
    sha256: str | None = None
    unpack_to: str | None = None  # archives (.tar, .tar.gz, .zip): folder (relative) to extract into


@dataclass(frozen=True)
class GenerationSettings:
    """What a generate task asks of the backend (Tulu 2 presets; greedy unless temperature > 0)."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()


@dataclass
class Example:
    """One test item: a stable id, the reference answer, metadata kept in predictions, raw fields."""

    id: str
    reference: Any
    meta: dict[str, Any] = field(default_factory=dict)  # written to predictions.jsonl (subject, subtask...)
    data: dict[str, Any] = field(default_factory=dict)  # for building the prompt only; not written


@dataclass
class Query:
    """A prompt ready for a backend: the full text for completion models, messages for chat APIs."""

    prompt: str
    messages: list[dict[str, str]] | None = None
    choices: list[str] | None = None  # continuations to score ("choices" tasks)
    # "choices" tasks: score each choice as the NEXT token instead, the last token of the choice
    # encoded alone (one forward pass; open-instruct's MMLU rule).
    next_token: bool = False


def mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else 0.0


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class TaskContext:
    """Everything a task may use besides its example: data folder, options, prompt rendering, tokens.

    ``render`` turns a list of chat messages into the model's prompt string (the chat template
    chosen by --chat-template, generation prompt included); ``count_tokens`` uses the model's
    tokenizer when there is one (hf, vllm) and a 4-characters-per-token estimate otherwise.
    ``tokenizer`` is the model's Hugging Face tokenizer (None for API backends), for tasks whose
    reference rule is stated in its tokens (TyDiQA's ``decode(encode(passage)[:512])``).
    """

    def __init__(
        self,
        *,
        data_dir: Path | None,
        options: Any = None,
        chat_template: str = "tulu",
        render: Callable[[list[dict[str, str]]], str] | None = None,
        count_tokens: Callable[[str], int] | None = None,
        seed: int = 42,
        tokenizer: Any = None,
    ):
        self.data_dir = data_dir
        self.tokenizer = tokenizer
        self.options = options
        self.chat_template = chat_template
        self._render = render
        self._count = count_tokens
        self.seed = seed

    @property
    def use_chat(self) -> bool:
        return self.chat_template != "none"

    def count_tokens(self, text: str) -> int:
        if self._count is not None:
            return self._count(text)
        return len(text) // 4 + 1

    def render(self, messages: list[dict[str, str]]) -> str:
        if self._render is None:
            from tulu_cli.evaluation.prompting import render_tulu

            return render_tulu(messages)
        return self._render(messages)

    def query(self, user: str, *, chat_suffix: str = "", plain_suffix: str = "", choices: list[str] | None = None) -> Query:
        """The Tulu 2 eval prompt rule.

        With a chat template: the user turn is ``user``, the assistant turn starts with
        ``chat_suffix`` (one space before it unless the rendered prompt already ends in a space or
        newline). Without: ``user + plain_suffix``. Chat APIs always get ``user + plain_suffix``
        as the user message (what Tulu 2 sent to OpenAI models).
        """
        plain = user + plain_suffix
        messages = [{"role": "user", "content": plain}]
        if not self.use_chat:
            return Query(prompt=plain, messages=messages, choices=choices)
        text = self.render([{"role": "user", "content": user}])
        if chat_suffix:
            text += chat_suffix if text[-1:] in ("\n", " ") else " " + chat_suffix
        return Query(prompt=text, messages=messages, choices=choices)


class Task:
    """Base class of a benchmark preset; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    data_name: ClassVar[str | None] = None
    data_files: ClassVar[tuple[DataFile, ...]] = ()
    required: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[Literal["generate", "choices"]] = "generate"
    generation: ClassVar[GenerationSettings] = GenerationSettings()
    chat_stop: ClassVar[tuple[str, ...] | None] = None  # None: same as generation.stop
    default_chat_template: ClassVar[str] = "tulu"
    n_shot: ClassVar[int] = 0
    max_n_shot: ClassVar[int | None] = None
    max_examples: ClassVar[int | None] = None
    sample_by: ClassVar[str | None] = None
    metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    takes_input_file: ClassVar[bool] = False
    source: ClassVar[str] = ""
    options: ClassVar[dict[str, str]] = {}

    # ---- data -------------------------------------------------------------------------------
    def prepare_command(self, data_dir: Path | str) -> str:
        return f"tulu data prepare-eval {self.data_name} --data-dir {data_dir}"

    def check_data(self, data_dir: Path | None) -> None:
        """Raise a TuluError naming the prepare-eval command when a required path is missing."""
        if not self.required:
            return
        if data_dir is None:
            raise TuluError(
                f"task {self.name} needs --data-dir (create it with: {self.prepare_command('DIR')})"
            )
        for rel in self.required:
            if not (data_dir / rel).exists():
                raise TuluError(
                    f"{data_dir / rel}: not found; task {self.name} needs it. Create it with: "
                    f"{self.prepare_command(data_dir)}"
                )

    def given_input(self, ctx: TaskContext) -> Path | None:
        """This task's --input-file (as given, else relative to --data-dir), checked to exist; None if not given."""
        given = task_input_file(self.name, ctx.options)
        if given is None:
            return None
        if not given.is_file() and not given.is_absolute() and ctx.data_dir is not None and (ctx.data_dir / given).is_file():
            return ctx.data_dir / given
        if not given.is_file():
            raise TuluError(f"--input-file: {given} does not exist")
        return given

    def find_input(self, ctx: TaskContext, candidates: tuple[str, ...], what: str = "it") -> Path:
        """--input-file, else the first of ``candidates`` (relative paths) under --data-dir; errors name prepare-eval."""
        given = self.given_input(ctx)
        if given is not None:
            return given
        if ctx.data_dir is None:
            raise TuluError(f"task {self.name} needs --data-dir (create it with: {self.prepare_command('DIR')})")
        for rel in candidates:
            if (ctx.data_dir / rel).is_file():
                return ctx.data_dir / rel
        nor = f" (nor {', '.join(str(ctx.data_dir / c) for c in candidates[1:])})" if len(candidates) > 1 else ""
        raise TuluError(
            f"{ctx.data_dir / candidates[0]}: not found{nor}; task {self.name} needs {what}. "
            f"Create it with: {self.prepare_command(ctx.data_dir)}"
        )

    def check(self, ctx: TaskContext) -> None:
        """Fail now, with one line, on anything ``load``/``aggregate`` would fail on later (called
        before the model is loaded, so a missing file costs seconds, not a model load). Default:
        the ``required`` paths."""
        self.check_data(ctx.data_dir)

    def load(self, ctx: TaskContext) -> list[Example]:
        raise NotImplementedError

    def select(self, examples: list[Example], max_examples: int | None, limit: int | None, seed: int) -> list[Example]:
        """Tulu 2 subsample (``max_examples`` per ``sample_by`` group, seeded), then the first ``limit``."""
        groups: dict[Any, list[Example]] = {}
        for ex in examples:
            groups.setdefault(ex.meta.get(self.sample_by) if self.sample_by else None, []).append(ex)
        chosen: list[Example] = []
        for key, items in groups.items():
            if max_examples is not None and 0 < max_examples < len(items):
                items = random.Random(seed).sample(items, max_examples)
            if limit is not None and self.sample_by:
                items = items[:limit]
            chosen.extend(items)
        if limit is not None and not self.sample_by:
            chosen = chosen[:limit]
        return chosen

    def select_in_one_stream(
        self, examples: list[Example], limit: int | None, draw: Callable[[list[Example]], list[Example]]
    ) -> list[Example]:
        """Subsample as open-instruct's scripts did under ONE ``random.seed(42)``: ``draw(items)`` gets
        each ``sample_by`` group in order of first appearance and returns the items kept. The caller's
        ``draw`` holds the single random stream, so each group's sample depends on the groups drawn
        before it (unlike ``select``, which seeds every group afresh). Then the first ``limit`` per group."""
        groups: dict[Any, list[Example]] = {}
        for ex in examples:
            groups.setdefault(ex.meta.get(self.sample_by) if self.sample_by else None, []).append(ex)
        chosen: list[Example] = []
        for items in groups.values():
            chosen.extend(draw(items)[:limit])
        return chosen

    # ---- prompting and scoring ----------------------------------------------------------------
    def build(self, example: Example, ctx: TaskContext) -> Query:
        raise NotImplementedError

    def extract(self, output: Any, row: dict[str, Any]) -> Any:
        return output.strip() if isinstance(output, str) else output

    def score(self, row: dict[str, Any]) -> dict[str, float]:
        return {}

    def aggregate(self, rows: list[dict[str, Any]], ctx: TaskContext) -> dict[str, Any]:
        """Default: the mean of every per-example metric."""
        keys: list[str] = []
        for r in rows:
            keys.extend(k for k in r.get("metrics", {}) if k not in keys)
        return {k: mean(float(r["metrics"][k]) for r in rows if k in r.get("metrics", {})) for k in keys}

    def read_predictions(self, path: Path, ctx: TaskContext) -> list[dict[str, Any]]:
        """Rows for ``eval score``; the default reads our own predictions.jsonl format."""
        return read_jsonl_rows(path, required=("id", "output"))

    # ---- helpers for subclasses -----------------------------------------------------------------
    def stop_for(self, use_chat: bool, ctx: TaskContext | None = None) -> tuple[str, ...]:
        """The preset's stop sequences; ``ctx`` (the run's context) lets a task's stops depend on its data."""
        if use_chat and self.chat_stop is not None:
            return self.chat_stop
        return self.generation.stop

    def with_settings(self, **changes: Any) -> GenerationSettings:
        return replace(self.generation, **changes)

    def with_n_shot(self, n_shot: int | None) -> "Task":
        """This preset with ``--n-shot`` applied (a copy; the registered preset is not changed)."""
        if n_shot is None or n_shot == self.n_shot:
            return self
        if self.max_n_shot is None:
            raise TuluError(f"--n-shot: task {self.name} has a fixed prompt ({self.n_shot}-shot)")
        if not 0 <= n_shot <= self.max_n_shot:
            raise TuluError(f"--n-shot: task {self.name} has {self.max_n_shot} exemplars; got {n_shot}")
        import copy

        task = copy.copy(self)
        task.n_shot = n_shot  # type: ignore[misc]
        return task

    def info(self) -> dict[str, Any]:
        """What ``tulu eval list`` shows and results.json records about the preset."""
        g = self.generation
        out: dict[str, Any] = {
            "description": self.description,
            "kind": self.kind,
            "n_shot": self.n_shot,
            "max_examples": self.max_examples,
            "metrics": list(self.metrics),
            "data": self.data_name,
            "source": self.source,
            "chat_template": self.default_chat_template,
            "options": dict(self.options),
        }
        if self.kind == "generate":
            out["generation"] = {
                "max_new_tokens": g.max_new_tokens,
                "temperature": g.temperature,
                "top_p": g.top_p,
                "n": g.n,
                "stop": list(g.stop),
                "chat_stop": list(self.chat_stop) if self.chat_stop is not None else list(g.stop),
            }
        return out


def task_input_file(task_name: str, options: Any) -> Path | None:
    """The --input-file meant for ``task_name``: the plain PATH, or its entry of the TASK=PATH form."""
    given = getattr(options, "input_file", None)
    if isinstance(given, dict):
        given = given.get(task_name)
    return Path(given) if given is not None else None


def check_task_args(tasks: list[Task], options: Any) -> None:
    """Every --task-arg key must be an option of at least one task being run: a typo (``subject=`` for
    ``subjects=``) would otherwise be ignored and the task run with its default."""
    given = getattr(options, "task_args", None) or {}
    known = sorted({k for t in tasks for k in t.options})
    for key in given:
        if key in known:
            continue
        import difflib

        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        names = ", ".join(t.name for t in tasks)
        listing = f"known: {', '.join(known) or 'none'}"
        raise TuluError(f"--task-arg {key}: not an option of {names}{hint}; {listing} (see `tulu eval list --json`)")


def task_args_of(task: Task, options: Any) -> dict[str, str]:
    """The --task-arg values ``task`` reads (its declared options), for results.json."""
    given = getattr(options, "task_args", None) or {}
    return {k: v for k, v in given.items() if k in task.options}


def check_input_files(tasks: list[Task], options: Any) -> None:
    """--input-file must be meant for a task that reads one, and unambiguous: one plain PATH needs one such task."""
    given = getattr(options, "input_file", None)
    if given is None:
        return
    takers = [t.name for t in tasks if t.takes_input_file]
    readers = ", ".join(n for n, t in all_tasks().items() if t.takes_input_file)
    if isinstance(given, dict):
        names = {t.name: t for t in tasks}
        for name in given:
            if name not in names:
                raise TuluError(f"--input-file {name}=...: task {name} is not being run ({', '.join(names)})")
            if not names[name].takes_input_file:
                raise TuluError(f"--input-file {name}=...: task {name} reads no input file (tasks that do: {readers})")
        return
    if not takers:
        raise TuluError(f"--input-file: none of the tasks ({', '.join(t.name for t in tasks)}) reads an input file (tasks that do: {readers})")
    if len(takers) > 1:
        raise TuluError(
            f"--input-file {given}: several tasks read an input file ({', '.join(takers)}); "
            f"name the task: --input-file {takers[0]}=PATH (repeatable)"
        )


def read_jsonl_lines(path: Path, required: tuple[str, ...] = ()) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file, gzipped if its name ends in .gz.

    The checks are ``tulu_cli.jsonl.read_jsonl``'s, plus a missing ``required`` field named with file:line.
    """
    from tulu_cli.jsonl import read_jsonl

    out = []
    for i, row in read_jsonl(path):
        for key in required:
            if key not in row:
                raise TuluError(f"{path}:{i}: field '{key}' is missing")
        out.append((i, row))
    return out


def read_jsonl_rows(path: Path, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The objects of a JSONL file (see ``read_jsonl_lines`` for the checks)."""
    return [row for _, row in read_jsonl_lines(path, required)]


def read_csv_lines(path: Path, columns: tuple[str, ...] = (), what: str = "") -> list[tuple[int, dict[str, str]]]:
    """(line number, row by header) for each record of a CSV file (a BOM is ignored); a missing
    column, an unreadable file or non-UTF-8 text is a TuluError naming the file."""
    import csv

    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            for need in columns:
                if need not in fields:
                    raise TuluError(f"{path}: column '{need}' is missing" + (f" (expected {what})" if what else ""))
            # line_num after reading is where the record ends (quoted fields may span lines).
            return [(reader.line_num, row) for row in reader]
    except OSError as e:
        raise TuluError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise TuluError(f"{path}: not UTF-8 text") from None


def read_predictions_or(
    path: Path, convert: Callable[[int, dict[str, Any]], dict[str, Any]], ours: tuple[str, ...] = ("id", "output")
) -> list[dict[str, Any]]:
    """A predictions file that may come from another tool: rows holding every ``ours`` key are our
    own and kept as they are; any other row goes through ``convert(line_number, row)``, which reads
    the foreign format or raises a TuluError naming the line."""
    return [row if all(k in row for k in ours) else convert(i, row) for i, row in read_jsonl_lines(path)]


_REGISTRY: dict[str, Task] = {}
_BROKEN: dict[str, str] = {}  # module -> import error: one task's missing dependency must not break the others


def _discover() -> None:
    if _REGISTRY:
        return
    found: dict[str, Task] = {}
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{mod.name}")
        except ImportError as e:
            _BROKEN[mod.name] = f"{type(e).__name__}: {e}"
            continue
        for task in getattr(module, "TASKS", ()):
            if task.name in found:
                raise RuntimeError(f"task name {task.name!r} defined twice ({mod.name})")
            found[task.name] = task
    _REGISTRY.update(found)


def all_tasks() -> dict[str, Task]:
    """Every registered task by preset name, in name order."""
    _discover()
    return dict(sorted(_REGISTRY.items()))


def get_task(name: str, flag: str = "--tasks") -> Task:
    """The task with this preset name; a TuluError naming ``flag`` lists the known names otherwise."""
    tasks = all_tasks()
    if name not in tasks:
        import difflib

        close = difflib.get_close_matches(name, tasks, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        broken = "".join(f"; task module '{m}' could not be imported ({err})" for m, err in _BROKEN.items())
        raise TuluError(f"{flag}: unknown task '{name}'{hint}; known: {', '.join(tasks)}{broken}")
    return tasks[name]


def broken_modules() -> dict[str, str]:
    """Task modules that failed to import (missing optional dependency), with the error."""
    _discover()
    return dict(_BROKEN)


def data_names() -> dict[str, list[Task]]:
    """prepare-eval names -> tasks that use that data."""
    out: dict[str, list[Task]] = {}
    for t in all_tasks().values():
        if t.data_name:
            out.setdefault(t.data_name, []).append(t)
    return out
