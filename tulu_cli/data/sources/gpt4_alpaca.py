"""GPT4-Alpaca: the Alpaca instructions answered by GPT-4 (English file only, as in Tulu)."""

from tulu_cli.data.sources._instruct import convert_instruction_files
from tulu_cli.data.sources.base import RawFile, Source, static
from tulu_cli.data.sources.stanford_alpaca import TEMPLATE

SOURCE = Source(
    name="gpt4_alpaca",
    title="GPT4-Alpaca",
    description="52,002 Alpaca instructions with GPT-4 answers; English only (the Chinese file is not used).",
    homepage="https://github.com/Instruction-Tuning-with-GPT-4/GPT-4-LLM",
    file_sets=static(
        [RawFile("alpaca_gpt4_data.json", "https://github.com/Instruction-Tuning-with-GPT-4/GPT-4-LLM/raw/38b93b75a80b019cc3aad362ca6f5bb0c3908959/data/alpaca_gpt4_data.json")]
    ),
    convert=convert_instruction_files,
    options={"template": TEMPLATE},
)
