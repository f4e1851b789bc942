"""What the real-model peer benchmarks share: where the peers' venv is, its check, and the child environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The peers (lm-eval, TRL) live in a venv of their own: they pin torch/transformers/accelerate themselves.
DEFAULT_PEER_PYTHON = os.environ.get("TULU_PEER_PYTHON") or str(Path.home() / ".cache/tulu/venv-peers/bin/python")


def require_peer(python: str) -> None:
    if not Path(python).is_file():
        sys.exit(f"{python}: no such python; build the peer venv as this file's docstring says")


def child_env(threads: int) -> dict[str, str]:
    """Both sides alike: the same thread count, offline, no tokenizer thread pool."""
    return {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
