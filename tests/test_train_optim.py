"""Optimizer flags against steps computed by hand: clipping, weight decay (not on norms/biases), Adam betas/epsilon, logging steps."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests._train_helpers import base_args, load_weights, metrics, run_cli, write_chat_data, one_torch_thread  # noqa: F401 (autouse fixture)

LR, WD, BETAS, EPS, CLIP = 1e-2, 0.1, (0.8, 0.95), 1e-3, 0.5
N = 6  # one micro-batch holds the whole data set, so every step sees the same examples


@pytest.fixture(scope="module")
def bias_model(tmp_path_factory):
    from tulu_cli.testing import make_tiny_model

    # biases in attention and MLP, so "no decay on biases" has something to act on
    return make_tiny_model(tmp_path_factory.mktemp("bias") / "model", seed=3, attention_bias=True, mlp_bias=True)


def _batch(run_dir):
    """The run's tokenized rows, padded by hand into one batch (right padding, labels -100 on pads)."""
    import datasets

    info = json.loads((run_dir / "tulu_run.json").read_text())["data"]
    rows = datasets.load_from_disk(info["cache_path"] + "/data")
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in rows])
    labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in rows])
    mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows])
    return ids, labels, mask


def _grads(model, ids, labels, mask):
    """Token-mean cross-entropy of next-token prediction over the batch, and its gradient per parameter."""
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    target = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), target.reshape(-1), ignore_index=-100)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _hand_adamw(model_dir, batch, steps: int, *, clip: float | None, decay_all: bool = False):
    """AdamW written out from its definition (decoupled decay, bias-corrected moments), after global-norm clipping."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    m = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    v = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    norms = []
    for t in range(1, steps + 1):
        g = _grads(model, *batch)
        norm = math.sqrt(sum(float((x.double() ** 2).sum()) for x in g.values()))
        norms.append(norm)
        scale = min(1.0, clip / (norm + 1e-6)) if clip else 1.0
        with torch.no_grad():
            for n, p in model.named_parameters():
                gc = g[n] * scale
                m[n] = BETAS[0] * m[n] + (1 - BETAS[0]) * gc
                v[n] = BETAS[1] * v[n] + (1 - BETAS[1]) * gc * gc
                m_hat, v_hat = m[n] / (1 - BETAS[0] ** t), v[n] / (1 - BETAS[1] ** t)
                decay = WD if (p.ndim >= 2 or decay_all) else 0.0  # biases and norm weights are 1-D
                p.mul_(1 - LR * decay)
                p.sub_(LR * m_hat / (v_hat.sqrt() + EPS))
    return {n: p.detach() for n, p in model.named_parameters()}, norms


def _max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_clipping_weight_decay_and_adam_hyperparameters_match_a_hand_computed_adamw(bias_model, tmp_path):
    data = write_chat_data(tmp_path / "d.jsonl", n=N, seed=5)
    out = tmp_path / "run"
    r = run_cli(base_args(bias_model, data, out, tmp_path / "cache", max_steps=2, per_device_batch_size=N, learning_rate=LR,
                          lr_scheduler="constant", weight_decay=WD, adam_beta1=BETAS[0], adam_beta2=BETAS[1], adam_epsilon=EPS,
                          max_grad_norm=CLIP))
    assert r.exit_code == 0, r.output
    trained = load_weights(out)
    batch = _batch(out)
    expected, norms = _hand_adamw(bias_model, batch, 2, clip=CLIP)
    assert all(n > 4 * CLIP for n in norms), norms  # clipping is active on both steps
    # metrics log the norm before clipping
    assert [x["grad_norm"] for x in metrics(out)] == pytest.approx(norms, rel=1e-4)
    diff = _max_diff(trained, expected)
    assert diff < 2e-6, diff  # measured 6e-8
    # the same steps without clipping, or with decay on norms and biases, land far away
    unclipped, _ = _hand_adamw(bias_model, batch, 2, clip=None)
    assert _max_diff(trained, unclipped) > 1e-3
    decayed, _ = _hand_adamw(bias_model, batch, 2, clip=CLIP, decay_all=True)
    one_d = {k: v for k, v in trained.items() if v.ndim == 1}
    assert any("bias" in k for k in one_d) and any("norm" in k for k in one_d)
    assert _max_diff(one_d, {k: decayed[k] for k in one_d}) > 1e-4


def test_logging_steps_writes_every_nth_step_with_the_window_mean(tiny_model, tmp_path):
    data = write_chat_data(tmp_path / "d.jsonl", n=12, seed=1)
    common = dict(max_steps=5, per_device_batch_size=2, learning_rate=1e-3)
    r = run_cli(base_args(tiny_model, data, tmp_path / "every", tmp_path / "cache", **common))
    assert r.exit_code == 0, r.output
    r = run_cli(base_args(tiny_model, data, tmp_path / "window", tmp_path / "cache", logging_steps=2, **common))
    assert r.exit_code == 0, r.output
    each, window = metrics(tmp_path / "every"), metrics(tmp_path / "window")
    assert [x["step"] for x in window] == [2, 4, 5]  # every 2nd step, and the last one
    # a logged loss is the token-weighted mean over the window's steps: between the two step losses
    for w, (a, b) in zip(window[:2], [(0, 1), (2, 3)]):
        lo, hi = sorted((each[a]["loss"], each[b]["loss"]))
        assert lo < w["loss"] < hi
        assert w["tokens"] == each[a]["tokens"] + each[b]["tokens"]
    assert window[2]["loss"] == pytest.approx(each[4]["loss"], rel=1e-6)
