"""TyDiQA GoldP: SQuAD metrics, Tulu 2 prompts per language, passage truncation, sampling, end to end, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from _eval_helpers import invoke
from tulu_cli.errors import TuluError
from tulu_cli.evaluation.squad import best_over_golds, exact_match_score, f1_score, normalize_answer
from tulu_cli.evaluation.tasks import TaskContext, get_task
from tulu_cli.evaluation.tasks.tydiqa import LANGUAGES, WITH_CONTEXT, WITHOUT_CONTEXT, truncate_to_tokens

FIXTURES = Path(__file__).parent / "fixtures" / "eval_tydiqa"


def test_squad_normalisation_and_scores():
    assert normalize_answer("The  Nile, river!") == "nile river"
    assert normalize_answer("An apple a day") == "apple day"
    assert exact_match_score("the Himalayas.", "Himalayas") == 1.0
    assert f1_score("about 6,650 km long", "6,650 km") == pytest.approx(2 * (2 / 4) * 1.0 / (2 / 4 + 1.0))
    assert f1_score("", "x") == 0.0 and f1_score("Helsinki", "Tampere") == 0.0
    assert best_over_golds(f1_score, "6650 km", ["about 6,650 km", "6,650 km"]) == 1.0  # commas are punctuation
    assert best_over_golds(exact_match_score, "x", []) == 0.0
    assert exact_match_score("Москва", "москва") == 1.0  # lower-casing is not English-only


def test_nine_languages_with_their_headers():
    assert LANGUAGES == ("english", "arabic", "bengali", "finnish", "indonesian", "korean", "russian", "swahili", "telugu")
    assert set(WITHOUT_CONTEXT) == set(LANGUAGES)
    assert WITH_CONTEXT["swahili"][1:] == ("Kifungu:", "Swali:", "Jibu:")
    assert WITHOUT_CONTEXT["korean"] == ("다음 질문에 답하십시오.", "질문:", "답변:")


def _ctx(template="none", **task_args):
    return TaskContext(data_dir=FIXTURES, chat_template=template, options=SimpleNamespace(task_args=task_args), seed=42)


def _sampled(task, ctx, max_examples=100, limit=None):
    return task.select(task.load(ctx), max_examples, limit, seed=42)


def test_goldp_prompt_one_shot_same_language():
    task = get_task("tydiqa_goldp_1shot")
    examples = {e.id: e for e in _sampled(task, _ctx())}
    assert len(examples) == 5
    fi = examples["finnish-1234567890123456789-0"]
    assert fi.reference == ["Helsinki"] and fi.meta["lang"] == "finnish"
    q = task.build(fi, _ctx())
    assert q.prompt == (
        "Vastaa seuraavaan kysymykseen annetun kappaleen tiedon perusteella.\n\n"
        "Kappale: Tampere on Suomen kolmanneksi suurin kaupunki.\nKysymys: Mikä on Suomen kolmanneksi suurin kaupunki?\nVastaus: Tampere\n\n"
        "Kappale: Helsinki on Suomen pääkaupunki ja suurin kaupunki. Se sijaitsee Suomenlahden rannalla.\n"
        "Kysymys: Mikä on Suomen pääkaupunki?\nVastaus:"
    )
    # chat format: the user turn ends with the question's newline, the label opens the assistant turn
    assert task.build(fi, _ctx("tulu")).prompt == (
        "<|user|>\nVastaa seuraavaan kysymykseen annetun kappaleen tiedon perusteella.\n\n"
        "Kappale: Tampere on Suomen kolmanneksi suurin kaupunki.\nKysymys: Mikä on Suomen kolmanneksi suurin kaupunki?\nVastaus: Tampere\n\n"
        "Kappale: Helsinki on Suomen pääkaupunki ja suurin kaupunki. Se sijaitsee Suomenlahden rannalla.\n"
        "Kysymys: Mikä on Suomen pääkaupunki?\n\n<|assistant|>\nVastaus:"
    )
    assert q.messages == [{"role": "user", "content": q.prompt}]  # chat APIs get the plain text


def test_no_context_prompt_and_exemplar():
    task = get_task("tydiqa_no_context_1shot")
    en = next(e for e in _sampled(task, _ctx()) if e.id.startswith("english-7713"))
    # seed 42, languages arabic < english < finnish: sample(arabic pool, 1) first, then english's
    assert task.build(en, _ctx()).prompt == (
        "Answer the following question.\n\nQuestion: What is the highest mountain on Earth?\nAnswer: Mount Everest\n\n"
        "Question: Where does the Nile flow?\nAnswer:"
    )
    picks = {next(e for e in task.select(task.load(_ctx()), 100, None, s) if e.id == en.id).data["shots"][0]["id"] for s in range(12)}
    assert picks == {"english-9001-0", "english-9002-0"}  # --seed drives the draw
    with pytest.raises(RuntimeError, match="select"):
        task.build(task.load(_ctx())[0], _ctx())


def _write_goldp(path: Path, questions: dict[str, int]) -> None:
    """A GoldP file with ``n`` questions per language, ids ``{lang}-{split}-{i}``, one paragraph each."""
    split = path.name.split("-")[-1].split(".")[0]
    paras = [
        {"context": f"passage {lang} {i}", "qas": [{"id": f"{lang}-{split}-{i}", "question": f"q {lang} {i}?", "answers": [{"text": f"a{i}", "answer_start": 0}]}]}
        for lang, n in questions.items()
        for i in range(n)
    ]
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": paras}]}))


def test_sampling_is_one_seeded_stream_as_in_the_reference(tmp_path):
    """random.seed(42); per sorted language sample(dev, 3) when it has more; then per language sample(train, 1).

    The expected ids were computed with Python's ``random`` directly:
    ``random.seed(42); random.sample(english 0..5, 3); random.sample(finnish 0..4, 3)`` (arabic has 1 question:
    not sampled, draws nothing), then ``random.sample`` of the arabic, english, finnish training lists, 1 each.
    """
    (tmp_path / "tydiqa").mkdir()
    # dev file order: finnish before english, so the sorted order is what counts
    _write_goldp(tmp_path / "tydiqa" / "tydiqa-goldp-v1.1-dev.json", {"finnish": 5, "english": 6, "arabic": 1})
    _write_goldp(tmp_path / "tydiqa" / "tydiqa-goldp-v1.1-train.json", {"english": 3, "arabic": 2, "finnish": 2, "korean": 1})
    task = get_task("tydiqa_goldp_1shot")
    ctx = TaskContext(data_dir=tmp_path, chat_template="none", seed=42)
    chosen = task.select(task.load(ctx), 3, None, 42)
    assert [e.id for e in chosen] == [
        "arabic-dev-0",
        "english-dev-5", "english-dev-0", "english-dev-4",
        "finnish-dev-2", "finnish-dev-1", "finnish-dev-0",
    ]  # fmt: skip
    assert {e.meta["lang"]: e.data["shots"][0]["id"] for e in chosen} == {
        "arabic": "arabic-train-0", "english": "english-train-2", "finnish": "finnish-train-0",
    }  # fmt: skip
    assert task.build(chosen[1], ctx).prompt == (
        "Answer the following question based on the information in the given passage.\n\n"
        "Passage: passage english 2\nQuestion: q english 2?\nAnswer: a2\n\n"
        "Passage: passage english 5\nQuestion: q english 5?\nAnswer:"
    )
    # --limit keeps the first sampled questions per language; the exemplars stay the same
    limited = task.select(task.load(ctx), 3, 1, 42)
    assert [e.id for e in limited] == ["arabic-dev-0", "english-dev-5", "finnish-dev-2"]
    assert [e.data["shots"][0]["id"] for e in limited] == ["arabic-train-0", "english-train-2", "finnish-train-0"]
    # everything (--max-examples 0): no question draws, so the exemplars are the stream's first draws
    # (random.seed(42); random.sample(arabic, 1) -> arabic-train-0; english -> english-train-0; finnish -> finnish-train-1)
    every = task.select(task.load(ctx), None, None, 42)
    assert len(every) == 12 and [e.id for e in every][:2] == ["arabic-dev-0", "english-dev-0"]
    assert {e.meta["lang"]: e.data["shots"][0]["id"] for e in every} == {
        "arabic": "arabic-train-0", "english": "english-train-0", "finnish": "finnish-train-1",
    }  # fmt: skip


def test_passages_are_cut_as_the_reference(tiny_model):
    """``tokenizer.decode(tokenizer.encode(p)[:512])`` when ``encode(p)`` (BOS included) is longer than 512."""
    from transformers import AutoTokenizer

    from tulu_cli.evaluation.tasks.tydiqa import cut_passage

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    ctx = TaskContext(data_dir=None, tokenizer=tok)
    fits = " ".join(["a"] * 511)  # <s> + 'a' + 510 x ' a': 512 ids
    assert len(tok.encode(fits)) == 512
    assert cut_passage(fits, 512, ctx) == fits  # not longer than 512: left alone, no <s>
    assert cut_passage(fits + " a", 512, ctx) == "<s>" + fits  # 513 ids: BOS text + 511 tokens of text
    assert cut_passage("a a a a a", 3, ctx) == "<s>a a"
    assert cut_passage("a a a a a", 0, ctx) == "a a a a a"  # 0: no limit, as --max_context_length 0
    # opt-in: the longest text prefix within N tokens (counted without BOS), no BOS text
    words = TaskContext(data_dir=None, tokenizer=tok, count_tokens=lambda text: len(text.split()))
    assert cut_passage("one two three four five", 3, words, "prefix") == "one two three "
    assert cut_passage("short", 3, words, "prefix") == "short"
    # no tokenizer (API models): the prefix rule with the 4-characters-per-token estimate
    assert truncate_to_tokens("x" * 20, 3, TaskContext(data_dir=None)) == "x" * 11


def test_prompts_carry_the_cut_passages(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    task = get_task("tydiqa_goldp_1shot")
    ctx = TaskContext(data_dir=FIXTURES, chat_template="none", options=SimpleNamespace(task_args={"max_context_tokens": "4"}), tokenizer=tok)
    en = next(e for e in _sampled(task, ctx) if e.id.startswith("english--21"))
    prompt = task.build(en, ctx).prompt
    # encode("The Nile is ...")[:4] = <s>, The, ĠN, i ; encode("Mount Everest ...")[:4] = <s>, Mount, ĠE, ve (BPE of the tiny tokenizer)
    assert prompt.startswith("Answer the following question based on the information in the given passage.\n\nPassage: <s>")
    test_passage = tok.decode(tok.encode("The Nile is a major north-flowing river in northeastern Africa. It is about 6,650 km long.")[:4])
    shot_passage = tok.decode(tok.encode("Mount Everest is Earth's highest mountain above sea level, located in the Himalayas.")[:4])
    assert test_passage == "<s>The Ni" and shot_passage.startswith("<s>Mount")
    assert f"Passage: {shot_passage}\nQuestion: What is the highest mountain on Earth?" in prompt
    assert prompt.endswith(f"Passage: {test_passage}\nQuestion: How long is the Nile?\nAnswer:")
    prefix_ctx = TaskContext(
        data_dir=FIXTURES, chat_template="none", options=SimpleNamespace(task_args={"max_context_tokens": "4", "truncation": "prefix"}),
        tokenizer=tok, count_tokens=lambda text: len(text.split()),
    )  # fmt: skip
    en = next(e for e in _sampled(task, prefix_ctx) if e.id.startswith("english--21"))
    assert "Passage: The Nile is a \nQuestion: How long" in task.build(en, prefix_ctx).prompt
    with pytest.raises(TuluError, match="max_context_tokens"):
        task.check(_ctx(max_context_tokens="many"))
    with pytest.raises(TuluError, match="truncation: 'smart' is not one of reference, prefix"):
        task.check(_ctx(truncation="smart"))


def test_language_selection():
    task = get_task("tydiqa_goldp_1shot")
    assert {e.meta["lang"] for e in task.load(_ctx(languages="finnish, arabic"))} == {"finnish", "arabic"}
    with pytest.raises(TuluError, match="languages: unknown language.s. klingon"):
        task.check(_ctx(languages="english,klingon"))


def _row(task, id_, output, golds, **meta):
    row = {"id": id_, "output": output, "reference": golds, "meta": {"lang": id_.split("-")[0], **meta}}
    row["answer"] = task.extract(output, row)
    row["metrics"] = task.score(row)
    return row


def test_scorer_known_scores():
    task = get_task("tydiqa_goldp_1shot")
    rows = [
        # model backends: the whole stripped output ("nile more text" vs "nile": P 1/3, R 1, F1 0.5); recall 1
        _row(task, "english-1", " the Nile.\nMore text", ["Nile"]),
        _row(task, "english-2", "about 6,650 km long", ["6,650 km"]),  # F1 2/3, EM 0, recall 1
        # the chat API (first_line, set by load): the first line, "the Nile." -> EM 1
        _row(task, "english-3", " the Nile.\nMore text", ["Nile"], first_line=True),
        _row(task, "finnish-1", "Helsinki", ["Helsinki", "Helsingissä"]),
        _row(task, "finnish-2", "", ["Suomenlahden"]),
    ]
    assert rows[0]["answer"] == "the Nile.\nMore text" and rows[2]["answer"] == "the Nile."
    assert rows[0]["metrics"] == {"f1": 0.5, "exact_match": 0.0, "recall": 1.0}
    m = task.aggregate(rows, TaskContext(data_dir=None))
    en_f1 = 100 * (0.5 + 2 / 3 + 1) / 3
    assert m["per_language"]["english"] == {"f1": pytest.approx(en_f1), "exact_match": pytest.approx(100 / 3), "recall": 100.0, "n": 3}
    assert m["per_language"]["finnish"] == {"f1": 50.0, "exact_match": 50.0, "recall": 50.0, "n": 2}
    assert m["f1"] == pytest.approx((en_f1 + 50.0) / 2) and m["exact_match"] == pytest.approx((100 / 3 + 50.0) / 2)
    assert m["recall"] == 75.0
    assert m["average"] == {"f1": m["f1"], "exact_match": m["exact_match"], "recall": 75.0}


def test_chat_api_rows_are_marked_for_the_first_line_rule():
    task = get_task("tydiqa_goldp_1shot")
    api = TaskContext(data_dir=FIXTURES, options=SimpleNamespace(backend="openai", openai_api="chat", task_args={}))
    assert all(e.meta["first_line"] is True for e in task.load(api))
    assert all("first_line" not in e.meta for e in task.load(_ctx("tulu")))
    assert task.generation.stop == ("\n",) and task.chat_stop == () and task.generation.max_new_tokens == 50
    assert task.source.startswith("open-instruct f3424591 eval/tydiqa/run_eval.py")
    assert set(task.options) == {"languages", "max_context_tokens", "truncation"} and task.max_examples == 100


def test_run_and_score_on_tiny_model(tiny_model, tmp_path):
    out = tmp_path / "out"
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "tydiqa_goldp_1shot,tydiqa_no_context_1shot", "-d", str(FIXTURES),
                  "-o", str(out), "--max-new-tokens", "4", "--limit", "1", "--task-arg", "max_context_tokens=4", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.stderr
    printed = json.loads(res.stdout)
    # the model's tokenizer reaches the task: decode(encode(passage)[:4]) keeps the <s> text
    en = next(json.loads(x) for x in (out / "tydiqa_goldp_1shot" / "predictions.jsonl").read_text().splitlines() if x.startswith('{"id": "english'))
    assert "\nPassage: <s>The Ni\nQuestion: How long is the Nile?\n\n<|assistant|>\nAnswer:" in en["prompt"]
    for name in ("tydiqa_goldp_1shot", "tydiqa_no_context_1shot"):
        m = printed[name]
        assert 0.0 <= m["f1"] <= 100.0 and 0.0 <= m["exact_match"] <= m["f1"] + 1e-9
        assert {k.split("/")[1] for k in m if k.startswith("per_language/")} == {"arabic", "english", "finnish"}
        rows = [json.loads(x) for x in (out / name / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 3 and all(r["prompt"].endswith(("Answer:", "Vastaus:", "الإجابة:")) for r in rows)
    results = json.loads((out / "results.json").read_text())
    assert results["results"]["tydiqa_goldp_1shot"]["generation"]["max_new_tokens"] == 4
    assert results["results"]["tydiqa_goldp_1shot"]["generation"]["stop"] == []  # chat: stop at EOS as Tulu 2

    # rescore hand-written outputs: the Arabic answer right, the rest wrong
    preds = out / "tydiqa_goldp_1shot" / "predictions.jsonl"
    rows = [json.loads(x) for x in preds.read_text().splitlines()]
    for r in rows:
        r["output"] = "القاهرة" if r["id"].startswith("arabic") else "zzz"
    edited = tmp_path / "edited.jsonl"
    edited.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    res = invoke(["eval", "score", "--task", "tydiqa_goldp_1shot", "--predictions", str(edited), "--json"])
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["tydiqa_goldp_1shot"]
    assert m["per_language/arabic/exact_match"] == 100.0 and m["per_language/english/f1"] == 0.0
    assert m["exact_match"] == pytest.approx(100 / 3)

    # open-instruct's tydiaqa_predictions.jsonl is read too
    oi = tmp_path / "tydiaqa_predictions.jsonl"
    oi.write_text(json.dumps({"id": "english-1", "lang": "english", "answers": [{"text": "Nile", "answer_start": 4}], "prediction_text": "Nile"}) + "\n")
    res = invoke(["eval", "score", "--task", "tydiqa_no_context_1shot", "--predictions", str(oi), "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["tydiqa_no_context_1shot"]["f1"] == 100.0


def _copy(tmp_path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    return data


def test_error_paths(tmp_path, tiny_model):
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "tydiqa_goldp_1shot", "-d", str(tmp_path), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "tydiqa-goldp-v1.1-dev.json: not found" in res.stderr
    assert "tulu data prepare-eval tydiqa" in res.stderr

    data = _copy(tmp_path)
    dev = data / "tydiqa" / "tydiqa-goldp-v1.1-dev.json"
    text = dev.read_text()
    dev.write_text(text[:-10])
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "tydiqa_goldp_1shot", "-d", str(data), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "tydiqa-goldp-v1.1-dev.json:" in res.stderr and "invalid JSON" in res.stderr

    doc = json.loads(text)
    doc["data"][0]["paragraphs"][0]["qas"][0]["id"] = "klingon-1"
    dev.write_text(json.dumps(doc))
    with pytest.raises(TuluError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]: id 'klingon-1'"):
        get_task("tydiqa_goldp_1shot").load(TaskContext(data_dir=data))

    doc = json.loads(text)
    doc["data"][1]["paragraphs"][0]["qas"][1]["answers"] = "Suomenlahden"
    dev.write_text(json.dumps(doc))
    with pytest.raises(TuluError, match=r"qas\[1\] \(id finnish-2234567890123456789-1\): 'answers' must be a list"):
        get_task("tydiqa_goldp_1shot").load(TaskContext(data_dir=data))

    dev.write_text(json.dumps({"data": [{"title": "no paragraphs"}]}))
    with pytest.raises(TuluError, match=r"data\[0\]: needs a 'paragraphs' list"):
        get_task("tydiqa_goldp_1shot").load(TaskContext(data_dir=data))

    # a language without any training example cannot get its exemplar
    doc = json.loads(text)
    doc["data"][0]["paragraphs"][0]["qas"][0]["id"] = "telugu-1"
    dev.write_text(json.dumps(doc))
    with pytest.raises(TuluError, match="0 telugu example"):
        get_task("tydiqa_goldp_1shot").load(TaskContext(data_dir=data))

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "english-1", "prediction_text": "x"}\n')
    res = invoke(["eval", "score", "--task", "tydiqa_goldp_1shot", "--predictions", str(bad)])
    assert res.exit_code == 2 and "bad.jsonl:1: needs 'id' and 'output'" in res.stderr


def test_chat_api_answers_first_line(tmp_path):
    from _eval_helpers import OpenAIServer, last_user_message

    golds = {"How long is the Nile?": "6,650 km", "Mikä on Suomen pääkaupunki?": "Helsinki"}

    def reply(body):
        text = last_user_message(body)
        assert text.endswith(("\nAnswer:", "\nVastaus:", "\nالإجابة:")) and len(body["messages"]) == 1
        q = next((q for q in golds if q in text.split("\n\n")[-1]), None)
        return f"{golds[q]}\nBecause the passage says so." if q else "no idea"

    with OpenAIServer(reply=reply) as srv:
        res = invoke(["eval", "run", "-m", "gpt-test", "--backend", "openai", "--base-url", srv.base_url,
                      "-t", "tydiqa_goldp_1shot", "-d", str(FIXTURES), "-o", str(tmp_path / "o"), "--json"])  # fmt: skip
        assert res.exit_code == 0, res.stderr
        assert srv.count == 5 and srv.requests[0]["max_tokens"] == 50
    m = json.loads(res.stdout)["tydiqa_goldp_1shot"]
    assert m["per_language/english/exact_match"] == 50.0 and m["per_language/finnish/exact_match"] == 50.0
    assert m["per_language/arabic/f1"] == 0.0 and m["exact_match"] == pytest.approx(100 / 3)


def test_every_language_gets_its_own_headers(tmp_path):
    (tmp_path / "tydiqa").mkdir()
    for split in ("dev", "train"):
        doc = {"data": [{"paragraphs": [{"context": f"ctx {lang}", "qas": [
            {"id": f"{lang}-{split}-0", "question": f"q {lang}?", "answers": [{"text": f"a {lang}", "answer_start": 0}]}]}]}
            for lang in LANGUAGES]}  # fmt: skip
        (tmp_path / "tydiqa" / f"tydiqa-goldp-v1.1-{split}.json").write_text(json.dumps(doc, ensure_ascii=False))
    for name, table in (("tydiqa_goldp_1shot", WITH_CONTEXT), ("tydiqa_no_context_1shot", WITHOUT_CONTEXT)):
        task = get_task(name)
        ctx = TaskContext(data_dir=tmp_path, chat_template="none")
        examples = task.select(task.load(ctx), 100, None, 42)
        assert sorted(e.meta["lang"] for e in examples) == sorted(LANGUAGES)
        for e in examples:
            headers = table[e.meta["lang"]]
            prompt = task.build(e, ctx).prompt
            assert prompt.startswith(headers[0] + "\n\n") and prompt.endswith("\n" + headers[-1])
            assert prompt.count(headers[-2] + " q ") == 2  # exemplar and test question, same language
            assert (f"{headers[1]} ctx " in prompt) == (name == "tydiqa_goldp_1shot")
