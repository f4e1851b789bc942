"""hf generation: continuous batching reports each row the step it finishes and computes nothing for finished rows,
greedy rows equal one-row `generate` on the real model, out-of-memory halves the rows in flight, models whose
generation config needs transformers' generate get it, and a killed run keeps the rows it finished."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.backends import GenerationRequest

QUESTIONS = [
    "What is the capital of France?",  # answers in one sentence and ends with <|im_end|>
    "Name three colors.",  # a numbered list: the stop string "2." ends it early
    "Write a long poem about the sea and the wind and the stars.",  # runs to max_new_tokens
    "Explain in detail how a bicycle works, covering the frame, wheels, gears and brakes. " * 3,  # longest prompt
]
STOP = "2."
MAX_NEW = 16


def _chat(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)


@pytest.mark.slow
def test_real_model_rows_leave_as_they_finish_and_equal_one_row_generate(real_model, monkeypatch):
    import torch

    from tulu_cli.evaluation.backends.hf import HFBackend

    b = HFBackend(str(real_model), batch_size=3)
    tok = b.tokenizer
    reqs = [GenerationRequest(prompt=_chat(tok, q), max_new_tokens=MAX_NEW, stop=(STOP,)) for q in QUESTIONS]

    # The reference: plain greedy `generate`, one unpadded row at a time; the stop string cut by hand.
    expected, lengths = [], []
    for r in reqs:
        ids = torch.tensor([b.encode(r.prompt)])
        with torch.inference_mode():
            new = b.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW, do_sample=False)[0, ids.shape[1] :].tolist()
        # How many tokens a row needs before it is done: through <|im_end|>, or until its text holds the stop string.
        k = next((j + 1 for j in range(len(new)) if new[j] == tok.eos_token_id or STOP in tok.decode(new[: j + 1])), len(new))
        lengths.append(k)
        expected.append([tok.decode(new, skip_special_tokens=True).split(STOP)[0]])
    assert expected[0] == ["The capital of France is Paris."] and expected[1] == ["1. Red\n"]
    assert lengths[0] < MAX_NEW and lengths[1] < MAX_NEW and lengths[2] == lengths[3] == MAX_NEW

    monkeypatch.setattr(b.model, "generate", lambda *a, **k: pytest.fail("plain configs must not go through generate"))
    steps: list[int] = []  # rows in each one-token decoding pass
    hook = b.model.register_forward_pre_hook(
        lambda m, args, kwargs: steps.append(kwargs["input_ids"].shape[0]) if kwargs["input_ids"].shape[1] == 1 else None,
        with_kwargs=True,
    )
    reported: list[tuple[int, int]] = []  # (request, decoding passes so far)
    try:
        got = b.generate(reqs, on_result=lambda i, o: reported.append((i, len(steps))))
    finally:
        hook.remove()
    assert got == expected
    # Longest prompts start first (3, 2, 0); France finishes and is written while 3 and 2 still run, the
    # colour list takes its slot and finishes too; the two long rows come last.
    assert [i for i, _ in reported[:2]] == [0, 1] and {i for i, _ in reported[2:]} == {2, 3}
    assert reported[0][1] < MAX_NEW - 1 and reported[1][1] < MAX_NEW - 1
    # Each row is carried exactly until its last token: one pass per token after the first (the first comes
    # from the prefill), nothing for rows that are done.
    assert sum(steps) == sum(k - 1 for k in lengths)
    assert max(steps) == 3


def test_out_of_memory_halves_the_rows_in_flight(tiny_model, monkeypatch):
    from tulu_cli.evaluation.backends.hf import HFBackend

    reqs = [GenerationRequest(prompt=f"prompt number {i} " * (i + 1), max_new_tokens=5) for i in range(6)]
    ref = HFBackend(str(tiny_model), batch_size=1).generate(reqs)

    b = HFBackend(str(tiny_model), batch_size="auto")
    assert b.generation_slots() == 16  # auto on CPU: at most 16 rows at once, not 64
    sizes = []

    def pre(module, args, kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    hook = b.model.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        got = b.generate(reqs)
        assert got == ref and b.batch_size == 1 and sizes[:3] == [6, 3, 1]  # half of the rows that did not fit
        fixed = HFBackend(str(tiny_model), batch_size=4, model_obj=b.model, tokenizer_obj=b.tokenizer)
        with pytest.raises(TuluError, match="out of memory at batch size 4"):
            fixed.generate(reqs)
    finally:
        hook.remove()


def test_generation_config_with_a_repetition_penalty_goes_through_generate(tiny_model, tmp_path):
    import torch

    from tulu_cli.evaluation.backends.hf import HFBackend
    from tulu_cli.evaluation.backends.hf_generation import generation_is_plain

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    cfg_path = model_dir / "generation_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    cfg_path.write_text(json.dumps({**cfg, "repetition_penalty": 1.5}))
    b = HFBackend(str(model_dir), batch_size=2)
    assert not generation_is_plain(b.model, sample=False)
    prompts = ["Hello there", "Once upon a time in a land far away", "A"]
    got = b.generate([GenerationRequest(prompt=p, max_new_tokens=10) for p in prompts])
    for p, out in zip(prompts, got):
        ids = torch.tensor([b.encode(p)])
        with torch.inference_mode():
            ref = b.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False)
        assert out == [b.tokenizer.decode(ref[0, ids.shape[1] :], skip_special_tokens=True)]


def test_sampled_rows_are_reproducible_with_a_seed_across_slots(tiny_model):
    from tulu_cli.evaluation.backends.hf import HFBackend

    b = HFBackend(str(tiny_model), batch_size=2)  # 3 samples of 2 prompts through 2 slots
    reqs = [GenerationRequest(prompt=p, max_new_tokens=6, temperature=1.0, top_p=0.95, n=3, seed=7) for p in ["Once upon", "Hello"]]
    one = b.generate(reqs)
    assert [len(o) for o in one] == [3, 3] and b.generate(reqs) == one
    assert len({tuple(o) for o in one}) == 2 and len(set(one[0])) > 1  # samples differ
    other = b.generate([GenerationRequest(**{**r.__dict__, "seed": 8}) for r in reqs])
    assert other != one


@pytest.mark.slow
def test_a_killed_run_keeps_the_rows_it_finished(tiny_model, tmp_path):
    (tmp_path / "gsm").mkdir()
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"#### {2 * i}"} for i in range(20)]
    (tmp_path / "gsm/test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tulu_cli.cli.main", "eval", "run", "-m", str(tiny_model), "-t", "gsm_direct",
           "-d", str(tmp_path), "-o", str(out), "--batch-size", "1", "--max-new-tokens", "48", "--n-shot", "0", "--stop", ""]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # one thread: far faster on busy shared cores
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pred = out / "gsm_direct/predictions.jsonl"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if pred.exists() and pred.read_text().count("\n") >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    kept = [json.loads(line) for line in pred.read_text().splitlines()]  # every line written is whole
    assert 2 <= len(kept) < len(rows)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    entry = json.loads((out / "results.json").read_text())["results"]["gsm_direct"]
    assert entry["num_resumed"] == len(kept) and entry["num_generated"] == len(rows) - len(kept)
