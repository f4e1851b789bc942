"""A real model end to end: SmolLM2-135M-Instruct (ChatML, no BOS added) through encoding, training, merging and eval."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tulu_cli.cli.main import app

pytestmark = pytest.mark.slow

CONVERSATION = [
    {"role": "system", "content": "You are terse. "},
    {"role": "user", "content": " What is 2 + 2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And 3 + 3?"},
    {"role": "assistant", "content": " 6. \n"},
]


@pytest.fixture(scope="module")
def tokenizer(real_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(real_model)


def reference_encode(messages, tokenizer, max_seq_length):
    """open-instruct f3424591 finetune.py encode_with_messages_format, restated: concatenated text,
    prefix re-tokenization for the masks (the algorithm tulu replaces with offsets)."""

    def concat(msgs):
        text = ""
        for m in msgs:
            if m["role"] == "system":
                text += "<|system|>\n" + m["content"].strip() + "\n"
            elif m["role"] == "user":
                text += "<|user|>\n" + m["content"].strip() + "\n"
            else:
                text += "<|assistant|>\n" + m["content"].strip() + tokenizer.eos_token + "\n"
        return text

    def length(text):
        return len(tokenizer(text, max_length=max_seq_length, truncation=True).input_ids)

    ids = tokenizer(concat(messages).strip(), max_length=max_seq_length, truncation=True).input_ids
    labels = list(ids)
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            continue
        start = 0 if i == 0 else length(concat(messages[:i]))
        so_far = concat(messages[: i + 1])
        if i < len(messages) - 1 and messages[i + 1]["role"] == "assistant":
            so_far += "<|assistant|>\n"
        end = length(so_far)
        labels[start:end] = [-100] * (end - start)
        if end >= max_seq_length:
            break
    return ids, labels


def test_tokenizer_is_chatml_without_bos(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.bos_token == "<|im_start|>"
    assert tokenizer("Hi").input_ids == tokenizer.convert_tokens_to_ids(tokenizer.tokenize("Hi"))  # nothing added


@pytest.mark.parametrize("max_len", [2048, 24, 9])
def test_tulu_template_encoding_equals_open_instruct(tokenizer, max_len):
    from tulu_cli.chat import encode_messages

    ours = encode_messages(CONVERSATION, tokenizer, max_len)
    ids, labels = reference_encode(CONVERSATION, tokenizer, max_len)
    assert ours["input_ids"] == ids
    assert ours["labels"] == labels
    if max_len == 2048:
        trained = tokenizer.decode([t for t, lab in zip(ids, labels) if lab != -100])
        assert trained == "4.<|im_end|>\n6.<|im_end|>"  # contents stripped, eos and the newline after it trained
        assert tokenizer.decode(ids).startswith("<|system|>\nYou are terse.\n<|user|>\nWhat is 2 + 2?\n<|assistant|>\n")


def test_tokenizer_template_trains_assistant_turns_only(tokenizer):
    from tulu_cli.chat import encode_messages

    out = encode_messages(CONVERSATION[1:3], tokenizer, 2048, template="tokenizer")
    text = tokenizer.decode(out["input_ids"])
    # SmolLM2's own template: its default system turn, ChatML markers, contents as given.
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\n What is 2 + 2?<|im_end|>\n<|im_start|>assistant\n4.<|im_end|>\n"
    )
    trained = tokenizer.decode([t for t, lab in zip(out["input_ids"], out["labels"]) if lab != -100])
    assert trained == "4.<|im_end|>\n"


def test_data_inspect_shows_chatml_specials(real_model, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": CONVERSATION}) + "\n")
    res = CliRunner().invoke(app, ["data", "inspect", str(data), "--tokenizer", str(real_model), "--max-seq-length", "64"])
    assert res.exit_code == 0, res.stderr
    assert "<|im_end|>" in res.stdout


def _chat_data(path: Path, n: int = 8) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            a, b = i + 2, 2 * i + 1
            msgs = [{"role": "user", "content": f"What is {a} + {b}?"}, {"role": "assistant", "content": f"{a} + {b} = {a + b}."}]
            f.write(json.dumps({"messages": msgs}) + "\n")
    return path


def _train(kind: str, model: Path, data: Path, out: Path, *extra: str):
    args = ["train", kind, "--model", str(model), "--train-files", str(data), "--output-dir", str(out),
            "--cache-dir", str(out.parent / "cache"), "--dtype", "fp32", "--max-seq-length", "64",
            "--warmup-ratio", "0", "--per-device-batch-size", "8", "--num-epochs", "3", "--logging-steps", "1", *extra]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.stderr + res.stdout
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if "loss" in json.loads(line)]
    # One batch of all 8 rows, 3 steps: the same batch each step, so the loss must fall.
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert losses[2] < losses[1] < losses[0], losses
    return losses


def test_sft_lora_merge_on_the_real_model(real_model, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    data = _chat_data(tmp_path / "train.jsonl")
    _train("sft", real_model, data, tmp_path / "sft", "--learning-rate", "1e-4")
    _train("lora", real_model, data, tmp_path / "lora", "--learning-rate", "1e-3")
    res = CliRunner().invoke(app, ["weights", "merge", "--adapter", str(tmp_path / "lora"), "--base", str(real_model), "--output", str(tmp_path / "merged")])
    assert res.exit_code == 0, res.stderr
    ids = torch.tensor([[504, 3458, 282, 4649, 314]])
    base = AutoModelForCausalLM.from_pretrained(real_model, dtype=torch.float32)
    with torch.no_grad():
        adapted = PeftModel.from_pretrained(base, tmp_path / "lora")(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)(ids).logits
    assert torch.allclose(adapted, merged, atol=1e-4), (adapted - merged).abs().max()


def test_mmlu_answers_equal_a_plain_transformers_reading_of_the_reference_rule(real_model, shared_data, tmp_path):
    """open-instruct's MMLU rule computed here with plain transformers on the prompts tulu wrote:
    the next-token logits after the prompt, compared at encode(" " + letter)[-1]."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["eval", "run", "-m", str(real_model), "-t", "mmlu_0shot", "-d", str(shared_data / "eval"),
                                   "--limit", "2", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in (out / "mmlu_0shot" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) >= 4  # --limit is per subject: 2 questions of each subject in the shared sample
    tok = AutoTokenizer.from_pretrained(real_model)
    model = AutoModelForCausalLM.from_pretrained(real_model, dtype=torch.float32).eval()
    letter_ids = [tok.encode(" " + letter, add_special_tokens=False)[-1] for letter in "ABCD"]
    for row in rows:
        assert row["prompt"].endswith("The answer is:")
        with torch.no_grad():
            logits = model(torch.tensor([tok(row["prompt"]).input_ids])).logits[0, -1]
        expected = "ABCD"[int(torch.argmax(logits[letter_ids]))]
        assert row["answer"] == expected, (row["id"], logits[letter_ids])


# One preset of each kind of prompt and scorer the shared rows allow (the tiny-model tests run all of them).
PRESETS_ON_SHARED_ROWS = ["mmlu_5shot", "gsm_cot", "bbh_direct", "truthfulqa_mc", "ifeval", "codex_eval_temp_0.1"]


def test_presets_on_real_rows_write_well_formed_predictions(real_model, shared_data, tmp_path):
    import math as _math

    from tulu_cli.evaluation.tasks import get_task

    out = tmp_path / "out"
    res = CliRunner().invoke(app, [
        "eval", "run", "-m", str(real_model), "-t", ",".join(PRESETS_ON_SHARED_ROWS), "-d", str(shared_data / "eval"),
        "--input-file", f"ifeval={shared_data / 'ifeval' / 'input_data.jsonl'}",
        "--limit", "1", "--max-new-tokens", "32", "--n-samples", "1", "-o", str(out), "--json",
    ])
    assert res.exit_code == 0, res.stderr
    results = json.loads((out / "results.json").read_text())["results"]
    for name in PRESETS_ON_SHARED_ROWS:
        task = get_task(name)
        rows = [json.loads(line) for line in (out / name / "predictions.jsonl").read_text().splitlines()]
        assert rows, name
        for row in rows:
            assert {"id", "prompt", "output", "answer", "metrics"} <= set(row), (name, row)
            if task.kind == "generate":
                assert isinstance(row["output"], str) and row["output"].strip(), (name, row["output"])
            else:
                assert len(row["output"]) >= 2 and all(_math.isfinite(x) for x in row["output"]), (name, row["output"])
        primary = task.metrics[0]
        value = results[name]["metrics"][primary]
        assert isinstance(value, (int, float)) and 0 <= value <= 1, (name, primary, value)
