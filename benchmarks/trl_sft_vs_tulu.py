"""`tulu train sft` vs TRL's SFTTrainer on SmolLM2-135M-Instruct: same rows, max length, batch, steps, lr, fp32 CPU.

Data: the first --examples rows of tulu quickstart's Alpaca sample (tulu_cli/resources/quickstart),
converted by `tulu data prepare alpaca`; --steps x --batch defaults to exactly one pass, so both see
every row once. Both train on the model's own chat template (tulu: --template tokenizer; TRL: the
rows as conversational prompt/completion, which TRL renders with the tokenizer's template) with the
loss on the reply only, full fine-tuning, AdamW, linear decay, no warm-up, no weight decay, no
gradient checkpointing (TRL's default turns it on; tulu's leaves it off), --threads torch threads.

Each run is a fresh process (tulu: the `tulu train sft` CLI; TRL: this file with --peer-worker under
--peer-python, the peer venv), alternating tulu, TRL, tulu, TRL (--rounds). Printed per run: tokens
(non-padding input tokens, each engine's own count), training-loop seconds (tulu: tulu_run.json's
train_seconds; TRL: the time around ``trainer.train()``), tokens/s, the process tree's peak RSS
(``os.wait4``: the largest single process, the training worker), its CPU seconds, and the last step's loss.

The peer venv (never install trl into tulu's environment: it may move torch/transformers):

    python -m venv ~/.cache/tulu/venv-peers
    ~/.cache/tulu/venv-peers/bin/pip install torch==2.13.0   # the CPU wheel; unpinned torch pulls a CUDA build
    ~/.cache/tulu/venv-peers/bin/pip install lm-eval==0.4.13 trl==1.16.0 transformers==5.24.0 \\
        accelerate==1.15.0 datasets==5.2.0 tokenizers==0.23.3 psutil

    python benchmarks/trl_sft_vs_tulu.py [--peer-python PATH] [--examples 32] [--batch 4] [--steps 8] [--rounds 2]
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


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB of the largest process in the child's tree, CPU seconds of the tree).

    CPU seconds are steadier than wall time on cores that other jobs share."""
    t = time.time()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **env})
        _, status, usage = os.wait4(proc.pid, 0)  # the rusage of this child and the descendants it reaped
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"{' '.join(cmd[:4])} ... failed:\n{err.read()[-3000:]}")
    return time.time() - t, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def prepare(tmp: Path, examples: int) -> tuple[Path, Path]:
    """The tulu chat-format rows and the same rows as TRL's conversational prompt/completion."""
    tulu_data, trl_data = tmp / "sft.jsonl", tmp / "trl.jsonl"
    src = REPO / "tulu_cli/resources/quickstart/alpaca_tiny.json"
    run_child([sys.executable, "-m", "tulu_cli.cli.main", "data", "prepare", "alpaca", "--input", str(src),
               "-o", str(tmp / "all.jsonl")], {"PYTHONPATH": str(REPO)})
    rows = [json.loads(x) for x in (tmp / "all.jsonl").read_text().splitlines()][:examples]
    with open(tulu_data, "w") as f, open(trl_data, "w") as g:
        for row in rows:
            msgs = row["messages"]
            assert msgs[-1]["role"] == "assistant" and all(m["role"] != "assistant" for m in msgs[:-1])
            f.write(json.dumps(row) + "\n")
            g.write(json.dumps({"prompt": msgs[:-1], "completion": msgs[-1:]}) + "\n")
    return tulu_data, trl_data


def tulu_run(args: argparse.Namespace, model: Path, data: Path, out: Path, env: dict[str, str]) -> dict:
    wall, rss, cpu = run_child([
        sys.executable, "-m", "tulu_cli.cli.main", "train", "sft", "-m", str(model), "-t", str(data), "--template", "tokenizer",
        "--dtype", "fp32", "--cpu", "--cpu-threads", str(args.threads), "--max-seq-length", str(args.max_length),
        "-b", str(args.batch), "--max-steps", str(args.steps), "--lr", str(args.lr), "--lr-scheduler", "linear",
        "--warmup-ratio", "0", "--weight-decay", "0", "--seed", str(args.seed), "--logging-steps", "1",
        "--no-save-model", "--cache-dir", str(out.parent / "cache"), "-o", str(out)], {**env, "PYTHONPATH": str(REPO)})
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    run = json.loads((out / "tulu_run.json").read_text())
    return {"wall": wall, "rss": rss, "cpu": cpu, "tokens": sum(s["tokens"] for s in steps), "seconds": run["train_seconds"],
            "steps": run["steps_done"], "loss": steps[-1]["loss"]}


def peer_run(args: argparse.Namespace, model: Path, data: Path, out: Path, env: dict[str, str]) -> dict:
    spec = out.with_suffix(".spec.json")
    spec.write_text(json.dumps({"model": str(model), "data": str(data), "out": str(out), **{
        k: getattr(args, k) for k in ("max_length", "batch", "steps", "lr", "seed", "threads")}}))
    wall, rss, cpu = run_child([args.peer_python, __file__, "--peer-worker", str(spec)], env)
    return {"wall": wall, "rss": rss, "cpu": cpu, **json.loads((out / "result.json").read_text())}


def peer_worker(spec_path: str) -> None:
    """Runs under the peer venv: TRL only, no tulu import."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    tok = AutoTokenizer.from_pretrained(spec["model"])
    ds = load_dataset("json", data_files=spec["data"], split="train")
    cfg = SFTConfig(output_dir=spec["out"], per_device_train_batch_size=spec["batch"], max_steps=spec["steps"],
                    learning_rate=spec["lr"], lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
                    max_length=spec["max_length"], gradient_checkpointing=False, seed=spec["seed"],
                    logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, bf16=False, fp16=False,
                    dataloader_num_workers=0, include_num_input_tokens_seen="non_padding")
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok)
    t = time.time()
    trainer.train()
    seconds = time.time() - t
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    Path(spec["out"], "result.json").write_text(json.dumps({
        "tokens": int(trainer.state.num_input_tokens_seen), "seconds": seconds, "steps": trainer.state.global_step,
        "loss": losses[-1], "versions": {"trl": __import__("trl").__version__,
                                         "transformers": __import__("transformers").__version__, "torch": torch.__version__}}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-5, help="the Tulu 2 SFT learning rate")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--rounds", type=int, default=2, help="tulu, TRL, tulu, TRL ...")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both (1 is steadier on shared cores)")
    ap.add_argument("--peer-python", default=DEFAULT_PEER_PYTHON, help="python of the venv with trl (env TULU_PEER_PYTHON)")
    ap.add_argument("--peer-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer_worker:
        peer_worker(args.peer_worker)
        return
    require_peer(args.peer_python)

    from tulu_cli.demo import smollm2

    model = smollm2()
    env = child_env(args.threads)
    runs: list[tuple[str, dict]] = []
    load = []
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        tulu_data, trl_data = prepare(tmp, args.examples)
        for r in range(args.rounds):
            load.append(os.getloadavg()[0])
            runs.append(("tulu", tulu_run(args, model, tulu_data, tmp / f"tulu{r}", env)))
            print(f"tulu: {runs[-1][1]}", file=sys.stderr, flush=True)
            load.append(os.getloadavg()[0])
            runs.append(("TRL", peer_run(args, model, trl_data, tmp / f"trl{r}", env)))
            print(f"TRL: {runs[-1][1]}", file=sys.stderr, flush=True)

    v = next(res["versions"] for name, res in runs if name == "TRL")
    print(f"\nSmolLM2-135M-Instruct full SFT, {args.examples} Alpaca rows (quickstart sample) in its chat template, "
          f"max length {args.max_length}, batch {args.batch}, {args.steps} steps, lr {args.lr:g} linear, fp32 CPU, "
          f"{args.threads} torch thread(s); TRL {v['trl']} (transformers {v['transformers']}, torch {v['torch']}); "
          f"runs alternating; 1-min load average before each run: {', '.join(f'{x:.1f}' for x in load)} (2 shared cores)\n")
    print("| run | engine | steps | tokens | train s | tokens/s | process wall s | process CPU s | peak RSS MB | last-step loss |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, (name, res) in enumerate(runs):
        print(f"| {i + 1} | {name} | {res['steps']} | {res['tokens']} | {res['seconds']:.1f} | {res['tokens'] / res['seconds']:.0f} | "
              f"{res['wall']:.1f} | {res['cpu']:.1f} | {res['rss']:.0f} | {res['loss']:.4f} |")
    tps = {k: sum(r["tokens"] for n, r in runs if n == k) / sum(r["seconds"] for n, r in runs if n == k) for k in ("tulu", "TRL")}
    rss = {k: max(r["rss"] for n, r in runs if n == k) for k in ("tulu", "TRL")}
    cpu = {k: sum(r["cpu"] for n, r in runs if n == k) for k in ("tulu", "TRL")}
    print(f"| all | tulu/TRL | | | | {tps['tulu'] / tps['TRL']:.2f}x | | {cpu['tulu'] / cpu['TRL']:.2f}x | "
          f"{rss['tulu'] / rss['TRL']:.2f}x | |")


if __name__ == "__main__":
    main()
