"""Options of `tulu train ...`: one validated model shared by every recipe, SFT's on top.

LoRA, QLoRA and DPO subclass :class:`TrainOptions` and add their own fields; the launcher,
the loop and the checkpoints only read the fields defined here.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Optional, Union

from pydantic import field_validator, model_validator

from tulu_cli.options.base import Options, internal, opt

# --help panels
M, D, O, C, L = "Model", "Data", "Optimisation", "Logging and checkpoints", "Launch and DeepSpeed"

Scheduler = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"
]


class TrainOptions(Options):
    """Everything a training run needs that is not specific to one recipe."""

    cli_panels: ClassVar[tuple[str, ...]] = (M, "DPO", "LoRA", "QLoRA (4-bit base)", D, O, C, L)

    # model and tokenizer
    model: str = opt(help="Model folder or hub name to fine-tune.", panel=M, flags=("--model", "-m"))
    tokenizer: Optional[str] = opt(None, help="Tokenizer folder or name.", panel=M, default_help="the model's")
    config_name: Optional[str] = opt(None, help="Model config to use instead of the model's own.", panel=M)
    revision: Optional[str] = opt(None, help="Hub revision (branch, tag, commit).", panel=M, default_help="main")
    trust_remote_code: bool = opt(False, help="Allow model code from the hub.", panel=M)
    use_slow_tokenizer: bool = opt(False, help="Use the Python tokenizer instead of the fast one.", panel=M)
    dtype: Literal["bf16", "fp16", "fp32"] = opt("bf16", help="bf16, fp16 (GPU only) or fp32.", panel=M)
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = opt("sdpa", help="sdpa, eager or flash_attention_2 (needs flash-attn).", panel=M)
    low_cpu_mem_usage: bool = opt(False, help="Load weights without a full random init.", panel=M)
    gradient_checkpointing: bool = opt(False, help="Recompute activations to save memory.", panel=M)

    # data
    train_files: list[str] = opt(
        help="JSONL file of messages or prompt/completion rows (repeat for several; a prepared mixture is one).",
        panel=D, flags=("--train-files", "-t"), required="unless --dataset", default_factory=list,
    )
    dataset: Optional[str] = opt(None, help="Hugging Face dataset with a 'messages' column (e.g. allenai/tulu-v2-sft-mixture).", panel=D)
    dataset_config: Optional[str] = opt(None, help="Configuration name of --dataset.", panel=D)
    dataset_split: str = opt("train", help="Split of --dataset.", panel=D)
    template: str = opt("tulu", help="Chat template used to encode conversations.", panel=D)
    max_seq_length: int = opt(2048, help="Truncate examples to this many tokens.", panel=D, gt=0)
    max_train_samples: Optional[int] = opt(None, help="Use only the first N examples.", panel=D, default_help="all", gt=0)
    add_bos: bool = opt(False, help="Prepend BOS when the tokenizer does not (OLMo).", panel=D)
    packing: bool = opt(False, help="Padding-free batches: examples concatenated, attention kept within each.", panel=D)
    preprocessing_num_workers: Optional[int] = opt(None, help="Processes for tokenization.", panel=D, default_help="1", gt=0)
    cache_dir: Optional[Path] = opt(None, help="Tokenized-data cache.", panel=D, default_help="$TULU_CACHE/tokenized, else $XDG_CACHE_HOME/tulu/tokenized, else ~/.cache/tulu/tokenized")
    overwrite_cache: bool = opt(False, help="Re-tokenize even when cached.", panel=D)

    # optimisation
    per_device_batch_size: int = opt(1, help="Examples per process per micro-batch.", panel=O, flags=("--per-device-batch-size", "-b"), gt=0)
    gradient_accumulation_steps: Optional[int] = opt(None, help="Micro-batches per optimizer step.", panel=O, default_help="1 (or derived from --total-batch-size)", gt=0)
    total_batch_size: Optional[int] = opt(None, help="Examples per optimizer step over all processes; accumulation is derived.", panel=O, gt=0)
    learning_rate: float = opt(2e-5, help="Peak learning rate.", panel=O, flags=("--learning-rate", "--lr"), ge=0)
    lr_scheduler: Scheduler = opt("linear", help="linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt.", panel=O)
    warmup_ratio: float = opt(0.03, help="Fraction of steps spent warming up.", panel=O, ge=0, le=1)
    warmup_steps: Optional[int] = opt(None, help="Warm-up steps (overrides --warmup-ratio).", panel=O, ge=0)
    weight_decay: float = opt(0.0, help="AdamW weight decay (not on biases and norms).", panel=O, ge=0)
    adam_beta1: float = opt(0.9, help="AdamW beta1 (first-moment decay).", panel=O, ge=0, lt=1)
    adam_beta2: float = opt(0.999, help="AdamW beta2 (second-moment decay).", panel=O, ge=0, lt=1)
    adam_epsilon: float = opt(1e-8, help="AdamW epsilon (added to the root of the second moment).", panel=O, gt=0)
    num_epochs: int = opt(2, help="Passes over the data.", panel=O, gt=0)
    max_steps: Optional[int] = opt(None, help="Stop after this many optimizer steps (overrides epochs).", panel=O, gt=0)
    max_grad_norm: Optional[float] = opt(None, help="Clip the gradient norm to this.", panel=O, default_help="no clipping", gt=0)
    reduce_loss: Literal["mean", "sum"] = opt(
        "mean", help="mean: token mean per micro-batch (open-instruct); sum: every token of the accumulated batch weighs the same.", panel=O
    )
    seed: int = opt(42, help="Random seed (weights init of new tokens, data order).", panel=O)

    # logging and checkpoints
    output_dir: Path = opt(Path("output"), help="Run folder: model, tokenizer, metrics.jsonl, tulu_run.json, checkpoints/.", panel=C, flags=("--output-dir", "-o"))
    overwrite_output_dir: bool = opt(False, help="Start over in a folder that holds a previous run.", panel=C)
    logging_steps: int = opt(1, help="Write metrics every N steps.", panel=C, gt=0)
    checkpointing_steps: Optional[Union[int, Literal["epoch"]]] = opt(
        None, help="Save the full training state every N steps, or 'epoch'.", panel=C, default_help="never"
    )
    keep_last_checkpoints: Optional[int] = opt(None, help="Keep only the newest N checkpoints.", panel=C, default_help="all", gt=0)
    resume: Optional[str] = opt(
        None, help="'auto' (latest complete checkpoint in --output-dir) or a checkpoint folder.", panel=C, default_help="start fresh"
    )
    report_to: Literal["none", "tensorboard", "wandb", "all"] = opt("none", help="none, tensorboard, wandb or all.", panel=C)
    run_name: Optional[str] = opt(None, help="Name for tensorboard/wandb.", panel=C, default_help="tulu-<recipe>")
    save_model: bool = opt(True, help="Write the final model.", panel=C)

    # launch
    num_processes: int = opt(1, help="Processes over all machines (GPUs; CPU processes here).", panel=L, flags=("--num-processes", "-n"), gt=0)
    num_machines: int = opt(1, help="Machines.", panel=L, gt=0)
    machine_rank: int = opt(0, help="Rank of this machine.", panel=L, ge=0)
    main_process_ip: Optional[str] = opt(None, help="Address of machine rank 0 (multi-machine).", panel=L)
    main_process_port: Optional[int] = opt(
        None, help="Port of the rendezvous.", panel=L, default_help="a free port (one machine), 29500 otherwise", gt=0, lt=65536
    )
    deepspeed_stage: Optional[Literal[0, 2, 3]] = opt(None, help="DeepSpeed ZeRO stage 0, 2 or 3.", panel=L, default_help="no DeepSpeed")
    offload_optimizer: bool = opt(False, help="ZeRO 2/3: optimizer state in CPU memory.", panel=L)
    offload_params: bool = opt(False, help="ZeRO 3: parameters in CPU memory.", panel=L)
    deepspeed_config: Optional[Path] = opt(None, help="Your own DeepSpeed JSON ('auto' values are filled in).", panel=L, default_help="generated")
    timeout: int = opt(1800, help="Seconds a process may wait for the others (e.g. tokenization).", panel=L, gt=0)
    use_cpu: Optional[bool] = opt(None, help="Force CPU training.", panel=L, flags=("--cpu/--no-cpu",), default_help="CPU only when no GPU is visible")
    cpu_threads: Optional[int] = opt(
        None, help="torch threads per process; 1 is fastest for small models on a busy CPU.", panel=L, default_help="torch's choice", gt=0
    )

    @field_validator("checkpointing_steps", mode="before")
    @classmethod
    def _steps_or_epoch(cls, v):
        if isinstance(v, str) and v.strip().isdigit():
            return int(v)
        if isinstance(v, int) and not isinstance(v, bool) and v <= 0:
            raise ValueError("must be a positive number of steps or 'epoch'")
        return v

    @model_validator(mode="after")
    def _combinations(self):
        if not self.train_files and not self.dataset:
            raise ValueError("give --train-files (JSONL) or --dataset (a Hugging Face dataset name)")
        if self.train_files and self.dataset:
            raise ValueError("--train-files and --dataset are exclusive: give one of them")
        if self.gradient_accumulation_steps is not None and self.total_batch_size is not None:
            raise ValueError("--gradient-accumulation-steps and --total-batch-size are exclusive (one is derived from the other)")
        if self.total_batch_size is not None:
            per_step = self.per_device_batch_size * self.world_size
            if self.total_batch_size % per_step:
                raise ValueError(
                    f"--total-batch-size {self.total_batch_size} is not a multiple of per-device batch size x processes "
                    f"({self.per_device_batch_size} x {self.world_size} = {per_step})"
                )
        if self.offload_params and self.deepspeed_stage != 3:
            raise ValueError("--offload-params needs --deepspeed-stage 3 (only ZeRO-3 partitions parameters)")
        if self.offload_optimizer and self.deepspeed_stage not in (2, 3):
            raise ValueError("--offload-optimizer needs --deepspeed-stage 2 or 3")
        if self.deepspeed_config is not None and self.deepspeed_stage is not None:
            raise ValueError("--deepspeed-config and --deepspeed-stage are exclusive: the stage comes from the file")
        if self.num_machines > 1 and not self.main_process_ip:
            raise ValueError("--num-machines > 1 needs --main-process-ip (the address of machine rank 0)")
        if self.machine_rank >= self.num_machines:
            raise ValueError(f"--machine-rank {self.machine_rank} must be below --num-machines {self.num_machines}")
        if self.num_processes % self.num_machines:
            raise ValueError("--num-processes is the total over all machines and must be a multiple of --num-machines")
        if self.resume is not None and self.overwrite_output_dir:
            raise ValueError("--resume and --overwrite-output-dir contradict each other")
        return self

    @property
    def world_size(self) -> int:
        return self.num_processes

    @property
    def accumulation_steps(self) -> int:
        """Gradient accumulation, given or derived from the total batch size and the number of processes."""
        if self.total_batch_size is not None:
            return self.total_batch_size // (self.per_device_batch_size * self.world_size)
        return self.gradient_accumulation_steps or 1

    @property
    def uses_deepspeed(self) -> bool:
        return self.deepspeed_config is not None or bool(self.deepspeed_stage)


class SFTOptions(TrainOptions):
    """Full-parameter supervised fine-tuning (`tulu train sft`)."""

    recipe: Literal["sft"] = internal("sft")


class SlurmFlag(Options):
    """`--slurm`: a flag of every `tulu train` command that writes a batch script instead of training."""

    slurm: Optional[Path] = opt(
        None,
        help="Write a Slurm batch script FILE.sbatch (and FILE.yaml with these options) running this command on --num-machines nodes, rendezvous from Slurm; no training here.",
        panel=L,
    )


class PlotOptions(Options):
    """`tulu train plot`: which run to plot and where the PNG goes."""

    run_dir: Path = opt(help="Run folder holding metrics.jsonl.", argument="RUN_DIR")
    output: Optional[Path] = opt(None, help="PNG to write.", flags=("--output", "-o"), default_help="RUN_DIR/metrics.png")
    dpi: int = opt(100, help="Resolution of the PNG in dots per inch.", gt=0, le=1200)
