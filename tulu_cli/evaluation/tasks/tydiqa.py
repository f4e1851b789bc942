"""TyDiQA GoldP: 1-shot extractive QA in 9 languages, with the gold passage or without; SQuAD F1/EM per language."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.evaluation.squad import best_over_golds, exact_match_score, f1_score
from tulu_cli.evaluation.tasks import DataFile, Example, GenerationSettings, Query, Task, TaskContext, mean, read_predictions_or

DEV_FILE = "tydiqa/tydiqa-goldp-v1.1-dev.json"
TRAIN_FILE = "tydiqa/tydiqa-goldp-v1.1-train.json"
_GCS = "https://storage.googleapis.com/tydiqa/v1.1"
MAX_CONTEXT_TOKENS = 512  # Tulu 2 cut every passage (test and exemplar) to 512 tokens

# Per language: instruction, passage label, question label, answer label (Tulu 2's prompts).
WITH_CONTEXT: dict[str, tuple[str, str, str, str]] = {
    "english": ("Answer the following question based on the information in the given passage.", "Passage:", "Question:", "Answer:"),
    "arabic": ("أجب على السؤال التالي بناءً على المعلومات في المقطع المعطى.", "المقطع:", "السؤال:", "الإجابة:"),
    "bengali": ("প্রদত্ত অধ্যায়ের তথ্যের উপর ভিত্তি করে নিম্নলিখিত প্রশ্নের উত্তর দিন।", "অধ্যায়:", "প্রশ্ন:", "উত্তর:"),
    "finnish": ("Vastaa seuraavaan kysymykseen annetun kappaleen tiedon perusteella.", "Kappale:", "Kysymys:", "Vastaus:"),
    "indonesian": ("Jawab pertanyaan berikut berdasarkan informasi di bagian yang diberikan.", "Bagian:", "Pertanyaan:", "Jawaban:"),
    "korean": ("주어진 문단의 정보에 기반하여 다음 질문에 답하십시오.", "문단:", "질문:", "답변:"),
    "russian": ("Ответьте на следующий вопрос на основе информации в данном отрывке.", "Отрывок:", "Вопрос:", "Ответ:"),
    "swahili": ("Jibu swali lifuatalo kulingana na habari kwenye kifungu kilichotolewa.", "Kifungu:", "Swali:", "Jibu:"),
    "telugu": ("ఇచ్చిన పేరాలోని సమాచారం ఆధారంగా కింది ప్రశ్నకు సమాధానం ఇవ్వండి.", "పేరా:", "ప్రశ్న:", "సమాధానం:"),
}
# Per language: instruction, question label, answer label.
WITHOUT_CONTEXT: dict[str, tuple[str, str, str]] = {
    "english": ("Answer the following question.", "Question:", "Answer:"),
    "arabic": ("أجب على السؤال التالي.", "السؤال:", "الإجابة:"),
    "bengali": ("নিম্নলিখিত প্রশ্নের উত্তর দিন।", "প্রশ্ন:", "উত্তর:"),
    "finnish": ("Vastaa seuraavaan kysymykseen.", "Kysymys:", "Vastaus:"),
    "indonesian": ("Jawab pertanyaan berikut.", "Pertanyaan:", "Jawaban:"),
    "korean": ("다음 질문에 답하십시오.", "질문:", "답변:"),
    "russian": ("Ответьте на следующий вопрос.", "Вопрос:", "Ответ:"),
    "swahili": ("Jibu swali lifuatalo.", "Swali:", "Jibu:"),
    "telugu": ("క్రింది ప్రశ్నకు సమాధానం ఇవ్వండి.", "ప్రశ్న:", "సమాధానం:"),
}
LANGUAGES = tuple(WITH_CONTEXT)


def read_goldp(path: Path) -> list[dict[str, Any]]:
    """The questions of a TyDiQA GoldP (SQuAD-layout) file, with their passage and language (the id prefix)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TuluError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    except UnicodeDecodeError:
        raise TuluError(f"{path}: not UTF-8 text") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise TuluError(f"{path}: not a TyDiQA GoldP file (expected an object with a 'data' list of articles)")
    out = []
    for a, article in enumerate(doc["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise TuluError(f"{path}: data[{a}]: needs a 'paragraphs' list")
        for p, para in enumerate(article["paragraphs"]):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            if not isinstance(para, dict) or not isinstance(para.get("context"), str) or not isinstance(para.get("qas"), list):
                raise TuluError(f"{where}: needs a 'context' string and a 'qas' list")
            for q, qa in enumerate(para["qas"]):
                if not isinstance(qa, dict) or not isinstance(qa.get("id"), str) or not isinstance(qa.get("question"), str):
                    raise TuluError(f"{where}.qas[{q}]: needs string fields 'id' and 'question'")
                answers = qa.get("answers")
                if not isinstance(answers, list) or not all(isinstance(x, dict) and isinstance(x.get("text"), str) for x in answers):
                    raise TuluError(f"{where}.qas[{q}] (id {qa['id']}): 'answers' must be a list of {{'text': ...}}")
                lang = qa["id"].split("-")[0]
                if lang not in WITH_CONTEXT:
                    raise TuluError(f"{where}.qas[{q}]: id '{qa['id']}' does not start with a TyDiQA GoldP language ({', '.join(LANGUAGES)})")
                out.append({"id": qa["id"], "lang": lang, "context": para["context"], "question": qa["question"], "answers": [x["text"] for x in answers]})
    return out


def truncate_to_tokens(text: str, max_tokens: int, ctx: TaskContext) -> str:
    """The longest prefix of ``text`` within ``max_tokens`` by ``ctx.count_tokens`` (no special tokens)."""
    if max_tokens <= 0 or ctx.count_tokens(text) <= max_tokens:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # largest prefix length whose token count fits
        mid = (lo + hi + 1) // 2
        if ctx.count_tokens(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def cut_passage(text: str, max_tokens: int, ctx: TaskContext, rule: str = "reference") -> str:
    """A passage cut to ``max_tokens`` as the reference did: ``decode(encode(text)[:max_tokens])`` when
    ``encode(text)`` is longer. ``encode`` adds the tokenizer's BOS (if it adds one) and ``decode`` keeps
    special tokens, so on Llama a cut passage starts with the text ``<s>`` and keeps ``max_tokens - 1``
    tokens of text; a passage of ``max_tokens`` tokens or fewer (BOS included) is left alone. ``rule="prefix"``
    (or no tokenizer: API models, where the reference used tiktoken) keeps the longest text prefix of at
    most ``max_tokens`` tokens, with no BOS text."""
    tokenizer = ctx.tokenizer
    if max_tokens <= 0:
        return text
    if rule == "prefix" or tokenizer is None:
        return truncate_to_tokens(text, max_tokens, ctx)
    ids = tokenizer.encode(text)
    return tokenizer.decode(ids[:max_tokens]) if len(ids) > max_tokens else text


def task_args(ctx: TaskContext) -> dict[str, str]:
    return getattr(ctx.options, "task_args", None) or {}


class TyDiQA(Task):
    data_name = "tydiqa"
    data_files = (DataFile(DEV_FILE, f"{_GCS}/tydiqa-goldp-v1.1-dev.json"), DataFile(TRAIN_FILE, f"{_GCS}/tydiqa-goldp-v1.1-train.json"))
    required = (DEV_FILE, TRAIN_FILE)
    kind = "generate"
    # Plain prompts stop at the end of the answer line; with chat format the reference set no stop.
    generation = GenerationSettings(max_new_tokens=50, temperature=0.0, stop=("\n",))
    chat_stop = ()
    n_shot = 1
    max_examples = 100  # per language, as Tulu 2 ran it
    sample_by = "lang"
    metrics = ("f1", "exact_match", "recall", "per_language")
    source = "open-instruct f3424591 eval/tydiqa/run_eval.py (scripts/submit_eval_jobs.py: vllm, chat format)"
    options = {
        "languages": "comma-separated languages to evaluate (default: every language in the dev file)",
        "max_context_tokens": f"passage length limit in tokens (default {MAX_CONTEXT_TOKENS}, the reference's --max_context_length)",
        "truncation": "reference (default: decode(encode(passage)[:N]), which leaves the BOS text in) or "
        "prefix (the longest text prefix of at most N tokens, no BOS text)",
    }

    def __init__(self, name: str, with_context: bool, description: str):
        self.name = name  # type: ignore[misc]
        self.with_context = with_context
        self.description = description  # type: ignore[misc]

    def _max_tokens(self, ctx: TaskContext) -> int:
        raw = task_args(ctx).get("max_context_tokens", str(MAX_CONTEXT_TOKENS))
        try:
            return int(raw)
        except ValueError:
            raise TuluError(f"--task-arg max_context_tokens: not an integer: {raw!r}") from None

    def _truncation(self, ctx: TaskContext) -> str:
        rule = task_args(ctx).get("truncation", "reference")
        if rule not in ("reference", "prefix"):
            raise TuluError(f"--task-arg truncation: {rule!r} is not one of reference, prefix")
        return rule

    def _languages(self, ctx: TaskContext) -> list[str]:
        only = [x.strip() for x in str(task_args(ctx).get("languages", "")).split(",") if x.strip()]
        unknown = sorted(set(only) - set(LANGUAGES))
        if unknown:
            raise TuluError(f"--task-arg languages: unknown language(s) {', '.join(unknown)}; TyDiQA GoldP has {', '.join(LANGUAGES)}")
        return only

    def check(self, ctx: TaskContext) -> None:
        self._max_tokens(ctx)
        self._truncation(ctx)
        self._languages(ctx)
        super().check(ctx)

    def load(self, ctx: TaskContext) -> list[Example]:
        assert ctx.data_dir is not None
        dev = read_goldp(ctx.data_dir / DEV_FILE)
        only = self._languages(ctx)
        if only:
            dev = [d for d in dev if d["lang"] in only]
        langs = sorted({d["lang"] for d in dev})
        pools: dict[str, list[dict[str, Any]]] = {lang: [] for lang in langs}
        if self.n_shot:
            for t in read_goldp(ctx.data_dir / TRAIN_FILE):
                if t["lang"] in pools:
                    pools[t["lang"]].append(t)
            for lang in langs:
                if len(pools[lang]) < self.n_shot:
                    raise TuluError(f"{ctx.data_dir / TRAIN_FILE}: {len(pools[lang])} {lang} example(s), need {self.n_shot} for the exemplar")
        settings = {"max_tokens": self._max_tokens(ctx), "truncation": self._truncation(ctx)}
        # The reference's OpenAI path kept the first line of the answer; its model path the whole output.
        api = getattr(ctx.options, "backend", None) == "openai" and getattr(ctx.options, "openai_api", None) == "chat"
        extra = {"first_line": True} if api else {}
        return [
            Example(
                id=d["id"],
                reference=d["answers"],
                meta={"lang": d["lang"], "question": d["question"], **extra},
                data={"context": d["context"], "question": d["question"], "pool": pools[d["lang"]], **settings},
            )
            for d in dev
        ]

    def select(self, examples: list[Example], max_examples: int | None, limit: int | None, seed: int) -> list[Example]:
        """The reference's draws from ONE ``random.seed(seed)`` stream: per language in sorted order,
        ``sample(questions, max_examples)`` when the language has more (dev-file order otherwise); then,
        again per language in sorted order, ``sample(training examples, n_shot)`` for the exemplars.
        ``limit`` keeps the first N sampled questions per language and does not change the exemplars."""
        rng = random.Random(seed)

        def draw(items: list[Example]) -> list[Example]:
            if max_examples is not None and len(items) > max_examples:
                return rng.sample(items, max_examples)
            return items

        chosen = self.select_in_one_stream(sorted(examples, key=lambda e: e.meta["lang"]), limit, draw)
        if self.n_shot:
            pools = {e.meta["lang"]: e.data["pool"] for e in examples}
            shots = {lang: rng.sample(pools[lang], self.n_shot) for lang in sorted(pools)}
            for e in chosen:
                e.data["shots"] = shots[e.meta["lang"]]
        return chosen

    def prompt_text(self, example: Example, ctx: TaskContext) -> tuple[str, str]:
        """The user text and the answer label it ends with."""
        lang = example.meta["lang"]
        if self.with_context:
            instruction, p_label, q_label, a_label = WITH_CONTEXT[lang]
        else:
            instruction, q_label, a_label = WITHOUT_CONTEXT[lang]
            p_label = ""
        data = example.data
        if self.n_shot and "shots" not in data:
            raise RuntimeError("TyDiQA draws its exemplars in select(); call it before build()")
        text = instruction + "\n\n"
        demos = []
        for s in data.get("shots", ()):
            demo = q_label + " " + s["question"] + "\n" + a_label + " " + s["answers"][0]
            if self.with_context:
                demo = p_label + " " + cut_passage(s["context"], data["max_tokens"], ctx, data["truncation"]) + "\n" + demo
            demos.append(demo)
        if demos:
            text += "\n\n".join(demos) + "\n\n"
        question = q_label + " " + data["question"] + "\n"
        if self.with_context:
            context = cut_passage(data["context"], data["max_tokens"], ctx, data["truncation"])
            text += p_label + " " + context + "\n" + question
        else:
            text += question
        return text, a_label

    def build(self, example: Example, ctx: TaskContext) -> Query:
        text, a_label = self.prompt_text(example, ctx)
        return ctx.query(text, chat_suffix=a_label, plain_suffix=a_label)

    def extract(self, output: Any, row: dict[str, Any]) -> Any:
        text = output.strip() if isinstance(output, str) else ""
        if (row.get("meta") or {}).get("first_line"):
            return text.split("\n")[0].strip()
        return text

    def score(self, row: dict[str, Any]) -> dict[str, float]:
        golds = row["reference"] if isinstance(row["reference"], list) else [str(row["reference"])]
        answer = str(row.get("answer") or "")
        # recall: a gold answer occurs in the prediction (case-insensitive), the reference's third number
        recall = float(any(g.strip().lower() in answer.strip().lower() for g in golds))
        return {
            "f1": best_over_golds(f1_score, answer, golds),
            "exact_match": best_over_golds(exact_match_score, answer, golds),
            "recall": recall,
        }

    def aggregate(self, rows: list[dict[str, Any]], ctx: TaskContext) -> dict[str, Any]:
        by_lang: dict[str, list[dict[str, float]]] = defaultdict(list)
        for r in rows:
            by_lang[str((r.get("meta") or {}).get("lang") or r["id"].split("-")[0])].append(r["metrics"])
        keys = ("f1", "exact_match", "recall")
        # SQuAD scale (0-100) per language, then the plain mean over languages, as Tulu 2 reported.
        per = {
            lang: {**{k: 100 * mean(m[k] for m in ms) for k in keys}, "n": len(ms)}
            for lang, ms in sorted(by_lang.items())
        }
        avg = {k: mean(p[k] for p in per.values()) for k in keys}
        return {**avg, "average": avg, "per_language": per}

    def read_predictions(self, path: Path, ctx: TaskContext) -> list[dict[str, Any]]:
        """Our predictions.jsonl, or open-instruct's ``tydiaqa_predictions.jsonl`` (``prediction_text`` + ``answers``)."""

        def convert(i: int, r: dict[str, Any]) -> dict[str, Any]:
            if not isinstance(r.get("prediction_text"), str) or not isinstance(r.get("id"), str) or not isinstance(r.get("answers"), list):
                raise TuluError(f"{path}:{i}: needs 'id' and 'output' (ours) or 'id', 'prediction_text' and 'answers' (open-instruct's)")
            golds = [a["text"] if isinstance(a, dict) else str(a) for a in r["answers"]]
            lang = r.get("lang") or r["id"].split("-")[0]
            return {"id": r["id"], "prompt": "", "output": r["prediction_text"], "reference": golds, "meta": {"lang": lang}}

        return read_predictions_or(path, convert)


TASKS = [
    TyDiQA("tydiqa_goldp_1shot", True, "TyDiQA GoldP, 9 languages, 1-shot with the gold passage (512 tokens), SQuAD F1/EM, 100 per language"),
    TyDiQA("tydiqa_no_context_1shot", False, "TyDiQA GoldP, 9 languages, 1-shot closed-book (no passage), SQuAD F1/EM, 100 per language"),
]
