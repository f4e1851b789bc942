"""The `tulu` entry point: assembles the command groups and the top-level flags."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tulu_cli import __version__
from tulu_cli.cli import data, eval as eval_cli, human_eval, train, weights
from tulu_cli.cli._common import TuluTyper
from tulu_cli.cli._schema import add_command
from tulu_cli.cli.quickstart import quickstart
from tulu_cli.quickstart import QuickstartOptions

app = TuluTyper(
    name="tulu",
    help=(
        "Instruction-tune and evaluate causal language models the way Tulu 1 and Tulu 2 were built.\n\n"
        "Prepare data in one chat format ([bold]tulu data[/bold]), fine-tune with full SFT, LoRA, QLoRA or DPO "
        "([bold]tulu train[/bold]), diff/recover/merge weights ([bold]tulu weights[/bold]), run the Tulu 2 "
        "benchmark suite ([bold]tulu eval[/bold]) and collect pairwise human judgements ([bold]tulu human-eval[/bold]).\n\n"
        "Start with [bold]tulu quickstart[/bold]: the whole pipeline on a built-in tiny model, on CPU, in minutes."
    ),
    epilog="Every command accepts --config FILE.yaml (flags win over the file) and --dry-run. Docs: docs/ in the repository.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tulu {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Root options."""


# The groups, in `tulu --help` order; each group module lists its own commands at its end.
for name, group in (("data", data.app), ("train", train.app), ("weights", weights.app), ("eval", eval_cli.app), ("human-eval", human_eval.app)):
    app.add_typer(group, name=name, help=group.info.help)
add_command(app, "quickstart", QuickstartOptions, quickstart)


def main() -> None:
    app(prog_name="tulu")


if __name__ == "__main__":  # pragma: no cover
    main()
