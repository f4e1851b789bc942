"""`tulu train` command group: sft, lora, qlora, dpo and plot (heavy imports stay inside the functions)."""

from __future__ import annotations

from pathlib import Path

import typer

from tulu_cli.cli._common import TuluTyper, print_json, print_resolved
from tulu_cli.cli._schema import Call, add_command
from tulu_cli.options.dpo import DPOOptions
from tulu_cli.options.peft import LoraOptions, QLoraOptions
from tulu_cli.options.train import PlotOptions, SFTOptions, SlurmFlag


def run_training(call: Call) -> None:
    """Resolve, dry-run or launch: the body of every `tulu train` recipe command."""
    slurm, dry_run = call.extras["slurm"], call.dry_run
    # with --slurm the script sets the address on each node (first host of the allocation)
    opts = call.options(**({"main_process_ip": "$MASTER_ADDR"} if slurm is not None else {}))
    if slurm is not None:
        from tulu_cli.paths import check_output
        from tulu_cli.train import slurm as sbatch

        # both files this writes, checked before either is (the nodes run the training preflight)
        check_output(Path(slurm), "--slurm", "file")
        check_output(sbatch.config_path(slurm), "--slurm", "file")
        if dry_run:
            typer.echo(sbatch.script_text(opts, sbatch.config_path(slurm)), nl=False)
            return
        script, cfg = sbatch.write(opts, slurm)
        typer.echo(f"wrote {script} and {cfg}; submit with: sbatch {script}")
        return
    if dry_run:
        from tulu_cli.train.launch import describe, preflight

        preflight(opts)  # every check the real run makes before its first write
        print_resolved(opts)
        from rich.console import Console

        Console(stderr=True).print("[bold]launch[/bold]")
        print_json(describe(opts))
        return
    from tulu_cli.train.launch import launch

    out = launch(opts)
    typer.echo(f"done: {out}")


def sft(call: Call) -> None:
    """Full-parameter supervised fine-tuning on chat data (masked loss on assistant turns).

    One process runs in this Python; several go through [bold]accelerate launch[/bold]
    (DDP, or DeepSpeed ZeRO-2/3). The run folder gets the model (safetensors), the tokenizer
    with its chat template, [bold]metrics.jsonl[/bold], [bold]tulu_run.json[/bold] and checkpoints.

    Example (the Tulu 2 7B recipe; see examples/):

        tulu train sft -c examples/tulu2_7b_sft.yaml --train-files tulu_v2_mix.jsonl -o runs/tulu2-7b

    On a laptop CPU:

        tulu train sft -m tiny/ -t data.jsonl --dtype fp32 --max-steps 20 -o runs/tiny --dry-run
    """
    run_training(call)


def lora(call: Call) -> None:
    """LoRA fine-tuning on chat data: SFT's loss and loop, a low-rank adapter on a frozen base.

    Works with one process, DDP (--num-processes N) and DeepSpeed ZeRO-3 (the frozen base is
    sharded too). Learning rate default 1e-4 (the Tulu 2 LoRA recipe). The run folder gets the
    adapter in PEFT format ([bold]adapter_config.json[/bold], [bold]adapter_model.safetensors[/bold]) and
    the tokenizer; merge it with [bold]tulu weights merge --adapter RUN_DIR[/bold].

    Example (Tulu 2 LoRA recipe, see examples/):

        tulu train lora -c examples/lora_tulu2_7b.yaml --train-files tulu_v2_mix.jsonl -o runs/lora-7b

    On CPU:

        tulu train lora -m tiny/ -t data.jsonl --dtype fp32 --lora-rank 8 --max-steps 20 -o runs/lora
    """
    run_training(call)


def qlora(call: Call) -> None:
    """QLoRA: the base loaded in 4-bit NF4 with double quantization (bitsandbytes), LoRA on top.

    Data parallel only: every process holds the whole 4-bit base (--num-processes N runs
    DDP); DeepSpeed options are refused because ZeRO cannot shard 4-bit weights. Gradient
    checkpointing is on by default. Saves the adapter in PEFT format plus the tokenizer;
    [bold]tulu weights merge --qlora[/bold] merges it into the dequantized base.

    Example (Tulu 2 QLoRA recipe, see examples/):

        tulu train qlora -c examples/qlora_tulu2_70b.yaml --train-files tulu_v2_mix.jsonl -o runs/qlora-70b

    On CPU (bitsandbytes runs 4-bit there too):

        tulu train qlora -m tiny/ -t data.jsonl --dtype fp32 --lora-rank 8 --max-steps 20 -o runs/qlora
    """
    run_training(call)


def dpo(call: Call) -> None:
    """Direct preference optimisation on chosen/rejected pairs (the Tulu 2 DPO recipe).

    --train-files holds rows {"chosen": [messages], "rejected": [messages]} (shared prompt
    turns, as `tulu data prepare` writes UltraFeedback) or {"prompt", "chosen", "rejected"}
    strings. Pairs with identical sides or no response token left are reported and dropped.
    Metrics per step: loss, rewards/chosen, rewards/rejected, rewards/accuracy,
    rewards/margin, lr, tokens/s. Full fine-tuning saves the model; --lora/--qlora the adapter.

    Example (Tulu 2 DPO on UltraFeedback, see examples/):

        tulu train dpo -c examples/dpo_tulu2_7b.yaml --model runs/tulu2-7b -o runs/tulu2-dpo-7b

    On CPU:

        tulu train dpo -m runs/tiny-sft -t prefs.jsonl --dtype fp32 --lora --max-steps 20 -o runs/dpo
    """
    run_training(call)


def plot(call: Call) -> None:
    """Plot loss and learning rate against step for a run (PNG).

    Example:

        tulu train plot runs/tulu2-7b            # writes runs/tulu2-7b/metrics.png
    """
    opts = call.options()
    from tulu_cli.paths import check_output
    from tulu_cli.train.plot import read_metrics

    check_output(Path(opts.output) if opts.output else Path(opts.run_dir) / "metrics.png", "--output", "file")
    read_metrics(opts.run_dir)  # a missing or garbled metrics.jsonl is refused by --dry-run too
    if call.dry_run:
        print_resolved(opts)
        return
    from tulu_cli.train.plot import plot_run

    typer.echo(str(plot_run(opts.run_dir, opts.output, opts.dpi)))


app = TuluTyper(help="Fine-tune: full SFT, LoRA, QLoRA, DPO; plot a run.")
add_command(app, "sft", SFTOptions, sft, extras=SlurmFlag)
add_command(app, "lora", LoraOptions, lora, extras=SlurmFlag)
add_command(app, "qlora", QLoraOptions, qlora, extras=SlurmFlag)
add_command(app, "dpo", DPOOptions, dpo, extras=SlurmFlag)
add_command(app, "plot", PlotOptions, plot)
