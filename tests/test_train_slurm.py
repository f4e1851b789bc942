"""`tulu train ... --slurm FILE.sbatch`: the script's text and its config (the loopback run is in test_train_distributed.py)."""

from __future__ import annotations

import sys

import yaml

from tests._train_helpers import base_args, run_cli, write_chat_data, one_torch_thread  # noqa: F401 (autouse fixture)


def test_slurm_script_runs_the_same_command_on_every_node_with_slurms_rendezvous(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_chat_data(tmp_path / "d.jsonl", n=4)
    script = tmp_path / "jobs" / "sft.sbatch"
    args = base_args(tiny_model, data, tmp_path / "out", tmp_path / "c", num_processes=16, num_machines=2, deepspeed_stage=3,
                     learning_rate=1e-5, slurm=script)
    r = run_cli(args)
    assert r.exit_code == 0, r.output
    config = tmp_path / "jobs" / "sft.yaml"
    assert r.output.strip() == f"wrote {script} and {config}; submit with: sbatch {script}"
    assert not (tmp_path / "out").exists()  # nothing trained, nothing tokenized
    lines = script.read_text().splitlines()
    assert lines[:6] == ["#!/bin/bash", "#SBATCH --job-name=tulu-sft", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1",
                         "#SBATCH --gpus-per-node=8", "#SBATCH --exclusive"]
    assert "set -euo pipefail" in lines and f"cd {tmp_path}  # relative paths in the config are relative to where it was written" in lines
    assert 'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in lines
    assert 'export MASTER_PORT="${MASTER_PORT:-29500}"' in lines
    assert lines[-1] == (
        f"srun --nodes=2 --ntasks-per-node=1 bash -c 'exec {sys.executable} -m tulu_cli.cli.main train sft -c {config} "
        '--machine-rank "$SLURM_NODEID" --main-process-ip "$MASTER_ADDR" --main-process-port "$MASTER_PORT"\''
    )
    # the config holds every resolved option except the three that come from Slurm
    values = yaml.safe_load(config.read_text())
    assert values["num_machines"] == 2 and values["num_processes"] == 16 and values["deepspeed_stage"] == 3
    assert values["learning_rate"] == 1e-5 and values["train_files"] == [str(data)]
    assert not {"machine_rank", "main_process_ip", "main_process_port", "recipe"} & set(values)

    # --dry-run prints the script and writes nothing
    r = run_cli(args[: args.index("--slurm")] + ["--slurm", str(tmp_path / "other.sbatch"), "--main-process-port", "29611", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert 'export MASTER_PORT="${MASTER_PORT:-29611}"' in r.output and not (tmp_path / "other.sbatch").exists()


def test_slurm_config_resolves_back_to_the_same_options(tiny_model, tmp_path):
    from tulu_cli.options import resolve_options
    from tulu_cli.options.dpo import DPOOptions
    from tulu_cli.train.slurm import config_text

    data = write_chat_data(tmp_path / "d.jsonl", n=4)
    opts = DPOOptions(model=str(tiny_model), train_files=[str(data)], lora=True, num_processes=4, num_machines=2,
                      main_process_ip="$MASTER_ADDR", beta=0.2, total_batch_size=8)
    (tmp_path / "c.yaml").write_text(config_text(opts))
    back = resolve_options(DPOOptions, tmp_path / "c.yaml", {"machine_rank": 1, "main_process_ip": "10.0.0.7", "main_process_port": 29501})
    assert back.model_dump(exclude={"machine_rank", "main_process_ip", "main_process_port"}) == opts.model_dump(
        exclude={"machine_rank", "main_process_ip", "main_process_port"})
    assert (back.machine_rank, back.main_process_ip, back.main_process_port) == (1, "10.0.0.7", 29501)
