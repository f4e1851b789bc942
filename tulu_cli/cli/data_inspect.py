"""`tulu data inspect`: show what a tokenizer and template make of a data file, masks included."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tulu_cli.cli._common import ConfigOpt, DryRunOpt, print_json, print_resolved


def inspect(
    file: Annotated[Optional[Path], typer.Argument(help="JSONL file: {dataset, id, messages} or {prompt, completion} rows.", show_default=False)] = None,
    tokenizer: Annotated[
        Optional[Path], typer.Option("--tokenizer", "-t", help="Tokenizer folder (required).", show_default=False)
    ] = None,
    template: Annotated[
        Optional[str],
        typer.Option(help="Chat template: tulu, tokenizer (its own chat_template), llama2, zephyr, chatml, olmo. Default: tulu.", show_default=False),
    ] = None,
    max_seq_length: Annotated[
        Optional[int], typer.Option("--max-seq-length", help="Truncate examples to this many tokens. Default: 2048.", show_default=False)
    ] = None,
    num_examples: Annotated[
        Optional[int], typer.Option("--num-examples", "-n", help="Examples to print with their masks. Default: 3.", show_default=False)
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option("--limit", help="Encode only the first N rows of a big file. Default: all.", show_default=False)
    ] = None,
    add_bos: Annotated[
        Optional[bool],
        typer.Option("--add-bos/--no-add-bos", help="Write the bos token in front (tokenizers that add none). Default: off.", show_default=False),
    ] = None,
    json_output: Annotated[
        Optional[bool], typer.Option("--json/--no-json", help="Print the summary as JSON on stdout, nothing else. Default: off.", show_default=False)
    ] = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Encode a data file as training would and show what the model learns from.

    The first examples are printed with [bold green]trained[/bold green] tokens in green and [dim]masked[/dim] ones (system and user turns, role headers) dimmed; without colour, trained text is wrapped in [[ ]]. Then a summary: examples, tokens, share of trainable tokens, examples truncated and examples that would be dropped (no trainable token left), token-length percentiles, and a per-dataset breakdown.

    [bold]Examples[/bold]

    tulu data inspect data/tulu_v2.jsonl --tokenizer models/llama-2-7b --max-seq-length 2048 -n 2

    tulu data inspect train.jsonl -t my_tok --template chatml --json > summary.json
    """
    from tulu_cli.options import resolve_options
    from tulu_cli.options.chat import InspectOptions

    opts = resolve_options(
        InspectOptions,
        config,
        {
            "file": file,
            "tokenizer": tokenizer,
            "template": template,
            "max_seq_length": max_seq_length,
            "num_examples": num_examples,
            "limit": limit,
            "add_bos": add_bos,
            "json_output": json_output,
        },
    )
    from tulu_cli.chat.inspect import inspect_file, preflight

    if dry_run:
        preflight(opts)
        print_resolved(opts)
        return

    summary = inspect_file(opts)
    if opts.json_output:
        print_json(summary)


def register(app: typer.Typer) -> None:
    """Add `inspect` to the `tulu data` group."""
    app.command("inspect")(inspect)
