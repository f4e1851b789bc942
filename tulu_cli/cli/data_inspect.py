"""`tulu data inspect`: show what a tokenizer and template make of a data file, masks included."""

from __future__ import annotations

from tulu_cli.cli._common import print_json, print_resolved
from tulu_cli.cli._schema import Call


def inspect(call: Call) -> None:
    """Encode a data file as training would and show what the model learns from.

    The first examples are printed with [bold green]trained[/bold green] tokens in green and [dim]masked[/dim] ones (system and user turns, role headers) dimmed; without colour, trained text is wrapped in [[ ]]. Then a summary: examples, tokens, share of trainable tokens, examples truncated and examples that would be dropped (no trainable token left), token-length percentiles, and a per-dataset breakdown.

    [bold]Examples[/bold]

    tulu data inspect data/tulu_v2.jsonl --tokenizer models/llama-2-7b --max-seq-length 2048 -n 2

    tulu data inspect train.jsonl -t my_tok --template chatml --json > summary.json
    """
    opts = call.options()
    from tulu_cli.chat.inspect import inspect_file, preflight

    if call.dry_run:
        preflight(opts)
        print_resolved(opts)
        return

    summary = inspect_file(opts)
    if opts.json_output:
        print_json(summary)
