"""`--slurm FILE.sbatch`: a batch script that runs one training command on every node of a Slurm allocation.

The resolved options go to a YAML file beside the script; each node runs
`tulu train RECIPE -c THAT.yaml --machine-rank $SLURM_NODEID --main-process-ip $MASTER_ADDR
--main-process-port $MASTER_PORT`, machine 0 being the first host of the allocation.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from tulu_cli.options.base import options_to_dict
from tulu_cli.options.train import TrainOptions

# Filled in per node from the Slurm environment, so never written into the config file.
RENDEZVOUS = ("machine_rank", "main_process_ip", "main_process_port")
DEFAULT_PORT = 29500


def config_path(script: Path) -> Path:
    return Path(script).with_suffix(".yaml")


def node_command(opts: TrainOptions, config: Path) -> str:
    """The line every node runs (inside `bash -c '...'`, so the variables are this node's)."""
    tulu = f"{shlex.quote(sys.executable)} -m tulu_cli.cli.main"
    return (
        f'exec {tulu} train {opts.recipe} -c {shlex.quote(str(Path(config).resolve()))} '
        '--machine-rank "$SLURM_NODEID" --main-process-ip "$MASTER_ADDR" --main-process-port "$MASTER_PORT"'
    )


def script_text(opts: TrainOptions, config: Path) -> str:
    nodes = opts.num_machines
    per_node = opts.num_processes // nodes
    gpus = [] if opts.use_cpu else [f"#SBATCH --gpus-per-node={per_node}"]
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=tulu-{opts.recipe}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        *gpus,
        "#SBATCH --exclusive",
        f"# Written by `tulu train {opts.recipe} --slurm`: {nodes} node(s) x {per_node} process(es). Add the partition, time",
        "# and account lines your cluster wants; submit with `sbatch` from any directory.",
        "set -euo pipefail",
        f"cd {shlex.quote(os.getcwd())}  # relative paths in the config are relative to where it was written",
        "# Rendezvous: machine 0 is the first host of the allocation; each node's rank is its SLURM_NODEID.",
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        f'export MASTER_PORT="${{MASTER_PORT:-{opts.main_process_port or DEFAULT_PORT}}}"',
        f"srun --nodes={nodes} --ntasks-per-node=1 bash -c {shlex.quote(node_command(opts, config))}",
        "",
    ]
    return "\n".join(lines)


def config_text(opts: TrainOptions) -> str:
    import yaml

    values = {k: v for k, v in options_to_dict(opts).items() if k not in RENDEZVOUS and k != "recipe"}
    header = f"# options of `tulu train {opts.recipe}` run by the Slurm script beside this file (rendezvous flags come from Slurm)\n"
    return header + yaml.safe_dump(values, sort_keys=False)


def write(opts: TrainOptions, script: Path) -> tuple[Path, Path]:
    """Write ``script`` and its config (same name, .yaml); return both paths."""
    script = Path(script)
    config = config_path(script)
    script.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((config, config_text(opts)), (script, script_text(opts, config))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    script.chmod(0o755)
    return script, config
