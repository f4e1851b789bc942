"""Every preset of `tulu eval list` on SmolLM2-135M-Instruct (hf backend, CPU), a few real rows each: n, score, seconds.

Data: ../shared/data (real samples) where a benchmark has one; the tests' fixture files for MATH,
TyDiQA, HumanEval and HumanEval+ (tests/_eval_fixtures.py builds the folder, and the MBPP+ hub split).
Two `tulu eval run` calls (the model loads once per call): every non-code preset, then the six code
presets with --n-samples reduced from the reference's 20. Judges and classifiers are not available
offline: AlpacaEval runs without one (outputs only); ToxiGen and TruthfulQA generation get the tests'
stand-ins (a tiny classifier and a tiny judge), so their predictions are written, but their numbers
are not scores and are printed as such. Seconds are per task as results.json records them
(generation and scoring, model loading excluded).

    python benchmarks/real_model_presets.py [--limit 5] [--max-new-tokens 64] [--code-samples 2] [--threads 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

CODE = ("codex_eval_temp_0.1", "codex_eval_temp_0.8", "humanevalplus", "humanevalplus_evalplus", "mbppplus", "mbppplus_evalplus")
STAND_IN = {"toxigen": "stand-in classifier: not a score", "truthfulqa": "stand-in judges: not a score"}
NO_JUDGE = {"alpaca_eval": "judge (GPT-4)", "alpaca_eval_2": "judge (GPT-4 turbo)"}


def tulu_run(args: list[str], threads: str) -> float:
    t = time.time()
    done = subprocess.run([sys.executable, "-m", "tulu_cli.cli.main", "eval", "run", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": threads})
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    return time.time() - t


def reductions(task, limit: int, max_new: int, samples: int | None) -> str:
    """What this run cut from the preset's reference setting."""
    cut = [f"first {limit}" + (" per subject" if task.data_name == "mmlu" else " per subtask" if task.data_name == "bbh" else
                               " per group" if task.data_name == "toxigen" else "")]
    if task.kind == "generate":
        if max_new < task.generation.max_new_tokens:
            cut.append(f"max tokens {task.generation.max_new_tokens}->{max_new}")
        if samples is not None and samples < task.generation.n:
            cut.append(f"samples {task.generation.n}->{samples}")
    return ", ".join(cut)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=5, help="--limit of both runs (per subject for MMLU, per subtask for BBH)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--code-samples", type=int, default=2, help="--n-samples of the code presets (reference: 20)")
    ap.add_argument("--threads", default="1", help="OMP_NUM_THREADS (1 is steadier on shared cores)")
    ap.add_argument("--shared-data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=None, help="keep the output folders here (default: a temporary folder)")
    args = ap.parse_args()

    from _eval_fixtures import every_preset_data, make_toxigen_classifier, make_truthfulqa_judge
    from tulu_cli.demo import smollm2
    from tulu_cli.evaluation.tasks import all_tasks
    from tulu_cli.testing import make_tiny_model

    tasks = all_tasks()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        data, input_files = every_preset_data(root / "data", args.shared_data)
        tiny = make_tiny_model(root / "tiny")
        stand_ins = ["--toxigen-classifier", str(make_toxigen_classifier(root / "classifier", tiny, 0.0)),
                     "--truthfulqa-truth-judge", str(make_truthfulqa_judge(root / "judge", tiny, True)),
                     "--truthfulqa-info-judge", str(root / "judge")]
        common = ["-m", str(smollm2()), "-d", str(data), "--limit", str(args.limit), "--max-new-tokens", str(args.max_new_tokens)]
        plain = [n for n in tasks if n not in CODE]
        load_before = os.getloadavg()
        wall = tulu_run([*common, *input_files, *stand_ins, "-t", ",".join(plain), "-o", str(root / "plain")], args.threads)
        wall += tulu_run([*common, "-t", ",".join(CODE), "--n-samples", str(args.code_samples), "-o", str(root / "code")], args.threads)
        load_after = os.getloadavg()
        results = {**json.loads((root / "plain" / "results.json").read_text())["results"],
                   **json.loads((root / "code" / "results.json").read_text())["results"]}

    print(f"SmolLM2-135M-Instruct, hf backend, CPU ({os.cpu_count()} cores), each preset's own chat template; "
          f"--limit {args.limit}, --max-new-tokens {args.max_new_tokens}, code presets --n-samples {args.code_samples}; "
          f"OMP_NUM_THREADS={args.threads}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; two runs, {wall:.0f} s wall in all")
    print_table(tasks, results, args)


def print_table(tasks, results: dict, args: argparse.Namespace) -> None:
    print("| preset | n | primary metric | score | seconds | reduced vs the reference | not scored offline |")
    print("|---|---|---|---|---|---|---|")
    for name, task in tasks.items():
        r = results[name]
        primary = task.metrics[0] if task.metrics[0] in r["metrics"] or name in NO_JUDGE else "pass@1"  # pass@k needs k samples
        value = r["metrics"].get(primary)
        score = "-" if name in NO_JUDGE else f"({value:.3f})" if name in STAND_IN else f"{value:.3f}"
        samples = args.code_samples if name in CODE else None
        missing = NO_JUDGE.get(name) or STAND_IN.get(name) or ("GPT-4 judge metrics (string match scored)" if name == "xstest" else "")
        print(f"| {name} | {r['num_examples']} | {primary} | {score} | {r['seconds']:.1f} | "
              f"{reductions(task, args.limit, args.max_new_tokens, samples)} | {missing} |")

if __name__ == "__main__":
    main()
