"""Evaluation inputs for tests: the MBPP+ hub split, stand-in judges and classifiers, one data folder for every preset."""

from __future__ import annotations

import os
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"

# Three MBPP+ problems in the hub's layout (evalplus tools/mbpp/to_original_fmt.py: the code is EvalPlus's
# canonical solution, the prompt MBPP's text, the test a script over inputs and expected results).
_ASSERTION = (
    "import numpy as np\n\n\ndef assertion(out, exp, atol):\n    exact_match = out == exp\n"
    "    if not exact_match and atol != 0:\n        np.testing.assert_allclose(out, exp, atol=atol)\n"
    "    else:\n        assert exact_match\n\n"
)
_LOOP = "for i, (inp, exp) in enumerate(zip(inputs, results)):\n    assertion({}(*inp), exp, 0)\n"
MBPPPLUS_PROBLEMS = [
    {
        "task_id": 3,
        "prompt": "Write a python function to identify non-prime numbers.",
        "code": "\nimport math\ndef is_not_prime(n):\n    if n == 1:\n        return True\n    for i in range(2, int(math.sqrt(n))+1):\n"
        "        if n % i == 0:\n            return True\n    return False\n",
        "test": _ASSERTION + "inputs = [[1], [2], [10], [35], [37]]\nresults = [True, False, True, True, False]\n" + _LOOP.format("is_not_prime"),
    },
    {
        "task_id": 4,
        "prompt": "Write a function to find the n largest integers from a given list of numbers, returned in descending order.",
        "code": "\nimport heapq as hq\ndef heap_queue_largest(nums: list,n: int) -> list:\n  largest_nums = hq.nlargest(n, nums)\n  return largest_nums\n",
        "test": _ASSERTION + "inputs = [[[25, 35, 22, 85, 14, 65, 75, 22, 58], 3]]\nresults = [[85, 75, 65]]\n" + _LOOP.format("heap_queue_largest"),
    },
    {
        "task_id": 6,
        "prompt": "Write a python function to check whether the two numbers differ at one bit position only or not.",
        "code": "\ndef is_Power_Of_Two(x: int): \n    return x > 0 and (x & (x - 1)) == 0\ndef differ_At_One_Bit_Pos(a: int,b: int):\n"
        "    return is_Power_Of_Two(a ^ b)\n",
        "test": _ASSERTION + "inputs = [[13, 9], [15, 8], [2, 4]]\nresults = [True, False, False]\n" + _LOOP.format("differ_At_One_Bit_Pos"),
    },
]
_EXTRA = {"source_file": "Benchmark Questions Verification V2.ipynb", "test_imports": [], "test_list": []}


def write_mbppplus_split(path: Path, problems: list[dict] = MBPPPLUS_PROBLEMS, filler: int = 100) -> Path:
    """A test split: ``filler`` problems first (the ones open-instruct leaves out), then ``problems``."""
    rows = [{"task_id": 1000 + i, "prompt": "Left out.", "code": "def f(x):\n  return x\n", "test": "assert False\n", **_EXTRA} for i in range(filler)]
    rows += [{**p, **_EXTRA} for p in problems]
    path.parent.mkdir(parents=True, exist_ok=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def make_toxigen_classifier(path: Path, tokenizer_from: Path, toxic_bias: float) -> Path:
    """A tiny RoBERTa sequence classifier; the output bias decides its verdict (positive: always toxic).

    With ``toxic_bias == 0`` the head reads the first hidden unit, so verdicts vary with the text.
    """
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(str(tokenizer_from))
    cfg = RobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=600, num_labels=2, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(cfg)
    with torch.no_grad():
        head = model.classifier.out_proj
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, toxic_bias]))
        if toxic_bias == 0:
            head.weight[1, 0] = 50.0
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def make_truthfulqa_judge(path: Path, tiny_model: Path, says_yes: bool) -> Path:
    """A tiny causal LM that answers " yes" after "True:"/"Helpful:" with P ~ 1 (or ~ 0), whatever the text.

    Every layer writes nothing to the residual stream, so the last hidden state is the normalised
    embedding of the current token; each token of " yes" gets an output row along (or against) the
    hidden state of the token before it, and every other output row is zero.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    yes_ids = tok(" yes", add_special_tokens=False)["input_ids"]
    before = {tok(f"A: x\n{label} yes", add_special_tokens=False)["input_ids"][-len(yes_ids) - 1] for label in ("True:", "Helpful:")}
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        emb = model.model.embed_tokens.weight
        hidden = emb / emb.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
        sign = 1.0 if says_yes else -1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[yes_ids[0]] = sign * 0.6 * sum(hidden[t] for t in before)
        for prev, nxt in zip(yes_ids, yes_ids[1:]):
            model.lm_head.weight[nxt] = sign * 0.6 * hidden[prev]
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


# The shared real samples (../shared/data/eval) where they exist; the tests' fixture files for the benchmarks
# the shared folder lacks (MATH, TyDiQA, HumanEval, HumanEval+); a built MBPP+ hub split.
SHARED_BENCHMARKS = ("bbh", "gsm", "mmlu", "toxigen", "truthfulqa", "xstest")
FIXTURE_BENCHMARKS = {"MATH": "eval_math/MATH", "tydiqa": "eval_tydiqa/tydiqa", "codex_humaneval": "eval_code/codex_humaneval"}


def every_preset_data(dest: Path, shared_data: Path, bbh_subtasks: tuple[str, ...] | None = None) -> tuple[Path, list[str]]:
    """A --data-dir for all presets of `tulu eval list` (links, nothing copied) and the --input-file
    arguments it needs: AlpacaEval's instructions come from the shared davinci-003 outputs, for both versions.
    ``bbh_subtasks``: only these BBH subtasks (default: every shared one)."""
    dest.mkdir(parents=True)
    for name in SHARED_BENCHMARKS:
        if name == "bbh" and bbh_subtasks is not None:
            for folder, ext in (("bbh", ".json"), ("cot-prompts", ".txt")):
                (dest / "bbh" / folder).mkdir(parents=True)
                for sub in bbh_subtasks:
                    os.symlink(shared_data / "eval" / "bbh" / folder / (sub + ext), dest / "bbh" / folder / (sub + ext))
            continue
        os.symlink(shared_data / "eval" / name, dest / name)
    os.symlink(shared_data / "ifeval", dest / "ifeval")
    for name, rel in FIXTURE_BENCHMARKS.items():
        os.symlink(FIXTURES / rel, dest / name)
    (dest / "evalplus").mkdir()
    os.symlink(shared_data / "eval" / "evalplus" / "MbppPlus.jsonl", dest / "evalplus" / "MbppPlus.jsonl")
    os.symlink(FIXTURES / "eval_code" / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz", dest / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl.gz")
    write_mbppplus_split(dest / "mbppplus" / "test.parquet")
    davinci = shared_data / "eval" / "alpaca_eval" / "results" / "text_davinci_003" / "model_outputs.json"
    return dest, ["--input-file", f"alpaca_eval={davinci}", "--input-file", f"alpaca_eval_2={davinci}"]
