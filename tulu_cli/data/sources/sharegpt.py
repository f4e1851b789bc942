"""ShareGPT (Vicuna's HTML-cleaned dump): split conversations under a token limit as open-instruct did, keep human/gpt chunks."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Iterator

from tulu_cli.data.io import read_records
from tulu_cli.data.sources._chat import read_turns
from tulu_cli.data.sources.base import Context, Example, Option, RawFile, Source, turn
from tulu_cli.errors import TuluError

REPO = "hf://anon8231489123/ShareGPT_Vicuna_unfiltered/HTML_cleaned_raw_dataset"
REVISION = "192ab2185289094fc556ec8ce5ce1e8e587154ca"  # the repository's one commit of its files since 2023
TURN_OVERHEAD = 6  # tokens allowed per turn for role markers when measuring a chunk (Vicuna/Tulu value)
SPEAKERS = ("human", "gpt")  # the only speakers the split script keeps, alternating from "human"


def split_pairs(costs: list[int], max_tokens: int) -> list[tuple[int, int]]:
    """Turn ranges [start, end) that open-instruct's scripts/split_sharegpt_conversations.py writes.

    ``costs`` has one entry per turn (even length). Pairs of turns are added to a chunk while the
    sum stays <= max_tokens; the pair that would pass it closes the chunk and opens the next one,
    or, when it passes the limit alone, is left out. As in the script, a chunk is written only when
    a later pair closes it or when the last pair is added to it: the chunk that the last pair
    itself opens is never written, so that pair is lost. Empty ranges are not returned.
    """
    chunks: list[tuple[int, int]] = []
    start = used = 0
    last = len(costs) - 2
    for i in range(0, len(costs) - 1, 2):
        cost = costs[i] + costs[i + 1]
        if used + cost > max_tokens:
            chunks.append((start, i))
            start, used = (i + 2 if cost > max_tokens else i), 0
        elif i == last:
            chunks.append((start, i + 2))
        used += cost  # also after a pair too long alone, so the next pair closes an empty chunk
    return [(a, b) for a, b in chunks if b > a]


def _needs_tokenizer(files: list[Path], options: dict[str, Any], tokenizer: str | None) -> None:
    if not options["max_tokens"] or _presplit(files):
        return
    if tokenizer is None:
        _missing_tokenizer(options["max_tokens"])
    _load_tokenizer(tokenizer)  # a bad path fails now, not after the other sources are converted


def _presplit(files: list[Path]) -> bool:
    return len(files) == 1 and "_split_" in files[0].name


def _missing_tokenizer(max_tokens: int) -> None:
    raise TuluError(
        f"sharegpt: splitting conversations into chunks of at most {max_tokens} tokens needs a tokenizer: "
        "pass --tokenizer (a local folder or hub name; Tulu used a Llama tokenizer), put the already split "
        f"sharegpt_html_cleaned_and_split_{max_tokens}.json in --raw-dir, or use --source-option max_tokens=0 "
        "to keep whole conversations"
    )


@functools.lru_cache(maxsize=2)
def _load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:  # many exception types for a missing/bad tokenizer
        raise TuluError(f"--tokenizer {name}: cannot load tokenizer ({e.__class__.__name__}: {e})") from None


def _token_counter(name: str | None, max_tokens: int) -> Callable[[list[str]], list[int]]:
    if name is None:
        _missing_tokenizer(max_tokens)
    tok = _load_tokenizer(name)
    return lambda texts: [len(ids) + TURN_OVERHEAD for ids in tok(texts)["input_ids"]]


def raw_turns(record: dict[str, Any]) -> tuple[list[tuple[str, str]] | None, str | None]:
    """(speaker, text) of a raw record's ``conversations`` (``{"from", "value"}`` turns), or (None, problem)."""
    conv = record.get("conversations")
    if not isinstance(conv, list):
        return None, "field 'conversations' must be a list of turns"
    out = []
    for i, t in enumerate(conv):
        if not isinstance(t, dict) or not isinstance(t.get("from"), str) or not isinstance(t.get("value"), str):
            return None, f"field 'conversations': turn {i} needs string 'from' and 'value'"
        out.append((t["from"], t["value"]))
    return out, None


def conversation_chunks(
    record: dict[str, Any], where: str, ctx: Context, count: Callable[[list[str]], list[int]] | None, max_tokens: int
) -> Iterator[list[dict[str, str]]]:
    """open-instruct's rules on a raw conversation: the even-length prefix is split first (``count`` None:
    kept whole), then only chunks of alternating human/gpt turns are kept (any other speaker, or two
    turns of one speaker in a row, drops that chunk alone)."""
    turns, problem = raw_turns(record)
    if problem:
        ctx.bad(where, problem)
        return
    turns = turns[: len(turns) // 2 * 2]  # an unanswered last turn cannot be trained on
    if count is None:
        ranges = [(0, len(turns))] if turns else []
    else:
        ranges = split_pairs(count([text for _, text in turns]), max_tokens) if turns else []
        if len(ranges) > 1:
            ctx.note("long conversations split into chunks")
        left_out = (len(turns) - sum(b - a for a, b in ranges)) // 2
        if left_out:
            ctx.note(f"turn pairs left out by the split at {max_tokens} tokens", left_out)
    for a, b in ranges:
        chunk = turns[a:b]
        if any(who != SPEAKERS[j % 2] for j, (who, _) in enumerate(chunk)):
            ctx.note("chunks with a turn other than human/gpt in alternation dropped")
            continue
        yield [turn("user" if who == "human" else "assistant", text) for who, text in chunk]


def presplit_messages(record: dict[str, Any], where: str, ctx: Context) -> Iterator[list[dict[str, str]]]:
    """open-instruct's convert_sharegpt_data on an already split file: human/user and gpt/chatgpt turns,
    a conversation with a system or Bing turn dropped."""
    messages, problem = read_turns(record.get("conversations"))
    if problem:
        ctx.bad(where, f"field 'conversations': {problem}")
        return
    if any(m["role"] in ("system", "bing") for m in messages):
        ctx.note("conversations with a system or Bing turn dropped")
        return
    messages = messages[: len(messages) // 2 * 2]  # the split script wrote whole pairs only
    if not messages or any(m["role"] != ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(messages)):
        ctx.note("conversations not alternating user/assistant dropped")
        return
    yield messages


def _convert(files: list[Path], ctx: Context) -> Iterator[Example]:
    max_tokens = ctx.options["max_tokens"]
    presplit = _presplit(files)
    count = None if presplit or max_tokens == 0 else _token_counter(ctx.tokenizer, max_tokens)
    for path in files:
        for where, rec in read_records(path, ctx.bad):
            chunks = presplit_messages(rec, where, ctx) if presplit else conversation_chunks(rec, where, ctx, count, max_tokens)
            for messages in chunks:
                yield Example(messages, where)


def _file_sets(opts):
    n = opts["max_tokens"]
    sets = [[RawFile(f"sg_90k_part{i}_html_cleaned.json", f"{REPO}/sg_90k_part{i}_html_cleaned.json@{REVISION}") for i in (1, 2)]]
    if n:
        # open-instruct's pre-split file for this limit, if the user already has it.
        sets.insert(0, [RawFile(f"sharegpt_html_cleaned_and_split_{n}.json")])
    return sets


SOURCE = Source(
    name="sharegpt",
    title="ShareGPT",
    description=(
        "User-shared ChatGPT conversations (HTML-cleaned, ~90K), split as open-instruct's script did: chunks of "
        "whole turn pairs under max_tokens (Tulu 1: 2048, Tulu 2: 4096; needs --tokenizer), then only chunks of "
        "alternating human/gpt turns kept."
    ),
    homepage="https://huggingface.co/datasets/anon8231489123/ShareGPT_Vicuna_unfiltered",
    file_sets=_file_sets,
    convert=_convert,
    options={"max_tokens": Option(4096, int, "chunk length limit in tokens, 0 = no splitting", minimum=0)},
    preflight=_needs_tokenizer,
)
