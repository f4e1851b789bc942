"""Read annotations back out: export rows (JSONL/CSV) and metrics (acceptance, win rates, agreement)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sqlite3
import sys
import tempfile
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any, Hashable, Iterable, Sequence

from tulu_cli.errors import TuluError
from tulu_cli.human_eval import store

PREFERENCE_LABELS = {
    -2: "model_1_better",
    -1: "model_1_slightly_better",
    0: "tie",
    1: "model_2_slightly_better",
    2: "model_2_better",
}
SHOWN_LABELS = {1: "A is better", 2: "A is slightly better", 3: "Tie", 4: "B is slightly better", 5: "B is better"}
EXPORT_FIELDS = [
    "instance_id", "annotator", "model_1", "model_2", "left_model", "right_model",
    "acceptable_1", "acceptable_2", "preference", "preference_label", "preferred_model",
    "shown_choice", "shown_choice_label", "feedback_1", "feedback_2", "comment",
    "elapsed_ms", "created_at", "revision", "revisions", "is_latest", "submission_id",
    "prompt", "completion_1", "completion_2",
]  # fmt: skip


def annotation_rows(conn: sqlite3.Connection, *, all_revisions: bool = False) -> list[dict[str, Any]]:
    """One dict per stored answer (only each annotator's latest per instance unless ``all_revisions``)."""
    sql = """
        SELECT a.*, u.name AS annotator, i.prompt, i.completion_1 AS text_1, i.completion_2 AS text_2, i.position,
               ROW_NUMBER() OVER (PARTITION BY a.user_id, a.instance_id ORDER BY a.id) AS revision,
               COUNT(*) OVER (PARTITION BY a.user_id, a.instance_id) AS revisions
        FROM annotations a JOIN users u ON u.id = a.user_id LEFT JOIN instances i ON i.id = a.instance_id
    """
    rows = conn.execute(f"SELECT * FROM ({sql}) ORDER BY position, instance_id, annotator, id").fetchall()
    out = []
    for r in rows:
        latest = r["revision"] == r["revisions"]
        if not all_revisions and not latest:
            continue
        pref = r["preference"]
        out.append(
            {
                "instance_id": r["instance_id"],
                "annotator": r["annotator"],
                "model_1": r["model_1"],
                "model_2": r["model_2"],
                "left_model": r["model_2"] if r["swapped"] else r["model_1"],
                "right_model": r["model_1"] if r["swapped"] else r["model_2"],
                "acceptable_1": bool(r["acceptable_1"]),
                "acceptable_2": bool(r["acceptable_2"]),
                "preference": pref,
                "preference_label": PREFERENCE_LABELS[pref],
                "preferred_model": "tie" if pref == 0 else (r["model_1"] if pref < 0 else r["model_2"]),
                "shown_choice": r["shown_choice"],
                "shown_choice_label": SHOWN_LABELS[r["shown_choice"]],
                "feedback_1": r["feedback_1"],
                "feedback_2": r["feedback_2"],
                "comment": r["comment"],
                "elapsed_ms": r["elapsed_ms"],
                "created_at": r["created_at"],
                "revision": r["revision"],
                "revisions": r["revisions"],
                "is_latest": latest,
                "submission_id": r["submission_id"],
                "prompt": r["prompt"],
                "completion_1": r["text_1"],
                "completion_2": r["text_2"],
            }
        )
    return out


# Spreadsheets run a cell that starts with one of these as a formula (=HYPERLINK(...) in a comment).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """One CSV cell: booleans as true/false; text that would start a formula gets a leading ' (as OWASP
    recommends for CSV injection), so a spreadsheet shows it as text. Numbers are left alone."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def check_export_output(output: str | Path | None, db: str | Path) -> None:
    """Refuse, before reading anything, an --output that cannot be written or would overwrite the database."""
    if output is None or str(output) == "-":
        return
    out, where = Path(output), f"--output {output}"
    try:
        if out.is_dir():
            raise TuluError(f"{where}: is a folder; give a file name")
        if out.exists() and not out.is_file():  # /dev/stdout, a named pipe: written through, not replaced
            if not os.access(out, os.W_OK):
                raise TuluError(f"{where}: cannot write to it (permission denied)")
            return
        out = out.resolve()  # a link to a file stays a link: the file it points to is replaced
        db_path = Path(db).resolve()
        if out in {Path(f"{db_path}{suffix}") for suffix in ("", *store.SIDE_FILES)} or (
            out.exists() and db_path.exists() and os.path.samefile(out, db_path)
        ):
            raise TuluError(f"{where}: is the annotation database itself; give another file name")
        folder = out.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    except PermissionError:
        raise TuluError(f"{where}: cannot look inside {out.parent} (permission denied)") from None
    if not folder.is_dir():
        raise TuluError(f"{where}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TuluError(f"{where}: cannot write into {folder} (permission denied or read-only)")


def export(db: str | Path, fmt: str, output: str | Path | None, *, all_revisions: bool = False) -> int:
    """Write annotations as JSONL or CSV to ``output`` (atomically; missing folders are created) or stdout;
    returns the row count."""
    check_export_output(output, db)
    conn = store.open_db_for_reading(db)
    try:
        rows = annotation_rows(conn, all_revisions=all_revisions)
    finally:
        conn.close()
    buf = io.StringIO(newline="")
    if fmt == "jsonl":
        for r in rows:
            buf.write(json.dumps(r, ensure_ascii=False) + "\n")
    else:
        # CRLF row ends (RFC 4180): the csv module quotes a cell only for the characters of its line
        # terminator, so with "\n" a bare "\r" in a completion went out unquoted and split the row.
        w = csv.DictWriter(buf, fieldnames=EXPORT_FIELDS, lineterminator="\r\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: csv_cell(v) for k, v in r.items()})
    if output is None or str(output) == "-":
        sys.stdout.write(buf.getvalue())
        sys.stdout.flush()
    elif Path(output).exists() and not Path(output).is_file():
        with open(output, "w", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
    else:
        out = Path(output).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(buf.getvalue())
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return len(rows)


# ---- agreement statistics -----------------------------------------------------------------------


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> tuple[float | None, float | None]:
    """(kappa, observed agreement) for items × categories rating counts; items may have different rater counts (>= 2)."""
    items = [row for row in counts if sum(row) >= 2]
    if not items:
        return None, None
    per_item = [(sum(c * c for c in row) - sum(row)) / (sum(row) * (sum(row) - 1)) for row in items]
    observed = sum(per_item) / len(per_item)
    total = sum(sum(row) for row in items)
    expected = sum((sum(row[j] for row in items) / total) ** 2 for j in range(len(items[0])))
    if expected >= 1.0 - 1e-12:
        return None, observed  # everyone used one category: agreement is perfect but kappa is undefined
    return (observed - expected) / (1 - expected), observed


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (None when chance agreement is 1)."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if expected >= 1.0 - 1e-12:
        return None
    return (observed - expected) / (1 - expected)


def agreement(labels: dict[Hashable, dict[str, Hashable]], categories: Sequence[Hashable]) -> dict[str, Any]:
    """Agreement over items rated by >= 2 annotators: raw pairwise agreement, Fleiss' kappa, mean pairwise Cohen's kappa."""
    multi = {item: by for item, by in labels.items() if len(by) >= 2}
    counts = [[sum(1 for v in by.values() if v == c) for c in categories] for by in multi.values()]
    kappa, raw = fleiss_kappa(counts)
    annotators = sorted({a for by in multi.values() for a in by})
    pairs = []
    for x, y in combinations(annotators, 2):
        shared = [item for item, by in multi.items() if x in by and y in by]
        if shared:
            k = cohen_kappa([multi[i][x] for i in shared], [multi[i][y] for i in shared])
            agree = sum(multi[i][x] == multi[i][y] for i in shared) / len(shared)
            pairs.append({"annotators": [x, y], "items": len(shared), "raw_agreement": agree, "cohen_kappa": k})
    kappas = [p["cohen_kappa"] for p in pairs if p["cohen_kappa"] is not None]
    return {
        "items": len(multi),
        "raw_agreement": raw,
        "fleiss_kappa": kappa,
        "mean_cohen_kappa": sum(kappas) / len(kappas) if kappas else None,
        "pairs": pairs,
    }


def wilson_interval(k: int, n: int, z: float = 1.959964) -> list[float]:
    """95% Wilson score interval of a proportion k/n (sensible even for small n or rates near 0 or 1)."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def compute_metrics(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Metrics over each annotator's latest answers (rows as returned by ``annotation_rows``)."""
    rows = list(rows)
    accept: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    pairs: dict[tuple[str, str], Counter] = defaultdict(Counter)
    acc_labels: dict[Hashable, dict[str, Hashable]] = defaultdict(dict)
    pref3: dict[Hashable, dict[str, Hashable]] = defaultdict(dict)
    pref5: dict[Hashable, dict[str, Hashable]] = defaultdict(dict)
    for r in rows:
        for model, ok in ((r["model_1"], r["acceptable_1"]), (r["model_2"], r["acceptable_2"])):
            accept[model][0] += int(ok)
            accept[model][1] += 1
            acc_labels[(r["instance_id"], model)][r["annotator"]] = bool(ok)
        first, second = sorted((r["model_1"], r["model_2"]))
        # preference > 0 means model_2 is better; turn it into "first of the sorted pair is better".
        score = -r["preference"] if r["model_1"] == first else r["preference"]
        c = pairs[(first, second)]
        c["n"] += 1
        c["wins"] += score > 0
        c["clear_wins"] += score == 2
        c["ties"] += score == 0
        c["losses"] += score < 0
        c["clear_losses"] += score == -2
        pref3[r["instance_id"]][r["annotator"]] = _sign(r["preference"])
        pref5[r["instance_id"]][r["annotator"]] = r["preference"]
    pair_list = []
    for (a, b), c in sorted(pairs.items()):
        n = c["n"]
        pair_list.append(
            {
                "model_a": a, "model_b": b, "n": n,
                "wins": c["wins"], "ties": c["ties"], "losses": c["losses"],
                "clear_wins": c["clear_wins"], "clear_losses": c["clear_losses"],
                "win_rate": c["wins"] / n, "tie_rate": c["ties"] / n, "loss_rate": c["losses"] / n,
                "win_rate_ties_half": (c["wins"] + 0.5 * c["ties"]) / n,
                "win_rate_ci95": wilson_interval(c["wins"], n), "loss_rate_ci95": wilson_interval(c["losses"], n),
            }
        )  # fmt: skip
    per_annotator = Counter(r["annotator"] for r in rows)
    return {
        "annotations": len(rows),
        "instances": len({r["instance_id"] for r in rows}),
        "annotators": dict(sorted(per_annotator.items())),
        "acceptance": [
            {"model": m, "n": n, "acceptable": k, "rate": k / n, "rate_ci95": wilson_interval(k, n)}
            for m, (k, n) in sorted(accept.items())
        ],
        "pairwise": pair_list,
        "agreement": {
            "acceptability": agreement(acc_labels, [False, True]),
            "preference_3way": agreement(pref3, [-1, 0, 1]),
            "preference_5way": agreement(pref5, [-2, -1, 0, 1, 2]),
        },
    }


def metrics_from_db(db: str | Path) -> dict[str, Any]:
    conn = store.open_db_for_reading(db)
    try:
        return compute_metrics(annotation_rows(conn))
    finally:
        conn.close()


def print_metrics(m: dict[str, Any]) -> None:
    """Rich tables for a person at a terminal."""
    from rich.console import Console
    from rich.markup import escape  # model names come from the user's file: text, never markup ("[/x]" would raise)
    from rich.table import Table

    con = Console()
    if not con.is_terminal:
        # Piped: tables as wide as their content, so no model name is folded or cut.
        con = Console(width=100_000)
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    num = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    con.print(
        f"[bold]{m['annotations']}[/bold] latest answers on [bold]{m['instances']}[/bold] instances"
        f" from [bold]{len(m['annotators'])}[/bold] annotator(s)"
        + (": " + ", ".join(f"{k} ({v})" for k, v in m["annotators"].items()) if m["annotators"] else "")
    )
    t = Table(title="Acceptance rate per model", title_justify="left")
    for col in ("model", "judged", "acceptable", "rate", "95% interval"):
        t.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for a in m["acceptance"]:
        lo, hi = a["rate_ci95"]
        t.add_row(escape(a["model"]), str(a["n"]), str(a["acceptable"]), pct(a["rate"]), f"{100 * lo:.1f}-{100 * hi:.1f}%")
    con.print(t)
    t = Table(title="Pairwise preference (wins are model A's)", title_justify="left")
    for col in ("model A", "model B", "n", "A wins", "ties", "B wins", "A score"):
        if col.startswith("model"):
            t.add_column(col, overflow="fold")
        else:
            t.add_column(col, justify="right", no_wrap=True)
    for p in m["pairwise"]:
        t.add_row(
            escape(p["model_a"]), escape(p["model_b"]), str(p["n"]), f"{pct(p['win_rate'])} ({p['clear_wins']})", pct(p["tie_rate"]),
            f"{pct(p['loss_rate'])} ({p['clear_losses']})", pct(p["win_rate_ties_half"]),
        )  # fmt: skip
    con.print(t)
    if m["pairwise"]:
        con.print("[dim](n) = answers saying that model is clearly better; A score = A's win rate counting ties as half.[/dim]")
    t = Table(title="Inter-annotator agreement (items with 2+ annotators)", title_justify="left")
    for col in ("judgement", "items", "raw agreement", "Fleiss' κ", "mean Cohen's κ"):
        t.add_column(col, justify="left" if col == "judgement" else "right", no_wrap=True)
    names = {"acceptability": "acceptable", "preference_3way": "preference 3-way", "preference_5way": "preference 5-point"}
    for key, label in names.items():
        a = m["agreement"][key]
        t.add_row(label, str(a["items"]), pct(a["raw_agreement"]), num(a["fleiss_kappa"]), num(a["mean_cohen_kappa"]))
    con.print(t)
