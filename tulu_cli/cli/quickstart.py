"""`tulu quickstart`: the whole pipeline on a built-in tiny model, on CPU, in minutes (added to `tulu` in cli/main.py)."""

from __future__ import annotations

from tulu_cli.cli._common import print_resolved
from tulu_cli.cli._schema import Call


def quickstart(call: Call) -> None:
    """Run the whole pipeline on a built-in tiny model, on CPU, in a few minutes.

    Builds a tiny Llama with a real BPE tokenizer, prepares the small alpaca-style example set shipped
    with tulu into the Tulu chat format, fine-tunes it (full SFT), evaluates it on arithmetic questions
    in the GSM8K layout, and prints where everything was written. With --model smollm2 the same data
    trains a short LoRA on the real SmolLM2-135M-Instruct, merged and evaluated against the base model.

    [bold]Example[/bold]: tulu quickstart --output /tmp/tulu-demo
    """
    from rich.console import Console

    from tulu_cli.evaluation.tables import print_table
    from tulu_cli.quickstart import preflight, run_quickstart

    opts = call.options()
    if call.dry_run:
        preflight(opts)
        print_resolved(opts)
        return
    summary = run_quickstart(opts, log=Console(stderr=True, soft_wrap=True, highlight=False).print)
    out = Console(soft_wrap=True, highlight=False)
    rows = [[s.name, f"{s.seconds:.1f}s", s.result, s.output] for s in summary.stages]
    # Paths whole or not at all: a rich table when the terminal is wide enough, else tab-separated lines.
    print_table(out, ["stage", "time", "result", "written to"], rows, title="tulu quickstart", keep=(0, 3), right=(1,))
    out.print(f"Summary: {summary.output / 'quickstart_summary.json'}")
