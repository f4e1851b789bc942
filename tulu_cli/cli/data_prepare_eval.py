"""`tulu data prepare-eval`: download evaluation data into the data/eval layout (listed in the `tulu data` group)."""

from __future__ import annotations

from tulu_cli.cli._common import print_resolved
from tulu_cli.cli._schema import Call


def prepare_eval(call: Call) -> None:
    """Download the published evaluation files of each benchmark (MMLU's data.tar is unpacked).

    Example:

        tulu data prepare-eval mmlu gsm bbh --data-dir data/eval
    """
    from tulu_cli.errors import TuluError

    if not call.flags["benchmarks"] and call.config is None:
        from tulu_cli.evaluation.tasks import data_names

        raise TuluError(f"name the benchmarks to download: {', '.join(sorted(data_names()))}")

    opts = call.options()
    from rich.console import Console

    from tulu_cli.evaluation.prepare import preflight, prepare_eval as run

    if call.dry_run:
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
