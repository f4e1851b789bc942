"""Multi-process `tulu train sft` on CPU, weights compared: DDP, ZeRO-2, ZeRO-3, and two "machines" on loopback.

Every comparison runs the same global batches: 1 process x accumulation 4 and 2 processes x
accumulation 2 split each step into the same four micro-batches of 2 examples (process r takes
its slice of each global micro-batch). A large Adam epsilon and active clipping make the update
depend on the gradient's scale, so a wrong loss scaling shows in the weights, not only in the
logged grad norm (plain Adam is nearly scale-invariant).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from tests._train_helpers import base_args, load_weights, metrics, run_cli, write_chat_data, one_torch_thread  # noqa: F401 (autouse fixture)

# fp32 throughout; measured max |w_a - w_b| after 3 steps: see the comments at the assertions.
TOL = 1e-6
STEPS = 3
SCALE_SENSITIVE = dict(max_steps=STEPS, per_device_batch_size=2, learning_rate=1e-3, lr_scheduler="constant",
                       max_grad_norm=1.0, weight_decay=0.1, adam_epsilon=1e-3)


def max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def assert_same_run(out, ref, tol=TOL, rel=1e-5):
    """Same per-step loss and pre-clip grad norm, and weights within ``tol`` (returns the max difference)."""
    got, want = metrics(out), metrics(ref)
    assert [x["step"] for x in got] == [x["step"] for x in want] == list(range(1, STEPS + 1))
    assert [x["loss"] for x in got] == pytest.approx([x["loss"] for x in want], rel=rel)
    assert [x["grad_norm"] for x in got] == pytest.approx([x["grad_norm"] for x in want], rel=rel)
    assert all(x["grad_norm"] > 1.0 for x in want)  # clipping is active
    diff = max_diff(load_weights(out), load_weights(ref))
    assert diff < tol, diff
    return diff


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist_data")
    return write_chat_data(d / "train.jsonl", n=16, seed=2), d / "cache"


def _args(model, data, out, **extra):
    train, cache = data
    return base_args(model, train, out, cache, **{**SCALE_SENSITIVE, **extra})


def _run(args):
    r = run_cli(args)
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def one_process(tiny_model, data, tmp_path_factory):
    """In-process reference runs, 1 process x accumulation 4, per reduction."""
    runs = {}
    for reduce in ("sum", "mean"):
        out = tmp_path_factory.mktemp(f"one_{reduce}") / "run"
        _run(_args(tiny_model, data, out, gradient_accumulation_steps=4, reduce_loss=reduce))
        runs[reduce] = out
    return runs


@pytest.fixture(scope="module")
def ddp_sum(tiny_model, data, tmp_path_factory):
    """One machine, 2 processes (DDP over gloo) x accumulation 2, --reduce-loss sum."""
    out = tmp_path_factory.mktemp("ddp_sum") / "run"
    _run(_args(tiny_model, data, out, num_processes=2, gradient_accumulation_steps=2, reduce_loss="sum"))
    assert json.loads((out / "tulu_run.json").read_text())["world_size"] == 2
    return out


@pytest.mark.slow
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_two_processes_x_accumulation_2_equal_one_process_x_accumulation_4(tiny_model, data, one_process, ddp_sum, tmp_path, reduce):
    if reduce == "sum":
        out = ddp_sum
    else:
        out = tmp_path / "ddp_mean"
        _run(_args(tiny_model, data, out, num_processes=2, gradient_accumulation_steps=2, reduce_loss="mean"))
    assert_same_run(out, one_process[reduce])  # measured: 7.5e-9 (sum), 7.5e-9 (mean)


def _two_machines(args: list[str], log_dir) -> None:
    """Launch the same command twice, as machine 0 and machine 1 of a loopback 'cluster' (1 CPU process each)."""
    from tulu_cli.train.launch import free_port

    port = free_port()
    multi = ["--num-processes", "2", "--num-machines", "2", "--main-process-ip", "127.0.0.1", "--main-process-port", str(port), "--timeout", "300"]
    procs, logs = [], []
    for rank in (0, 1):
        log = open(log_dir / f"machine{rank}.log", "w")
        logs.append(log)
        cmd = [sys.executable, "-m", "tulu_cli.cli.main", *args, *multi, "--machine-rank", str(rank)]
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True))
    try:
        codes = [p.wait(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for log in logs:
            log.close()
    text = "\n".join(f"--- machine {r}\n" + (log_dir / f"machine{r}.log").read_text()[-3000:] for r in (0, 1))
    assert codes == [0, 0], text


@pytest.mark.slow
# DDP over two machines is the Slurm test below: its script runs this same launch on two loopback nodes
# (one suite-minute saved by not running it twice).
@pytest.mark.parametrize("stage", [3], ids=["zero3"])
def test_two_machines_on_loopback_equal_one_machine_with_two_processes(tiny_model, data, ddp_sum, tmp_path, stage):
    out = tmp_path / "run"
    extra = {"deepspeed_stage": stage} if stage else {}
    _two_machines(_args(tiny_model, data, out, gradient_accumulation_steps=2, reduce_loss="sum", **extra), tmp_path)
    run = json.loads((out / "tulu_run.json").read_text())
    assert run["world_size"] == 2 and run["options"]["num_machines"] == 2 and run["options"]["machine_rank"] == 0
    # each machine's launcher wrote what its own worker read
    assert json.loads((out / "tulu_options.machine1.json").read_text())["options"]["machine_rank"] == 1
    # measured: 1.2e-7 (zero3); 0 for DDP (the Slurm test)
    assert_same_run(out, ddp_sum)


@pytest.mark.slow
def test_slurm_script_run_on_two_loopback_nodes_equals_one_machine(tiny_model, data, ddp_sum, tmp_path):
    """The generated sbatch script itself, run once per "node" with a stand-in srun and scontrol."""
    from tulu_cli.train.launch import free_port

    out, script = tmp_path / "run", tmp_path / "job.sbatch"
    r = run_cli(_args(tiny_model, data, out, gradient_accumulation_steps=2, reduce_loss="sum", num_processes=2, num_machines=2,
                      cpu=True, timeout=300, slurm=script))
    assert r.exit_code == 0, r.output
    fake = tmp_path / "bin"
    fake.mkdir()
    # srun: run the task of this node (its SLURM_NODEID); scontrol: the allocation's hosts, one a line
    (fake / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    (fake / "scontrol").write_text('#!/bin/bash\n[[ "$1 $2" == "show hostnames" ]] && tr , "\\n" <<< "$3"\n')
    for f in ("srun", "scontrol"):
        (fake / f).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "127.0.0.1,127.0.0.2",
           "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    procs, logs = [], []
    for node in (0, 1):
        logs.append(open(tmp_path / f"node{node}.log", "w"))
        procs.append(subprocess.Popen(["bash", str(script)], env={**env, "SLURM_NODEID": str(node)}, stdout=logs[-1], stderr=subprocess.STDOUT,
                                      start_new_session=True))
    try:
        codes = [p.wait(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for log in logs:
            log.close()
    assert codes == [0, 0], "\n".join((tmp_path / f"node{n}.log").read_text()[-3000:] for n in (0, 1))
    run = json.loads((out / "tulu_run.json").read_text())
    assert run["options"]["main_process_ip"] == "127.0.0.1" and run["options"]["main_process_port"] == int(env["MASTER_PORT"])
    assert run["world_size"] == 2 and run["options"]["num_machines"] == 2 and run["options"]["machine_rank"] == 0
    # each node's launcher wrote what its own worker read
    assert json.loads((out / "tulu_options.machine1.json").read_text())["options"]["machine_rank"] == 1
    assert_same_run(out, ddp_sum)  # measured: 0


@pytest.mark.slow
def test_zero2_two_processes_equal_ddp(tiny_model, data, ddp_sum, tmp_path):
    out = tmp_path / "zero2"
    _run(_args(tiny_model, data, out, num_processes=2, gradient_accumulation_steps=2, reduce_loss="sum", deepspeed_stage=2, checkpointing_steps=2))
    assert (out / "deepspeed_config.json").is_file()
    assert (out / "checkpoints" / "step_00000002" / "pytorch_model").is_dir()
    assert_same_run(out, ddp_sum)  # measured: 1.2e-7


@pytest.mark.slow
def test_zero3_grows_partitioned_embeddings_and_resumes_its_sharded_state(data, tmp_path):
    from tulu_cli.testing import make_tiny_model

    # a tokenizer without pad: the embeddings must grow while ZeRO-3 has them partitioned
    model = make_tiny_model(tmp_path / "nopad", with_pad_token=False, vocab_size=1023)
    out = tmp_path / "zero3"
    args = _args(model, data, out, num_processes=2, deepspeed_stage=3, reduce_loss="sum", checkpointing_steps=2)
    _run(args)
    m = metrics(out)
    w = load_weights(out)
    assert w["model.embed_tokens.weight"].shape == (1024, 64) and w["lm_head.weight"].shape == (1024, 64)
    before = load_weights(model)
    assert any(not torch.equal(before[k], w[k].to(before[k].dtype)) for k in before if before[k].shape == w[k].shape)
    assert (out / "checkpoints" / "step_00000002" / "COMPLETE").is_file()
    # killed after the step-2 checkpoint: resuming the sharded ZeRO-3 state redoes step 3 identically
    (out / "tulu_run.json").unlink()
    _run(args + ["--resume", "auto"])
    assert [x["step"] for x in metrics(out)] == [1, 2, 3]
    assert metrics(out)[-1]["loss"] == pytest.approx(m[-1]["loss"], rel=1e-6)
    resumed = load_weights(out)
    for k in w:
        torch.testing.assert_close(resumed[k], w[k], rtol=1e-6, atol=1e-7)
