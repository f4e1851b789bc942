"""From validated options to running processes: preflight checks, DeepSpeed JSON, the accelerate command."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

from tulu_cli.errors import TuluError
from tulu_cli.options.train import TrainOptions
from tulu_cli.paths import check_output, new_folders_undone
from tulu_cli.train import checkpoint
from tulu_cli.train.metrics import log

OPTIONS_FILE = "tulu_options.json"
DEEPSPEED_FILE = "deepspeed_config.json"


def options_path(opts: TrainOptions) -> Path:
    """Where this machine's launcher writes what its workers read.

    Machines of one run usually share the output folder; the options differ in --machine-rank, so
    machine k > 0 writes its own file instead of racing machine 0 for one.
    """
    name = OPTIONS_FILE if opts.machine_rank == 0 else f"tulu_options.machine{opts.machine_rank}.json"
    return Path(opts.output_dir) / name


# ---- DeepSpeed ---------------------------------------------------------------------------
def deepspeed_config(opts: TrainOptions) -> dict[str, Any] | None:
    """The DeepSpeed JSON for this run (None without DeepSpeed), every value explicit."""
    if not opts.uses_deepspeed:
        return None
    micro, accum, world = opts.per_device_batch_size, opts.accumulation_steps, opts.world_size
    explicit = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "train_batch_size": micro * accum * world,
        "gradient_clipping": opts.max_grad_norm or 0.0,
        "bf16": {"enabled": opts.dtype == "bf16"},
        "fp16": {"enabled": opts.dtype == "fp16", "loss_scale": 0, "initial_scale_power": 16, "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1},
    }
    if opts.deepspeed_config is not None:
        try:
            cfg = json.loads(Path(opts.deepspeed_config).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TuluError(f"--deepspeed-config {opts.deepspeed_config}: cannot read it as JSON ({e})") from None
        if not isinstance(cfg, dict) or "zero_optimization" not in cfg:
            raise TuluError(f"--deepspeed-config {opts.deepspeed_config}: needs a 'zero_optimization' section")
        for key, value in explicit.items():
            if cfg.get(key, "auto") == "auto":
                cfg[key] = value
            elif isinstance(value, dict) and isinstance(cfg[key], dict):
                cfg[key] = {**value, **{k: v for k, v in cfg[key].items() if v != "auto"}}
        for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
            if cfg[key] != explicit[key]:
                raise TuluError(f"--deepspeed-config {opts.deepspeed_config}: '{key}' is {cfg[key]} but the options give {explicit[key]}; set it to \"auto\"")
        cfg.setdefault("zero_allow_untested_optimizer", True)
        cfg.setdefault("steps_per_print", 10**9)
        return cfg
    stage = opts.deepspeed_stage
    zero: dict[str, Any] = {"stage": stage, "contiguous_gradients": True, "overlap_comm": False, "reduce_bucket_size": 5e8}
    if stage == 2:
        zero.update({"allgather_partitions": True, "allgather_bucket_size": 5e8, "reduce_scatter": True})
    if stage == 3:
        zero.update(
            {
                "stage3_prefetch_bucket_size": 5e8,
                "stage3_param_persistence_threshold": 1e6,
                "stage3_max_live_parameters": 1e9,
                "stage3_max_reuse_distance": 1e9,
                "stage3_gather_16bit_weights_on_model_save": True,
            }
        )
    if opts.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if opts.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        **explicit,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def recipe_class(opts: TrainOptions):
    """The recipe class of ``opts`` (``tulu_cli.train.<recipe>.Recipe``): its data checks and encoding."""
    return importlib.import_module(f"tulu_cli.train.{opts.recipe}").Recipe


# ---- preflight ---------------------------------------------------------------------------
def _gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def preflight(opts: TrainOptions) -> None:
    """Every check that reads no weights and writes nothing (--dry-run runs them all too): one clear
    TuluError before tokenization, before the output folder or tulu_options.json exists."""
    from tulu_cli.models import check_attention, check_model_source, model_max_length, read_model_config
    from tulu_cli.train.checkpoint import resolve_resume
    from tulu_cli.train.loop import check_output_dir

    check_output(Path(opts.output_dir), "--output-dir", "folder", in_place=True)
    if opts.cache_dir is not None:
        check_output(Path(opts.cache_dir), "--cache-dir", "folder", in_place=True)
    # config.json, every weight file's header (a truncated safetensors file), the tokenizer files
    check_model_source(opts.model, opts.tokenizer)
    config = read_model_config(opts.config_name or opts.model, opts.revision, opts.trust_remote_code)
    limit = model_max_length(config)
    if limit is not None and opts.max_seq_length > limit:
        raise TuluError(f"--max-seq-length {opts.max_seq_length} is above the model's limit of {limit} positions (max_position_embeddings)")
    from tulu_cli.chat import TEMPLATE_NAMES

    if opts.template not in TEMPLATE_NAMES:
        raise TuluError(f"--template {opts.template}: unknown template (one of: {', '.join(TEMPLATE_NAMES)})")
    if opts.add_bos and opts.template != "tulu":
        raise TuluError(f"--add-bos applies to the tulu template only; template {opts.template} decides its own bos")
    recipe_class(opts).check_files(opts)
    check_attention(opts.attn_implementation)
    if opts.recipe in ("lora", "qlora") or getattr(opts, "peft", False):
        from tulu_cli.train.peft import check_target_modules

        check_target_modules(opts)
    if opts.uses_deepspeed and importlib.util.find_spec("deepspeed") is None:
        raise TuluError("DeepSpeed was asked for but is not installed: pip install 'tulu-cli[deepspeed]' (or drop --deepspeed-stage)")
    cpu = opts.use_cpu if opts.use_cpu is not None else not _gpu_available()
    if cpu and opts.dtype == "fp16":
        raise TuluError("--dtype fp16 needs a GPU (no CUDA device here); use --dtype bf16 or fp32")
    if cpu and opts.offload_optimizer:
        raise TuluError("--offload-optimizer moves optimizer state from GPU to CPU; this run is already on CPU")
    for tracker, module in (("tensorboard", "tensorboard"), ("wandb", "wandb")):
        if opts.report_to in (tracker, "all") and importlib.util.find_spec(module) is None:
            raise TuluError(f"--report-to {opts.report_to}: the {module} package is not installed (pip install {module})")
    if opts.deepspeed_config is not None and not Path(opts.deepspeed_config).is_file():
        raise TuluError(f"--deepspeed-config {opts.deepspeed_config}: no such file")
    deepspeed_config(opts)  # a user file is parsed and checked here
    if opts.resume not in (None, "auto"):
        resolve_resume(opts.resume, Path(opts.output_dir))
    check_output_dir(opts)


# ---- launch command ----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_process(opts: TrainOptions) -> bool:
    """One process without DeepSpeed runs inside the calling Python (quickstart, notebooks)."""
    return opts.num_processes == 1 and opts.num_machines == 1 and not opts.uses_deepspeed


def launch_command(opts: TrainOptions, options_file: Path, port: int | None = None) -> tuple[dict[str, str], list[str]]:
    """(extra environment, argv) of the `accelerate launch` that runs the worker on every process."""
    from tulu_cli.train.loop import MIXED_PRECISION

    cpu = opts.use_cpu if opts.use_cpu is not None else not _gpu_available()
    env: dict[str, str] = {}
    argv = ["accelerate", "launch", "--num_processes", str(opts.num_processes), "--num_machines", str(opts.num_machines)]
    if opts.uses_deepspeed:
        argv += ["--use_deepspeed", "--deepspeed_config_file", str(Path(options_file).parent / DEEPSPEED_FILE)]
        if opts.deepspeed_stage == 3 or (deepspeed_config(opts) or {}).get("zero_optimization", {}).get("stage") == 3:
            argv += ["--zero3_init_flag", "true"]
        if opts.num_machines > 1:
            # accelerate's default multi-node DeepSpeed launcher is pdsh: one command on machine 0
            # that ssh-es into a hostfile and ignores --machine_rank. "standard" is torchrun on
            # each machine with its own rank, i.e. the same command everywhere.
            argv += ["--deepspeed_multinode_launcher", "standard"]
    elif opts.num_processes > 1 or opts.num_machines > 1:
        # --multi_gpu selects the torchrun launcher, which really starts N processes; with
        # ACCELERATE_USE_CPU they use gloo on CPU (`--cpu --num_processes N` would start one).
        argv.append("--multi_gpu")
    if cpu and not opts.uses_deepspeed:
        env["ACCELERATE_USE_CPU"] = "true"
    argv += ["--machine_rank", str(opts.machine_rank)]
    if opts.main_process_ip:
        argv += ["--main_process_ip", opts.main_process_ip]
    argv += ["--main_process_port", str(opts.main_process_port or port or 29500)]
    argv += ["--mixed_precision", MIXED_PRECISION[opts.dtype], "--dynamo_backend", "no"]
    argv += ["-m", "tulu_cli.train.worker", str(options_file)]
    return env, argv


def accelerate_settings(opts: TrainOptions) -> dict[str, Any]:
    from tulu_cli.train.loop import MIXED_PRECISION

    cpu = opts.use_cpu if opts.use_cpu is not None else not _gpu_available()
    return {
        "cpu": cpu,
        "mixed_precision": MIXED_PRECISION[opts.dtype],
        "gradient_accumulation_steps": opts.accumulation_steps,
        "process_group_backend": "gloo" if cpu else "nccl",
        "process_group_timeout_seconds": opts.timeout,
        "deepspeed": opts.uses_deepspeed,
        "num_processes": opts.num_processes,
        "num_machines": opts.num_machines,
        "total_batch_size": opts.per_device_batch_size * opts.accumulation_steps * opts.world_size,
        "log_with": opts.report_to,
    }


def describe(opts: TrainOptions) -> dict[str, Any]:
    """What --dry-run shows besides the options: how the run would be launched."""
    options_file = options_path(opts)
    env, argv = launch_command(opts, options_file, port=opts.main_process_port or 29500)
    cmd = " ".join([f"{k}={v}" for k, v in env.items()] + [shlex.quote(a) for a in argv])
    return {
        "launch": "in-process (1 process, no DeepSpeed)" if in_process(opts) else "subprocess",
        "command": f"{sys.executable} -m tulu_cli.train.worker {options_file}" if in_process(opts) else cmd,
        "accelerate": accelerate_settings(opts),
        "deepspeed_config": deepspeed_config(opts),
    }


def clear_previous_run(out: Path) -> bool:
    """Remove a previous run's metrics, run record and checkpoints from ``out``; True when there was any.

    Every machine of a multi-machine run may call this: its launcher gets here before its own
    workers start, and no step (hence no write) happens before all machines' workers have joined.
    """
    import shutil

    from tulu_cli.train.loop import RUN_FILE
    from tulu_cli.train.metrics import METRICS_FILE

    found = False
    for stale in (METRICS_FILE, RUN_FILE):
        if (out / stale).is_file():
            (out / stale).unlink()
            found = True
    if checkpoint.checkpoint_root(out).exists():
        shutil.rmtree(checkpoint.checkpoint_root(out))
        found = True
    return found


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def pretokenize(opts: TrainOptions) -> dict[str, Any]:
    """Encode the data (or find it in cache) before launching, so data errors stop the run in this process."""
    from tulu_cli.train.loop import training_tokenizer

    _, info = recipe_class(opts).encode_data(opts, training_tokenizer(opts), overwrite_cache=opts.overwrite_cache, quiet_hit=False)
    return info


# `accelerate launch`, except that Ctrl-C ends it with exit 130 instead of torchrun's SignalException
# traceback (its workers stop on the same signal; the launcher then prints the one line).
_ACCELERATE_QUIET_ON_CTRL_C = """
import runpy, signal, sys
try:
    runpy.run_module("accelerate.commands.launch", run_name="__main__", alter_sys=True)
except KeyboardInterrupt:
    sys.exit(130)
except Exception as e:
    if getattr(e, "sigval", None) != signal.SIGINT:
        raise
    sys.exit(130)
"""


def _stop_interrupted(opts: TrainOptions) -> NoReturn:
    """Exit 130 (the shell's code for Ctrl-C) after one stderr line on what was kept and how to resume."""
    from tulu_cli.train.loop import interrupted_message

    print(interrupted_message(opts), file=sys.stderr, flush=True)
    raise SystemExit(130)


def launch(opts: TrainOptions) -> Path:
    """Run the training described by ``opts``; return the output folder."""
    preflight(opts)
    out = Path(opts.output_dir)
    cache = Path(opts.cache_dir) if opts.cache_dir else out
    # A data error found while tokenizing leaves no new folder (output or cache).
    with new_folders_undone(out), new_folders_undone(cache):
        out.mkdir(parents=True, exist_ok=True)
        if opts.overwrite_output_dir:
            clear_previous_run(out)
        elif opts.resume == "auto" and not checkpoint.complete_checkpoints(out):
            # Nothing to continue from: a clean folder, so metrics.jsonl never mixes two runs.
            if clear_previous_run(out) and opts.machine_rank == 0:
                log(f"--resume auto: no complete checkpoint in {out}: starting a clean run (old metrics and partial checkpoints removed)")
        pretokenize(opts)
    ds_config = deepspeed_config(opts)
    options_file = options_path(opts)
    _write_json(options_file, {"recipe": opts.recipe, "options": json.loads(opts.model_dump_json()), "deepspeed_config": ds_config})
    if ds_config is not None:
        _write_json(out / DEEPSPEED_FILE, ds_config)
    error_file = out / ".tulu_error"
    error_file.unlink(missing_ok=True)

    if in_process(opts):
        import torch

        from tulu_cli.train.worker import reset_accelerate_state, run_worker

        threads = torch.get_num_threads()
        try:
            return run_worker(options_file)
        except KeyboardInterrupt:
            _stop_interrupted(opts)
        finally:
            reset_accelerate_state()
            torch.set_num_threads(threads)

    env, argv = launch_command(opts, options_file, port=free_port() if opts.num_machines == 1 else None)
    # Run accelerate with this interpreter so the workers see the same environment.
    full = [sys.executable, "-c", _ACCELERATE_QUIET_ON_CTRL_C] + argv[2:]
    child_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    if opts.cpu_threads:
        child_env["OMP_NUM_THREADS"] = str(opts.cpu_threads)
    # Ctrl-C reaches the workers too (one process group): wait for them to stop before saying what was kept.
    proc = subprocess.Popen(full, env=child_env)
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.wait()
        _stop_interrupted(opts)
    if rc in (130, -signal.SIGINT):
        _stop_interrupted(opts)
    if error_file.is_file():
        raise TuluError(error_file.read_text())
    if rc != 0:
        raise TuluError(f"training processes failed (exit status {rc}); the log above has the first error")
    return out
