"""`tulu eval` command group: run the Tulu 2 suite, re-score predictions, list tasks (heavy imports inside)."""

from __future__ import annotations

from tulu_cli.cli._common import TuluTyper, print_json, print_resolved
from tulu_cli.cli._schema import Call, add_command
from tulu_cli.options.eval import EvalListOptions, EvalRunOptions, EvalScoreOptions

def _use_sandbox(opts) -> None:
    """--sandbox, for the code tasks' programs: strict or a named jail refuses now, before any model loads."""
    from tulu_cli.evaluation.sandbox import set_policy

    set_policy(opts.sandbox)


def run(call: Call) -> None:
    """Evaluate a model on Tulu 2 benchmark presets and write predictions, metrics and results.json.

    Example:

        tulu data prepare-eval mmlu gsm bbh --data-dir data/eval

        tulu eval run -m allenai/tulu-2-7b -t mmlu_0shot,gsm_cot,bbh_cot -d data/eval -o results/tulu2-7b
    """
    opts = call.options()
    if call.dry_run:
        from tulu_cli.evaluation.runner import preflight

        preflight(opts)  # what a real run would refuse before loading the model
        print_resolved(opts)
        return
    _use_sandbox(opts)
    from tulu_cli.evaluation.runner import run_eval
    from tulu_cli.evaluation.score import flatten

    results = run_eval(opts)
    if opts.json_output:
        print_json({name: flatten(r["metrics"]) for name, r in results["results"].items()})


def score(call: Call) -> None:
    """Score existing generations without a model: answers are extracted again from the raw outputs.

    Rows need ``id`` and ``output``; without ``reference``, pass --data-dir to match them to the data.

    Example:

        tulu eval score --task gsm_cot --predictions results/tulu2-7b/gsm_cot/predictions.jsonl --json
    """
    opts = call.options()
    if call.dry_run:
        from tulu_cli.evaluation.score import preflight

        preflight(opts)
        print_resolved(opts)
        return
    _use_sandbox(opts)
    from tulu_cli.evaluation.score import flatten, score_predictions

    metrics = score_predictions(opts)
    if opts.json_output:
        print_json({opts.task: flatten(metrics)})
        return
    from rich.console import Console

    from tulu_cli.evaluation.tables import print_table

    rows = [[k, f"{v:.4f}" if isinstance(v, float) else str(v)] for k, v in flatten(metrics).items()]
    print_table(Console(), ["metric", "value"], rows, title=f"{opts.task}: {opts.predictions}", right=(1,))


def list_tasks(call: Call) -> None:
    """List the task presets with their metrics, settings and --task-arg options.

    At a terminal: a table. In a pipe or a narrow terminal: a header line, then one tab-separated
    line per task, nothing cut (tulu eval list | grep gsm).

    Example:

        tulu eval list --json
    """
    from tulu_cli.evaluation.tasks import all_tasks, broken_modules

    opts = call.options()
    if call.dry_run:
        return
    tasks = all_tasks()
    from rich.console import Console

    for module, err in broken_modules().items():
        Console(stderr=True).print(f"[yellow]warning:[/yellow] task module {module} not loaded ({err})", highlight=False)
    if opts.json_output:
        print_json({name: t.info() for name, t in tasks.items()})
        return
    from tulu_cli.evaluation.tables import print_table

    rows = []
    for name, t in tasks.items():
        info = t.info()
        g = info.get("generation")
        settings = (
            f"max_new_tokens={g['max_new_tokens']} T={g['temperature']} top_p={g['top_p']} n={g['n']} stop={g['stop']!r}"
            if g
            else "log-likelihood"
        )
        if t.max_examples:
            settings += f"; {t.max_examples} examples" + (f" per {t.sample_by}" if t.sample_by else "")
        options = ", ".join(t.options) or "-"  # their help: `tulu eval list --json`
        rows.append([name, str(t.data_name or "-"), str(t.n_shot), t.kind, settings, ", ".join(t.metrics), options, t.source or "-", t.description])
    columns = ["task", "data", "shots", "kind", "settings", "metrics", "task args", "source", "description"]
    print_table(Console(), columns, rows, title="tulu eval tasks")


app = TuluTyper(help="Run and score the Tulu 2 evaluation suite.")
add_command(app, "run", EvalRunOptions, run)
add_command(app, "score", EvalScoreOptions, score)
add_command(app, "list", EvalListOptions, list_tasks)
