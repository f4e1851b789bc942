"""Open Assistant 1: walk each message tree from the root prompt to every assistant leaf."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from tulu_cli.data.io import read_jsonl
from tulu_cli.data.sources.base import Context, Example, Option, RawFile, Source, static, turn

ROLE = {"prompter": "user", "assistant": "assistant"}


def _quality(node: dict[str, Any]) -> float:
    labels = node.get("labels") or {}
    q = labels.get("quality") or {}
    value = q.get("value")
    return float(value) if isinstance(value, (int, float)) else 0.0


def _children(node: dict[str, Any], top_k: int | None) -> list[dict[str, Any]]:
    kids = [c for c in node.get("replies") or [] if not c.get("deleted")]
    if top_k is not None:
        # Stable sort: among equal quality the earlier reply wins, so output is deterministic.
        kids = sorted(kids, key=_quality, reverse=True)[:top_k]
    return kids


def paths(root: dict[str, Any], top_k: int | None) -> list[list[dict[str, str]]]:
    """Every root-to-leaf path that ends at an assistant message (Tulu's rule).

    A leaf is a message with no replies at all. A path whose last message is a prompter
    reply with no answer, or whose replies were all deleted, yields nothing; with
    ``top_k`` only the k best-rated replies (labels.quality) are followed at each node.
    """
    out: list[list[dict[str, str]]] = []
    # Iterative DFS: OASST threads can be deep enough to worry about recursion limits.
    stack: list[tuple[dict[str, Any], list[dict[str, str]]]] = [(root, [])]
    while stack:
        node, prefix = stack.pop()
        if node.get("deleted"):
            continue
        role = ROLE[node["role"]]
        path = prefix + [turn(role, node.get("text"))]
        if not node.get("replies"):
            if role == "assistant":
                out.append(path)
            continue
        # A message whose replies were all deleted is not a leaf: Tulu's walk yields nothing
        # there, and the published 7,708 Tulu 2 paths depend on that.
        for child in reversed(_children(node, top_k)):  # reversed so the walk visits replies in order
            stack.append((child, path))
    return out


def _convert(files: list[Path], ctx: Context) -> Iterator[Example]:
    top_k = ctx.options["top_k_reply"]
    for path in files:
        for lineno, tree in read_jsonl(path, ctx.bad):
            where = f"{path}:{lineno}"
            root = tree.get("prompt")
            if not isinstance(root, dict):
                ctx.bad(where, "missing message tree field 'prompt'")
                continue
            try:
                found = paths(root, top_k)
            except KeyError as e:
                ctx.bad(where, f"message without {e} / with an unknown role")
                continue
            if not found:
                ctx.note("trees with no complete assistant path")
            for messages in found:
                yield Example(messages, where)


SOURCE = Source(
    name="oasst1",
    title="Open Assistant 1",
    description=(
        "Human-written conversation trees (ready trees of 2023-04-12). Each root-to-leaf path ending in an "
        "assistant reply is one example; top_k_reply=1 keeps the best-rated reply at every turn (Tulu 2), "
        "none keeps all replies (Tulu 1)."
    ),
    homepage="https://huggingface.co/datasets/OpenAssistant/oasst1",
    file_sets=static(
        [
            RawFile(
                "2023-04-12_oasst_ready.trees.jsonl.gz",
                "hf://OpenAssistant/oasst1/2023-04-12_oasst_ready.trees.jsonl.gz@fdf72ae0827c1cda404aff25b6603abec9e3399b",
                sha256="2a9a8fd343e9b28e04a895a669d3253f82d93e9c174d440199ae19d5fafbdff7",  # 34,145,252 bytes
                aliases=("2023-04-12_oasst_ready.trees.jsonl",),
            )
        ]
    ),
    convert=_convert,
    options={"top_k_reply": Option(None, int, "follow only the k best-rated replies per turn (none = all)", minimum=1)},
)
