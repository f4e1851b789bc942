"""UltraFeedback binarized: preference pairs (chosen / rejected conversations) for DPO."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from tulu_cli.data.io import read_records
from tulu_cli.data.sources.base import Context, Example, Option, RawFile, Source

SPLITS = ("train_prefs", "test_prefs")


def _convert(files: list[Path], ctx: Context) -> Iterator[Example]:
    for where, rec in read_records(files[0], ctx.bad):
        chosen, rejected = rec.get("chosen"), rec.get("rejected")
        if not isinstance(chosen, list) or not isinstance(rejected, list):
            ctx.bad(where, "fields 'chosen' and 'rejected' must be message lists")
            continue
        chosen = [{"role": m.get("role"), "content": m.get("content")} if isinstance(m, dict) else m for m in chosen]
        rejected = [{"role": m.get("role"), "content": m.get("content")} if isinstance(m, dict) else m for m in rejected]
        yield Example(chosen, where, chosen=chosen, rejected=rejected)


REVISION = "3949bf5f8c17c394422ccfab0c31ea9c20bdeb85"


def _file_sets(opts):
    name = f"{opts['split']}-00000-of-00001.parquet"
    return [[RawFile(name, f"hf://HuggingFaceH4/ultrafeedback_binarized/data/{name}@{REVISION}")]]


SOURCE = Source(
    name="ultrafeedback",
    title="UltraFeedback binarized",
    description="~61K prompts with the highest-rated response as chosen and a lower-rated one as rejected (Zephyr/Tulu 2 DPO data).",
    homepage="https://huggingface.co/datasets/HuggingFaceH4/ultrafeedback_binarized",
    file_sets=_file_sets,
    convert=_convert,
    kind="preference",
    options={"split": Option("train_prefs", str, "train_prefs or test_prefs", SPLITS)},
)
