"""IFEval scoring: loaders, strict/loose aggregation, determinism, and the paper's GPT-4 figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.ifeval import (
    evaluate_ifeval,
    load_inputs,
    load_responses,
    loose_variants,
    score_ifeval,
)

INPUTS = [
    {
        "key": 1,
        "prompt": "Write two sentences about cats. Do not use commas.",
        "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_sentences"],
        "kwargs": [{}, {"num_sentences": 3, "relation": "less than"}],
    },
    {
        "key": 2,
        "prompt": "Answer in lowercase with a title in <<>>.",
        "instruction_id_list": ["change_case:english_lowercase", "detectable_format:title"],
        "kwargs": [{}, {}],
    },
]
RESPONSES = {
    INPUTS[0]["prompt"]: "Cats sleep a lot. They also purr.",
    # The first line is upper-case chatter: strict fails, loose (first line removed) follows.
    INPUTS[1]["prompt"]: "Sure! Here It Is\n<<the quiet morning>>\nthe sun rises slowly over the hills and "
    "the birds begin to sing in the trees near the old house.",
}


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_strict_and_loose_metrics_on_hand_made_responses():
    metrics = score_ifeval(INPUTS, RESPONSES)
    assert metrics["num_prompts"] == 2 and metrics["num_instructions"] == 4
    assert metrics["prompt_level_strict_acc"] == 0.5
    assert metrics["inst_level_strict_acc"] == 0.75
    assert metrics["prompt_level_loose_acc"] == 1.0
    assert metrics["inst_level_loose_acc"] == 1.0
    per = metrics["per_instruction"]["change_case:english_lowercase"]
    assert per == {"count": 1, "strict": 0.0, "loose": 1.0}
    assert metrics["per_category"]["punctuation"]["strict"] == 1.0


def test_per_example_results():
    examples = evaluate_ifeval(INPUTS, [{"prompt": p, "response": r} for p, r in RESPONSES.items()])
    assert [e.follow_all_strict for e in examples] == [True, False]
    assert examples[1].follow_instruction_list_strict == [False, True]
    assert examples[1].follow_instruction_list_loose == [True, True]
    row = examples[1].to_dict()
    assert row["key"] == 2 and row["follow_all_instructions_loose"] is True


def test_empty_response_follows_nothing():
    metrics = score_ifeval(INPUTS[:1], {INPUTS[0]["prompt"]: "   "})
    assert metrics["inst_level_loose_acc"] == 0.0


def test_loose_variants():
    variants = loose_variants("*Title*\nbody **bold**\nend")
    assert variants[:4] == ["*Title*\nbody **bold**\nend", "body **bold**\nend", "*Title*\nbody **bold**",
                            "body **bold**"]
    assert variants[4:] == [v.replace("*", "") for v in variants[:4]]


def test_loaders_and_missing_responses(tmp_path):
    inputs = load_inputs(_write_jsonl(tmp_path / "input_data.jsonl", INPUTS))
    assert [i.key for i in inputs] == [1, 2]
    responses = load_responses(
        _write_jsonl(tmp_path / "resp.jsonl", [{"prompt": INPUTS[0]["prompt"], "response": "Ok."}])
    )
    with pytest.raises(TuluError, match=r"no response for 1 of 2 prompts \(first: key 2"):
        score_ifeval(inputs, responses)


@pytest.mark.parametrize(
    "row, message",
    [
        # the shared reader's wording (tulu_cli.jsonl.json_problem), as for every other JSONL file
        ("{not json", r"input_data.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes \(column 2\)"),
        ("[1, 2]", r"input_data.jsonl:2: expected a JSON object"),
        ({"key": 5, "instruction_id_list": [], "kwargs": []}, r"input_data.jsonl:2: missing field 'prompt'"),
        ({"key": 5, "prompt": "p", "instruction_id_list": ["nope:x"], "kwargs": [{}]},
         r"input_data.jsonl:2: unknown instruction id 'nope:x'"),
        ({"key": 5, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": []},
         r"input_data.jsonl:2: 'instruction_id_list' has 1 entries but 'kwargs' has 0"),
        ({**INPUTS[0], "prompt": "other"}, r"input_data.jsonl:2: key 1 appears twice \(first at line 1\)"),
        ({"key": 5, "prompt": "p", "instruction_id_list": ["length_constraints:number_words"],
          "kwargs": [{"num_words": "ten", "relation": "at least"}]},
         r"input_data.jsonl:2: field 'kwargs': .*'num_words' must be int"),
    ],
)
def test_malformed_input_rows(tmp_path, row, message):
    path = _write_jsonl(tmp_path / "input_data.jsonl", [INPUTS[0], row])
    with pytest.raises(TuluError, match=message):
        load_inputs(path)


def test_malformed_response_rows(tmp_path):
    path = _write_jsonl(tmp_path / "responses.jsonl", [{"prompt": "a", "response": "b"}, {"prompt": "a"}])
    with pytest.raises(TuluError, match=r"responses.jsonl:2: field 'response' is missing"):
        load_responses(path)
    path = _write_jsonl(tmp_path / "responses.jsonl", [{"prompt": "a", "response": 3}])
    with pytest.raises(TuluError, match=r"responses.jsonl:1: field 'response' is not a string"):
        load_responses(path)
    with pytest.raises(TuluError, match="file not found"):
        load_responses(tmp_path / "missing.jsonl")


def test_language_detection_is_seeded_and_leaves_langdetect_alone():
    import langdetect

    before = langdetect.DetectorFactory.seed
    ambiguous = "ja no si"  # unseeded langdetect says 'fi' or 'sl' at random for this text
    results = {score_ifeval(
        [{"key": 1, "prompt": "p", "instruction_id_list": ["language:response_language"],
          "kwargs": [{"language": "fi"}]}], {"p": ambiguous})["inst_level_strict_acc"] for _ in range(20)}
    assert len(results) == 1
    assert langdetect.DetectorFactory.seed == before


# --------------------------------------------------------------------------- real data

PAPER = {  # GPT-4 (Nov 2023) as published: accuracy, and the count it stands for
    "prompt_level_strict_acc": 0.7689,
    "inst_level_strict_acc": 0.8357,
    "prompt_level_loose_acc": 0.7930,
    "inst_level_loose_acc": 0.8537,
}


def _gpt4_metrics(shared_data):
    folder = shared_data / "ifeval"
    inputs = load_inputs(folder / "input_data_gpt4_20231107_145030.jsonl")
    responses = load_responses(folder / "input_response_data_gpt4_20231107_145030.jsonl")
    return score_ifeval(inputs, responses)


def test_reproduces_the_paper_gpt4_figures(shared_data):
    metrics = _gpt4_metrics(shared_data)
    assert metrics["num_prompts"] == 541 and metrics["num_instructions"] == 834
    assert len(metrics["per_instruction"]) == 25
    for name, published in PAPER.items():
        total = metrics["num_prompts"] if name.startswith("prompt") else metrics["num_instructions"]
        ours, theirs = round(metrics[name] * total), round(published * total)
        assert abs(ours - theirs) <= 1, (name, metrics[name], published)
    # Our exact, deterministic values (see docs/ifeval.md for the letter_frequency rule).
    assert round(metrics["prompt_level_strict_acc"] * 541) == 415
    assert round(metrics["inst_level_strict_acc"] * 834) == 696
    assert round(metrics["prompt_level_loose_acc"] * 541) == 429
    assert round(metrics["inst_level_loose_acc"] * 834) == 712


def test_scoring_is_deterministic_across_processes(shared_data):
    folder = shared_data / "ifeval"
    code = (
        "import json, sys\n"
        "from tulu_cli.evaluation.ifeval import load_inputs, load_responses, evaluate_ifeval\n"
        f"f = {str(folder)!r}\n"
        "ex = evaluate_ifeval(load_inputs(f + '/input_data_gpt4_20231107_145030.jsonl'),\n"
        "                     load_responses(f + '/input_response_data_gpt4_20231107_145030.jsonl'))\n"
        "print(json.dumps([e.follow_instruction_list_strict + e.follow_instruction_list_loose for e in ex]))\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1] and runs[0].startswith("[[")


def test_current_input_file_does_not_match_gpt4_responses(shared_data):
    folder = shared_data / "ifeval"
    inputs = load_inputs(folder / "input_data.jsonl")
    responses = load_responses(folder / "input_response_data_gpt4_20231107_145030.jsonl")
    with pytest.raises(TuluError, match="first: key 2785"):
        score_ifeval(inputs, responses)
