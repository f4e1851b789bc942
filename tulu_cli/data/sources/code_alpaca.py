"""Code-Alpaca: 20K code instructions in the Alpaca layout."""

from tulu_cli.data.sources._instruct import convert_instruction_files
from tulu_cli.data.sources.base import RawFile, Source, static
from tulu_cli.data.sources.stanford_alpaca import TEMPLATE

SOURCE = Source(
    name="code_alpaca",
    title="Code-Alpaca",
    description="20,022 code instruction/input/output records.",
    homepage="https://github.com/sahil280114/codealpaca",
    file_sets=static([RawFile("code_alpaca_20k.json", "https://github.com/sahil280114/codealpaca/raw/0d265112c705f88848783dfdf9bdca9df64d8e35/data/code_alpaca_20k.json")]),
    convert=convert_instruction_files,
    options={"template": TEMPLATE},
)
