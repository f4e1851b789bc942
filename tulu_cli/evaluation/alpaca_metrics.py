"""AlpacaEval metrics: win rate with standard error, and AlpacaEval 2's length-controlled win rate (a GLM).

Conventions follow the alpaca_eval package, so numbers line up with its leaderboard:
a preference is a float in [1, 2] where 1 means the reference (``output_1``) won, 2 means the
evaluated model (``output_2``) won, and 0 or 1.5 is a draw. The length-controlled win rate is
the mean over instructions of the win probability the GLM predicts when both outputs have the
same length (Dubois et al., 2024, "Length-Controlled AlpacaEval").
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tulu_cli.errors import TuluError

# Gamed baselines (concise / verbose versions of the reference) enter the fit with this total weight,
# split between the two of them, so the length slope stays close to what the baseline itself shows.
REGULARIZE_TO_BASELINE_LAMBDA = 0.2
LEADERBOARD_COLUMNS = [
    "win_rate",
    "standard_error",
    "n_wins",
    "n_wins_base",
    "n_draws",
    "n_total",
    "discrete_win_rate",
    "mode",
    "avg_length",
    "length_controlled_winrate",
    "lc_standard_error",
]


def _as_float(p: Any) -> float:
    try:
        return float("nan") if p is None else float(p)
    except (TypeError, ValueError):
        return float("nan")


def _sem(values: np.ndarray) -> float:
    """Standard error of the mean with the sample (n-1) standard deviation, as pandas' ``Series.sem``."""
    if len(values) < 2:
        return float("nan")
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def _describe(prefs: Sequence[float]) -> dict[str, Any]:
    raw = np.array([_as_float(p) for p in prefs], dtype=float)
    n_draws = int(np.sum((raw == 1.5) | (raw == 0.0)))
    values = np.where(raw == 0.0, 1.5, raw)
    valid = values[(values >= 1.0) & (values <= 2.0)]  # NaN and out-of-range values are dropped
    shifted = valid - 1.0
    return {
        "win_rate": float(shifted.mean() * 100) if len(shifted) else float("nan"),
        "standard_error": _sem(shifted) * 100,
        "n_wins": int(np.sum(shifted > 0.5)),
        "n_wins_base": int(np.sum(shifted < 0.5)),
        "n_draws": n_draws,
        "n_total": int(len(shifted)),
    }


def win_rate(preferences: Iterable[Any]) -> dict[str, Any]:
    """Win rate of ``output_2`` over ``output_1`` in percent, with AlpacaEval's standard error and counts.

    ``win_rate`` averages the (possibly fractional) preferences, so a draw counts half;
    ``discrete_win_rate`` first rounds every preference to a win or a loss (exact draws stay half).
    """
    prefs = [_as_float(p) for p in preferences]
    out = _describe(prefs)
    discrete = []
    for p in prefs:
        if p == 1.5 or p == 0.0:
            discrete.append(1.5)
        elif math.isnan(p):
            discrete.append(p)
        else:
            discrete.append(float(np.round(p)))  # numpy rounds half to even, as pandas' round does
    out["discrete_win_rate"] = _describe(discrete)["win_rate"]
    return out


# ---------------------------------------------------------------- the GLM fit (scikit-learn's liblinear, as the package)

# The package's set-up: 10 values of C from 1e-4 to 1e4, grouped 5-fold CV, liblinear, seed 123.
N_CS = 10
RANDOM_STATE = 123
# With fewer rows than folds the package's CV cannot run; its no-CV fit uses this C.
NO_CV_C = 100.0


def _sklearn():
    try:
        import sklearn
        from sklearn import linear_model, metrics, model_selection
    except ImportError:
        raise TuluError(
            "the length-controlled win rate needs scikit-learn (AlpacaEval fits its GLM with it): pip install 'tulu-cli[eval]'"
        ) from None
    return sklearn, linear_model, metrics, model_selection


def require_sklearn() -> None:
    """Raise the one-line TuluError now when scikit-learn is missing (before any judge call is paid for)."""
    _sklearn()


def _soft_log_loss(y: np.ndarray, proba: np.ndarray, true_prob: np.ndarray, true_sample_weight: np.ndarray) -> float:
    """Held-out score of one fold: mean of weight * soft cross-entropy, predictions clipped to [1e-15, 1-1e-15].

    ``y`` is the duplicated rows' 0/1 label; each copy's soft target is recovered from the
    probability its weight was built from (so both copies of a row score the same target).
    """
    target = np.where(y == 1, true_prob, 1 - true_prob)
    proba = np.clip(proba, 1e-15, 1 - 1e-15)
    return float(-np.mean((target * np.log(proba) + (1 - target) * np.log(1 - proba)) * true_sample_weight))


def fit_l1_logistic_cv(
    X: np.ndarray,
    p: np.ndarray,
    sample_weight: np.ndarray | None = None,
    n_splits: int = 5,
) -> tuple[Any, float]:
    """L1 logistic regression of soft labels ``p`` in [0, 1] on ``X`` (no intercept), C chosen by grouped CV.

    As the alpaca_eval package fits its GLM: every row enters twice, with label 1 and weight
    ``s * p`` and with label 0 and weight ``s * (1 - p)``; scikit-learn's ``LogisticRegressionCV``
    (liblinear, L1, 10 Cs, ``GroupKFold`` keeping both copies of a row in one fold, seed 123) picks C
    by the weighted soft log-loss and refits on all rows. Returns ``(fitted model, chosen C)``.
    """
    sklearn, linear_model, metrics, model_selection = _sklearn()
    X = np.asarray(X, dtype=float)
    p = np.asarray(p, dtype=float)
    s = np.ones(len(p)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    X2 = np.vstack([X, X])
    y2 = np.concatenate([np.ones(len(p), dtype=int), np.zeros(len(p), dtype=int)])
    prob2 = np.concatenate([p, 1 - p])
    s2 = np.concatenate([s, s])
    groups = np.concatenate([np.arange(len(p)), np.arange(len(p))])
    common: dict[str, Any] = dict(solver="liblinear", fit_intercept=False, dual=False, random_state=RANDOM_STATE)
    # scikit-learn 1.8 deprecated penalty= (removed in 1.10) for l1_ratio(s)=1, which liblinear reads as L1.
    new_api = tuple(int(x) for x in sklearn.__version__.split(".")[:2]) >= (1, 8)
    if n_splits <= 1 or len(p) < n_splits:
        model = linear_model.LogisticRegression(C=NO_CV_C, **common, **({"l1_ratio": 1.0} if new_api else {"penalty": "l1"}))
        model.fit(X2, y2, sample_weight=prob2 * s2)
        return model, NO_CV_C
    extra: dict[str, Any] = {"l1_ratios": (1.0,)} if new_api else {"penalty": "l1"}
    if "use_legacy_attributes" in linear_model.LogisticRegressionCV().get_params():
        extra["use_legacy_attributes"] = False  # the attribute layout 1.10 makes the default (no warning)
    # The fold's soft targets and weights reach the scorer through metadata routing, scoped to this fit.
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = metrics.make_scorer(_soft_log_loss, response_method="predict_proba", greater_is_better=False)
        scorer = scorer.set_score_request(true_prob=True, true_sample_weight=True)
        model = linear_model.LogisticRegressionCV(
            Cs=N_CS, cv=model_selection.GroupKFold(n_splits=n_splits), scoring=scorer, **common, **extra
        )
        model.fit(X2, y2, sample_weight=prob2 * s2, groups=groups, true_prob=prob2, true_sample_weight=s2)
    return model, float(np.ravel(model.C_)[0])


# ---------------------------------------------------------------- length-controlled win rate


def read_gamed_annotations(path: str | Path) -> dict[str, np.ndarray]:
    """Read the package's ``df_gamed.csv`` (the reference against its own concise and verbose versions).

    Needs the columns ``index``, ``preference`` (already in [0, 1]), ``std_delta_len``,
    ``instruction_difficulty`` and ``not_gamed_baseline``; other columns are ignored.
    """
    p = Path(path)
    needed = ["index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline"]
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing:
                raise TuluError(f"{p}: missing column(s) {', '.join(missing)} (expected AlpacaEval's df_gamed.csv)")
            rows = list(reader)
    except OSError as e:
        raise TuluError(f"{p}: cannot read ({e.strerror})") from None
    cols: dict[str, list[float]] = {c: [] for c in needed}
    for line_no, row in enumerate(rows, start=2):
        for c in needed:
            v = (row.get(c) or "").strip()
            if c == "not_gamed_baseline":
                if v.lower() in ("true", "1", "1.0"):
                    cols[c].append(1.0)
                elif v.lower() in ("false", "0", "0.0"):
                    cols[c].append(0.0)
                else:
                    raise TuluError(f"{p}:{line_no}: column 'not_gamed_baseline': expected True/False, got {v!r}")
                continue
            try:
                cols[c].append(float(v) if v != "" else float("nan"))
            except ValueError:
                raise TuluError(f"{p}:{line_no}: column '{c}': not a number: {v!r}") from None
    out = {c: np.array(v, dtype=float) for c, v in cols.items()}
    prefs = out["preference"][~np.isnan(out["preference"])]
    if len(prefs) and (prefs.min() < 0 or prefs.max() > 1):
        raise TuluError(f"{p}: column 'preference' must be in [0, 1] (probability that the gamed output wins)")
    return out


def _difficulty_by_index(gamed: Mapping[str, np.ndarray]) -> dict[int, float]:
    out: dict[int, float] = {}
    for idx, d in zip(gamed["index"], gamed["instruction_difficulty"]):
        out.setdefault(int(idx), float(d))  # first occurrence, as drop_duplicates("index") keeps
    return out


def length_controlled_win_rate(
    annotations: Sequence[Mapping[str, Any]],
    gamed: Mapping[str, np.ndarray] | None = None,
    n_splits: int = 5,
) -> dict[str, Any]:
    """AlpacaEval 2's length-controlled win rate of ``output_2`` against ``output_1``.

    Each annotation needs ``output_1``, ``output_2``, ``preference`` and, when ``gamed`` is given,
    ``index`` (the instruction's position in the 805-instruction set). With ``gamed`` (the
    package's ``df_gamed.csv``) this is ``length_controlled_v1``: the GLM
    ``preference ~ tanh(std_delta_len) + instruction_difficulty + not_gamed_baseline - 1``
    fitted together with the gamed baselines (weight 0.2 in total), predicted with no length
    difference. Without it, the package's ``length_controlled_minimal`` GLM
    (``tanh(std_delta_len) + not_gamed_baseline - 1``, no difficulty term, no regularisation).
    Returns the rate and its standard error in percent, the GLM name, its weights and the chosen C.
    """
    if not annotations:
        raise TuluError("length-controlled win rate: no annotations")
    len1 = np.array([len(str(a.get("output_1", ""))) for a in annotations], dtype=float)
    len2 = np.array([len(str(a.get("output_2", ""))) for a in annotations], dtype=float)
    delta = len1 - len2
    sd = float(np.std(delta, ddof=1)) if len(delta) > 1 else 0.0
    std_delta = delta / sd if sd > 0 else np.zeros_like(delta)
    pref = np.array([_as_float(a.get("preference")) for a in annotations], dtype=float)
    pref = np.where(pref == 0.0, 1.5, pref) - 1.0

    if gamed is not None:
        glm = "length_controlled_v1"
        names = ["np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline.astype(float)"]
        difficulty = _difficulty_by_index(gamed)
        try:
            diff = np.array([difficulty[int(a["index"])] for a in annotations], dtype=float)
        except KeyError as e:
            raise TuluError(f"length-controlled win rate: instruction index {e.args[0]} is not in df_gamed.csv") from None
        X_model = np.column_stack([np.tanh(std_delta), diff, np.ones(len(pref))])
        X_gamed = np.column_stack(
            [np.tanh(gamed["std_delta_len"]), gamed["instruction_difficulty"], gamed["not_gamed_baseline"]]
        )
        X = np.vstack([X_gamed, X_model])
        y = np.concatenate([gamed["preference"], pref])
        is_real = np.concatenate([gamed["not_gamed_baseline"], np.ones(len(pref))])
        weight = is_real + REGULARIZE_TO_BASELINE_LAMBDA * (1 - is_real) / 2
        X_test = np.column_stack([np.zeros(len(pref)), diff, np.ones(len(pref))])
    else:
        glm = "length_controlled_minimal"
        names = ["np.tanh(std_delta_len)", "not_gamed_baseline.astype(float)"]
        X = np.column_stack([np.tanh(std_delta), np.ones(len(pref))])
        y = pref
        weight = np.ones(len(pref))
        X_test = np.column_stack([np.zeros(len(pref)), np.ones(len(pref))])

    keep = ~np.isnan(y)
    if not keep.any():
        raise TuluError("length-controlled win rate: every preference is missing")
    model, C = fit_l1_logistic_cv(X[keep], y[keep], weight[keep], n_splits=n_splits)
    predicted = model.predict_proba(X_test)[:, 1]
    w = np.ravel(model.coef_)
    return {
        "length_controlled_winrate": float(predicted.mean() * 100),
        "lc_standard_error": _sem(predicted) * 100,
        "glm": glm,
        "glm_weights": dict(zip(names, (float(x) for x in w))),
        "glm_C": C,
        "glm_preferences": [float(x) for x in predicted],
    }


# ---------------------------------------------------------------- files in the package's format


def leaderboard_row(
    annotations: Sequence[Mapping[str, Any]],
    model_outputs: Sequence[Mapping[str, Any]],
    mode: str = "community",
    lc: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One leaderboard row: win-rate metrics, ``mode``, ``avg_length`` (mean characters of the model's
    outputs, as an integer) and, when given, the length-controlled win rate."""
    row = win_rate([a.get("preference") for a in annotations])
    row["mode"] = mode
    lengths = [len(str(o.get("output", ""))) for o in model_outputs]
    row["avg_length"] = int(np.mean(lengths)) if lengths else 0
    row["length_controlled_winrate"] = lc["length_controlled_winrate"] if lc else None
    row["lc_standard_error"] = lc["lc_standard_error"] if lc else None
    return row


def write_leaderboard_csv(path: str | Path, rows: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``leaderboard.csv`` as the package does: an unnamed index column with the model name."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([""] + LEADERBOARD_COLUMNS)
        for name, row in rows.items():
            values = []
            for c in LEADERBOARD_COLUMNS:
                v = row.get(c)
                values.append("" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v) if isinstance(v, float) else v)
            writer.writerow([name] + values)
    os.replace(tmp, path)
