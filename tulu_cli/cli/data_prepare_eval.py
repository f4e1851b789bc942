"""`tulu data prepare-eval`: download evaluation data into the data/eval layout (registered into `tulu data`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tulu_cli.cli._common import ConfigOpt, DryRunOpt, print_resolved


def prepare_eval(
    benchmarks: Annotated[Optional[list[str]], typer.Argument(help="Benchmarks to download: mmlu, gsm, bbh, ... (see `tulu eval list`, column 'data').", show_default=False)] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", "-d", help="Root folder to write (mmlu/, gsm/, bbh/...). Default: data/eval.", show_default=False)] = None,
    mirror: Annotated[Optional[str], typer.Option("--mirror", help="Base URL serving files in the data/eval layout, used instead of the published URLs (also $TULU_EVAL_MIRROR). Default: none.", show_default=False)] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Keep downloads here so a second data dir costs nothing. Default: no cache.", show_default=False)] = None,
    force: Annotated[Optional[bool], typer.Option("--force/--no-force", help="Download again even when the data is already there. Default: no.", show_default=False)] = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Download the published evaluation files of each benchmark (MMLU's data.tar is unpacked).

    Example:

        tulu data prepare-eval mmlu gsm bbh --data-dir data/eval
    """
    from tulu_cli.errors import TuluError
    from tulu_cli.options import resolve_options
    from tulu_cli.options.eval import PrepareEvalOptions

    if not benchmarks and config is None:
        from tulu_cli.evaluation.tasks import data_names

        raise TuluError(f"name the benchmarks to download: {', '.join(sorted(data_names()))}")

    opts = resolve_options(
        PrepareEvalOptions,
        config,
        {"benchmarks": benchmarks, "data_dir": data_dir, "mirror": mirror, "cache_dir": cache_dir, "force": force},
    )
    from rich.console import Console

    from tulu_cli.evaluation.prepare import preflight, prepare_eval as run

    if dry_run:
        preflight(opts)
        print_resolved(opts)
        return

    done = run(opts)
    console = Console(stderr=True)
    for name, paths in done.items():
        if paths:
            console.print(f"[green]{name}[/green]: {len(paths)} file(s) written under {opts.data_dir}")
        else:
            console.print(f"{name}: already in {opts.data_dir} (use --force to download again)")


def register(app: typer.Typer) -> None:
    """Add `prepare-eval` to the `tulu data` group."""
    app.command("prepare-eval")(prepare_eval)
