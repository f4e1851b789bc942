"""tulu's hf backend vs lm-evaluation-harness's HFLM on SmolLM2-135M-Instruct, fed the identical prompt strings.

Two workloads from ../shared/data/eval, in the model's own chat format (--chat-template tokenizer):
  * multiple choice: mmlu_0shot, --examples questions per subject (the sample has 3 subjects x 10);
    tulu ranks " A".." D" by the next-token log-probability after the prompt (the reference rule),
    lm-eval by ``HFLM.loglikelihood((prompt, " A"))``; one-token letters make the two the same number;
  * generation: gsm_direct (8-shot), the same --examples questions, greedy, --max-new-tokens; the
    preset stops at EOS only in chat format, and lm-eval's ``generate_until`` with ``until=[]`` stops at
    the EOS text it adds itself.

tulu runs as `tulu eval run` (both tasks, one process); lm-eval runs in its own venv (this file with
--peer-worker, under --peer-python) on the prompt strings from tulu's first predictions.jsonl, so
the comparison is engine against engine, not prompt code against prompt code. Runs alternate
tulu, lm-eval, tulu, lm-eval (--rounds), each a fresh process, same batch size and torch threads.
examples/s leaves model loading out on both sides (tulu: results.json's examples_per_second; lm-eval:
the time around the one ``loglikelihood`` / ``generate_until`` call); process wall s includes it.
Agreement: same argmax letter / identical text per example, from the first run of each, and the
largest |difference| between the two letter log-probabilities.

The peer venv (never install lm-eval into tulu's environment: it may move torch/transformers):

    python -m venv ~/.cache/tulu/venv-peers
    ~/.cache/tulu/venv-peers/bin/pip install torch==2.13.0   # the CPU wheel; unpinned torch pulls a CUDA build
    ~/.cache/tulu/venv-peers/bin/pip install lm-eval==0.4.13 trl==1.16.0 transformers==5.24.0 \\
        accelerate==1.15.0 datasets==5.2.0 tokenizers==0.23.3 psutil

    python benchmarks/lm_eval_vs_tulu.py [--peer-python PATH] [--examples 10] [--max-new-tokens 32] [--rounds 2]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import DEFAULT_PEER_PYTHON, child_env, require_peer  # noqa: E402
TASKS = ("mmlu_0shot", "gsm_direct")


def run_child(cmd: list[str], env: dict[str, str]) -> float:
    t = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed:\n{done.stderr[-3000:]}")
    return time.time() - t


def tulu_run(args: argparse.Namespace, model: Path, out: Path, env: dict[str, str]) -> dict:
    wall = run_child([sys.executable, "-m", "tulu_cli.cli.main", "eval", "run", "-m", str(model), "-t", ",".join(TASKS),
                      "-d", str(args.data_dir), "--chat-template", "tokenizer", "--max-examples", str(args.examples),
                      "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size), "-o", str(out)],
                     {**env, "PYTHONPATH": str(REPO)})
    results = json.loads((out / "results.json").read_text())["results"]
    rows = {t: [json.loads(x) for x in (out / t / "predictions.jsonl").read_text().splitlines()] for t in TASKS}
    return {"wall": wall, "eps": {t: results[t]["examples_per_second"] for t in TASKS}, "rows": rows,
            "stop": results["gsm_direct"]["generation"]["stop"]}


def peer_run(args: argparse.Namespace, spec: Path, out: Path, env: dict[str, str]) -> dict:
    wall = run_child([args.peer_python, __file__, "--peer-worker", str(spec), str(out)], env)
    res = json.loads(out.read_text())
    return {"wall": wall, "eps": {t: res["n"][t] / res["seconds"][t] for t in TASKS}, **res}


def peer_worker(spec_path: str, out_path: str) -> None:
    """Runs under the peer venv: lm-eval only, no tulu import."""
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    lm = HFLM(pretrained=spec["model"], device="cpu", dtype="float32", batch_size=spec["batch_size"])
    mc = [Instance("loglikelihood", {}, (p, c), idx=j) for p in spec["mc_prompts"] for j, c in enumerate(spec["choices"])]
    gen_kwargs = {"until": spec["stop"], "max_gen_toks": spec["max_new_tokens"], "do_sample": False}
    gen = [Instance("generate_until", {}, (p, dict(gen_kwargs)), idx=0) for p in spec["gen_prompts"]]
    t = time.time()
    ll = lm.loglikelihood(mc, disable_tqdm=True)
    mc_s = time.time() - t
    t = time.time()
    texts = lm.generate_until(gen, disable_tqdm=True)
    gen_s = time.time() - t
    k = len(spec["choices"])
    Path(out_path).write_text(json.dumps({
        "mc": [[ll[i * k + j][0] for j in range(k)] for i in range(len(spec["mc_prompts"]))],
        "gen": texts,
        "seconds": {"mmlu_0shot": mc_s, "gsm_direct": gen_s},
        "n": {"mmlu_0shot": len(spec["mc_prompts"]), "gsm_direct": len(spec["gen_prompts"])},
        "versions": {"lm_eval": __import__("importlib.metadata").metadata.version("lm_eval"),
                     "transformers": __import__("transformers").__version__, "torch": torch.__version__},
    }))


def argmax(scores: list[float]) -> int:
    return max(range(len(scores)), key=lambda j: (scores[j], -j))  # ties: the first, as both engines pick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=10, help="MMLU questions per subject and GSM8K questions")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16, help="the same for both (tulu's CPU default for generation)")
    ap.add_argument("--rounds", type=int, default=2, help="tulu, lm-eval, tulu, lm-eval ...")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS / torch threads for both (1 is steadier on shared cores)")
    ap.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON, help="python of the venv with lm-eval (env TULU_PEER_PYTHON)")
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared/data/eval")
    ap.add_argument("--peer-worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer_worker:
        peer_worker(*args.peer_worker)
        return
    require_peer(args.peer_python)

    from tulu_cli.demo import smollm2

    model = smollm2()
    env = child_env(args.threads)
    runs: dict[str, list[dict]] = {"tulu": [], "lm-eval": []}
    load = []
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        for r in range(args.rounds):
            load.append(os.getloadavg()[0])
            runs["tulu"].append(tulu_run(args, model, Path(tmp) / f"tulu{r}", env))
            if r == 0:
                first = runs["tulu"][0]["rows"]
                spec.write_text(json.dumps({
                    "model": str(model), "batch_size": args.batch_size, "threads": args.threads,
                    "max_new_tokens": args.max_new_tokens, "stop": runs["tulu"][0]["stop"],
                    "choices": first["mmlu_0shot"][0]["choices"],
                    "mc_prompts": [row["prompt"] for row in first["mmlu_0shot"]],
                    "gen_prompts": [row["prompt"] for row in first["gsm_direct"]],
                }))
            load.append(os.getloadavg()[0])
            runs["lm-eval"].append(peer_run(args, spec, Path(tmp) / f"peer{r}.json", env))
            print(f"round {r + 1}: tulu {runs['tulu'][-1]['eps']}, lm-eval {runs['lm-eval'][-1]['eps']}", file=sys.stderr, flush=True)

    tulu0, peer0 = runs["tulu"][0]["rows"], runs["lm-eval"][0]
    mc_same = sum(argmax(row["output"]) == argmax(s) for row, s in zip(tulu0["mmlu_0shot"], peer0["mc"]))
    mc_diff = max(abs(a - b) for row, s in zip(tulu0["mmlu_0shot"], peer0["mc"]) for a, b in zip(row["output"], s))
    gen_same = sum(row["output"] == text for row, text in zip(tulu0["gsm_direct"], peer0["gen"]))
    stable = all(run["rows"]["gsm_direct"][i]["output"] == row["output"] for run in runs["tulu"][1:]
                 for i, row in enumerate(tulu0["gsm_direct"])) and all(run["gen"] == peer0["gen"] for run in runs["lm-eval"][1:])
    agree = {"mmlu_0shot": f"{mc_same}/{len(peer0['mc'])} same letter, max abs Δ logprob {mc_diff:.1e}",
             "gsm_direct": f"{gen_same}/{len(peer0['gen'])} same text"}
    label = {"mmlu_0shot": f"MMLU 0-shot, {len(peer0['mc'])} questions x 4 letters",
             "gsm_direct": f"GSM8K direct 8-shot, {len(peer0['gen'])} questions, ≤{args.max_new_tokens} new tokens"}
    v = peer0["versions"]
    print(f"\nSmolLM2-135M-Instruct, chat format (tokenizer's template), fp32 CPU, batch {args.batch_size}, "
          f"{args.threads} torch thread(s), lm-eval {v['lm_eval']} (transformers {v['transformers']}, torch {v['torch']}); "
          f"runs alternating tulu, lm-eval x{args.rounds}; 1-min load average before each run: "
          f"{', '.join(f'{x:.1f}' for x in load)} (2 shared cores)\n")
    print("| workload | tulu examples/s (runs) | lm-eval examples/s (runs) | ratio tulu/lm-eval (mean) | agreement |")
    print("|---|---|---|---|---|")
    for t in TASKS:
        ours = [run["eps"][t] for run in runs["tulu"]]
        peer = [run["eps"][t] for run in runs["lm-eval"]]
        print(f"| {label[t]} | {', '.join(f'{x:.3f}' for x in ours)} | {', '.join(f'{x:.3f}' for x in peer)} | "
              f"{sum(ours) / sum(peer):.2f}x | {agree[t]} |")
    walls = {k: [run["wall"] for run in v] for k, v in runs.items()}
    print(f"| process wall s (load + both) | {', '.join(f'{x:.1f}' for x in walls['tulu'])} | "
          f"{', '.join(f'{x:.1f}' for x in walls['lm-eval'])} | {sum(walls['lm-eval']) / sum(walls['tulu']):.2f}x | "
          f"{'outputs the same in every run' if stable else 'outputs differ between runs of one engine'} |")


if __name__ == "__main__":
    main()
