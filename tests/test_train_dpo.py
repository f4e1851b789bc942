"""`tulu train dpo` end to end on the tiny model: full and LoRA, reward metrics, reference cache, data checks."""

from __future__ import annotations

import json

import pytest

from tests._peft_helpers import adapter_config, adapter_weights, peft_args, write_preference_data
from tests._train_helpers import metrics, run_cli

DPO = dict(per_device_batch_size=4, learning_rate=1e-3, lr_scheduler="constant")


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    return write_preference_data(tmp_path_factory.mktemp("dpo_data") / "prefs.jsonl", n=12)


@pytest.mark.slow
def test_dpo_full_reward_accuracy_rises_and_reference_cache_is_reused(tiny_model, prefs, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "run"
    r = run_cli(peft_args("dpo", tiny_model, prefs, out, cache, max_steps=6, **DPO))
    assert r.exit_code == 0, r.output
    assert "computing reference log-probs for 12 pairs" in r.output
    m = metrics(out)
    assert [x["step"] for x in m] == list(range(1, 7))
    for key in ("loss", "lr", "tokens_per_second", "rewards/chosen", "rewards/rejected", "rewards/accuracy", "rewards/margin"):
        assert key in m[0], key
    # step 1: policy == reference, every reward is 0 and the loss is -log sigmoid(0)
    assert m[0]["loss"] == pytest.approx(0.693147, abs=1e-5) and m[0]["rewards/accuracy"] == 0.0
    assert m[-1]["rewards/accuracy"] == 1.0 and m[-1]["rewards/margin"] > 0.3
    assert m[-1]["loss"] < m[0]["loss"] - 0.2
    assert m[-1]["rewards/chosen"] > m[-1]["rewards/rejected"]
    assert m[-1]["rewards/margin"] == pytest.approx(m[-1]["rewards/chosen"] - m[-1]["rewards/rejected"], rel=1e-6)
    run = json.loads((out / "tulu_run.json").read_text())
    assert run["recipe"] == "dpo" and run["options"]["beta"] == 0.1 and run["data"]["examples"] == 12
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()

    # same model, data and encoding: both caches hit, and the run repeats the same numbers
    again = tmp_path / "again"
    r = run_cli(peft_args("dpo", tiny_model, prefs, again, cache, max_steps=2, **DPO))
    assert r.exit_code == 0, r.output
    assert "encoded preference pairs found in cache" in r.output and "skipped the reference pass" in r.output
    assert metrics(again)[1]["loss"] == pytest.approx(m[1]["loss"], rel=1e-5)

    # changed data: re-encoded and the reference recomputed
    changed = tmp_path / "changed.jsonl"
    changed.write_text(prefs.read_text() + json.dumps({"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}) + "\n")
    r = run_cli(peft_args("dpo", tiny_model, changed, tmp_path / "c", cache, max_steps=1, **DPO))
    assert r.exit_code == 0, r.output
    assert "encoded 13 preference pairs" in r.output and "computing reference log-probs for 13 pairs" in r.output
    assert len(list((cache / "preference" / "reference").glob("*.json"))) == 2


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lora", "qlora"])
def test_dpo_with_an_adapter_uses_the_base_as_reference(tiny_model, prefs, tmp_path, kind):
    out = tmp_path / "run"
    r = run_cli(peft_args("dpo", tiny_model, prefs, out, tmp_path / "cache", max_steps=4, lora_rank=8, lora_dropout=0,
                          reference="live" if kind == "qlora" else "precompute", **{kind: True, **DPO, "learning_rate": 1e-2, "lr_scheduler": "linear"}))
    assert r.exit_code == 0, r.output
    m = metrics(out)
    assert m[0]["loss"] == pytest.approx(0.693147, abs=1e-4)  # LoRA B starts at 0: policy == base
    assert m[-1]["rewards/accuracy"] == 1.0 and m[-1]["loss"] < m[0]["loss"]
    assert adapter_config(out)["r"] == 8 and all("lora_" in k for k in adapter_weights(out))
    assert not (out / "model.safetensors").exists()


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_identical_and_untrainable_pairs_are_reported_and_dropped(tiny_model, tmp_path):
    p = [{"role": "user", "content": "Hi?"}]
    rows = [
        {"chosen": p + [{"role": "assistant", "content": "Hello there."}], "rejected": p + [{"role": "assistant", "content": "Go away."}]},
        {"chosen": p + [{"role": "assistant", "content": "Same."}], "rejected": p + [{"role": "assistant", "content": "Same."}]},
        {"prompt": "word " * 300, "chosen": "A", "rejected": "B"},  # the prompt alone fills --max-seq-length
    ]
    data = _write(tmp_path / "p.jsonl", rows)
    r = run_cli(peft_args("dpo", tiny_model, data, tmp_path / "o", tmp_path / "c", max_steps=1, max_seq_length=64))
    assert r.exit_code == 0, r.output
    assert "dropped 1 of 3 pairs whose chosen and rejected sides are identical" in r.output
    assert "dropped 1 of 3 pairs with no response token left within --max-seq-length 64" in r.output
    assert json.loads((tmp_path / "o" / "tulu_run.json").read_text())["data"]["examples"] == 1


@pytest.mark.parametrize(
    "rows, message",
    [
        (['{"chosen": [], "rejected": []'], "p.jsonl:1: truncated JSON: the text ends before the value is complete"),
        (['{"chosen": [] "rejected": []}'], "p.jsonl:1: invalid JSON: Expecting ',' delimiter (column 15)"),
        ([{"prompt": "x", "chosen": "a"}], "p.jsonl:1: a preference row needs 'chosen' and 'rejected' (keys: chosen, prompt)"),
        ([{"chosen": "a", "rejected": "b"}], "p.jsonl:1: field 'chosen' is a string, which needs a 'prompt' field too"),
        ([{"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
           "rejected": [{"role": "user", "content": "q"}, {"role": "bot", "content": "b"}]}], "p.jsonl:1: field 'rejected[1].role': unknown role 'bot'"),
        ([{"chosen": [{"role": "user", "content": "q"}], "rejected": [{"role": "user", "content": "q"}]}], "p.jsonl:1: field 'chosen' must end with an assistant message"),
    ],
)
def test_malformed_preference_rows_exit_2_naming_line_and_field(tiny_model, tmp_path, rows, message):
    data = _write(tmp_path / "p.jsonl", rows)
    r = run_cli(peft_args("dpo", tiny_model, data, tmp_path / "o", tmp_path / "c", max_steps=1))
    assert r.exit_code == 2 and message in r.output, r.output


def test_a_bad_row_later_in_the_file_is_reported_before_training(tiny_model, prefs, tmp_path):
    data = _write(tmp_path / "p.jsonl", prefs.read_text().splitlines() + ['{"prompt": "x", "chosen": 3, "rejected": "y"}'])
    r = run_cli(peft_args("dpo", tiny_model, data, tmp_path / "o", tmp_path / "c", max_steps=1))
    assert r.exit_code == 2 and "p.jsonl:13: field 'chosen' must be a non-empty list" in r.output
    assert not (tmp_path / "o" / "metrics.jsonl").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--qlora", "--deepspeed-stage", "3"], "--qlora is data parallel only: --deepspeed-stage 3 asks DeepSpeed to shard the model"),
        (["--lora", "--qlora"], "--lora and --qlora are exclusive"),
        (["--packing"], "--packing does not apply to DPO"),
        (["--loss", "kto"], "--loss"),
        (["--loss", "ipo", "--label-smoothing", "0.1"], "--label-smoothing applies to --loss sigmoid only"),
    ],
)
def test_impossible_combinations_are_refused(tiny_model, prefs, tmp_path, extra, message):
    r = run_cli(peft_args("dpo", tiny_model, prefs, tmp_path / "o", tmp_path / "c") + extra)
    assert r.exit_code == 2 and message in r.output, r.output


def test_missing_preference_file(tiny_model, tmp_path):
    r = run_cli(peft_args("dpo", tiny_model, tmp_path / "nope.jsonl", tmp_path / "o", tmp_path / "c"))
    assert r.exit_code == 2 and "nope.jsonl: preference file does not exist" in r.output


def test_dpo_defaults_and_example_recipe_dry_run(monkeypatch):
    from pathlib import Path

    monkeypatch.setattr("tulu_cli.train.launch.preflight", lambda opts: None)  # hub model and data absent here; options only

    path = Path(__file__).resolve().parents[1] / "examples" / "dpo_tulu2_7b.yaml"
    r = run_cli(["train", "dpo", "-c", str(path), "--dry-run"])
    assert r.exit_code == 0, r.output
    dec = json.JSONDecoder()
    opts, end = dec.raw_decode(r.stdout)
    launch, _ = dec.raw_decode(r.stdout[end:].lstrip())
    assert (opts["beta"], opts["learning_rate"], opts["warmup_ratio"], opts["loss"], opts["reference"]) == (0.1, 5e-7, 0.1, "sigmoid", "precompute")
    assert launch["deepspeed_config"]["zero_optimization"]["stage"] == 3 and launch["accelerate"]["total_batch_size"] == 32


def test_dpo_resume_equals_uninterrupted(tiny_model, prefs, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    common = dict(max_steps=4, checkpointing_steps=2, **DPO)
    full = tmp_path / "full"
    assert run_cli(peft_args("dpo", tiny_model, prefs, full, cache, **common)).exit_code == 0
    killed = tmp_path / "killed"
    (killed / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step_00000002", killed / "checkpoints" / "step_00000002")
    r = run_cli(peft_args("dpo", tiny_model, prefs, killed, cache, resume="auto", **common))
    assert r.exit_code == 0, r.output
    assert "skipped the reference pass" in r.output  # the reference of step 0, not of the resumed policy
    # the loop's extra metrics are shown beside the loss when there is no live display
    assert any(line.startswith("[tulu] step 4/4 loss") and " rewards/accuracy " in line for line in r.output.splitlines()), r.output
    a, b = metrics(full), metrics(killed)
    assert [x["step"] for x in b] == [3, 4]
    for x, y in zip(a[2:], b):
        for key in ("loss", "rewards/accuracy", "rewards/margin"):
            assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-7)

    # without the cached reference, a resumed full fine-tune cannot rebuild it: refused, not silently wrong
    shutil.rmtree(cache / "preference" / "reference")
    shutil.rmtree(killed / "checkpoints" / "step_00000004")
    r = run_cli(peft_args("dpo", tiny_model, prefs, killed, cache, resume="auto", **common))
    assert r.exit_code == 2 and "reference log-probs of this run are no longer in the cache" in r.output


def test_row_layouts_give_the_same_conversations():
    from tulu_cli.data.preference import parse_pair

    user = {"role": "user", "content": "Q?"}
    good, bad = {"role": "assistant", "content": "good"}, {"role": "assistant", "content": "bad"}
    want = ([user, good], [user, bad])
    assert parse_pair({"chosen": [user, good], "rejected": [user, bad]}, "f:1") == want
    assert parse_pair({"prompt": "Q?", "chosen": "good", "rejected": "bad"}, "f:1") == want
    # UltraFeedback-binarized on the hub: a prompt string and sides that already start with it
    assert parse_pair({"prompt": "Q?", "chosen": [user, good], "rejected": [user, bad], "score_chosen": 8.0}, "f:1") == want
    # a prompt given as messages (system turn kept) and bare assistant replies
    system = {"role": "system", "content": "Be brief."}
    assert parse_pair({"prompt": [system, user], "chosen": [good], "rejected": "bad"}, "f:1") == ([system, user, good], [system, user, bad])
