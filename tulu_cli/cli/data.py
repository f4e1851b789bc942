"""`tulu data` command group: prepare, prepare-eval, inspect (listed at the bottom; heavy imports stay inside functions)."""

from __future__ import annotations

from tulu_cli.cli._common import TuluTyper, print_resolved
from tulu_cli.cli._schema import Call, add_command
from tulu_cli.cli.data_inspect import inspect
from tulu_cli.cli.data_prepare_eval import prepare_eval
from tulu_cli.options.chat import InspectOptions
from tulu_cli.options.data import ListFlag, PrepareOptions
from tulu_cli.options.eval import PrepareEvalOptions


def prepare(call: Call) -> None:
    """Convert instruction data into the tulu chat format: one JSONL row per conversation.

    Each row is [bold]{"dataset", "id", "messages": [{"role", "content"}, ...]}[/bold] (preference sources add "chosen" and "rejected"). Raw files are downloaded from where they were published (resumable, cached) or read from --raw-dir. Every row is validated; a bad input record stops the run with its file:line, or is skipped and reported with --on-error skip. A NAME_data.stats.json beside the output records counts and skips. tulu_v2 also writes the rows its keyword filter removed to NAME_data.filtered_out.jsonl.

    [bold]Examples[/bold]

    tulu data prepare --list

    tulu data prepare dolly -o data/dolly.jsonl

    tulu data prepare tulu_v2 --raw-dir data/raw -o data/processed --tokenizer meta-llama/Llama-2-7b-hf

    tulu data prepare oasst1 -s top_k_reply=1 -o oasst1_top1.jsonl --max-examples 1000

    tulu data prepare alpaca --input my_data.json -o my_data.jsonl

    tulu data prepare --mixture-file examples/mixtures/small_mix.yaml -o data/mix.jsonl --seed 1

    tulu data prepare tulu_v2 --download-only   [dim]# then copy ~/.cache/tulu/raw to an offline machine: --raw-dir[/dim]
    """
    if call.extras["list_"]:
        _print_list()
        return
    opts = call.options()
    from rich.console import Console

    from tulu_cli.data.prepare import prepare as run

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if call.dry_run:
        from tulu_cli.data.prepare import preflight

        for label, files in preflight(opts, download=False).files.items():
            console.print(f"{label}: " + ("would be downloaded" if files is None else ", ".join(map(str, files))))
        print_resolved(opts)
        return
    if opts.download_only:
        from tulu_cli.data.prepare import download_raw

        for label, paths in download_raw(opts).items():
            for p in paths:
                console.print(f"[green]ready[/green] {label}: {p}")
        return
    report = run(opts, log=console.print)
    _print_report(report, console)


def _print_report(report, console) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title=f"{report.name}", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("component", "available", "asked", "written", "filtered", "skipped", "published"):
        table.add_column(col, justify="left" if col == "component" else "right", no_wrap=col == "component")

    def n(x):
        return "all" if x is None else f"{x:,}"

    for c in report.components:
        table.add_row(c.label, f"{c.available:,}", n(c.requested), f"{c.written:,}", f"{c.filtered:,}", f"{len(c.skipped):,}", "" if c.published is None else f"{c.published:,}")
    table.add_row("[bold]total[/bold]", "", "", f"[bold]{report.written:,}[/bold]", f"{report.filtered:,}", f"{sum(len(c.skipped) for c in report.components):,}", "")
    console.print(table)
    for c in report.components:
        for note, k in c.notes.items():
            console.print(f"  {c.label}: {note}" + (f": {k:,}" if k != 1 or "asked for" not in note else ""))
    if report.published_total is not None:
        console.print(f"  published {report.name}: {report.published_total:,} rows")
    console.print(f"[green]wrote[/green] {report.written:,} rows to {report.output}")
    if report.filtered_output is not None:
        console.print(f"[green]wrote[/green] {report.filtered:,} keyword-filtered rows to {report.filtered_output}")
    console.print(f"[green]wrote[/green] counts and skipped records to {report.stats}")


def _print_list() -> None:
    from rich.console import Console
    from rich.markup import escape

    from tulu_cli.data.download import resolve_url
    from tulu_cli.data.mixtures import MIXTURES
    from tulu_cli.data.sources import SOURCES

    console = Console(highlight=False, soft_wrap=True)
    console.print("[bold underline]sources[/bold underline]")
    for src in SOURCES.values():
        kind = " [magenta](preference pairs)[/magenta]" if src.kind == "preference" else ""
        console.print(f"\n[bold cyan]{src.name}[/bold cyan]  {escape(src.title)}{kind}: {escape(src.description)}")
        if src.generic:
            console.print("  raw: your own file or folder (--input, or path: in a mixture file)")
        else:
            sets = src.file_sets({k: o.default for k, o in src.options.items()})
            for i, files in enumerate(sets):
                lead = "  raw: " if i == 0 else "   or: "
                console.print(lead + " + ".join(f.name for f in files))
                for f in files:
                    if f.url:
                        console.print(f"        {resolve_url(f.url)}" + (f"  [dim]({escape(f.note)})[/dim]" if f.note else ""))
        for k, o in src.options.items():
            console.print(f"  option {k} (default {o.default}): {escape(o.help)}")
    console.print("\n[bold underline]mixtures[/bold underline]")
    for m in MIXTURES.values():
        console.print(f"\n[bold cyan]{m.name}[/bold cyan]  keyword filter: {'on' if m.keyword_filter else 'off'}")
        for c in m.components:
            extra = ", ".join(f"{k}={v}" for k, v in c.options.items())
            published = f"  [dim](published: {m.published[c.label]:,})[/dim]" if c.label in m.published else ""
            count = "all" if c.count is None else f"{c.count:,}"
            console.print(f"  {c.source}: {count}" + (f" ({extra})" if extra else "") + published)


app = TuluTyper(help="Prepare instruction data, evaluation data, and inspect encodings.")
add_command(app, "prepare", PrepareOptions, prepare, extras=ListFlag)
add_command(app, "inspect", InspectOptions, inspect)
add_command(app, "prepare-eval", PrepareEvalOptions, prepare_eval)
