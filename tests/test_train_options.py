"""`tulu train sft` validation, dry runs (launch command, DeepSpeed JSON), example recipes, error paths."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests._train_helpers import base_args, run_cli, write_chat_data, one_torch_thread  # noqa: F401 (autouse fixture)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _dry(args: list[str]):
    r = run_cli(args + ["--dry-run"])
    assert r.exit_code == 0, r.output
    text = r.stdout
    # two JSON documents on stdout: the resolved options, then the launch description
    dec = json.JSONDecoder()
    opts, end = dec.raw_decode(text)
    launch, _ = dec.raw_decode(text[end:].lstrip())
    return opts, launch


def _usage(path: Path) -> list[str] | None:
    m = re.search(r"^# usage: tulu (.+)$", path.read_text(), re.M)
    return shlex.split(m.group(1)) if m else None


@pytest.fixture
def no_disk_checks(monkeypatch):
    """The published recipes name hub models and data files absent here: these tests pin how their
    options resolve, so --dry-run's disk preflight (tests/test_bad_input_train.py) is skipped."""
    monkeypatch.setattr("tulu_cli.train.launch.preflight", lambda opts: None)


def test_every_training_example_passes_dry_run(no_disk_checks):
    found = 0
    for path in sorted(EXAMPLES.glob("*.yaml")):
        usage = _usage(path)
        if not usage or usage[0] != "train":
            continue
        args = [a if a != f"examples/{path.name}" else str(path) for a in usage]
        opts, launch = _dry(args)
        assert opts["model"] and launch["command"], path
        found += 1
    assert found >= 3


def test_tulu2_7b_recipe_resolves_to_the_published_setup(no_disk_checks):
    opts, launch = _dry(["train", "sft", "-c", str(EXAMPLES / "tulu2_7b_sft.yaml")])
    assert (opts["learning_rate"], opts["max_seq_length"], opts["num_epochs"], opts["warmup_ratio"]) == (2e-5, 8192, 2, 0.03)
    ds = launch["deepspeed_config"]
    assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"]["enabled"]
    assert ds["train_batch_size"] == 128 and ds["gradient_accumulation_steps"] == 32
    assert "--use_deepspeed" in launch["command"] and "--num_processes 4" in launch["command"]
    assert launch["accelerate"]["total_batch_size"] == 128


def test_dry_run_two_cpu_processes_uses_the_real_multi_process_launcher(tiny_model, tmp_path):
    data = write_chat_data(tmp_path / "d.jsonl", n=4)
    _, launch = _dry(base_args(tiny_model, data, tmp_path / "o", tmp_path / "c", num_processes=2, cpu=True))
    cmd = launch["command"]
    assert cmd.startswith("ACCELERATE_USE_CPU=true accelerate launch") and "--multi_gpu" in cmd and "--num_processes 2" in cmd
    assert "-m tulu_cli.train.worker" in cmd and launch["deepspeed_config"] is None
    assert launch["accelerate"]["process_group_backend"] == "gloo"
    _, one = _dry(base_args(tiny_model, data, tmp_path / "o", tmp_path / "c"))
    assert one["launch"].startswith("in-process")
    assert not (tmp_path / "o").exists()  # a dry run writes nothing


@pytest.mark.parametrize("stage", [None, 2, 3])
def test_multi_machine_command_becomes_torchrun_with_this_machines_rank_in_accelerate(tiny_model, tmp_path, stage):
    """The dry-run command, parsed and expanded by accelerate's own launcher code, starts this machine's share only."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    data = write_chat_data(tmp_path / "d.jsonl", n=4)
    extra = {"deepspeed_stage": stage} if stage else {}
    args = base_args(tiny_model, data, tmp_path / "o", tmp_path / "c", num_processes=16, num_machines=2, machine_rank=1,
                     main_process_ip="10.1.2.3", main_process_port=29555, cpu=True, **extra)
    _, launch = _dry(args)
    argv = shlex.split(launch["command"])
    start = argv.index("accelerate")
    assert argv[start + 1] == "launch" and argv[-1].endswith("tulu_options.machine1.json")
    ns = launch_command_parser().parse_args(argv[start + 2 :])
    ns, _, _ = _validate_launch_command(ns)
    if stage:
        assert ns.deepspeed_multinode_launcher == "standard"
        ns.deepspeed_fields_from_accelerate_config = ""  # what accelerate's launch_command sets without a config file
        cmd, _ = prepare_deepspeed_cmd_env(ns)
        assert cmd is None  # None: torchrun in this process; pdsh would be ["deepspeed", "--hostfile", ...] ignoring the rank
    else:
        prepare_multi_gpu_env(ns)
    assert (ns.nnodes, ns.node_rank, ns.nproc_per_node, ns.rdzv_endpoint) == ("2", 1, "8", "10.1.2.3:29555")


def test_user_deepspeed_config_gets_auto_values_filled(tiny_model, tmp_path):
    data = write_chat_data(tmp_path / "d.jsonl", n=4)
    cfg = tmp_path / "ds.json"
    cfg.write_text(json.dumps({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "bf16": {"enabled": "auto"}}))
    _, launch = _dry(base_args(tiny_model, data, tmp_path / "o", tmp_path / "c", deepspeed_config=cfg, per_device_batch_size=2, gradient_accumulation_steps=3))
    ds = launch["deepspeed_config"]
    assert ds["train_micro_batch_size_per_gpu"] == 2 and ds["gradient_accumulation_steps"] == 3 and ds["bf16"]["enabled"] is False


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"offload_params": True, "deepspeed_stage": 2}, "--offload-params needs --deepspeed-stage 3"),
        ({"total_batch_size": 10, "per_device_batch_size": 4}, "not a multiple of per-device batch size"),
        ({"total_batch_size": 8, "gradient_accumulation_steps": 2}, "are exclusive"),
        ({"deepspeed_stage": 1}, "--deepspeed-stage"),
        ({"reduce_loss": "median"}, "--reduce-loss"),
        ({"checkpointing_steps": "often"}, "--checkpointing-steps"),
        ({"num_machines": 2, "num_processes": 2}, "--main-process-ip"),
        ({"resume": "auto", "overwrite_output_dir": True}, "contradict"),
    ],
)
def test_impossible_combinations_exit_2(tiny_model, tmp_path, extra, message):
    data = write_chat_data(tmp_path / "d.jsonl", n=4)
    r = run_cli(base_args(tiny_model, data, tmp_path / "o", tmp_path / "c", **extra) + ["--dry-run"])
    assert r.exit_code == 2, r.output
    assert message in r.output


def _fails(args, message):
    r = run_cli(args)
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output
    assert "Traceback" not in r.output


def test_missing_model_path(tmp_path):
    data = write_chat_data(tmp_path / "d.jsonl", n=4)
    _fails(base_args(tmp_path / "nope", data, tmp_path / "o", tmp_path / "c"), "--model")
    _fails(base_args(tmp_path / "nope", data, tmp_path / "o", tmp_path / "c"), "no such folder")
    (tmp_path / "empty").mkdir()
    _fails(base_args(tmp_path / "empty", data, tmp_path / "o", tmp_path / "c"), "no config.json in this folder")


def test_unreadable_or_malformed_train_file(tiny_model, tmp_path):
    _fails(base_args(tiny_model, tmp_path / "missing.jsonl", tmp_path / "o", tmp_path / "c"), "missing.jsonl: training file does not exist")
    bad = write_chat_data(tmp_path / "bad.jsonl", n=3)
    with open(bad, "a") as f:
        f.write('{"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}\n')
        f.write("{not json\n")
    _fails(base_args(tiny_model, bad, tmp_path / "o", tmp_path / "c"), "bad.jsonl:4: field 'messages[1].role'")
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_sequence_length_above_model_limit(tiny_model, tmp_path):
    data = write_chat_data(tmp_path / "d.jsonl", n=4)
    args = base_args(tiny_model, data, tmp_path / "o", tmp_path / "c")
    args[args.index("--max-seq-length") + 1] = "4096"
    _fails(args, "--max-seq-length 4096 is above the model's limit of 2048")


def test_fp16_on_cpu_and_unknown_template(tiny_model, tmp_path):
    data = write_chat_data(tmp_path / "d.jsonl", n=4)
    args = base_args(tiny_model, data, tmp_path / "o", tmp_path / "c", cpu=True)
    args[args.index("--dtype") + 1] = "fp16"
    _fails(args, "--dtype fp16 needs a GPU")
    _fails(base_args(tiny_model, data, tmp_path / "o", tmp_path / "c", template="nope"), "--template nope: unknown template")
    import importlib.util

    if importlib.util.find_spec("flash_attn") is None:
        _fails(base_args(tiny_model, data, tmp_path / "o", tmp_path / "c", attn_implementation="flash_attention_2"), "flash-attn package is not installed")


def test_previous_run_is_not_clobbered_and_missing_checkpoint_is_named(tiny_model, tmp_path):
    data = write_chat_data(tmp_path / "d.jsonl", n=4)
    out = tmp_path / "o"
    out.mkdir()
    (out / "tulu_run.json").write_text("{}")
    _fails(base_args(tiny_model, data, out, tmp_path / "c"), "holds a previous run")
    _fails(base_args(tiny_model, data, tmp_path / "o2", tmp_path / "c", resume=str(tmp_path / "ckpt")), "no such checkpoint folder")


def test_plot_without_metrics_is_a_clear_error(tmp_path):
    _fails(["train", "plot", str(tmp_path)], "no metrics.jsonl here")


def test_plot_dpi_sets_the_png_resolution(tmp_path):
    import struct

    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": i, "loss": 2.0 / i, "lr": 1e-5}) + "\n" for i in range(1, 4)))

    def size(png):  # width and height from the PNG's IHDR chunk
        return struct.unpack(">II", png.read_bytes()[16:24])

    assert run_cli(["train", "plot", str(tmp_path)]).exit_code == 0
    default = size(tmp_path / "metrics.png")
    r = run_cli(["train", "plot", str(tmp_path), "--dpi", "50", "-o", str(tmp_path / "small.png")])
    assert r.exit_code == 0, r.output
    assert size(tmp_path / "small.png") == (default[0] // 2, default[1] // 2)  # default 100 dpi
    _fails(["train", "plot", str(tmp_path), "--dpi", "0"], "--dpi: Input should be greater than 0")


def test_collators():
    from tulu_cli.data.collate import PackingCollator, PaddingCollator

    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [-100, 9]}]
    pad = PaddingCollator(pad_token_id=0)(rows)
    assert pad["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert pad["labels"].tolist() == [[-100, 6, 7], [-100, 9, -100]]
    assert pad["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    packed = PackingCollator()(rows)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert packed["labels"].tolist() == [[-100, 6, 7, -100, 9]]


def test_packed_forward_matches_separate_forwards(tiny_model):
    """Attention never crosses examples: packed logits equal each example's own logits (sdpa)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tulu_cli.data.collate import PackingCollator

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(4, 1000, (n,), generator=g).tolist(), "labels": [0] * n} for n in (7, 12, 5)]
    batch = PackingCollator()(rows)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        start = 0
        for r in rows:
            n = len(r["input_ids"])
            alone = model(input_ids=torch.tensor([r["input_ids"]]), use_cache=False).logits[0]
            torch.testing.assert_close(packed[start : start + n], alone, rtol=1e-4, atol=1e-4)
            start += n


def test_packed_sdpa_kernel_matches_dense_block_mask(tiny_model):
    """The per-example SDPA used with --packing equals transformers' block-diagonal-mask SDPA."""
    import torch
    from transformers import AutoModelForCausalLM

    from tulu_cli.data.collate import PackingCollator
    from tulu_cli.models import register_packed_sdpa

    fast = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation=register_packed_sdpa())
    dense = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa")
    g = torch.Generator().manual_seed(1)
    rows = [{"input_ids": torch.randint(4, 1000, (n,), generator=g).tolist(), "labels": [0] * n} for n in (9, 3, 14, 1)]
    batch = PackingCollator()(rows)
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}
    a, b = fast(**inputs).logits, dense(**inputs).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    a.sum().backward()  # and it trains
    assert fast.model.layers[0].self_attn.q_proj.weight.grad is not None


def test_missing_tracker_package_is_named(tiny_model, tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here; the refusal only happens without it")
    data = write_chat_data(tmp_path / "d.jsonl", n=4)
    _fails(base_args(tiny_model, data, tmp_path / "o", tmp_path / "c", report_to="wandb"), "the wandb package is not installed")
