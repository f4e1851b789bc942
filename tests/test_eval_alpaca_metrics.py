"""AlpacaEval metrics: win rate and standard error conventions, the package's liblinear GLM fit, the length-controlled win rate, file formats."""

from __future__ import annotations

import csv
import math
import sys

import numpy as np
import pytest

from tulu_cli.errors import TuluError
from tulu_cli.evaluation import alpaca_metrics as am


def test_win_rate_conventions():
    # 0 and 1.5 are draws (half a win); NaN and values outside [1, 2] are dropped from the rate.
    out = am.win_rate([1, 2, 1.5, 0, 2, 1.2, float("nan"), 3, None])
    assert out["n_total"] == 6
    assert out["n_draws"] == 2
    assert out["n_wins"] == 2 and out["n_wins_base"] == 2
    assert out["win_rate"] == pytest.approx(100 * 3.2 / 6)
    shifted = np.array([0, 1, 0.5, 0.5, 1, 0.2])
    assert out["standard_error"] == pytest.approx(100 * shifted.std(ddof=1) / math.sqrt(6))
    # discrete: 1.2 rounds to a loss, exact draws stay half
    assert out["discrete_win_rate"] == pytest.approx(100 * 3 / 6)


def test_win_rate_all_wins_and_all_losses():
    assert am.win_rate([2, 2, 2])["win_rate"] == 100.0
    assert am.win_rate([2, 2, 2])["standard_error"] == 0.0
    assert am.win_rate([1.0, 1.0])["win_rate"] == 0.0
    assert am.win_rate([1.9, 1.6])["discrete_win_rate"] == 100.0


def test_cv_fit_matches_sklearn_liblinear():
    """Reference values from the alpaca_eval package's own ``fit_LogisticRegressionCV`` (its source at
    tatsu-lab/alpaca_eval cd543a1, src/alpaca_eval/metrics/glm_winrate.py, run with scikit-learn 1.9.1)
    on this exact data: the same liblinear fit, so the same numbers to the last digits."""
    rng = np.random.default_rng(1)
    n, ng = 300, 200
    Xm = np.column_stack([np.tanh(rng.normal(size=n)), rng.normal(size=n), np.ones(n)])
    Xg = np.column_stack([np.tanh(rng.normal(size=ng) * 2), rng.normal(size=ng), np.zeros(ng)])
    X = np.vstack([Xg, Xm])
    y = np.clip(1 / (1 + np.exp(-(X @ np.array([-1.2, -0.5, -0.8])))) + rng.normal(scale=0.1, size=len(X)), 0, 1)
    s = np.concatenate([np.full(ng, 0.1), np.ones(n)])
    model, C = am.fit_l1_logistic_cv(X, y, s)
    assert C == pytest.approx(21.54434690031882, rel=1e-12)
    np.testing.assert_allclose(model.coef_[0], [-1.2498585672180826, -0.45232399540975365, -0.7997438225155089], rtol=1e-9)


def _length_biased(n=200, seed=0):
    """Annotations where the judge only looks at length: the longer output wins (prob 0.9)."""
    rng = np.random.default_rng(seed)
    anns = []
    for i in range(n):
        l1 = int(rng.integers(50, 400))
        l2 = int(l1 + rng.normal(150, 200))
        l2 = max(l2, 1)
        pref = 1.9 if l2 > l1 else 1.1
        anns.append({"index": i, "output_1": "a" * l1, "output_2": "b" * l2, "preference": pref})
    return anns


def test_length_controlled_removes_pure_length_advantage():
    anns = _length_biased()
    raw = am.win_rate([a["preference"] for a in anns])["win_rate"]
    lc = am.length_controlled_win_rate(anns)
    assert lc["glm"] == "length_controlled_minimal"
    assert raw > 65
    # with equal lengths the judge has no reason to prefer either output
    assert abs(lc["length_controlled_winrate"] - 50) < 6
    assert lc["glm_weights"]["np.tanh(std_delta_len)"] < 0  # longer model output (negative delta) wins
    assert len(lc["glm_preferences"]) == len(anns)


def test_length_controlled_equals_raw_when_lengths_equal():
    anns = [{"index": i, "output_1": "x" * 10, "output_2": "y" * 10, "preference": 2.0 if i % 4 == 0 else 1.0} for i in range(40)]
    lc = am.length_controlled_win_rate(anns)
    # no length signal: the intercept alone recovers the raw rate (up to the L1 shrinkage chosen by CV)
    assert lc["length_controlled_winrate"] == pytest.approx(25, abs=2)


def _write_gamed(path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "model", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline"])
        for model, sign in (("gpt4_1106_preview_concise", 1), ("gpt4_1106_preview_verbose", -1)):
            for i in range(n):
                d = sign * abs(rng.normal(1.0, 0.3))
                w.writerow([i, model, 1 / (1 + math.exp(2 * d)), d, (i % 5) / 5 - 0.4, False])


def test_length_controlled_v1_with_gamed_baselines(tmp_path):
    gamed_path = tmp_path / "df_gamed.csv"
    _write_gamed(gamed_path)
    gamed = am.read_gamed_annotations(gamed_path)
    anns = _length_biased(n=60, seed=1)
    lc = am.length_controlled_win_rate(anns, gamed=gamed)
    assert lc["glm"] == "length_controlled_v1"
    assert set(lc["glm_weights"]) == {"np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline.astype(float)"}
    assert 0 < lc["length_controlled_winrate"] < 100
    assert lc["lc_standard_error"] >= 0
    # an instruction the gamed file does not know is a clear error
    with pytest.raises(TuluError, match="instruction index 999"):
        am.length_controlled_win_rate([{**anns[0], "index": 999}] + anns[1:], gamed=gamed)


def test_gamed_file_errors(tmp_path):
    bad = tmp_path / "df_gamed.csv"
    bad.write_text("index,preference\n0,0.5\n")
    with pytest.raises(TuluError, match="missing column"):
        am.read_gamed_annotations(bad)
    bad.write_text("index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline\n0,abc,0,0,False\n")
    with pytest.raises(TuluError, match=r"df_gamed.csv:2: column 'preference'"):
        am.read_gamed_annotations(bad)
    bad.write_text("index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline\n0,1.7,0,0,False\n")
    with pytest.raises(TuluError, match=r"must be in \[0, 1\]"):
        am.read_gamed_annotations(bad)


def test_leaderboard_csv_has_the_package_columns(tmp_path):
    anns = _length_biased(n=20)
    outputs = [{"output": a["output_2"]} for a in anns]
    lc = am.length_controlled_win_rate(anns)
    row = am.leaderboard_row(anns, outputs, lc=lc)
    path = tmp_path / "leaderboard.csv"
    am.write_leaderboard_csv(path, {"my-model": row})
    lines = path.read_text().splitlines()
    assert lines[0] == ",win_rate,standard_error,n_wins,n_wins_base,n_draws,n_total,discrete_win_rate,mode,avg_length,length_controlled_winrate,lc_standard_error"
    cells = next(csv.reader([lines[1]]))
    assert cells[0] == "my-model" and cells[8] == "community"
    assert int(cells[9]) == int(np.mean([len(o["output"]) for o in outputs]))
    assert float(cells[1]) == pytest.approx(row["win_rate"])


def _parity_data(tmp_path):
    """Synthetic AlpacaEval 2 annotations and gamed baselines (150 instructions) used for the package parity check."""
    rng = np.random.default_rng(7)
    n = 150
    diff = rng.normal(size=n)
    path = tmp_path / "df_gamed.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "model", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline"])
        for model, sign in (("gpt4_1106_preview_concise", 1), ("gpt4_1106_preview_verbose", -1)):
            for i in range(n):
                d = sign * abs(rng.normal(1.0, 0.4))
                p = float(np.clip(1 / (1 + math.exp(1.5 * d - 0.3 * diff[i])) + rng.normal(0, 0.1), 0, 1))
                w.writerow([i, model, repr(p), repr(float(d)), repr(float(diff[i])), False])
    anns = []
    for i in range(n):
        l1 = int(rng.integers(100, 2000))
        l2 = max(1, int(l1 + rng.normal(400, 700)))
        z = 0.002 * (l2 - l1) - 0.4 * diff[i] - 0.3
        pref = 1 + float(np.clip(1 / (1 + math.exp(-z)) + rng.normal(0, 0.15), 0, 1))
        anns.append({"index": i, "output_1": "a" * l1, "output_2": "b" * l2, "preference": pref})
    return anns, path


def test_parity_with_the_alpaca_eval_package(tmp_path):
    """Reference numbers from alpaca_eval 0.6.6 (``get_length_controlled_winrate`` with df_gamed.csv served
    locally, ``glm_name`` length_controlled_v1 and length_controlled_minimal) on exactly this data; the
    package's fit code run with scikit-learn 1.9.1 gives the same digits, and so does ours (the same liblinear fit)."""
    anns, gamed_path = _parity_data(tmp_path)
    wr = am.win_rate([a["preference"] for a in anns])
    assert wr["win_rate"] == pytest.approx(59.89287686544048, rel=1e-12)
    assert wr["standard_error"] == pytest.approx(2.127860308277203, rel=1e-12)
    assert wr["discrete_win_rate"] == pytest.approx(66.0) and wr["n_wins"] == 99 and wr["n_draws"] == 0
    v1 = am.length_controlled_win_rate(anns, gamed=am.read_gamed_annotations(gamed_path))
    assert v1["length_controlled_winrate"] == pytest.approx(42.24330861631776, rel=1e-9)
    assert v1["lc_standard_error"] == pytest.approx(0.544387695079201, rel=1e-9)
    assert v1["glm_C"] == pytest.approx(21.54434690031882, rel=1e-12)
    minimal = am.length_controlled_win_rate(anns)
    assert minimal["length_controlled_winrate"] == pytest.approx(43.02661010561394, rel=1e-9)


def test_v1_zeroes_a_useless_term_as_the_package_does(tmp_path):
    """The package's fit on this data (same source and scikit-learn as above) picks C=2.78 and L1 drops the
    difficulty term to exactly 0, which a solver stopping near the optimum would not."""
    gamed_path = tmp_path / "df_gamed.csv"
    _write_gamed(gamed_path)
    lc = am.length_controlled_win_rate(_length_biased(n=60, seed=1), gamed=am.read_gamed_annotations(gamed_path))
    assert lc["glm_C"] == pytest.approx(2.782559402207126, rel=1e-12)
    assert lc["glm_weights"]["instruction_difficulty"] == 0.0
    assert lc["glm_weights"]["np.tanh(std_delta_len)"] == pytest.approx(-2.750127977339962, rel=1e-9)
    assert lc["length_controlled_winrate"] == pytest.approx(51.395211450521025, rel=1e-9)


def test_missing_scikit_learn_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # what an install without the eval extra sees
    with pytest.raises(TuluError, match=r"needs scikit-learn .*pip install 'tulu-cli\[eval\]'"):
        am.length_controlled_win_rate(_length_biased(n=20))
    with pytest.raises(TuluError, match="needs scikit-learn"):
        am.require_sklearn()
