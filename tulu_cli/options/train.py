"""Options of `tulu train ...`: one validated model shared by every recipe, SFT's on top.

LoRA, QLoRA and DPO subclass :class:`TrainOptions` and add their own fields; the launcher,
the loop and the checkpoints only read the fields defined here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from tulu_cli.options.base import Options

Scheduler = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt"
]


class TrainOptions(Options):
    """Everything a training run needs that is not specific to one recipe."""

    # model and tokenizer
    model: str = Field(description="Local folder or hub name of the model to fine-tune")
    tokenizer: Optional[str] = Field(None, description="Tokenizer folder or name (default: the model's)")
    config_name: Optional[str] = Field(None, description="Model config to use instead of the model's own")
    revision: Optional[str] = None
    trust_remote_code: bool = False
    use_slow_tokenizer: bool = False
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    low_cpu_mem_usage: bool = False
    gradient_checkpointing: bool = False

    # data
    train_files: list[str] = Field(default_factory=list, description="JSONL files (messages or prompt/completion rows)")
    dataset: Optional[str] = Field(None, description="Hugging Face dataset name instead of files")
    dataset_config: Optional[str] = None
    dataset_split: str = "train"
    template: str = "tulu"
    max_seq_length: int = Field(2048, gt=0)
    max_train_samples: Optional[int] = Field(None, gt=0)
    add_bos: bool = False
    packing: bool = False
    preprocessing_num_workers: Optional[int] = Field(None, gt=0)
    cache_dir: Optional[Path] = Field(None, description="Tokenized-data cache (default ~/.cache/tulu/tokenized)")
    overwrite_cache: bool = False

    # optimisation
    per_device_batch_size: int = Field(1, gt=0)
    gradient_accumulation_steps: Optional[int] = Field(None, gt=0)
    total_batch_size: Optional[int] = Field(None, gt=0)
    learning_rate: float = Field(2e-5, ge=0)
    lr_scheduler: Scheduler = "linear"
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    warmup_steps: Optional[int] = Field(None, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    num_epochs: int = Field(2, gt=0)
    max_steps: Optional[int] = Field(None, gt=0)
    max_grad_norm: Optional[float] = Field(None, gt=0)
    reduce_loss: Literal["mean", "sum"] = "mean"
    seed: int = 42

    # logging and checkpoints
    output_dir: Path = Path("output")
    overwrite_output_dir: bool = False
    logging_steps: int = Field(1, gt=0)
    checkpointing_steps: Optional[Union[int, Literal["epoch"]]] = None
    keep_last_checkpoints: Optional[int] = Field(None, gt=0)
    resume: Optional[str] = Field(None, description="'auto' (latest complete checkpoint in output_dir) or a checkpoint folder")
    report_to: Literal["none", "tensorboard", "wandb", "all"] = "none"
    run_name: Optional[str] = None
    save_model: bool = True

    # launch
    num_processes: int = Field(1, gt=0)
    num_machines: int = Field(1, gt=0)
    machine_rank: int = Field(0, ge=0)
    main_process_ip: Optional[str] = None
    main_process_port: Optional[int] = Field(None, gt=0, lt=65536)
    deepspeed_stage: Optional[Literal[0, 2, 3]] = None
    offload_optimizer: bool = False
    offload_params: bool = False
    deepspeed_config: Optional[Path] = None
    timeout: int = Field(1800, gt=0, description="Seconds collective operations may wait (rank 0 tokenizing)")
    use_cpu: Optional[bool] = Field(None, description="Force CPU (default: CPU when no GPU is visible)")
    cpu_threads: Optional[int] = Field(None, gt=0, description="torch intra-op threads per process (default: torch's choice)")

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

    recipe: Literal["sft"] = "sft"


class PlotOptions(Options):
    """`tulu train plot`: which run to plot and where the PNG goes."""

    run_dir: Path
    output: Optional[Path] = None
