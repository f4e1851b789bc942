"""`tulu train plot`: loss and learning rate against step from a run's metrics.jsonl, as a PNG."""

from __future__ import annotations

import os
from pathlib import Path

from tulu_cli.errors import TuluError
from tulu_cli.jsonl import read_jsonl
from tulu_cli.train.metrics import METRICS_FILE


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise TuluError(f"{run_dir}: no {METRICS_FILE} here (not a training run folder, or no step logged yet)")
    rows = [row for _, row in read_jsonl(path)]
    if not rows:
        raise TuluError(f"{path}: no metrics logged yet")
    return rows


def plot_run(run_dir: Path, output: Path | None, dpi: int) -> Path:
    """Write the PNG (default RUN_DIR/metrics.png) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    steps = [r["step"] for r in rows]
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax_loss.plot(steps, [r.get("loss") for r in rows], color="tab:blue")
    ax_loss.set_ylabel("loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.set_title(Path(run_dir).resolve().name)
    ax_lr.plot(steps, [r.get("lr") for r in rows], color="tab:orange")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(output) if output else Path(run_dir) / "metrics.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, out)
    return out
