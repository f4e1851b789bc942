"""Backend of `tulu data inspect`: encode a JSONL file, print masked examples and a summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

from tulu_cli.chat.encode import IGNORE_INDEX, encode_example
from tulu_cli.errors import TuluError
from tulu_cli.jsonl import read_jsonl

TRAINED_STYLE = "bold green"
MASKED_STYLE = "dim"
PERCENTILES = (50, 90, 95, 99)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_tokenizer(path: Path):
    """AutoTokenizer from a local folder; a missing or unreadable folder is a user error."""
    p = Path(path)
    if not p.is_dir():
        raise TuluError(f"--tokenizer {p}: no such directory")
    if not any((p / name).is_file() for name in TOKENIZER_FILES):
        raise TuluError(f"--tokenizer {p}: no tokenizer in this folder (none of {', '.join(TOKENIZER_FILES)})")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(p))
    except Exception as e:  # transformers raises many types for a bad folder
        # Its messages run over several lines (a list of alternatives); keep all of it, on one line.
        why = " ".join(str(e).split())[:400] or type(e).__name__
        raise TuluError(f"--tokenizer {p}: cannot load a tokenizer from this folder: {why}") from None


def check_file(path: Path) -> Path:
    p = Path(path)
    if p.is_dir():
        raise TuluError(f"{p}: is a folder, expected a JSONL file")
    if not p.is_file():
        raise TuluError(f"{p}: no such file")
    return p


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for each non-blank line; a malformed line is an error naming file:line."""
    return read_jsonl(check_file(path))


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile (a value that occurs in the data)."""
    if not sorted_values:
        return 0
    k = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[k - 1]


def masked_text(ids: list[int], labels: list[int], tokenizer: Any, markers: bool = False):
    """A rich Text of the example: runs of trained tokens in green, masked runs dimmed.

    ``markers`` wraps trained runs in [[ ]] for output without colour (pipes, logs); otherwise a
    trained newline is drawn as ↵ so it can be seen.
    """
    from rich.text import Text

    text = Text()
    i = 0
    while i < len(ids):
        trained = labels[i] != IGNORE_INDEX
        j = i
        while j < len(ids) and (labels[j] != IGNORE_INDEX) == trained:
            j += 1
        # Decode whole runs so multi-byte characters split over tokens come out whole.
        piece = tokenizer.decode(ids[i:j], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if trained and markers:
            piece = "[[" + piece + "]]"
        elif trained:
            piece = piece.replace("\n", "↵\n")  # a trained newline is invisible in colour alone
        text.append(piece, style=TRAINED_STYLE if trained else MASKED_STYLE)
        i = j
    return text


class Summary:
    """Running totals over the encoded examples."""

    def __init__(self, max_seq_length: int):
        self.max_seq_length = max_seq_length
        self.examples = 0
        self.tokens = 0
        self.trainable = 0
        self.truncated = 0
        self.dropped = 0
        self.lengths: list[int] = []
        self.by_dataset: dict[str, dict[str, int]] = {}

    def add(self, row: dict[str, Any], enc: dict[str, Any]) -> None:
        n = len(enc["input_ids"])
        t = sum(1 for x in enc["labels"] if x != IGNORE_INDEX)
        self.examples += 1
        self.tokens += n
        self.trainable += t
        self.truncated += enc["num_tokens_untruncated"] > self.max_seq_length
        self.dropped += t == 0
        self.lengths.append(enc["num_tokens_untruncated"])
        d = self.by_dataset.setdefault(str(row.get("dataset", "-")), {"examples": 0, "tokens": 0, "trainable_tokens": 0, "dropped": 0})
        d["examples"] += 1
        d["tokens"] += n
        d["trainable_tokens"] += t
        d["dropped"] += t == 0

    def as_dict(self, opts: Any) -> dict[str, Any]:
        s = sorted(self.lengths)
        return {
            "file": str(opts.file),
            "tokenizer": str(opts.tokenizer),
            "template": opts.template,
            "max_seq_length": self.max_seq_length,
            "examples": self.examples,
            "tokens": self.tokens,
            "trainable_tokens": self.trainable,
            "trainable_share": round(self.trainable / self.tokens, 4) if self.tokens else 0.0,
            "truncated": self.truncated,
            "dropped": self.dropped,
            "length_percentiles": {
                "min": s[0] if s else 0,
                **{f"p{q}": percentile(s, q) for q in PERCENTILES},
                "max": s[-1] if s else 0,
                "mean": round(sum(s) / len(s), 1) if s else 0.0,
            },
            "by_dataset": self.by_dataset,
        }


def _summary_tables(summary: dict[str, Any]):
    from rich.table import Table

    t = Table(title="summary", show_header=False, title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("value", justify="right")
    n = summary["examples"]
    t.add_row("examples", f"{n:,}")
    t.add_row("tokens (after truncation)", f"{summary['tokens']:,}")
    t.add_row("trainable tokens", f"{summary['trainable_tokens']:,} ({summary['trainable_share']:.1%})")
    t.add_row(f"truncated (> {summary['max_seq_length']} tokens)", f"{summary['truncated']:,}" + (f" ({summary['truncated'] / n:.1%})" if n else ""))
    t.add_row("dropped (no trainable token)", f"{summary['dropped']:,}" + (f" ({summary['dropped'] / n:.1%})" if n else ""))
    lp = summary["length_percentiles"]
    lt = Table(title="tokens per example (before truncation)", title_justify="left")
    for k in ("min", "p50", "p90", "p95", "p99", "max", "mean"):
        lt.add_column(k, justify="right")
    lt.add_row(*(f"{lp[k]:,}" for k in ("min", "p50", "p90", "p95", "p99", "max", "mean")))
    tables = [t, lt]
    if len(summary["by_dataset"]) > 1:
        dt = Table(title="by dataset", title_justify="left")
        for k in ("dataset", "examples", "tokens", "trainable", "dropped"):
            dt.add_column(k, justify="left" if k == "dataset" else "right")
        for name, d in sorted(summary["by_dataset"].items()):
            share = d["trainable_tokens"] / d["tokens"] if d["tokens"] else 0.0
            dt.add_row(name, f"{d['examples']:,}", f"{d['tokens']:,}", f"{share:.1%}", f"{d['dropped']:,}")
        tables.append(dt)
    return tables


def preflight(opts: Any) -> tuple[Path, Any]:
    """Every check before encoding (the whole of a dry run): template, file, tokenizer; returns the last two."""
    from tulu_cli.chat.templates import check_template

    check_template(opts.template)
    if opts.file is None:
        raise TuluError("FILE is required: the JSONL file to inspect")
    if opts.tokenizer is None:
        raise TuluError("--tokenizer DIR is required: the tokenizer folder to encode with")
    return check_file(opts.file), load_tokenizer(opts.tokenizer)


def inspect_file(opts: Any, console: Any = None) -> dict[str, Any]:
    """Encode every row of ``opts.file``; print the first examples and the summary; return the summary."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.rule import Rule

    path, tokenizer = preflight(opts)
    quiet = bool(opts.json_output)
    # Human-readable output goes to stderr in --json mode so stdout stays one JSON document.
    console = console or Console(stderr=quiet, highlight=False)
    plain = console.no_color or console.color_system is None
    summary = Summary(opts.max_seq_length)
    shown = 0
    with path.open("rb") as f:
        total_lines = sum(1 for _ in f)
    progress = Progress(
        TextColumn("encoding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True, disable=total_lines < 2000,
    )
    with progress:
        task = progress.add_task("encode", total=min(total_lines, opts.limit) if opts.limit else total_lines)
        for lineno, row in read_rows(path):
            if opts.limit is not None and summary.examples >= opts.limit:
                break
            try:
                enc = encode_example(row, tokenizer, opts.max_seq_length, opts.template, add_bos=opts.add_bos, with_stats=True)
            except TuluError as e:
                raise TuluError(f"{path}:{lineno}: {e.message}") from None
            summary.add(row, enc)
            if not quiet and shown < opts.num_examples:
                shown += 1
                n_train = sum(1 for x in enc["labels"] if x != IGNORE_INDEX)
                title = f"{path.name}:{lineno}  id={row.get('id', '-')}  {len(enc['input_ids'])} tokens, {n_train} trained"
                if enc["num_tokens_untruncated"] > opts.max_seq_length:
                    title += f" (truncated from {enc['num_tokens_untruncated']})"
                console.print(Rule(title, align="left"))
                console.print(masked_text(enc["input_ids"], enc["labels"], tokenizer, markers=plain))
            progress.advance(task, 1)
    result = summary.as_dict(opts)
    if not quiet:
        if shown:
            console.print(Rule())
            from rich.text import Text

            legend = Text()
            legend.append("[[trained]]" if plain else "trained", style=TRAINED_STYLE)
            legend.append(" / ")
            legend.append("masked (label -100)", style=MASKED_STYLE)
            console.print(legend)
        for table in _summary_tables(result):
            console.print(table)
        if result["dropped"]:
            console.print(f"[yellow]{result['dropped']} example(s) have no trainable token (all labels -100); training drops them.[/yellow]")
    return result
