"""The one training loop every recipe shares: setup / train / save as plain methods on a recipe class.

A recipe (SFT here; LoRA, QLoRA and DPO later) subclasses :class:`TrainingRecipe` and overrides
only the hooks it needs: ``check_files`` and ``encode_data`` (its data, also used by the
launcher), ``build_model``, ``build_collator``, ``loss_terms`` and ``save_model``. Accumulation, loss reduction, clipping, the scheduler, checkpoints, resume,
metrics and the final save live here once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.options.train import TrainOptions
from tulu_cli.train import checkpoint
from tulu_cli.train.metrics import METRICS_FILE, Reporter, log, truncate_metrics

RUN_FILE = "tulu_run.json"
MIXED_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no"}


def use_cpu(opts: TrainOptions) -> bool:
    import torch

    return opts.use_cpu if opts.use_cpu is not None else not torch.cuda.is_available()


def make_accelerator(opts: TrainOptions, deepspeed_config: dict | None):
    from accelerate import Accelerator, DeepSpeedPlugin, InitProcessGroupKwargs

    cpu = use_cpu(opts)
    # gloo on CPU: the default process group backend there cannot allgather for ZeRO.
    distributed = opts.num_processes > 1 or deepspeed_config is not None
    pg = InitProcessGroupKwargs(backend="gloo" if cpu and distributed else None, timeout=timedelta(seconds=opts.timeout))
    plugin = None
    if deepspeed_config is not None:
        # accelerate only enters its DeepSpeed path with this flag set and cpu=False; DeepSpeed
        # then picks its own CPU accelerator when no GPU is visible.
        os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
        cpu = False
        plugin = DeepSpeedPlugin(hf_ds_config=deepspeed_config, zero3_init_flag=deepspeed_config["zero_optimization"].get("stage") == 3)
    trackers = [] if opts.report_to == "none" else (["tensorboard", "wandb"] if opts.report_to == "all" else [opts.report_to])
    return Accelerator(
        cpu=cpu,
        mixed_precision=MIXED_PRECISION[opts.dtype],
        # The loop accumulates by itself (TrainingRecipe.backward); only DeepSpeed's config, which
        # accelerate checks against this value, carries the real number of micro-batches.
        gradient_accumulation_steps=opts.accumulation_steps if deepspeed_config is not None else 1,
        deepspeed_plugin=plugin,
        kwargs_handlers=[pg],
        log_with=trackers or None,
        project_dir=str(opts.output_dir),
    )


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("tulu-cli", "torch", "transformers", "accelerate", "datasets", "tokenizers", "deepspeed", "peft"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def training_tokenizer(opts: TrainOptions):
    """The tokenizer a run trains with: special tokens added, the chat template set (launcher and workers alike)."""
    from tulu_cli.chat.templates import TULU_CHAT_TEMPLATE
    from tulu_cli.models import load_tokenizer, prepare_tokenizer, read_model_config

    o = opts
    tok = load_tokenizer(o.tokenizer or o.model, revision=o.revision, trust_remote_code=o.trust_remote_code, use_slow=o.use_slow_tokenizer)
    model_type = read_model_config(o.config_name or o.model, o.revision, o.trust_remote_code).get("model_type")
    prepare_tokenizer(tok, model_type, chat_template=TULU_CHAT_TEMPLATE if o.template == "tulu" else None)
    return tok


class TrainingRecipe:
    """Setup, train and save one run; recipes override the hooks below."""

    name = "train"

    def __init__(self, opts: TrainOptions, deepspeed_config: dict | None = None):
        self.opts = opts
        self.deepspeed_config = deepspeed_config
        self.output_dir = Path(opts.output_dir)

    # ---- hooks -------------------------------------------------------------------------
    @staticmethod
    def check_files(opts: TrainOptions) -> None:
        """Launcher preflight: every --train-files file readable as this recipe's rows, before any model loads."""
        from tulu_cli.data.tokenize import check_readable

        for f in opts.train_files:
            check_readable(f)

    @staticmethod
    def encode_data(opts: TrainOptions, tokenizer, *, build: bool = True, overwrite_cache: bool = False, quiet_hit: bool = True):
        """(dataset, info): the training data from the cache, or encoded and cached now.

        The launcher calls it first (so data errors stop the run in the launching process);
        ``build=False`` only reads the cache (non-zero ranks).
        """
        from tulu_cli.data.tokenize import tokenized_dataset
        from tulu_cli.models import tokenizer_fingerprint

        o = opts
        return tokenized_dataset(
            tokenizer=tokenizer,
            tokenizer_hash=tokenizer_fingerprint(tokenizer),
            train_files=o.train_files,
            dataset=o.dataset,
            dataset_config=o.dataset_config,
            dataset_split=o.dataset_split,
            template=o.template,
            max_seq_length=o.max_seq_length,
            packing=o.packing,
            add_bos=o.add_bos,
            max_train_samples=o.max_train_samples,
            num_workers=o.preprocessing_num_workers,
            cache_dir=o.cache_dir,
            overwrite_cache=overwrite_cache,
            build=build,
            quiet_hit=quiet_hit,
            log=log,
        )

    def build_tokenizer(self):
        return training_tokenizer(self.opts)

    def build_model(self):
        from tulu_cli.models import load_causal_lm, register_packed_sdpa, resize_for_tokenizer, sync_special_token_ids

        o = self.opts
        attn = o.attn_implementation
        if o.packing and attn == "sdpa":
            attn = register_packed_sdpa()  # per-example causal SDPA instead of one dense block mask
        # Under DeepSpeed the engine keeps the fp32 master copy: load in the training dtype.
        # Without it, load fp32 and let autocast run bf16/fp16 compute (fp32 master weights).
        load_dtype = o.dtype if self.deepspeed_config is not None else "fp32"
        model = load_causal_lm(
            o.model,
            dtype=load_dtype,
            attn_implementation=attn,
            revision=o.revision,
            trust_remote_code=o.trust_remote_code,
            config_name=o.config_name,
            low_cpu_mem_usage=o.low_cpu_mem_usage,
        )
        if resize_for_tokenizer(model, self.tokenizer) and self.accelerator.is_main_process:
            log(f"resized embeddings to {len(self.tokenizer)} tokens (tokenizer gained special tokens)")
        sync_special_token_ids(model, self.tokenizer)
        return model

    def build_dataset(self):
        acc = self.accelerator
        # Only rank 0 reads (the launcher already encoded, honouring --overwrite-cache); the others
        # wait at the barrier and then memory-map its cache.
        if acc.is_main_process:
            ds, info = self.encode_data(self.opts, self.tokenizer, build=True)
        acc.wait_for_everyone()
        if not acc.is_main_process:
            ds, info = self.encode_data(self.opts, self.tokenizer, build=False)
        return ds, info

    def build_collator(self):
        from tulu_cli.data.collate import make_collator

        return make_collator(self.opts.packing, self.tokenizer.pad_token_id)

    def loss_terms(self, model, batch) -> tuple[Any, Any, dict[str, Any]]:
        """(summed loss, number of terms it sums, extra metrics) for one micro-batch.

        For SFT the terms are target tokens; a DPO recipe returns pairs. ``mean`` divides by
        this micro-batch's count, ``sum`` by the count of the whole accumulated batch. Extra
        metrics are sums over this micro-batch's terms (e.g. DPO's summed rewards): the loop adds
        them up over accumulation, processes and the logging window and logs each divided by the
        number of terms, beside the loss. Return the same keys on every micro-batch and process.
        """
        import torch.nn.functional as F

        inputs = {k: v for k, v in batch.items() if k != "labels"}
        # use_cache=False matters beyond memory: transformers only reads packed position_ids as
        # separate sequences (block-diagonal mask) when no KV cache is in play.
        logits = model(**inputs, use_cache=False).logits
        # Shift the labels, not the logits: slicing the (batch x length x vocab) logits would copy them.
        labels = F.pad(batch["labels"], (0, 1), value=-100)[:, 1:]
        loss_sum = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100, reduction="sum")
        return loss_sum, (labels != -100).sum(), {}

    def count_terms(self, batch) -> int:
        return int((batch["labels"][:, 1:] != -100).sum())

    def count_input_tokens(self, batch) -> int:
        if "attention_mask" in batch:
            return int(batch["attention_mask"].sum())
        return int(batch["input_ids"].numel())

    def trainable_parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def save_model(self, target: Path) -> None:
        """Write the final model in Hugging Face format (safetensors) plus the tokenizer."""
        acc = self.accelerator
        state_dict = acc.get_state_dict(self.model)  # collective: ZeRO-3 gathers 16-bit weights here
        if acc.is_main_process:
            import torch

            unwrapped = acc.unwrap_model(self.model)
            unwrapped.config.use_cache = True
            if self.opts.dtype != "fp32":
                # autocast runs keep fp32 master weights; publish in the training precision like DeepSpeed does
                target_dtype = torch.bfloat16 if self.opts.dtype == "bf16" else torch.float16
                state_dict = {k: v.to(target_dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
                unwrapped.config.dtype = target_dtype
            unwrapped.save_pretrained(target, state_dict=state_dict, safe_serialization=True)
            self.tokenizer.save_pretrained(target)

    # ---- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        import torch
        from accelerate.utils import set_seed
        from transformers import get_scheduler

        import transformers

        transformers.utils.logging.disable_progress_bar()  # weight loading/saving bars clutter the run log
        o = self.opts
        if o.cpu_threads:
            torch.set_num_threads(o.cpu_threads)
        self.accelerator = acc = make_accelerator(o, self.deepspeed_config)
        self.is_main = acc.is_main_process
        set_seed(o.seed)
        self.tokenizer = self.build_tokenizer()
        self.model = self.build_model()
        if o.gradient_checkpointing:
            if hasattr(self.model, "activation_checkpointing_enable"):  # transformers >= 5.x name
                self.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.model.config.use_cache = False
        self.dataset, self.data_info = self.build_dataset()
        self.collator = self.build_collator()

        params = self.trainable_parameters()
        # Under ZeRO-3 a parameter is already an empty shard here; ds_shape is its real shape.
        matrix = [len(getattr(p, "ds_shape", p.shape)) >= 2 for p in params]
        decay = [p for p, m in zip(params, matrix) if m]
        no_decay = [p for p, m in zip(params, matrix) if not m]  # biases and norm weights
        groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = self.build_optimizer([g for g in groups if g["params"]])

        world = acc.num_processes
        self.world = world
        self.accum = o.accumulation_steps
        n = len(self.dataset)
        micro_per_epoch = math.ceil(n / (o.per_device_batch_size * world))
        self.steps_per_epoch = math.ceil(micro_per_epoch / self.accum)
        self.total_steps = o.max_steps or o.num_epochs * self.steps_per_epoch
        self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        warmup = o.warmup_steps if o.warmup_steps is not None else int(self.total_steps * o.warmup_ratio)
        # The scheduler is stepped by hand once per optimizer step, so it is not handed to
        # accelerate (which would step it once per process) nor to DeepSpeed.
        self.scheduler = get_scheduler(o.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=self.total_steps)
        self.model, self.optimizer = acc.prepare(self.model, optimizer)
        acc.register_for_checkpointing(self.scheduler)
        self.is_deepspeed = self.deepspeed_config is not None

        torch.manual_seed(o.seed)  # same stream whether or not the model load consumed randomness
        self.global_step = 0
        self.resume_epoch = 0
        self.resume_group = 0
        self.elapsed_before = 0.0
        resume_from = checkpoint.resolve_resume(o.resume, self.output_dir)
        if resume_from is not None:
            state = checkpoint.load(acc, resume_from)
            self.global_step = state["global_step"]
            self.resume_epoch = state["epoch"]
            self.resume_group = state["group_in_epoch"]
            self.elapsed_before = state.get("elapsed", 0.0)
            if self.is_main:
                log(f"resumed from {resume_from} at step {self.global_step}")
        elif self.is_main and o.resume == "auto":
            log("no complete checkpoint to resume from: starting from scratch")
        if self.is_main:
            # Lines after the resumed step (all of them on a fresh start) belong to another run.
            truncate_metrics(self.output_dir / METRICS_FILE, self.global_step)
        if self.is_main:
            trainable = sum(getattr(p, "ds_numel", 0) or p.numel() for p in params)  # ZeRO-3 leaves empty shards
            log(
                f"{n} examples, {world} process(es), per-device batch {o.per_device_batch_size} x accumulation {self.accum} "
                f"= {o.per_device_batch_size * world * self.accum} per step; {self.total_steps} steps over {self.num_epochs} epoch(s); "
                f"{trainable:,} trainable parameters; loss reduction {o.reduce_loss}{'; packing' if o.packing else ''}"
            )
        if o.report_to != "none":
            acc.init_trackers(o.run_name or f"tulu-{self.name}", config={k: v for k, v in json.loads(o.model_dump_json()).items() if isinstance(v, (int, float, str, bool))})

    def build_optimizer(self, groups):
        import torch

        o = self.opts
        return torch.optim.AdamW(groups, lr=o.learning_rate, betas=(o.adam_beta1, o.adam_beta2), eps=o.adam_epsilon)

    # ---- data order ----------------------------------------------------------------------
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's micro-batches (dataset indices) for an epoch: same order on every run with this seed."""
        import torch

        b, world, rank = self.opts.per_device_batch_size, self.world, self.accelerator.process_index
        n = len(self.dataset)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.opts.seed + epoch)).tolist()
        per_step = b * world
        n_global = math.ceil(n / per_step)
        if world > 1 and len(order) < n_global * per_step:
            # Every rank must run the same number of steps: wrap around like accelerate's even_batches.
            need = n_global * per_step - len(order)
            order = order + (order * (need // n + 1))[:need]
        return [order[i * per_step + rank * b : i * per_step + (rank + 1) * b] for i in range(n_global)]

    # ---- train ---------------------------------------------------------------------------
    def backward(self, loss, last: bool) -> None:
        """Accumulate one micro-batch's gradient; ``last`` closes the accumulation window.

        The loop owns accumulation (token counts must be known per accumulated batch, and an
        epoch's last group may be short), through public APIs only: the loss is divided by the
        configured accumulation steps, as open-instruct's accelerate loop did. Under DeepSpeed the
        engine divides (by its config's steps), is told where the window ends, and steps (clip,
        optimizer, zero grad) at that end; elsewhere the optimizer steps in :meth:`train`.
        """
        if self.is_deepspeed:
            self.model.set_gradient_accumulation_boundary(last)
            self.model.backward(loss)
            if last:
                self.model.step()
        else:
            self.accelerator.backward(loss / self.accum)

    def train(self) -> None:
        import torch

        o, acc = self.opts, self.accelerator
        device = acc.device
        reporter = Reporter(self.output_dir, self.total_steps, self.global_step, acc, trackers=o.report_to != "none") if self.is_main else None
        self.model.train()
        window: dict[str, float] = {"loss": 0.0, "count": 0.0, "tokens": 0.0, "steps": 0, "time": 0.0}
        extra_window: dict[str, float] = {}  # loss_terms' extra metrics, summed like the loss
        self.last_loss = None
        start = time.time()
        try:
            for epoch in range(self.resume_epoch, self.num_epochs):
                batches = self.epoch_batches(epoch)
                groups = [batches[i : i + self.accum] for i in range(0, len(batches), self.accum)]
                first = self.resume_group if epoch == self.resume_epoch else 0
                finished_epoch = True
                for gi in range(first, len(groups)):
                    if self.global_step >= self.total_steps:
                        finished_epoch = False
                        break
                    t0 = time.time()
                    micro = [self.collator([self.dataset[j] for j in idx]) for idx in groups[gi]]
                    micro = [{k: v.to(device) for k, v in m.items()} for m in micro]
                    local = torch.tensor([sum(self.count_terms(m) for m in micro)], dtype=torch.float64, device=device)
                    global_count = float(acc.reduce(local, reduction="sum").item())
                    loss_acc = torch.zeros((), dtype=torch.float64, device=device)
                    extra_acc: dict[str, Any] = {}
                    for k, m in enumerate(micro):
                        last = k == len(micro) - 1
                        # DDP: no gradient all-reduce before the window's last micro-batch (forward included).
                        ctx = acc.no_sync(self.model) if not last and not self.is_deepspeed else contextlib.nullcontext()
                        with ctx:
                            loss_sum, count, extra = self.loss_terms(self.model, m)
                            if o.reduce_loss == "mean":
                                loss = loss_sum / count.clamp(min=1)
                            else:
                                # backward divides by the accumulation steps and DDP averages over
                                # processes: undo both so every token of the step weighs 1/global_count.
                                loss = loss_sum * (self.accum * self.world / max(global_count, 1.0))
                            self.backward(loss, last)
                        loss_acc += loss_sum.detach().to(torch.float64)
                        for key, value in extra.items():
                            value = value.detach().to(torch.float64) if torch.is_tensor(value) else float(value)
                            extra_acc[key] = extra_acc.get(key, 0.0) + value
                    grad_norm = acc.clip_grad_norm_(self.model.parameters(), o.max_grad_norm or float("inf"))
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.global_step += 1

                    extra_keys = sorted(extra_acc)  # one collective for everything, in the same order on every rank
                    stats = torch.tensor(
                        [float(loss_acc), float(sum(self.count_input_tokens(m) for m in micro))] + [float(extra_acc[k]) for k in extra_keys],
                        dtype=torch.float64,
                        device=device,
                    )
                    stats = acc.reduce(stats, reduction="sum")
                    for key, value in zip(extra_keys, stats[2:].tolist()):
                        extra_window[key] = extra_window.get(key, 0.0) + value
                    step_time = time.time() - t0
                    self.last_loss = float(stats[0]) / max(global_count, 1.0)
                    window["loss"] += float(stats[0])
                    window["count"] += global_count
                    window["tokens"] += float(stats[1])
                    window["steps"] += 1
                    window["time"] += step_time
                    if reporter is not None and (self.global_step % o.logging_steps == 0 or self.global_step == self.total_steps):
                        gn = float(grad_norm) if grad_norm is not None else None
                        reporter.write(
                            {
                                "step": self.global_step,
                                "epoch": round(epoch + (gi + 1) / len(groups), 4),
                                "loss": window["loss"] / max(window["count"], 1.0),
                                "lr": self.scheduler.get_last_lr()[0],
                                "grad_norm": gn if gn is None or math.isfinite(gn) else None,
                                "tokens_per_second": window["tokens"] / max(window["time"], 1e-9),
                                "tokens": int(window["tokens"]),
                                "elapsed": round(self.elapsed_before + time.time() - start, 3),
                                **{k: v / max(window["count"], 1.0) for k, v in extra_window.items()},
                            }
                        )
                        window = {k: 0.0 for k in window}
                        extra_window = {}
                    elif reporter is not None:
                        reporter.advance(self.global_step)
                    if isinstance(o.checkpointing_steps, int) and self.global_step % o.checkpointing_steps == 0:
                        self._checkpoint(epoch, gi + 1, len(groups), start)
                if o.checkpointing_steps == "epoch" and finished_epoch:
                    self._checkpoint(epoch, len(groups), len(groups), start)
                if self.global_step >= self.total_steps:
                    break
        finally:
            if reporter is not None:
                reporter.close()
        self.train_seconds = self.elapsed_before + time.time() - start

    def _checkpoint(self, epoch: int, next_group: int, n_groups: int, start: float) -> None:
        if next_group >= n_groups:
            epoch, next_group = epoch + 1, 0
        state = {
            "global_step": self.global_step,
            "epoch": epoch,
            "group_in_epoch": next_group,
            "total_steps": self.total_steps,
            "elapsed": self.elapsed_before + time.time() - start,
        }
        path = checkpoint.save(self.accelerator, self.output_dir, self.global_step, state, self.opts.keep_last_checkpoints)
        if self.is_main:
            log(f"checkpoint saved: {path}")

    # ---- save ----------------------------------------------------------------------------
    def save(self) -> Path:
        acc, out = self.accelerator, self.output_dir
        staging = out / ".tmp-final"
        if self.is_main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        acc.wait_for_everyone()
        if self.opts.save_model:
            self.save_model(staging)
        acc.wait_for_everyone()
        if self.is_main:
            for f in staging.iterdir():
                dest = out / f.name
                if dest.is_dir():
                    shutil.rmtree(dest)
                os.replace(f, dest)
            shutil.rmtree(staging, ignore_errors=True)
            self.write_run_record()
            log(f"model and run record written to {out}")
        if self.opts.report_to != "none":
            acc.end_training()
        acc.wait_for_everyone()
        return out

    def write_run_record(self) -> None:
        o = self.opts
        record = {
            "recipe": self.name,
            "options": json.loads(o.model_dump_json()),
            "versions": package_versions(),
            "data": {k: v for k, v in self.data_info.items() if k != "cache_hit"},
            "world_size": self.world,
            "accumulation_steps": self.accum,
            "total_steps": self.total_steps,
            "steps_done": self.global_step,
            "final_loss": self.last_loss,
            "train_seconds": round(self.train_seconds, 3),
            "deepspeed_config": self.deepspeed_config,
        }
        tmp = self.output_dir / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
        os.replace(tmp, self.output_dir / RUN_FILE)

    def run(self) -> Path:
        self.setup()
        self.train()
        return self.save()


def check_output_dir(opts: TrainOptions) -> None:
    """Refuse to clobber a previous run unless resuming or told to overwrite."""
    out = Path(opts.output_dir)
    if not out.exists():
        return
    if opts.resume == "auto" and (out / RUN_FILE).is_file() and not checkpoint.complete_checkpoints(out):
        raise TuluError(
            f"--resume auto: {out} holds a finished run and no checkpoint to continue from; "
            "pass --overwrite-output-dir (without --resume) to train it again"
        )
    if opts.resume is not None:
        return
    previous = (out / RUN_FILE).is_file() or checkpoint.complete_checkpoints(out) or (out / METRICS_FILE).is_file()
    if previous and not opts.overwrite_output_dir:
        raise TuluError(f"--output-dir {out}: holds a previous run; pass --resume auto to continue it or --overwrite-output-dir to start over")


def interrupted_message(opts: TrainOptions) -> str:
    """The one line Ctrl-C leaves on stderr: what the run kept and the flag that continues it."""
    out = Path(opts.output_dir)
    kept = checkpoint.complete_checkpoints(out)
    if kept:
        return f"interrupted: kept checkpoint {kept[-1]}; continue with the same command plus --resume auto"
    return (
        f"interrupted: no complete checkpoint in {out} (none saved yet; see --checkpointing-steps); "
        "start again with the same command plus --overwrite-output-dir"
    )
