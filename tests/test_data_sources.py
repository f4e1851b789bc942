"""Each converter on a small fixture in its source's published raw layout."""

from __future__ import annotations

import gzip
import json
import random
import shutil
import zipfile

import pytest
from _data_helpers import FIXTURES, convert, prepare, rows

from tulu_cli.data.sources import SOURCES
from tulu_cli.data.sources.oasst1 import paths
from tulu_cli.data.sources.sharegpt import split_pairs
from tulu_cli.data.templates import WITH_INPUT, WITHOUT_INPUT
from tulu_cli.data.validate import check_row


def _turns(row):
    return [(m["role"], m["content"]) for m in row["messages"]]


def test_every_source_row_is_valid_and_numbered(tmp_path):
    for name in ("flan_v2", "cot", "dolly", "self_instruct", "stanford_alpaca", "gpt4_alpaca", "code_alpaca", "science", "open_orca"):
        out = convert(name, tmp_path)
        assert out, name
        assert [r["id"] for r in out] == [f"{name}_{i}" for i in range(len(out))]
        for r in out:
            assert check_row(r) is None, (name, r)


def test_flan_v2_newline_rule(tmp_path):
    out = convert("flan_v2", tmp_path)
    prompts = [r["messages"][0]["content"] for r in out]
    assert prompts[0] == 'Translate "The weather is nice today." to German?\n'  # newline added
    assert prompts[1].endswith("- no\n") and not prompts[1].endswith("\n\n")  # already ends in newline
    assert prompts[2].endswith("Title:")  # ends with a colon: left alone
    assert out[0]["messages"][1]["content"] == "Das Wetter ist heute schön."


def test_flan_v2_100k_subset_accepts_open_instruct_file_name(tmp_path):
    raw = tmp_path / "raw" / "flan_v2"
    raw.mkdir(parents=True)
    shutil.copy(FIXTURES / "flan_v2/flan_v2_resampled_50k.jsonl", raw / "tulu_v1_resampled_flan_100k.jsonl")
    out = convert("flan_v2", tmp_path, "-s", "subset=100k", raw_dir=tmp_path / "raw")
    assert len(out) == 4


def test_cot_reads_zero_and_few_shot_files(tmp_path):
    out = convert("cot", tmp_path)
    assert len(out) == 6
    assert out[0]["messages"][0]["content"].endswith("Let's think step by step:")  # colon: no newline
    assert out[3]["messages"][0]["content"].startswith("Q: If there are 3 cars")


def test_cot_count_is_split_between_zero_and_few_shot(tmp_path):
    out = convert("cot", tmp_path, "--max-examples", "4")
    zero = [r for r in out if "Q: " not in r["messages"][0]["content"][:3]]
    assert len(out) == 4 and len(zero) == 2


def test_oasst1_all_replies_walks_every_assistant_leaf(tmp_path):
    out = convert("oasst1", tmp_path)
    assert [len(r["messages"]) for r in out] == [4, 4, 2]
    last = [r["messages"][-1]["content"] for r in out]
    assert last[2] == "Monads are burritos."
    assert not any("[deleted reply]" in t for r in out for _, t in _turns(r))
    # The second tree ends with an unanswered prompter reply: nothing from it.
    assert not any("haiku" in r["messages"][0]["content"] for r in out)


def test_oasst1_top1_keeps_the_best_rated_reply(tmp_path):
    out = convert("oasst1", tmp_path, "-s", "top_k_reply=1")
    assert len(out) == 1
    # The deleted reply (quality 0.95) is never followed; among the rest the 0.9 one wins,
    # and below it the 0.85 reply beats 0.7.
    assert out[0]["messages"][1]["content"].startswith("A monad is a way")
    assert out[0]["messages"][3]["content"].startswith("Here is a Maybe class")


def test_oasst1_reads_uncompressed_file_too(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    with gzip.open(FIXTURES / "oasst1/2023-04-12_oasst_ready.trees.jsonl.gz", "rb") as f:
        (raw / "2023-04-12_oasst_ready.trees.jsonl").write_bytes(f.read())
    assert len(convert("oasst1", tmp_path, raw_dir=raw)) == 3


def test_oasst1_tree_walk_unit():
    leaf = {"role": "assistant", "text": "a2", "replies": []}
    root = {"role": "prompter", "text": "q", "replies": [{"role": "assistant", "text": "a1", "replies": [{"role": "prompter", "text": "q2", "replies": [leaf]}]}]}
    assert paths(root, None) == [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]]


def test_oasst1_all_replies_deleted_is_not_a_leaf():
    gone = {"role": "prompter", "text": "?", "deleted": True, "replies": []}
    root = {"role": "prompter", "text": "q", "replies": [{"role": "assistant", "text": "a", "replies": [gone]}]}
    assert paths(root, None) == []
    root["replies"][0]["replies"] = []
    assert len(paths(root, None)) == 1


def test_dolly_uses_context_as_input(tmp_path):
    out = convert("dolly", tmp_path, "-s", "template=plain")
    assert out[0]["messages"][0]["content"] == (
        "When did Virgin Australia start operating?\n\nVirgin Australia, the trading name of Virgin Australia Airlines "
        "Pty Ltd, is an Australian-based airline. It commenced services on 31 August 2000 as Virgin Blue, with two "
        "aircraft on a single route.\n\n"
    )
    assert out[1]["messages"][0]["content"] == "Which is a species of fish? Tope or Rope\n\n"


def test_random_templates_come_from_the_published_tables(tmp_path):
    out = convert("stanford_alpaca", tmp_path)
    first = out[0]["messages"][0]["content"]  # no input
    assert any(t.format(instruction="Give three tips for staying healthy.") == first for t, _, _ in WITHOUT_INPUT)
    second = out[1]["messages"][0]["content"]
    assert any(t.format(instruction="Identify the odd one out.", input="Twitter, Instagram, Telegram") == second for t, _, _ in WITH_INPUT)


def test_bad_template_option_is_rejected(tmp_path):
    r = prepare("dolly", "--raw-dir", FIXTURES, "-o", tmp_path / "o.jsonl", "-s", "template=fancy")
    assert r.exit_code == 2
    assert "template" in r.output and "random" in r.output


def test_self_instruct_gpt4_code_alpaca(tmp_path):
    assert [m["content"] for m in convert("self_instruct", tmp_path, "-s", "template=plain")[2]["messages"]] == [
        "Convert the temperature from Celsius to Fahrenheit.\n\n25 degrees Celsius\n\n",
        "77 degrees Fahrenheit",
    ]
    assert convert("gpt4_alpaca", tmp_path)[1]["messages"][1]["content"].startswith("The odd one out is Telegram.")
    assert convert("code_alpaca", tmp_path)[0]["messages"][1]["content"] == "arr = [2, 4, 6, 8, 10]"


def test_super_ni_zero_and_few_shot_and_mmlu_excluded(tmp_path):
    out = convert("super_ni", tmp_path, "-s", "zero_shot_per_task=2", "-s", "few_shot_per_task=2")
    assert len(out) == 8  # 2 tasks x (2 zero-shot + 2 few-shot); the mmmlu task is skipped
    assert not any("MMLU-derived" in r["messages"][0]["content"] for r in out)
    few = [r for r in out if "\nInput:\n" in r["messages"][0]["content"]]
    assert len(few) == 4
    p = few[0]["messages"][0]["content"]
    assert p.endswith("Output:\n") and p.count("Output:\n") == 3  # two exemplars + the instance
    # The first output of the instance is the target.
    assert all(r["messages"][1]["content"] != "Maybe" for r in out)


def test_super_ni_reads_the_github_zip(tmp_path):
    raw = tmp_path / "raw" / "super_ni"
    raw.mkdir(parents=True)
    src = FIXTURES / "super_ni/natural-instructions"
    with zipfile.ZipFile(raw / "master.zip", "w") as z:
        for f in src.rglob("*"):
            if f.is_file():
                z.write(f, "natural-instructions-master/" + str(f.relative_to(src)))
    out = convert("super_ni", tmp_path, raw_dir=tmp_path / "raw")
    assert len(out) == 10


def test_unnatural_instructions_constraints(tmp_path):
    out = convert("unnatural_instructions", tmp_path)
    assert len(out) == 3
    assert "The output should be a single integer." in out[0]["messages"][0]["content"]
    assert "None" not in out[1]["messages"][0]["content"]  # "None." constraints are dropped
    assert out[2]["messages"][1]["content"] == "The mouse was chased by the cat."


def test_unnatural_instructions_from_zip(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    with zipfile.ZipFile(raw / "core_data.zip", "w") as z:
        z.write(FIXTURES / "unnatural_instructions/core_data.jsonl", "core_data.jsonl")
    assert len(convert("unnatural_instructions", tmp_path, raw_dir=raw)) == 3


def test_baize_transcripts(tmp_path):
    out = convert("baize", tmp_path)
    assert len(out) == 8
    assert _turns(out[0]) == [
        ("user", "How do I make a cup of tea?"),
        ("assistant", "Boil water, steep the tea bag for three minutes, then remove it."),
        ("user", "Thanks! Anything else?"),
        ("assistant", "You're welcome. Let me know if you have more questions."),
    ]


def test_sharegpt_rules_without_splitting(tmp_path):
    """max_tokens=0: each conversation's even-length prefix is one chunk, kept only if its turns are human, gpt, human..."""
    r = prepare("sharegpt", "--raw-dir", FIXTURES, "-o", tmp_path / "s.jsonl", "-s", "max_tokens=0")
    assert r.exit_code == 0, r.output
    out = rows(tmp_path / "s.jsonl")
    # dropped: the system-turn, Bing, human-human and user/chatgpt conversations (open-instruct kept only human/gpt)
    assert [r["messages"][0]["content"] for r in out] == ["Summarize the plot of Hamlet in two sentences.", "Explain tokenization.", "Are you ChatGPT?"]
    long = out[1]
    assert len(long["messages"]) == 6  # trailing unanswered "Thanks" removed
    stats = json.loads((tmp_path / "s.stats.json").read_text())
    assert stats["components"][0]["notes"]["chunks with a turn other than human/gpt in alternation dropped"] == 4


def test_sharegpt_splits_under_the_token_limit(tmp_path, tiny_model):
    out = convert("sharegpt", tmp_path, "--tokenizer", tiny_model, "-s", "max_tokens=200")
    long = [r for r in out if any("detokenization" in m["content"] for m in r["messages"])]
    assert len(long) == 1
    # The first pair (a ~450-token answer) exceeds 200 tokens alone and is left out; the last two pairs fit together.
    assert [m["content"][:16] for m in long[0]["messages"]] == ["Shorter please.", "Tokenization spl", "And detokenizati", "It joins the pie"]


def _chunks(turns, max_tokens, cost=10):
    from tulu_cli.data.sources.base import Context
    from tulu_cli.data.sources.sharegpt import conversation_chunks

    ctx = Context(source="sharegpt", options={"max_tokens": max_tokens}, rng=random.Random(0))
    count = None if max_tokens == 0 else (lambda texts: [cost] * len(texts))
    record = {"id": "x", "conversations": [{"from": who, "value": text} for who, text in turns]}
    return [[(m["role"], m["content"]) for m in chunk] for chunk in conversation_chunks(record, "w", ctx, count, max_tokens)]


def test_sharegpt_splits_first_then_drops_chunks_by_speaker():
    """open-instruct split the raw conversations first, then kept the chunks whose turns are human, gpt, human, gpt..."""
    bing = [("human", "h1"), ("gpt", "g1"), ("human", "h2"), ("bing", "b2"), ("human", "h3"), ("gpt", "g3"), ("human", "h4"), ("gpt", "g4")]
    # pairs of 20 tokens, limit 40: chunks [0, 4) and [4, 8); the Bing turn drops the first one only
    assert _chunks(bing, 40) == [[("user", "h3"), ("assistant", "g3"), ("user", "h4"), ("assistant", "g4")]]
    assert _chunks(bing, 0) == []  # unsplit: the whole conversation has the Bing turn
    system_first = [("system", "s"), ("human", "h1"), ("gpt", "g1"), ("human", "h2"), ("gpt", "g2"), ("human", "h3")]
    assert _chunks(system_first, 40) == []  # pairs are positional: (system, human), (gpt, human)... all dropped
    assert _chunks([("user", "u"), ("chatgpt", "c")], 40) == []  # only the speakers human and gpt
    assert _chunks([("Human", "u"), ("gpt", "c")], 40) == []  # compared as written


def test_sharegpt_without_tokenizer_says_what_to_do(tmp_path):
    r = prepare("sharegpt", "--raw-dir", FIXTURES, "-o", tmp_path / "s.jsonl")
    assert r.exit_code == 2
    assert "needs a tokenizer: pass --tokenizer" in r.output


def test_sharegpt_uses_presplit_file(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(FIXTURES / "sharegpt/sg_90k_part1_html_cleaned.json", raw / "sharegpt_html_cleaned_and_split_2048.json")
    out = convert("sharegpt", tmp_path, "-s", "max_tokens=2048", raw_dir=raw)  # no tokenizer needed
    assert len(out) == 2


def test_split_pairs_unit():
    """scripts/split_sharegpt_conversations.py's chunks, worked by hand (costs per turn, pairs summed)."""
    assert split_pairs([10, 10, 10, 10, 10, 10], 60) == [(0, 6)]
    assert split_pairs([10, 10, 10, 10, 10, 10, 10, 10], 40) == [(0, 4), (4, 8)]  # the last pair joins a chunk
    # the last pair does not fit: it opens a chunk that is never written
    assert split_pairs([10, 10, 10, 10, 10, 10], 40) == [(0, 4)]
    assert split_pairs([10, 100, 5, 5], 50) == []  # first pair too long alone; the last pair opens a chunk: lost
    assert split_pairs([5, 5, 100, 1, 5, 5, 5, 5], 50) == [(0, 2), (4, 8)]  # a pair too long alone is left out
    assert split_pairs([5, 5, 100, 1, 5, 5], 50) == [(0, 2)]
    assert split_pairs([30, 30], 50) == []  # one pair, too long
    assert split_pairs([], 10) == []


def test_lima_pairs_and_odd_tail(tmp_path):
    out = convert("lima", tmp_path)
    assert [len(r["messages"]) for r in out] == [2, 4, 2]
    assert out[1]["messages"][-1]["content"].startswith("Waves roll in")


def test_wizardlm_json_and_parquet_backup(tmp_path):
    out = convert("wizardlm", tmp_path)
    assert [len(r["messages"]) for r in out] == [2, 4]
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = tmp_path / "raw" / "wizardlm"
    raw.mkdir(parents=True)
    data = json.loads((FIXTURES / "wizardlm/WizardLM_evol_instruct_V2_143k.json").read_text())
    pq.write_table(pa.Table.from_pylist(data), raw / "train-00000-of-00001.parquet")
    (tmp_path / "b").mkdir()
    assert convert("wizardlm", tmp_path / "b", raw_dir=tmp_path / "raw") == out


def test_open_orca_keeps_every_system_prompt(tmp_path, tiny_model):
    """open-instruct's convert_open_orca_data writes the system turn of every row, an empty one too."""
    out = convert("open_orca", tmp_path)
    assert out[0]["messages"][0] == {
        "role": "system",
        "content": "You are an AI assistant. You will be given a task. You must generate a detailed and long answer.",
    }
    assert out[1]["messages"] == [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Given a sentence in Spanish, provide a paraphrase in English: La casa es grande."},
        {"role": "assistant", "content": "The house is big."},
    ]
    assert check_row(out[1]) is None
    from transformers import AutoTokenizer

    from tulu_cli.chat import encode_messages

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    ids = encode_messages(out[1]["messages"], tok, 512)["input_ids"]
    text = tok.decode(ids, skip_special_tokens=False)
    assert "<|system|>\n\n<|user|>\nGiven a sentence in Spanish" in text  # trained as open-instruct did


def test_science_dataset_label(tmp_path):
    out = convert("science", tmp_path)
    assert [r["dataset"] for r in out] == ["science.scifact_json", "science.qasper_truncated_4000"]
    assert out[0]["id"] == "science_0"


def test_hard_coded_xlsx_and_repeat(tmp_path):
    out = convert("hard_coded", tmp_path, "-s", "repeat=10")
    assert len(out) == 30
    assert out[0]["messages"][0]["content"] == "Tell me about yourself."
    assert len({r["id"] for r in out}) == 30


def test_ultrafeedback_preference_rows(tmp_path):
    out = convert("ultrafeedback", tmp_path)
    assert len(out) == 2
    assert out[0]["chosen"][-1]["content"].startswith("100 degrees")
    assert out[0]["rejected"][-1]["content"] == "It boils at 50 degrees."
    assert out[0]["chosen"][:-1] == out[0]["rejected"][:-1]


@pytest.mark.parametrize(
    "source,file,extra,check",
    [
        ("alpaca", "my_alpaca.json", (), lambda o: o[1]["messages"][0]["content"] == "Add the numbers.\n\n2 and 3\n\n"),
        ("sharegpt_style", "chats.jsonl", (), lambda o: o[0]["messages"][0] == {"role": "system", "content": "Be brief."} and len(o[1]["messages"]) == 4),
        ("prompt_completion", "prompt_completion.jsonl", (), lambda o: o[0]["messages"][1]["content"] == " Paris."),
        ("messages", "messages.jsonl", (), lambda o: o[0]["dataset"] == "mine" and o[0]["id"] == "messages_0" and o[1]["dataset"] == "messages"),
        ("preference", "preference.jsonl", (), lambda o: o[0]["rejected"][-1]["content"] == "Seven." and o[1]["chosen"][0]["content"] == "Hi"),
    ],
)
def test_generic_formats(tmp_path, source, file, extra, check):
    out_path = tmp_path / "o.jsonl"
    r = prepare(source, "--input", FIXTURES / "generic" / file, "-o", out_path, *extra)
    assert r.exit_code == 0, r.output
    assert check(rows(out_path))


def test_generic_source_needs_input(tmp_path):
    r = prepare("alpaca", "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 2 and "pass --input FILE" in r.output


def test_registry_has_every_published_source():
    expected = {
        "flan_v2", "cot", "oasst1", "dolly", "self_instruct", "super_ni", "unnatural_instructions", "stanford_alpaca",
        "gpt4_alpaca", "code_alpaca", "baize", "sharegpt", "lima", "wizardlm", "open_orca", "science", "hard_coded",
        "ultrafeedback", "alpaca", "sharegpt_style", "prompt_completion", "messages", "preference",
    }
    assert expected == set(SOURCES)
    for s in SOURCES.values():
        if not s.generic:
            sets = s.file_sets({k: o.default for k, o in s.options.items()})
            assert sets and all(f.name for fs in sets for f in fs)


def test_sharegpt_bad_tokenizer_path(tmp_path):
    r = prepare("sharegpt", "--raw-dir", FIXTURES, "-o", tmp_path / "s.jsonl", "--tokenizer", tmp_path / "nope")
    assert r.exit_code == 2
    assert f"--tokenizer {tmp_path / 'nope'}: cannot load tokenizer" in r.output


# Where each source's files are published (default options), as pinned: the commit ids and digests are facts from
# the publishers' histories (see docs/data.md, "Pinned downloads"), not from the code under test.
PUBLISHED = {
    "flan_v2": [("hf://hamishivi/tulu_mix_store/flan_v2_resampled_50k.jsonl", None)],
    "cot": [("hf://hamishivi/tulu_mix_store/cot_zsopt.jsonl", None), ("hf://hamishivi/tulu_mix_store/cot_fsopt.jsonl", None)],
    "oasst1": [("hf://OpenAssistant/oasst1/2023-04-12_oasst_ready.trees.jsonl.gz@fdf72ae0827c1cda404aff25b6603abec9e3399b",
                "2a9a8fd343e9b28e04a895a669d3253f82d93e9c174d440199ae19d5fafbdff7")],
    "dolly": [("hf://databricks/databricks-dolly-15k/databricks-dolly-15k.jsonl@bdd27f4d94b9c1f951818a7da7fd7aeea5dbff1a",
               "2df9083338b4abd6bceb5635764dab5d833b393b55759dffb0959b6fcbf794ec")],
    "self_instruct": [("https://raw.githubusercontent.com/yizhongw/self-instruct/a40887bbd9a5e55b38ec2d0880d3e53f5ccbd6f0/"
                       "data/gpt3_generations/batch_221203/all_instances_82K.jsonl", None)],
    "super_ni": [(None, None), ("https://github.com/allenai/natural-instructions/archive/refs/heads/master.zip", None)],
    "unnatural_instructions": [(None, None), ("https://github.com/orhonovich/unnatural-instructions/raw/a9cf886b1e9d10f336b091a95814e1905eaeb6cf/data/core_data.zip", None)],
    "stanford_alpaca": [("https://github.com/tatsu-lab/stanford_alpaca/raw/f13496211289def0ff88ae673389ae14a818b4b3/alpaca_data.json", None)],
    "gpt4_alpaca": [("https://github.com/Instruction-Tuning-with-GPT-4/GPT-4-LLM/raw/38b93b75a80b019cc3aad362ca6f5bb0c3908959/data/alpaca_gpt4_data.json", None)],
    "code_alpaca": [("https://github.com/sahil280114/codealpaca/raw/0d265112c705f88848783dfdf9bdca9df64d8e35/data/code_alpaca_20k.json", None)],
    "baize": [(f"https://github.com/project-baize/baize-chatbot/raw/786102995acd62bead1cfe947969639443999b79/data/{n}_chat_data.json", None)
              for n in ("alpaca", "medical", "quora", "stackoverflow")],
    "sharegpt": [(None, None)] + [
        (f"hf://anon8231489123/ShareGPT_Vicuna_unfiltered/HTML_cleaned_raw_dataset/sg_90k_part{i}_html_cleaned.json"
         "@192ab2185289094fc556ec8ce5ce1e8e587154ca", None) for i in (1, 2)],
    "lima": [("hf://GAIR/lima/train.jsonl", None)],
    "wizardlm": [("hf://WizardLM/WizardLM_evol_instruct_V2_196k/WizardLM_evol_instruct_V2_143k.json", None),
                 ("hf://ai2-adapt-dev/wizardlm-backup/data/train-00000-of-00001.parquet", None)],
    "open_orca": [("hf://Open-Orca/OpenOrca/1M-GPT4-Augmented.parquet", None)],
    "science": [("hf://hamishivi/tulu_mix_store/science_train.jsonl", None)],
    "hard_coded": [("hf://hamishivi/tulu_mix_store/hard_coded_examples.xlsx", None)],
    "ultrafeedback": [("hf://HuggingFaceH4/ultrafeedback_binarized/data/train_prefs-00000-of-00001.parquet"
                       "@3949bf5f8c17c394422ccfab0c31ea9c20bdeb85", None)],
}


def test_published_addresses_are_pinned_to_commits_with_digests_where_known():
    got = {}
    for src in SOURCES.values():
        if src.generic:
            continue
        sets = src.file_sets({k: o.default for k, o in src.options.items()})
        got[src.name] = [(f.url, f.sha256) for files in sets for f in files]
    assert got == PUBLISHED
