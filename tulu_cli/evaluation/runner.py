"""`tulu eval run`: load tasks, resume finished examples, drive the backend, write predictions and metrics."""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.backends import Backend, GenerationRequest, LoglikelihoodRequest, NextTokenRequest, load_backend
from tulu_cli.evaluation.prompting import make_renderer, render_tulu, template_source
from tulu_cli.evaluation.results import (
    PredictionWriter,
    hash_paths,
    package_versions,
    read_done_rows,
    rewrite_rows,
    sha256_text,
    write_json_atomic,
)
from tulu_cli.evaluation.tasks import (
    Example,
    GenerationSettings,
    Query,
    Task,
    TaskContext,
    check_input_files,
    check_task_args,
    get_task,
    task_args_of,
)
from tulu_cli.paths import check_output, clean_stale


def task_chat_template(task: Task, opts: Any) -> str:
    """--chat-template when given, else the preset's own (open-instruct ran codex without chat format)."""
    return opts.chat_template if opts.chat_template is not None else task.default_chat_template


def resolved_generation(task: Task, opts: Any, ctx: TaskContext) -> GenerationSettings:
    """The preset's settings with every option the user gave on top."""
    g = task.generation
    return GenerationSettings(
        max_new_tokens=opts.max_new_tokens if opts.max_new_tokens is not None else g.max_new_tokens,
        temperature=opts.temperature if opts.temperature is not None else g.temperature,
        top_p=opts.top_p if opts.top_p is not None else g.top_p,
        n=opts.n_samples if opts.n_samples is not None else g.n,
        stop=tuple(opts.stop) if opts.stop is not None else task.stop_for(ctx.use_chat, ctx),
    )


def request_hash(query: Query, task: Task, settings: GenerationSettings | None, seed: int, model: str = "") -> str:
    """Identity of what is asked of which model: model name, prompt (+ choices), generation settings.

    Resuming reuses a row only when this matches, so pointing a rerun at another model or
    changing a setting regenerates instead of mixing results.
    """
    key: dict[str, Any] = {"model": model, "prompt": query.prompt, "messages": query.messages}
    if task.kind == "choices":
        key["choices"] = query.choices
        if query.next_token:  # the other scoring rule: rows of one must not be resumed as the other's
            key["next_token"] = True
    elif settings is not None:
        key["settings"] = asdict(settings)
        if settings.temperature > 0:
            key["seed"] = seed
    return sha256_text(json.dumps(key, sort_keys=True, ensure_ascii=False))[:16]


def make_row(task: Task, ex: Example, query: Query, phash: str, output: Any, n: int) -> dict[str, Any]:
    """A predictions row: extraction and per-example metrics computed from the raw output."""
    row: dict[str, Any] = {
        "id": ex.id,
        "prompt": query.prompt,
        "reference": ex.reference,
        "meta": ex.meta,
        "prompt_hash": phash,
    }
    if task.kind == "choices":
        row["choices"] = query.choices
        row["output"] = output
        row["answer"] = task.extract(output, row)
    elif n == 1:
        row["output"] = output[0]
        row["answer"] = task.extract(output[0], row)
    else:
        row["output"] = list(output)
        row["answer"] = [task.extract(o, row) for o in output]
    row["metrics"] = task.score(row)
    return row


def rescore_row(task: Task, row: dict[str, Any]) -> dict[str, Any]:
    """Extract and score again from the raw output (eval score; resumed rows keep theirs)."""
    out = row["output"]
    if task.kind == "generate" and isinstance(out, list):
        row["answer"] = [task.extract(o, row) for o in out]
    else:
        row["answer"] = task.extract(out, row)
    row["metrics"] = task.score(row)
    return row


class _Progress:
    """A rich bar per task on a terminal; one line per finished task otherwise."""

    def __init__(self, quiet: bool = False):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.live = self.console.is_terminal and not quiet
        self.quiet = quiet
        self._progress = None

    def __enter__(self) -> "_Progress":
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def add(self, name: str, total: int, done: int) -> Any:
        if self._progress is not None:
            return self._progress.add_task(name, total=total, completed=done)
        return None

    def advance(self, handle: Any) -> None:
        if self._progress is not None and handle is not None:
            self._progress.advance(handle)

    def log(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, soft_wrap=True)  # never folded mid-path


def _format_value(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def print_table(results: dict[str, dict[str, Any]], console: Any) -> None:
    """Top-level metrics per task (nested ones are in results.json); plain lines when not at a terminal."""
    from tulu_cli.evaluation.tables import print_table as show

    rows = [
        [name, k, _format_value(v), str(res["num_examples"])]
        for name, res in results.items()
        for k, v in res["metrics"].items()
        if not isinstance(v, dict)
    ]
    show(console, ["task", "metric", "value", "n"], rows, title="results", keep=(0, 1), right=(2, 3), group=(0, 3))


def run_task(task: Task, backend: Backend, ctx: TaskContext, opts: Any, out_dir: Path, progress: _Progress) -> dict[str, Any]:
    """Evaluate one task end to end; returns its entry of results.json."""
    started = time.time()
    examples = task.load(ctx)
    max_examples = task.max_examples
    if opts.max_examples is not None:
        max_examples = opts.max_examples or None
    examples = task.select(examples, max_examples, opts.limit, opts.seed)
    if not examples:
        raise TuluError(f"task {task.name}: no examples found in {ctx.data_dir}")
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"task {task.name} produced duplicate example ids")

    settings = resolved_generation(task, opts, ctx) if task.kind == "generate" else None
    queries = [task.build(ex, ctx) for ex in examples]
    model_id = f"{opts.backend}:{opts.model}"
    hashes = [request_hash(q, task, settings, opts.seed, model_id) for q in queries]

    task_dir = out_dir / task.name
    task_dir.mkdir(parents=True, exist_ok=True)
    pred_path = task_dir / "predictions.jsonl"
    if opts.overwrite and pred_path.exists():
        pred_path.unlink()
    old_rows, dirty = read_done_rows(pred_path)
    wanted = {ex.id: h for ex, h in zip(examples, hashes)}
    # A row is reused only if the same example was asked the same thing (same prompt and settings).
    kept = {r["id"]: r for r in old_rows if wanted.get(r["id"]) == r.get("prompt_hash")}
    if dirty or len(kept) != len(old_rows):
        rewrite_rows(pred_path, list(kept.values()))
    pending = [i for i, ex in enumerate(examples) if ex.id not in kept]
    rows: dict[str, dict[str, Any]] = dict(kept)

    handle = progress.add(task.name, total=len(examples), done=len(kept))
    gen_started = time.time()
    with PredictionWriter(pred_path) as writer:

        def on_result(j: int, output: Any) -> None:
            i = pending[j]
            row = make_row(task, examples[i], queries[i], hashes[i], output, settings.n if settings else 1)
            writer.write(row)
            rows[row["id"]] = row
            progress.advance(handle)

        if pending and task.kind == "choices" and queries[pending[0]].next_token:  # a task scores all its queries one way
            backend.next_token_logprobs(
                [NextTokenRequest(context=queries[i].prompt, candidates=list(queries[i].choices or [])) for i in pending],
                on_result=on_result,
            )
        elif pending and task.kind == "choices":
            reqs = [LoglikelihoodRequest(context=queries[i].prompt, continuations=list(queries[i].choices or [])) for i in pending]
            backend.loglikelihood(reqs, on_result=on_result)
        elif pending:
            assert settings is not None
            reqs = [
                GenerationRequest(
                    prompt=queries[i].prompt,
                    messages=queries[i].messages,
                    max_new_tokens=settings.max_new_tokens,
                    temperature=settings.temperature,
                    top_p=settings.top_p,
                    n=settings.n,
                    stop=settings.stop,
                    seed=opts.seed,
                )
                for i in pending
            ]
            backend.generate(reqs, on_result=on_result)
    gen_seconds = time.time() - gen_started

    ordered = [rows[ex.id] for ex in examples]
    metrics = task.aggregate(ordered, ctx)
    write_json_atomic(task_dir / "metrics.json", metrics)
    # What was read: the required paths, or (tasks that check nothing up front) their declared files.
    hashed = task.required or tuple(f.path for f in task.data_files if f.unpack_to is None)
    data_hashes = hash_paths(ctx.data_dir, hashed) if ctx.data_dir is not None else {}
    entry: dict[str, Any] = {
        "metrics": metrics,
        "n_shot": task.n_shot,
        "num_examples": len(examples),
        "num_generated": len(pending),
        "num_resumed": len(kept),
        "kind": task.kind,
        "chat_template": ctx.chat_template,
        "task_args": task_args_of(task, opts),
        "generation": asdict(settings) if settings else None,
        "data_files": data_hashes,
        "seconds": round(time.time() - started, 3),
        "examples_per_second": round(len(pending) / gen_seconds, 3) if pending and gen_seconds > 0 else None,
    }
    progress.log(f"[bold]{task.name}[/bold]: " + ", ".join(f"{k}={_format_value(v)}" for k, v in metrics.items() if not isinstance(v, dict)))
    return entry


def earlier_results(path: Path, opts: Any, running: set[str]) -> dict[str, Any]:
    """Task entries of an earlier results.json in this folder for the same model and backend, so one
    folder evaluated task by task still ends with every task in results.json."""
    if opts.overwrite or not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        same = old.get("model") == opts.model and (old.get("backend") or {}).get("backend") == opts.backend
        return {k: v for k, v in old.get("results", {}).items() if same and k not in running}
    except (OSError, ValueError, AttributeError):
        return {}


def preflight(opts: Any) -> tuple[list[Task], dict[str, str]]:
    """Everything ``eval run`` can refuse before a model loads or a file is written (also run by
    --dry-run): the tasks and their --task-arg keys, input files, the output folder, each task's own
    check (data, judges, --task-arg values), then the model and tokenizer. Returns the tasks and the
    chat template of each."""
    tasks = [get_task(name).with_n_shot(opts.n_shot) for name in opts.tasks]
    check_task_args(tasks, opts)
    check_input_files(tasks, opts)
    check_output(Path(opts.output_dir), "--output-dir", "folder", in_place=True)
    if opts.backend == "openai" and opts.cache_dir is not None:
        check_output(Path(opts.cache_dir), "--cache-dir", "folder", in_place=True)
    data_dir = Path(opts.data_dir) if opts.data_dir is not None else None
    templates = {t.name: task_chat_template(t, opts) for t in tasks}
    for t in tasks:  # every task's data, input file, judge and classifier: fail before loading a model
        t.check(TaskContext(data_dir=data_dir, options=opts, chat_template=templates[t.name], seed=opts.seed))
    if opts.backend in ("hf", "vllm"):
        from tulu_cli.models import check_model_source

        check_model_source(opts.model, opts.tokenizer)
    return tasks, templates


def run_eval(opts: Any) -> dict[str, Any]:
    """Run every requested task; returns the results.json content (also written to the output dir)."""
    tasks, templates = preflight(opts)
    data_dir = Path(opts.data_dir) if opts.data_dir is not None else None
    out_dir = Path(opts.output_dir)

    started = time.time()
    backend = load_backend(opts)
    try:
        tokenizer = backend.tokenizer
        renderers: dict[str, Any] = {}  # by template; all made now, so a tokenizer without a template fails before any task runs
        for name in set(templates.values()):
            if opts.backend == "openai" and opts.openai_api == "chat":
                renderers[name] = render_tulu  # prompt text is recorded only; the API applies its own template
            else:
                renderers[name] = make_renderer(name, tokenizer)
        hashes = {name: sha256_text(template_source(name, tokenizer)) for name in renderers}
        # One template for the whole run, or (tasks resolved theirs differently) the template of each task.
        uniform = len(renderers) == 1
        counter = backend.count_tokens if tokenizer is not None else None
        results_path = out_dir / "results.json"
        task_results = earlier_results(results_path, opts, {t.name for t in tasks})
        run_info: dict[str, Any] = {
            "model": opts.model,
            "backend": backend.describe(),
            "chat_template": next(iter(renderers)) if uniform else templates,
            "chat_template_sha256": next(iter(hashes.values())) if uniform else {k: hashes[v] for k, v in templates.items()},
            "seed": opts.seed,
            "limit": opts.limit,
            "options": json.loads(opts.model_dump_json()),
            "versions": package_versions(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        # Only now, with the model loaded and every template made, does the output folder appear.
        out_dir.mkdir(parents=True, exist_ok=True)
        for folder in (out_dir, *(out_dir / t.name for t in tasks)):
            clean_stale(folder)  # temp files of earlier runs that were killed
        with _Progress(quiet=False) as progress:
            for t in tasks:
                ctx = TaskContext(
                    data_dir=data_dir,
                    options=opts,
                    chat_template=templates[t.name],
                    render=renderers[templates[t.name]],
                    count_tokens=counter,
                    seed=opts.seed,
                    tokenizer=tokenizer,
                )
                task_results[t.name] = run_task(t, backend, ctx, opts, out_dir, progress)
                run_info["backend"] = backend.describe()  # counters (API requests, cache hits) change as tasks run
                write_json_atomic(
                    results_path,
                    {**run_info, "results": task_results, "seconds": round(time.time() - started, 3)},
                )
        final = {**run_info, "results": task_results, "seconds": round(time.time() - started, 3)}
        write_json_atomic(results_path, final)
        if not opts.json_output or progress.console.is_terminal:
            print_table(task_results, progress.console)
        return final
    finally:
        backend.close()
