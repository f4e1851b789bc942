"""Shared CLI plumbing: the Typer subclass that turns TuluError into one red line, common options.

Nothing here may import torch or transformers: `tulu --help` must stay instant.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer
import typer.core

from tulu_cli.errors import TuluError

F = TypeVar("F", bound=Callable[..., Any])

# Every command takes these two; declare them with these aliases so spelling stays uniform.
ConfigOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--config",
        "-c",
        help="YAML or JSON file of option values (keys as the long flag names, - or _). Flags given on the command line win.",
        show_default=False,
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Validate and print the resolved options (and any launch command), then exit 0."),
]


def print_error(message: str) -> None:
    """One red line on stderr, never wrapped, markup in the message shown literally."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True, highlight=False).print(f"[bold red]error:[/bold red] [red]{escape(message)}[/red]")


def handle_errors(fn: F) -> F:
    """Run a command body; a TuluError becomes one red line and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TuluError as e:
            print_error(e.message)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


class TuluGroup(typer.core.TyperGroup):
    """A command group whose usage errors (bad flag value, unknown option) are one red line, exit 2,
    like every other error, instead of Typer's boxed multi-line report."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        # Typer vendors click (typer._click since 0.24); its exceptions are the ones raised here.
        from typer.core import _click as click

        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as e:
            typer.echo(e.ctx.get_help() if e.ctx else str(e))
            sys.exit(2)
        except click.ClickException as e:
            where = e.ctx.command_path if getattr(e, "ctx", None) is not None else "tulu"
            print_error(" ".join(e.format_message().split()) + f" (see '{where} --help')")
            sys.exit(e.exit_code)
        except typer.Abort:  # not in typer._click.exceptions (looking it up there raised AttributeError over every traceback)
            print_error("aborted")
            sys.exit(1)
        # Typer returns the code of an explicit Exit in non-standalone mode; a command body returns None.
        sys.exit(rv if isinstance(rv, int) else 0)


class TuluTyper(typer.Typer):
    """A Typer whose commands all report TuluError as one red line (exit 2)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", TuluGroup)
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("rich_markup_mode", "rich")
        kwargs.setdefault("pretty_exceptions_enable", False)
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:  # type: ignore[override]
        register = super().command(*args, **kwargs)

        def decorator(fn: F) -> F:
            register(handle_errors(fn))
            return fn

        return decorator


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout, one JSON document."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def print_resolved(opts: Any, title: str = "resolved options") -> None:
    """Dry-run output: the validated options as JSON (stable, scriptable)."""
    from tulu_cli.options import options_to_dict

    from rich.console import Console

    Console(stderr=True).print(f"[bold]{title}[/bold]")
    print_json(options_to_dict(opts))
