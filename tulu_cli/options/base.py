"""Option models, config-file loading and the flags > file > defaults merge every command uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tulu_cli.errors import TuluError


class Options(BaseModel):
    """Base of every command's options: unknown keys are errors, values are validated on assignment.

    Each field is also the command's flag and config key: :func:`opt` attaches its help text,
    spelling and panel, and tulu_cli/cli/_schema.py builds the command from them.
    """

    # defer_build: the CLI reads the fields for --help at import; the validator is built on first use.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), defer_build=True)
    # Help panels in --help order (a subclass's own panels slot in where the base lists them).
    cli_panels: ClassVar[tuple[str, ...]] = ()


O = TypeVar("O", bound=Options)


def opt(
    default: Any = ...,
    *,
    help: str,  # noqa: A002 - the word users see
    panel: str | None = None,
    flags: tuple[str, ...] = (),
    default_help: str | None = None,
    required: bool | str = False,
    argument: str | None = None,
    **field_kwargs: Any,
) -> Any:
    """A field that is also a CLI flag: its help sentence, panel and spelling live beside its default.

    ``flags``: the spellings (default ``--field-name``; bools ``--x/--no-x``). ``default_help``: the
    default in words when it is not a value ("the model's"). ``required``: say "Required." (or
    "Required " + the string) instead of a default. ``argument``: a positional argument's metavar.
    """
    cli = {"help": help, "panel": panel, "flags": list(flags), "default_help": default_help, "required": required, "argument": argument}
    if "default_factory" in field_kwargs:
        return Field(description=help, json_schema_extra={"cli": cli}, **field_kwargs)
    return Field(default, description=help, json_schema_extra={"cli": cli}, **field_kwargs)


def internal(default: Any) -> Any:
    """A field the CLI does not offer (set by the recipe's class, e.g. ``recipe``)."""
    return Field(default, json_schema_extra={"cli": None})


def cli_meta(cls: type[Options], key: str) -> dict[str, Any] | None:
    """The CLI metadata :func:`opt` attached to ``cls.key`` (None: not a CLI option)."""
    extra = cls.model_fields[key].json_schema_extra
    if not isinstance(extra, dict) or "cli" not in extra:
        raise TypeError(f"{cls.__name__}.{key} has no CLI metadata: declare it with opt(...) or internal(...)")
    return extra["cli"]


def flag_name(key: str) -> str:
    """``max_seq_length`` -> ``--max-seq-length`` (how the CLI spells an option by default)."""
    return "--" + key.replace("_", "-")


def cli_name(cls: type[Options], key: str) -> str:
    """How ``--help`` spells field ``key`` of ``cls``: its first flag (``--json``), or an argument's metavar."""
    extra = cls.model_fields[key].json_schema_extra if key in cls.model_fields else None
    meta = extra.get("cli") if isinstance(extra, dict) else None
    if not meta:
        return flag_name(key)
    if meta["argument"]:
        return meta["argument"]
    return meta["flags"][0].split("/")[0] if meta["flags"] else flag_name(key)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping of option values; errors name the file (and line when known)."""
    p = Path(path)
    if not p.is_file():
        raise TuluError(f"{p}: config file does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            raise TuluError(f"{p}:{e.lineno}: invalid JSON: {e.msg}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise TuluError(f"{where}: invalid YAML: {problem}") from None
        if data is None:
            data = {}
    if not isinstance(data, dict):
        raise TuluError(f"{p}: config must be a mapping of option names to values, got {type(data).__name__}")
    # Accept both spellings users type: max_seq_length and max-seq-length.
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _describe(err: Mapping[str, Any], sources: Mapping[str, str], config: Path | None, cls: type[Options]) -> str:
    loc = [str(x) for x in err.get("loc", ())]
    top = loc[0] if loc else ""
    sub = ".".join(loc[1:])
    origin = sources.get(top)
    if err.get("type") == "extra_forbidden":
        if origin == "file":
            return f"{config}: unknown key '{top}'"
        return f"unknown option {flag_name(top)}"
    if err.get("type") == "missing" and not sub:
        if origin is None and top:
            return f"{cli_name(cls, top)} is required"
    msg = str(err.get("msg", "invalid value"))
    # pydantic prefixes messages raised by our own validators; the user needs only the sentence.
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if not top:
        return msg  # a cross-field rule: its message names the flags involved
    if origin == "file":
        where = f"{config}: key '{top}{'.' + sub if sub else ''}'"
    elif origin == "flag":
        where = cli_name(cls, top) + (f" ({sub})" if sub else "")
    else:
        where = f"option '{top}'"
    return f"{where}: {msg}"


def resolve_options(
    cls: type[O],
    config: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
) -> O:
    """Build ``cls`` from defaults, then the config file, then the flags the user actually gave.

    ``flags`` holds every CLI parameter; ``None`` means "not given" so the file or the
    model default applies. Validation errors name the flag or the config key at fault.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    cfg_path = Path(config) if config else None
    if cfg_path is not None:
        for k, v in load_config_file(cfg_path).items():
            values[k] = v
            sources[k] = "file"
    for k, v in (flags or {}).items():
        if v is None:
            continue
        values[k] = v
        sources[k] = "flag"
    try:
        return cls.model_validate(values)
    except ValidationError as e:
        errors = e.errors()
        raise TuluError(_describe(errors[0], sources, cfg_path, cls) + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")) from None


def key_value_pairs(value: Any, *, strip_values: bool = True) -> Any:
    """``["key=value", ...]`` from repeated CLI flags -> dict; a mapping (from a config file) passes through."""
    if not isinstance(value, (list, tuple)):
        return value
    out: dict[str, str] = {}
    for item in value:
        if "=" not in str(item):
            raise ValueError(f"'{item}' is not KEY=VALUE")
        k, val = str(item).split("=", 1)
        out[k.strip()] = val.strip() if strip_values else val
    return out


def options_to_dict(opts: Options) -> dict[str, Any]:
    """JSON-safe dict of resolved options (paths as strings), for dry runs and run folders."""
    return json.loads(opts.model_dump_json())
