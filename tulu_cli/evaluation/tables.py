"""Tables that `tulu eval` prints: a rich table for a person at a wide enough terminal, plain tab-separated lines otherwise."""

from __future__ import annotations

from typing import Any, Sequence

# Rich's box drawing: one border at each side and " | " between columns, per column 3 characters.
_BORDER = 1
_PER_COLUMN = 3
_MIN_OTHER = 6  # narrowest a wrapping column may get and still be read


def _plain(cell: str) -> str:
    return " ".join(cell.replace("\t", " ").splitlines())


def print_table(
    console: Any,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    keep: Sequence[int] = (0,),
    right: Sequence[int] = (),
    group: Sequence[int] = (),
) -> None:
    """Print ``rows`` (strings) under ``columns`` on ``console``, never cutting a name or a path.

    At a terminal wide enough for the ``keep`` columns (names, paths) whole: a rich table in which those
    columns are neither cut nor wrapped and the others wrap; ``group`` columns are left blank on a row
    that repeats the previous row's first cell. Anywhere else (a pipe, a file, a narrow terminal): a
    header line and one tab-separated line per row, every cell in full (``grep``/``cut -f`` friendly;
    tabs and line breaks inside a cell become spaces), no title.
    """
    widths = {i: max([len(columns[i])] + [len(r[i]) for r in rows]) for i in keep}
    needed = _BORDER + sum(widths.values()) + _PER_COLUMN * len(columns) + _MIN_OTHER * (len(columns) - len(keep))
    if not console.is_terminal or needed > console.width:
        out = console.file
        for cells in [columns, *rows]:
            out.write("\t".join(_plain(str(c)) for c in cells) + "\n")
        out.flush()
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for i, name in enumerate(columns):
        if i in widths:
            table.add_column(name, no_wrap=True, min_width=widths[i], justify="right" if i in right else "left")
        else:
            table.add_column(name, overflow="fold", justify="right" if i in right else "left")
    previous = None
    for r in rows:
        cells = [("" if i in group and r[0] == previous else c) for i, c in enumerate(r)]
        previous = r[0]
        table.add_row(*(Text(c) for c in cells))  # Text: a '[' in a stop string or path is not rich markup
    console.print(table)
