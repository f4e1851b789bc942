"""`tulu eval score`: re-extract and re-score a predictions file without any model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.results import is_run_task_folder, write_json_atomic
from tulu_cli.evaluation.runner import rescore_row
from tulu_cli.evaluation.tasks import Task, TaskContext, check_input_files, check_task_args, get_task
from tulu_cli.paths import check_output, clean_stale


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metric dicts as 'cat_acc/STEM' keys (for --json and tables)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def preflight(opts: Any) -> Task:
    """Everything ``eval score`` can refuse before reading a prediction (also run by --dry-run): the
    task, its --task-arg keys, --input-file, the predictions file, an --output that cannot be written."""
    task = get_task(opts.task, "--task")
    check_task_args([task], opts)
    check_input_files([task], opts)
    path = Path(opts.predictions)  # a file, or a folder for tasks that read one (EvalPlus samples)
    if not path.exists():
        raise TuluError(f"--predictions {path}: does not exist")
    if not os.access(path, os.R_OK):
        raise TuluError(f"--predictions {path}: cannot read it (permission denied)")
    if opts.output is not None:
        out = Path(opts.output)
        check_output(out, "--output", "file")
        if out.exists() and out.resolve() == path.resolve():
            raise TuluError(f"--output {out}: is the predictions file; give another file name")
    return task


def score_predictions(opts: Any) -> dict[str, Any]:
    """Metrics of ``opts.predictions`` for ``opts.task``; rows without references are joined to the data by id."""
    task = preflight(opts)
    # Temp files of killed earlier writers, where this run writes: beside --output, or in the run's task folder.
    if opts.output is not None:
        clean_stale(Path(opts.output).parent)
    elif is_run_task_folder(Path(opts.predictions).parent):
        clean_stale(Path(opts.predictions).parent)
    data_dir = Path(opts.data_dir) if opts.data_dir is not None else None
    ctx = TaskContext(data_dir=data_dir, options=opts, chat_template="none", seed=42)
    path = Path(opts.predictions)
    rows = task.read_predictions(path, ctx)
    if not rows:
        raise TuluError(f"{path}: no predictions in this file")
    if any("reference" not in r for r in rows):
        if data_dir is None:
            raise TuluError(f"{path}: rows have no 'reference'; pass --data-dir so they can be matched to the data by id")
        task.check_data(data_dir)
        by_id = {ex.id: ex for ex in task.load(ctx)}
        for line, r in enumerate(rows, 1):
            ex = by_id.get(str(r["id"]))
            if ex is None:
                raise TuluError(f"{path}: row {line}: id '{r['id']}' is not an example of {task.name} in {data_dir}")
            r.setdefault("reference", ex.reference)
            r.setdefault("meta", ex.meta)
    for line, r in enumerate(rows, 1):
        r.setdefault("meta", {})
        if task.kind == "choices" and not isinstance(r["output"], list):
            raise TuluError(f"{path}: row {line}: field 'output' must be a list of log-likelihoods for {task.name}")
        try:
            rescore_row(task, r)
        except (KeyError, TypeError, ValueError) as e:
            raise TuluError(f"{path}: row {line}: cannot score this row for {task.name} ({type(e).__name__}: {e})") from None
    metrics = task.aggregate(rows, ctx)
    if opts.output is not None:
        write_json_atomic(Path(opts.output), metrics)
    return metrics
