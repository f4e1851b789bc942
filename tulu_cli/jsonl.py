"""The one reader of user JSONL files: (line, object) pairs, gzip-aware, with file:line errors."""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path
from typing import IO, Callable, Iterator

from tulu_cli.errors import TuluError

# Called with (where, message) for a bad line; raises (fail) or records it and lets reading go on (skip).
OnBad = Callable[[str, str], None]


def _raise(where: str, message: str) -> None:
    raise TuluError(f"{where}: {message}")


def skip(where: str, message: str) -> None:
    """``on_bad`` for tulu's own caches and logs: a line cut by an interruption is asked or run again."""


def json_problem(e: json.JSONDecodeError, text: str) -> str:
    """What is wrong with ``text``, in words: a document cut short (a file truncated by a killed copy
    or a full disk) says so instead of the parser's view of it, e.g. "Invalid control character"
    for the line break inside a string that never closes."""
    if e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string"):
        at = e.msg if e.msg.endswith(" at") else f"{e.msg} at"
        return f"truncated JSON: the text ends before the value is complete ({at} column {e.colno})"
    return f"invalid JSON: {e.msg} (column {e.colno})"


def read_jsonl(
    path: str | Path, on_bad: OnBad | None = None, *, stream: IO[bytes] | None = None, whole_lines: bool = False
) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, row)`` (1-based) for every non-blank line of a ``.jsonl`` or ``.jsonl.gz``.

    A line that is not UTF-8, not JSON, or not an object raises ``TuluError("file:line: ...")``,
    or, when ``on_bad`` is given, is reported through it and skipped. Lines are split on ``\\n``
    only, so a U+2028 inside a JSON string does not break a row; a BOM on the first line is ignored.

    ``stream``: read this open binary file instead of opening ``path`` (a member of an archive);
    ``path`` then only names it in messages. ``whole_lines``: a last line without its line break
    (an append cut short) is reported as such instead of read, for logs that tulu appends to.
    """
    report = on_bad or _raise
    p = Path(path)
    try:
        with contextlib.nullcontext(stream) if stream is not None else _open(p) as f:
            for lineno, raw in enumerate(f, 1):
                if whole_lines and not raw.endswith(b"\n"):
                    report(f"{p}:{lineno}", "the last line has no line break (a write cut short)")
                    continue
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    report(f"{p}:{lineno}", f"not valid UTF-8 ({e.reason} at byte {e.start})")
                    continue
                if not line.strip():
                    continue
                text = line.rstrip("\r\n")  # the line break is not part of the row
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as e:
                    report(f"{p}:{lineno}", json_problem(e, text))
                    continue
                if not isinstance(row, dict):
                    report(f"{p}:{lineno}", f"expected a JSON object, got {type(row).__name__}")
                    continue
                yield lineno, row
    except FileNotFoundError:
        raise TuluError(f"{p}: file does not exist") from None
    except IsADirectoryError:
        raise TuluError(f"{p}: is a folder, not a JSONL file") from None
    except PermissionError:
        raise TuluError(f"{p}: cannot read it (permission denied)") from None
    except (gzip.BadGzipFile, EOFError) as e:
        raise TuluError(f"{p}: cannot read ({e})") from None


def _open(p: Path) -> IO[bytes]:
    return gzip.open(p, "rb") if p.name.endswith(".gz") else open(p, "rb")  # type: ignore[return-value]
