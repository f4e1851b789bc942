"""`tulu train` command group: `sft` and `plot` (heavy imports stay inside the functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tulu_cli.cli._common import ConfigOpt, DryRunOpt, TuluTyper, print_json, print_resolved

app = TuluTyper(help="Fine-tune: full SFT, LoRA, QLoRA, DPO; plot a run.")

M = "Model"
D = "Data"
O = "Optimisation"
C = "Logging and checkpoints"
L = "Launch and DeepSpeed"


def _opt(*names: str, help: str, panel: str, **kw):
    return typer.Option(*names, help=help, rich_help_panel=panel, show_default=False, **kw)


# Flags shared by every training command (LoRA/QLoRA/DPO reuse these aliases).
ModelOpt = Annotated[Optional[str], _opt("--model", "-m", help="Model folder or hub name to fine-tune. Required.", panel=M)]
TokenizerOpt = Annotated[Optional[str], _opt("--tokenizer", help="Tokenizer folder or name. Default: the model's.", panel=M)]
ConfigNameOpt = Annotated[Optional[str], _opt("--config-name", help="Model config to use instead of the model's own. Default: none.", panel=M)]
RevisionOpt = Annotated[Optional[str], _opt("--revision", help="Hub revision (branch, tag, commit). Default: main.", panel=M)]
TrustOpt = Annotated[Optional[bool], _opt("--trust-remote-code/--no-trust-remote-code", help="Allow model code from the hub. Default: no.", panel=M)]
SlowTokOpt = Annotated[Optional[bool], _opt("--use-slow-tokenizer/--no-use-slow-tokenizer", help="Use the Python tokenizer. Default: fast.", panel=M)]
DtypeOpt = Annotated[Optional[str], _opt("--dtype", help="bf16, fp16 (GPU only) or fp32. Default: bf16.", panel=M)]
AttnOpt = Annotated[Optional[str], _opt("--attn-implementation", help="sdpa, eager or flash_attention_2 (needs flash-attn). Default: sdpa.", panel=M)]
LowMemOpt = Annotated[Optional[bool], _opt("--low-cpu-mem-usage/--no-low-cpu-mem-usage", help="Load weights without a full random init. Default: no.", panel=M)]
GradCkptOpt = Annotated[Optional[bool], _opt("--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations to save memory. Default: no.", panel=M)]

TrainFilesOpt = Annotated[Optional[list[str]], _opt("--train-files", "-t", help="JSONL file of messages or prompt/completion rows (repeat for several; a prepared mixture is one). Required unless --dataset.", panel=D)]
DatasetOpt = Annotated[Optional[str], _opt("--dataset", help="Hugging Face dataset with a 'messages' column (e.g. allenai/tulu-v2-sft-mixture). Default: none.", panel=D)]
DatasetConfigOpt = Annotated[Optional[str], _opt("--dataset-config", help="Configuration name of --dataset. Default: none.", panel=D)]
DatasetSplitOpt = Annotated[Optional[str], _opt("--dataset-split", help="Split of --dataset. Default: train.", panel=D)]
TemplateOpt = Annotated[Optional[str], _opt("--template", help="Chat template used to encode conversations. Default: tulu.", panel=D)]
MaxLenOpt = Annotated[Optional[int], _opt("--max-seq-length", help="Truncate examples to this many tokens. Default: 2048.", panel=D)]
MaxSamplesOpt = Annotated[Optional[int], _opt("--max-train-samples", help="Use only the first N examples. Default: all.", panel=D)]
AddBosOpt = Annotated[Optional[bool], _opt("--add-bos/--no-add-bos", help="Prepend BOS when the tokenizer does not (OLMo). Default: no.", panel=D)]
PackingOpt = Annotated[Optional[bool], _opt("--packing/--no-packing", help="Padding-free batches: examples concatenated, attention kept within each. Default: no.", panel=D)]
WorkersOpt = Annotated[Optional[int], _opt("--preprocessing-num-workers", help="Processes for tokenization. Default: 1.", panel=D)]
CacheDirOpt = Annotated[Optional[Path], _opt("--cache-dir", help="Tokenized-data cache. Default: ~/.cache/tulu/tokenized (or $TULU_CACHE/tokenized).", panel=D)]
OverwriteCacheOpt = Annotated[Optional[bool], _opt("--overwrite-cache/--no-overwrite-cache", help="Re-tokenize even when cached. Default: no.", panel=D)]

BatchOpt = Annotated[Optional[int], _opt("--per-device-batch-size", "-b", help="Examples per process per micro-batch. Default: 1.", panel=O)]
AccumOpt = Annotated[Optional[int], _opt("--gradient-accumulation-steps", help="Micro-batches per optimizer step. Default: 1 (or derived from --total-batch-size).", panel=O)]
TotalBatchOpt = Annotated[Optional[int], _opt("--total-batch-size", help="Examples per optimizer step over all processes; accumulation is derived. Default: none.", panel=O)]
LrOpt = Annotated[Optional[float], _opt("--learning-rate", "--lr", help="Peak learning rate. Default: 2e-5.", panel=O)]
SchedOpt = Annotated[Optional[str], _opt("--lr-scheduler", help="linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt. Default: linear.", panel=O)]
WarmupRatioOpt = Annotated[Optional[float], _opt("--warmup-ratio", help="Fraction of steps spent warming up. Default: 0.03.", panel=O)]
WarmupStepsOpt = Annotated[Optional[int], _opt("--warmup-steps", help="Warm-up steps (overrides --warmup-ratio). Default: none.", panel=O)]
WdOpt = Annotated[Optional[float], _opt("--weight-decay", help="AdamW weight decay (not on biases and norms). Default: 0.", panel=O)]
Beta1Opt = Annotated[Optional[float], _opt("--adam-beta1", help="AdamW beta1 (first-moment decay). Default: 0.9.", panel=O)]
Beta2Opt = Annotated[Optional[float], _opt("--adam-beta2", help="AdamW beta2 (second-moment decay). Default: 0.999.", panel=O)]
EpsOpt = Annotated[Optional[float], _opt("--adam-epsilon", help="AdamW epsilon (added to the root of the second moment). Default: 1e-8.", panel=O)]
EpochsOpt = Annotated[Optional[int], _opt("--num-epochs", help="Passes over the data. Default: 2.", panel=O)]
MaxStepsOpt = Annotated[Optional[int], _opt("--max-steps", help="Stop after this many optimizer steps (overrides epochs). Default: none.", panel=O)]
ClipOpt = Annotated[Optional[float], _opt("--max-grad-norm", help="Clip the gradient norm to this. Default: no clipping.", panel=O)]
ReduceOpt = Annotated[Optional[str], _opt("--reduce-loss", help="mean: token mean per micro-batch (open-instruct); sum: every token of the accumulated batch weighs the same. Default: mean.", panel=O)]
SeedOpt = Annotated[Optional[int], _opt("--seed", help="Random seed (weights init of new tokens, data order). Default: 42.", panel=O)]

OutputOpt = Annotated[Optional[Path], _opt("--output-dir", "-o", help="Run folder: model, tokenizer, metrics.jsonl, tulu_run.json, checkpoints/. Default: output.", panel=C)]
OverwriteOpt = Annotated[Optional[bool], _opt("--overwrite-output-dir/--no-overwrite-output-dir", help="Start over in a folder that holds a previous run. Default: no.", panel=C)]
LogStepsOpt = Annotated[Optional[int], _opt("--logging-steps", help="Write metrics every N steps. Default: 1.", panel=C)]
CkptOpt = Annotated[Optional[str], _opt("--checkpointing-steps", help="Save the full training state every N steps, or 'epoch'. Default: never.", panel=C)]
KeepOpt = Annotated[Optional[int], _opt("--keep-last-checkpoints", help="Keep only the newest N checkpoints. Default: all.", panel=C)]
ResumeOpt = Annotated[Optional[str], _opt("--resume", help="'auto' (latest complete checkpoint in --output-dir) or a checkpoint folder. Default: start fresh.", panel=C)]
ReportOpt = Annotated[Optional[str], _opt("--report-to", help="none, tensorboard, wandb or all. Default: none.", panel=C)]
RunNameOpt = Annotated[Optional[str], _opt("--run-name", help="Name for tensorboard/wandb. Default: tulu-<recipe>.", panel=C)]
SaveModelOpt = Annotated[Optional[bool], _opt("--save-model/--no-save-model", help="Write the final model. Default: yes.", panel=C)]

NprocOpt = Annotated[Optional[int], _opt("--num-processes", "-n", help="Processes over all machines (GPUs; CPU processes here). Default: 1.", panel=L)]
MachinesOpt = Annotated[Optional[int], _opt("--num-machines", help="Machines. Default: 1.", panel=L)]
MachineRankOpt = Annotated[Optional[int], _opt("--machine-rank", help="Rank of this machine. Default: 0.", panel=L)]
IpOpt = Annotated[Optional[str], _opt("--main-process-ip", help="Address of machine rank 0 (multi-machine). Default: none.", panel=L)]
PortOpt = Annotated[Optional[int], _opt("--main-process-port", help="Port of the rendezvous. Default: a free port (one machine), 29500 otherwise.", panel=L)]
StageOpt = Annotated[Optional[int], _opt("--deepspeed-stage", help="DeepSpeed ZeRO stage 0, 2 or 3. Default: no DeepSpeed.", panel=L)]
OffOptOpt = Annotated[Optional[bool], _opt("--offload-optimizer/--no-offload-optimizer", help="ZeRO 2/3: optimizer state in CPU memory. Default: no.", panel=L)]
OffParOpt = Annotated[Optional[bool], _opt("--offload-params/--no-offload-params", help="ZeRO 3: parameters in CPU memory. Default: no.", panel=L)]
DsConfigOpt = Annotated[Optional[Path], _opt("--deepspeed-config", help="Your own DeepSpeed JSON ('auto' values are filled in). Default: generated.", panel=L)]
TimeoutOpt = Annotated[Optional[int], _opt("--timeout", help="Seconds a process may wait for the others (e.g. tokenization). Default: 1800.", panel=L)]
ThreadsOpt = Annotated[Optional[int], _opt("--cpu-threads", help="torch threads per process; 1 is fastest for small models on a busy CPU. Default: torch's choice.", panel=L)]
SlurmOpt = Annotated[Optional[Path], _opt("--slurm", help="Write a Slurm batch script FILE.sbatch (and FILE.yaml with these options) running this command on --num-machines nodes, rendezvous from Slurm; no training here. Default: none.", panel=L)]
CpuOpt = Annotated[Optional[bool], _opt("--cpu/--no-cpu", help="Force CPU training. Default: CPU only when no GPU is visible.", panel=L)]


# Every training command's flags, in --help order; a command adds its own after the Model panel.
COMMON_FLAGS: dict[str, object] = {
    "model": ModelOpt, "tokenizer": TokenizerOpt, "config_name": ConfigNameOpt, "revision": RevisionOpt,
    "trust_remote_code": TrustOpt, "use_slow_tokenizer": SlowTokOpt, "dtype": DtypeOpt, "attn_implementation": AttnOpt,
    "low_cpu_mem_usage": LowMemOpt, "gradient_checkpointing": GradCkptOpt,
    "train_files": TrainFilesOpt, "dataset": DatasetOpt, "dataset_config": DatasetConfigOpt, "dataset_split": DatasetSplitOpt,
    "template": TemplateOpt, "max_seq_length": MaxLenOpt, "max_train_samples": MaxSamplesOpt, "add_bos": AddBosOpt,
    "packing": PackingOpt, "preprocessing_num_workers": WorkersOpt, "cache_dir": CacheDirOpt, "overwrite_cache": OverwriteCacheOpt,
    "per_device_batch_size": BatchOpt, "gradient_accumulation_steps": AccumOpt, "total_batch_size": TotalBatchOpt,
    "learning_rate": LrOpt, "lr_scheduler": SchedOpt, "warmup_ratio": WarmupRatioOpt, "warmup_steps": WarmupStepsOpt,
    "weight_decay": WdOpt, "adam_beta1": Beta1Opt, "adam_beta2": Beta2Opt, "adam_epsilon": EpsOpt, "num_epochs": EpochsOpt, "max_steps": MaxStepsOpt, "max_grad_norm": ClipOpt,
    "reduce_loss": ReduceOpt, "seed": SeedOpt,
    "output_dir": OutputOpt, "overwrite_output_dir": OverwriteOpt, "logging_steps": LogStepsOpt,
    "checkpointing_steps": CkptOpt, "keep_last_checkpoints": KeepOpt, "resume": ResumeOpt, "report_to": ReportOpt,
    "run_name": RunNameOpt, "save_model": SaveModelOpt,
    "num_processes": NprocOpt, "num_machines": MachinesOpt, "machine_rank": MachineRankOpt, "main_process_ip": IpOpt,
    "main_process_port": PortOpt, "deepspeed_stage": StageOpt, "offload_optimizer": OffOptOpt, "offload_params": OffParOpt,
    "deepspeed_config": DsConfigOpt, "timeout": TimeoutOpt, "cpu": CpuOpt, "cpu_threads": ThreadsOpt, "slurm": SlurmOpt,
}  # fmt: skip
_MODEL_PANEL_END = "gradient_checkpointing"


def training_command(app, name: str, own_flags: dict[str, object] | None = None):
    """Register ``fn(config, dry_run, flags)`` as `tulu train NAME` with the common flags plus ``own_flags``.

    Typer reads the parameters from the signature, so the command gets a generated one: config,
    dry-run, the Model flags, ``own_flags`` (a name also in COMMON_FLAGS replaces that flag, e.g. a
    different default in its help), then the rest. ``flags`` maps option names to values (None = not given).
    """
    import inspect

    own = dict(own_flags or {})
    order: dict[str, object] = {}
    for key, alias in COMMON_FLAGS.items():
        order[key] = own.pop(key, alias)
        if key == _MODEL_PANEL_END:
            order.update({k: v for k, v in own.items() if k not in COMMON_FLAGS})
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("config", kw, default=None, annotation=ConfigOpt),
              inspect.Parameter("dry_run", kw, default=False, annotation=DryRunOpt)]
    params += [inspect.Parameter(k, kw, default=None, annotation=a) for k, a in order.items()]

    def decorate(fn):
        def command(**values) -> None:
            config, dry_run = values.pop("config"), values.pop("dry_run")
            values["use_cpu"] = values.pop("cpu")
            fn(config, dry_run, values)

        command.__signature__ = inspect.Signature(params, return_annotation=None)
        command.__annotations__ = {p.name: p.annotation for p in params}
        command.__name__, command.__qualname__, command.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        command.__module__ = fn.__module__
        app.command(name)(command)
        return fn

    return decorate


def run_training(options_cls, config, flags: dict, dry_run: bool) -> None:
    """Resolve, dry-run or launch: the body shared by every `tulu train` command."""
    from tulu_cli.options import resolve_options

    slurm = flags.pop("slurm", None)
    if slurm is not None:
        # the script sets the address on each node (first host of the allocation)
        flags = {**flags, "main_process_ip": "$MASTER_ADDR"}
    opts = resolve_options(options_cls, config, flags)
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


@training_command(app, "sft")
def sft(config: Optional[Path], dry_run: bool, flags: dict) -> None:
    """Full-parameter supervised fine-tuning on chat data (masked loss on assistant turns).

    One process runs in this Python; several go through [bold]accelerate launch[/bold]
    (DDP, or DeepSpeed ZeRO-2/3). The run folder gets the model (safetensors), the tokenizer
    with its chat template, [bold]metrics.jsonl[/bold], [bold]tulu_run.json[/bold] and checkpoints.

    Example (the Tulu 2 7B recipe; see examples/):

        tulu train sft -c examples/tulu2_7b_sft.yaml --train-files tulu_v2_mix.jsonl -o runs/tulu2-7b

    On a laptop CPU:

        tulu train sft -m tiny/ -t data.jsonl --dtype fp32 --max-steps 20 -o runs/tiny --dry-run
    """
    from tulu_cli.options.train import SFTOptions

    run_training(SFTOptions, config, flags, dry_run)


@app.command("plot")
def plot(
    run_dir: Annotated[Path, typer.Argument(help="Run folder holding metrics.jsonl.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="PNG to write. Default: RUN_DIR/metrics.png.", show_default=False)] = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Plot loss and learning rate against step for a run (PNG).

    Example:

        tulu train plot runs/tulu2-7b            # writes runs/tulu2-7b/metrics.png
    """
    from tulu_cli.options import resolve_options
    from tulu_cli.options.train import PlotOptions

    opts = resolve_options(PlotOptions, config, {"run_dir": run_dir, "output": output})
    from tulu_cli.paths import check_output
    from tulu_cli.train.plot import read_metrics

    check_output(Path(opts.output) if opts.output else Path(opts.run_dir) / "metrics.png", "--output", "file")
    read_metrics(opts.run_dir)  # a missing or garbled metrics.jsonl is refused by --dry-run too
    if dry_run:
        print_resolved(opts)
        return
    from tulu_cli.train.plot import plot_run

    typer.echo(str(plot_run(opts.run_dir, opts.output)))


# LoRA/QLoRA and DPO live in their own modules, which add their commands to `app` when imported;
# they use the aliases and `training_command` above, all defined before this line.
import tulu_cli.cli.train_peft  # noqa: E402,F401
import tulu_cli.cli.train_dpo  # noqa: E402,F401
