"""MMLU as open-instruct f3424591 ran it: prompt bytes, pandas' reading of the CSVs, the next-token
answer rule on a SentencePiece tokenizer (where it differs from the continuation rule), and the
leading-BOS rule of --chat-template tokenizer (issue 11, items 4, 10 and 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _eval_helpers import invoke
from tulu_cli.errors import TuluError
from tulu_cli.evaluation.tasks import TaskContext, get_task
from tulu_cli.evaluation.tasks.mmlu import read_mmlu_csv

SPECIALS = ["<unk>", "<s>", "</s>"]
CHATML = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful AI assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_sp_tokenizer():
    """A Llama-2-style SentencePiece BPE tokenizer: legacy normalizer (prepend "▁", spaces -> "▁"),
    no pre-tokenizer, byte fallback, <s> added in front. Pieces: the bytes, printable ASCII, "▁▁"
    and "▁A".."▁D", with "▁▁" merged first as in Llama 2 (id 259 before "▁A" 319).

    Built as a plain PreTrainedTokenizerFast: transformers 5's LlamaTokenizer class rebuilds a
    non-legacy pipeline on load (``" A"`` -> ``▁A``), while tokenizer.json holds the legacy one
    that transformers 4 (the reference's) used.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + ["▁"] + [chr(c) for c in range(33, 127)]
    pieces += ["▁▁", "▁A", "▁B", "▁C", "▁D"]
    merges = [("▁", "▁")] + [("▁", letter) for letter in "ABCD"]
    raw = Tokenizer(models.BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=merges, unk_token="<unk>",
                               fuse_unk=True, byte_fallback=True))
    raw.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    raw.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    raw.add_special_tokens(SPECIALS)
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   clean_up_tokenization_spaces=False)


def make_sp_model(path: Path, bare: tuple[float, ...], spaced: tuple[float, ...]) -> Path:
    """A tiny Llama on that tokenizer whose next-token logits, at every position, rank the tokens
    "A".."D" by ``bare`` and "▁A".."▁D" by ``spaced`` (all other tokens 0): the layers add nothing
    (output projections zeroed), every embedding points along dimension 0, and only the eight
    letter rows of the output matrix read it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_sp_tokenizer()
    tok.chat_template = None
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 10.0
        model.lm_head.weight.zero_()
        for letter, b, s in zip("ABCD", bare, spaced):
            model.lm_head.weight[tok.convert_tokens_to_ids(letter), 0] = b
            model.lm_head.weight[tok.convert_tokens_to_ids("▁" + letter), 0] = s
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory) -> Path:
    # Bare letters favour C, "▁"-letters favour B: the two rules must pick different answers.
    return make_sp_model(tmp_path_factory.mktemp("sp") / "model", bare=(0.1, 0.2, 0.9, 0.3), spaced=(0.5, 1.0, 0.2, 0.1))


def _mmlu_dir(root: Path, test_csv: str, dev_csv: str | None = None) -> Path:
    (root / "mmlu/data/test").mkdir(parents=True)
    (root / "mmlu/data/dev").mkdir(parents=True)
    (root / "mmlu/data/test/abstract_algebra_test.csv").write_text(test_csv, encoding="utf-8")
    if dev_csv is not None:
        (root / "mmlu/data/dev/abstract_algebra_dev.csv").write_text(dev_csv, encoding="utf-8")
    return root


# ---- tokens ------------------------------------------------------------------------------------
def test_sp_tokenizer_gives_different_tokens_to_the_two_rules():
    tok = build_sp_tokenizer()
    # The reference's answer id: encode(" A", add_special_tokens=False)[-1] is the bare "A" ...
    assert tok.convert_ids_to_tokens(tok.encode(" A", add_special_tokens=False)) == ["▁▁", "A"]
    # ... while " A" after the prompt becomes "▁A" (what the continuation rule scores).
    context = "\n<|assistant|>\nThe answer is:"
    ctx_tokens = tok.convert_ids_to_tokens(tok.encode(context))
    full_tokens = tok.convert_ids_to_tokens(tok.encode(context + " A"))
    assert ctx_tokens[0] == "<s>" and ctx_tokens[-3:] == ["i", "s", ":"]
    assert full_tokens == ctx_tokens + ["▁A"]
    assert tok.convert_ids_to_tokens(tok.encode("\n")) == ["<s>", "▁", "<0x0A>"]  # byte fallback


# ---- prompts ------------------------------------------------------------------------------------
def test_prompt_bytes_zero_shot_chat_and_plain(tmp_path):
    data = _mmlu_dir(tmp_path, "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.,0,1,2,3,B\n")
    task = get_task("mmlu_0shot")
    ex = task.load(TaskContext(data_dir=data))[0]
    chat = task.build(ex, TaskContext(data_dir=data, chat_template="tulu"))
    assert chat.prompt == (
        "<|user|>\nThe following are multiple choice questions (with answers) about  abstract algebra.\n\n"
        "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer:\n"
        "<|assistant|>\nThe answer is:"
    )
    plain = task.build(ex, TaskContext(data_dir=data, chat_template="none"))
    assert plain.prompt == (
        "The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
        "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer:"
    )
    assert chat.choices == [" A", " B", " C", " D"] and chat.next_token and ex.reference == "B"


def test_prompt_bytes_five_shot_from_the_real_dev_file(shared_data):
    task = get_task("mmlu_5shot")
    ctx = TaskContext(data_dir=shared_data / "eval", chat_template="none")
    ex = next(e for e in task.load(ctx) if e.id == "abstract_algebra/0")
    prompt = task.build(ex, ctx).prompt
    assert prompt.startswith(
        "The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
        "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
        "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K are "
        "subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\n"
        "Answer: B\n\n"
    )
    assert prompt.count("\nAnswer: ") == 5
    assert prompt.endswith("\n\nFind the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
                           "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:")


# ---- pandas' reading of the CSVs (item 10) ------------------------------------------------------
def test_csv_cells_read_as_pandas_prints_them(tmp_path):
    # Typed per column over the whole file, as pandas.read_csv(header=None) does (checked against
    # pandas 2.2.2 and 3.1.1): col 1 ints ("007" -> 7), col 2 floats because of the 1.5/NA
    # ("2" -> 2.0, "1e3" -> 1000.0), col 3 text with None/empty -> nan, col 4 booleans ("true" -> True).
    path = tmp_path / "x_test.csv"
    path.write_text('q1,0,1.5,x,True,A\nq2,7,2,None,False,B\n"q3, quoted",007,NA,y,true,C\n\nq4,-3,1e3,,FALSE,D\n')
    assert read_mmlu_csv(path) == [
        ["q1", "0", "1.5", "x", "True", "A"],
        ["q2", "7", "2.0", "nan", "False", "B"],
        ["q3, quoted", "7", "nan", "y", "True", "C"],
        ["q4", "-3", "1000.0", "nan", "False", "D"],
    ]
    path.write_text("q1,1,2,3,4,A\nq2,5,6,7,8,B\n")  # all-integer columns keep printing as integers
    assert read_mmlu_csv(path)[0] == ["q1", "1", "2", "3", "4", "A"]
    path.write_text("q1,1,2,3,4,A\nq2,1,2,3,x y,B\n")  # one word makes the column text: kept as written
    assert read_mmlu_csv(path)[0][1:5] == ["1", "2", "3", "4"]


def test_csv_cells_reach_the_prompt_as_pandas_prints_them(tmp_path):
    data = _mmlu_dir(tmp_path, "Which is it?,1,2,None,4,A\nAnd now?,5,6.5,7,8,D\n")
    task = get_task("mmlu_0shot")
    ctx = TaskContext(data_dir=data, chat_template="none")
    prompts = [task.build(ex, ctx).prompt for ex in task.load(ctx)]
    assert prompts[0].endswith("Which is it?\nA. 1\nB. 2.0\nC. nan\nD. 4\nAnswer:")
    assert prompts[1].endswith("And now?\nA. 5\nB. 6.5\nC. 7.0\nD. 8\nAnswer:")


@pytest.mark.parametrize(
    "text, message",
    [
        ("Q?,a,b,c,d, A\n", "x_test.csv:1: answer column is ' A', not one of A, B, C, D"),
        ("Q?,a,b,c,d,A\nNA,a,b,c,d,B\n", "x_test.csv:2: the question is 'NA', which pandas reads as NaN"),
        ("1,a,b,c,d,A\n2,a,b,c,d,B\n", "x_test.csv: every question reads as a int value under pandas' typing"),
        ("Q?,a,b,c,A\n", "x_test.csv:1: expected 6 columns"),
    ],
)
def test_csv_rows_the_reference_could_not_use_are_errors(tmp_path, text, message):
    path = tmp_path / "x_test.csv"
    path.write_text(text)
    with pytest.raises(TuluError, match=message.replace("(", r"\(").replace("?", r"\?")):
        read_mmlu_csv(path)


# ---- the answer rule on a real run (item 4) -----------------------------------------------------
def test_next_token_rule_is_the_default_and_continuation_an_option(sp_model, tmp_path):
    data = _mmlu_dir(tmp_path / "data", "What is 2 + 2?,1,4,5,6,C\nWhat is 3 + 3?,6,7,8,9,C\n")
    args = ["eval", "run", "-m", str(sp_model), "-t", "mmlu_0shot", "-d", str(data), "--json"]
    out = tmp_path / "out"
    res = invoke(args + ["-o", str(out)])
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in (out / "mmlu_0shot/predictions.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in rows] == ["C", "C"]  # the bare tokens "A".."D": C is highest
    results = json.loads((out / "results.json").read_text())
    assert results["results"]["mmlu_0shot"]["metrics"]["average_acc"] == 1.0
    assert {k: v["token"] for k, v in results["backend"]["next_token_candidates"].items()} == {
        " A": "A", " B": "B", " C": "C", " D": "D"
    }
    # The continuation rule reads "▁A".."▁D" (B is highest); same folder: nothing resumed across rules.
    res = invoke(args + ["-o", str(out), "--task-arg", "scoring=continuation"])
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in (out / "mmlu_0shot/predictions.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in rows] == ["B", "B"]
    results = json.loads((out / "results.json").read_text())
    assert results["results"]["mmlu_0shot"]["num_resumed"] == 0
    assert results["results"]["mmlu_0shot"]["metrics"]["average_acc"] == 0.0
    assert results["options"]["task_args"] == {"scoring": "continuation"}


def test_scoring_option_is_checked_before_the_model_loads(tmp_path):
    data = _mmlu_dir(tmp_path / "data", "Q?,a,b,c,d,A\n")
    res = invoke(["eval", "run", "-m", str(tmp_path / "no-model"), "-t", "mmlu_0shot", "-d", str(data),
                  "-o", str(tmp_path / "o"), "--task-arg", "scoring=loglik"])
    assert res.exit_code == 2 and "--task-arg scoring: 'loglik' is not one of next_token, continuation" in res.stderr
    res = invoke(["eval", "run", "-m", "m", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
                  "-t", "mmlu_5shot", "-d", str(data), "-o", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "add --task-arg scoring=continuation" in res.stderr
    assert not (tmp_path / "o2").exists()


def test_presets_declare_source_and_options():
    for name in ("mmlu_0shot", "mmlu_5shot"):
        task = get_task(name)
        assert task.source.startswith("open-instruct f3424591 eval/mmlu/run_eval.py")
        assert set(task.options) == {"subjects", "mmlu_subjects", "scoring"}


# ---- --chat-template tokenizer and BOS (item 11) ------------------------------------------------
def test_leading_bos_is_stripped_only_when_the_tokenizer_adds_it():
    from transformers import PreTrainedTokenizerFast

    from tulu_cli.evaluation.prompting import adds_bos, make_renderer
    from tulu_cli.testing import build_tiny_tokenizer

    msgs = [{"role": "user", "content": "Hi"}]
    sp = build_sp_tokenizer()
    sp.chat_template = "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    assert adds_bos(sp)
    text = make_renderer("tokenizer", sp)(msgs)
    assert text == "[INST] Hi [/INST]"
    assert sp(text)["input_ids"].count(sp.bos_token_id) == 1  # the backend's BOS only

    raw = build_tiny_tokenizer(add_bos=False)
    raw.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    # As SmolLM2's tokenizer declares it: BOS is <|im_start|>, and encoding adds nothing.
    chatml = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|im_start|>", eos_token="<|im_end|>")
    chatml.chat_template = CHATML
    assert not adds_bos(chatml)
    assert make_renderer("tokenizer", chatml)(msgs) == (
        "<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chatml_prompt_keeps_its_first_token_in_a_run(tmp_path):
    from transformers import AutoTokenizer

    from tulu_cli.testing import make_tiny_model

    model = make_tiny_model(tmp_path / "chatml", add_bos=False, chat_template=CHATML, vocab_size=1040)
    tok = AutoTokenizer.from_pretrained(model)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.bos_token, tok.eos_token = "<|im_start|>", "<|im_end|>"
    tok.save_pretrained(model)
    data = _mmlu_dir(tmp_path / "data", "What is 2 + 2?,1,4,5,6,B\n")
    res = invoke(["eval", "run", "-m", str(model), "-t", "mmlu_0shot", "-d", str(data), "-o", str(tmp_path / "o"),
                  "--chat-template", "tokenizer"])
    assert res.exit_code == 0, res.stderr
    row = json.loads((tmp_path / "o/mmlu_0shot/predictions.jsonl").read_text().splitlines()[0])
    assert row["prompt"] == (
        "<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n<|im_start|>user\n"
        "The following are multiple choice questions (with answers) about  abstract algebra.\n\n"
        "What is 2 + 2?\nA. 1\nB. 4\nC. 5\nD. 6\nAnswer:<|im_end|>\n<|im_start|>assistant\nThe answer is:"
    )
