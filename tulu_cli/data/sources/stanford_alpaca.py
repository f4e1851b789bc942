"""Stanford Alpaca: 52K text-davinci-003 instruction/input/output records (one JSON list)."""

from tulu_cli.data.sources._instruct import convert_instruction_files
from tulu_cli.data.sources.base import Option, RawFile, Source, static

TEMPLATE = Option("random", str, "'random' (weighted Tulu prompt templates) or 'plain' (instruction, blank line, input)", ("random", "plain"))

SOURCE = Source(
    name="stanford_alpaca",
    title="Stanford Alpaca",
    description="52,002 instruction/input/output records generated with text-davinci-003.",
    homepage="https://github.com/tatsu-lab/stanford_alpaca",
    file_sets=static([RawFile("alpaca_data.json", "https://github.com/tatsu-lab/stanford_alpaca/raw/f13496211289def0ff88ae673389ae14a818b4b3/alpaca_data.json")]),
    convert=convert_instruction_files,
    options={"template": TEMPLATE},
)
