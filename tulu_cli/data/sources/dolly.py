"""Databricks Dolly 15k: human-written instruction/context/response records (JSONL)."""

from functools import partial

from tulu_cli.data.sources._instruct import convert_instruction_files
from tulu_cli.data.sources.base import RawFile, Source, static
from tulu_cli.data.sources.stanford_alpaca import TEMPLATE

SOURCE = Source(
    name="dolly",
    title="Dolly",
    description="15,011 human-written records; 'context' is used as the input.",
    homepage="https://huggingface.co/datasets/databricks/databricks-dolly-15k",
    file_sets=static(
        [
            RawFile(
                "databricks-dolly-15k.jsonl",
                # main since 2023-06-30; the digest is the published file's
                "hf://databricks/databricks-dolly-15k/databricks-dolly-15k.jsonl@bdd27f4d94b9c1f951818a7da7fd7aeea5dbff1a",
                sha256="2df9083338b4abd6bceb5635764dab5d833b393b55759dffb0959b6fcbf794ec",
            )
        ]
    ),
    convert=partial(convert_instruction_files, instruction="instruction", input="context", output="response"),
    options={"template": TEMPLATE},
)
