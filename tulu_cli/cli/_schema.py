"""Commands generated from option models: flags, help (with the model's own defaults), panels, docs tables.

A command is an options class plus a thin function ``fn(call: Call)``. Every flag defaults to None
("not given"), so ``resolve_options`` keeps its flags > config file > model defaults merge.
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Union

import typer

from tulu_cli.cli._common import ConfigOpt, DryRunOpt
from tulu_cli.options.base import Options, cli_meta, flag_name, resolve_options


def render_default(value: Any) -> str:
    """The one way --help and the docs write a default: 2e-5, 0.03, 16, yes/no, none, a,b."""
    if value is None or value == [] or value == {}:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        if value and abs(value) < 1e-3:  # 1e-4, 2e-5 as papers and configs write them (not 0.0001, 2e-05)
            mantissa, exp = f"{value:.12e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _parts(annotation: Any) -> list[Any]:
    """The non-None members of an Optional/Union annotation."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def choices(annotation: Any) -> list[Any]:
    """The Literal values an annotation allows (empty when it is not a Literal)."""
    parts = _parts(annotation)
    if len(parts) == 1 and typing.get_origin(parts[0]) is Literal:
        return list(typing.get_args(parts[0]))
    return []


def flag_type(annotation: Any) -> Any:
    """What the flag parses the text into; the model validates the rest (Literal, ranges, rules)."""
    parts = _parts(annotation)
    if len(parts) == 1 and parts[0] in (bool, int, float, str, Path):
        return parts[0]
    if any(typing.get_origin(p) in (list, dict) or p in (list, dict) for p in parts):
        return list[str]  # repeatable: list items, or KEY=VALUE pairs the model's validator splits
    values = choices(annotation)
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return int
    return str


def default_of(cls: type[Options], key: str) -> Any:
    field = cls.model_fields[key]
    if field.default_factory is not None:
        return field.default_factory()
    return field.default


def default_words(cls: type[Options], key: str) -> str:
    """"Default: X." (X from the model's default, or its words for it) or "Required[ unless ...]."."""
    meta = cli_meta(cls, key)
    if meta["required"] or cls.model_fields[key].is_required():
        return "Required" + (f" {meta['required']}" if isinstance(meta["required"], str) else "") + "."
    default = meta["default_help"] if meta["default_help"] is not None else render_default(default_of(cls, key))
    return f"Default: {default}."


def help_text(cls: type[Options], key: str) -> str:
    """The field's help sentence, its choices when the sentence does not name them, and its default."""
    text = cli_meta(cls, key)["help"]
    values = [str(v) for v in choices(cls.model_fields[key].annotation)]
    if values and not all(v in text for v in values):
        text += f" One of: {', '.join(values)}."
    return f"{text} {default_words(cls, key)}"


def flags_of(cls: type[Options], key: str) -> list[str]:
    """The spellings of field ``key``: as declared, else ``--field-name`` (``--x/--no-x`` for a bool)."""
    meta = cli_meta(cls, key)
    if meta["flags"]:
        return list(meta["flags"])
    name = flag_name(key)
    return [f"{name}/--no-{name[2:]}"] if flag_type(cls.model_fields[key].annotation) is bool else [name]


def cli_fields(cls: type[Options]) -> list[str]:
    """The fields the CLI offers, arguments first, then in panel order (stable within a panel)."""
    keys = [k for k in cls.model_fields if cli_meta(cls, k) is not None]
    panels = list(cls.cli_panels)
    for k in keys:
        p = cli_meta(cls, k)["panel"]
        if p not in panels:
            panels.append(p)

    def rank(k: str) -> tuple[int, int]:
        meta = cli_meta(cls, k)
        return (0 if meta["argument"] else 1, panels.index(meta["panel"]))

    return sorted(keys, key=rank)


def _parameter(cls: type[Options], key: str) -> inspect.Parameter:
    from rich.markup import escape

    meta = cli_meta(cls, key)
    kind = flag_type(cls.model_fields[key].annotation)
    text = escape(help_text(cls, key))  # plain sentences: "tulu-cli[demo]" is text, not rich markup
    if meta["argument"]:
        spec = typer.Argument(metavar=meta["argument"], help=text, show_default=False)
    else:
        spec = typer.Option(*flags_of(cls, key), help=text, rich_help_panel=meta["panel"], show_default=False)
    return inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[kind], spec])


@dataclass
class Call:
    """What a command function gets: the raw flags (None = not given), the config file and --dry-run."""

    options_cls: type[Options]
    config: Optional[Path]
    dry_run: bool
    flags: dict[str, Any]
    extras: dict[str, Any]

    def options(self, **overrides: Any) -> Any:
        """The validated options: model defaults, then the config file, then the flags."""
        return resolve_options(self.options_cls, self.config, {**self.flags, **overrides})


def add_command(app: typer.Typer, name: str, options_cls: type[Options], fn: Callable[[Call], None], extras: type[Options] | None = None) -> None:
    """Register ``fn`` as ``name`` on ``app`` with one flag per field of ``options_cls`` (then ``extras``'
    fields: flags that steer the command but are no option, e.g. --slurm), --config and --dry-run."""
    own = [_parameter(options_cls, k) for k in cli_fields(options_cls)]
    more = [_parameter(extras, k) for k in cli_fields(extras)] if extras is not None else []
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [*own, *more, inspect.Parameter("config", kw, default=None, annotation=ConfigOpt),
              inspect.Parameter("dry_run", kw, default=False, annotation=DryRunOpt)]  # fmt: skip
    extra_keys = {p.name for p in more}

    def command(**values: Any) -> None:
        config, dry_run = values.pop("config"), values.pop("dry_run")
        extra = {k: values.pop(k) for k in extra_keys}
        fn(Call(options_cls, config, dry_run, values, extra))

    command.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__, command.__qualname__, command.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    command.__module__ = fn.__module__
    command.tulu_options = (options_cls, extras)  # type: ignore[attr-defined]  # read by the docs and the tests
    app.command(name)(command)


def generated_commands(app: typer.Typer, path: tuple[str, ...] = ()) -> list[tuple[list[str], type[Options], type[Options] | None]]:
    """(command path, options class, extras class) of every command :func:`add_command` registered under ``app``."""
    out = []
    for info in app.registered_commands:
        spec = getattr(info.callback, "tulu_options", None)
        if spec is not None:
            out.append(([*path, info.name], *spec))
    for group in app.registered_groups:
        out += generated_commands(group.typer_instance, (*path, group.name))
    return out


def options_table(options_cls: type[Options], config_keys: bool = True) -> list[str]:
    """Markdown rows of one command's options: flag, config key (none for flags that are no option), default, help."""
    rows = ["| flag | config key | default | help |", "|---|---|---|---|"]
    for key in cli_fields(options_cls):
        meta = cli_meta(options_cls, key)
        spelled = meta["argument"] or " / ".join(f"`{f}`" for f in flags_of(options_cls, key))
        default = default_words(options_cls, key).removeprefix("Default: ").rstrip(".")
        key_cell = f"`{key}`" if config_keys else "(flag only)"
        rows.append(f"| {spelled} | {key_cell} | {_cell(default)} | {_cell(meta['help'])} |")
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
