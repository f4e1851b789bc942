"""hf backend generation: continuous batching vs the static batches it replaced, on SmolLM2-135M-Instruct.

Same GSM8K questions (../shared/data/eval/gsm, asked in the tokenizer's chat format, greedy, EOS
or --max-new-tokens ends a row), same backend, same rows in flight; only the scheduling differs:
  * static: transformers' generate over fixed batches, each running until its slowest row (the
    path tulu took before, and still takes for models whose generation config adds processing);
  * continuous: a finished row is written and leaves the KV cache at once, the next prompt takes
    its slot.
Printed per rows-in-flight: wall seconds, generated tokens/s, seconds until the first row was
written (text tokens counted by re-encoding), and whether both produced the same texts. One run each, continuous first.

    python benchmarks/hf_generation_batching.py [--examples 16] [--max-new-tokens 64] [--slots 1,4,8,16] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def run(backend, reqs, static: bool) -> tuple[float, float, list[list[str]]]:
    import tulu_cli.evaluation.backends.hf as hf

    real = hf.generation_is_plain
    hf.generation_is_plain = (lambda model, sample: False) if static else real  # static = the generate() path
    first: list[float] = []
    try:
        t = time.time()
        out = backend.generate(reqs, on_result=lambda i, o: first or first.append(time.time() - t))
        return time.time() - t, first[0], out
    finally:
        hf.generation_is_plain = real


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--slots", default="1,4,8,16")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--continuous-only", action="store_true", help="skip the static runs (to compare rows in flight)")
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared/data/eval")
    args = ap.parse_args()

    import torch

    from tulu_cli.demo import smollm2
    from tulu_cli.evaluation.backends import GenerationRequest
    from tulu_cli.evaluation.backends.hf import HFBackend

    if args.threads:
        torch.set_num_threads(args.threads)
    lines = (args.data_dir / "gsm/test.jsonl").read_text().splitlines()[: args.examples]
    backend = HFBackend(str(smollm2()), batch_size=1)
    tok = backend.tokenizer
    reqs = [
        GenerationRequest(
            prompt=tok.apply_chat_template([{"role": "user", "content": json.loads(x)["question"]}], tokenize=False, add_generation_prompt=True),
            max_new_tokens=args.max_new_tokens,
        )
        for x in lines
    ]
    print(f"SmolLM2-135M-Instruct, {len(reqs)} GSM8K questions, greedy, {args.max_new_tokens} new tokens at most, "
          f"torch threads {torch.get_num_threads()}")
    print("| rows in flight | static s | continuous s | ratio | static text tok/s | continuous text tok/s | first row static s | first row continuous s | same texts |")
    print("|---|---|---|---|---|---|---|---|---|")
    for slots in [int(s) for s in args.slots.split(",")]:
        backend.batch_size = slots
        c_wall, c_first, c_out = run(backend, reqs, static=False)
        tokens = sum(len(tok(o[0], add_special_tokens=False)["input_ids"]) for o in c_out)  # tokens of the texts
        if args.continuous_only:
            print(f"| {slots} | | {c_wall:.1f} | | | {tokens / c_wall:.1f} | | {c_first:.1f} | |", flush=True)
            continue
        s_wall, s_first, s_out = run(backend, reqs, static=True)
        same = sum(a == b for a, b in zip(s_out, c_out))
        print(f"| {slots} | {s_wall:.1f} | {c_wall:.1f} | {s_wall / c_wall:.2f}x | {tokens / s_wall:.1f} | {tokens / c_wall:.1f} "
              f"| {s_first:.1f} | {c_first:.1f} | {same}/{len(reqs)} |", flush=True)


if __name__ == "__main__":
    main()
