"""Read Hugging Face checkpoints tensor by tensor (safetensors or pytorch .bin, single or sharded) without loading them whole."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError

# safetensors dtype names <-> torch dtype names (torch itself is imported lazily).
ST_TO_TORCH = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}
TORCH_TO_ST = {v: k for k, v in ST_TO_TORCH.items()}
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}

WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
WEIGHT_SINGLES = ("model.safetensors", "pytorch_model.bin")


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def dtype_name(dtype: Any) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def read_safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """Parse and sanity-check a safetensors header: a truncated or garbled file is refused before any work."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError("file shorter than its 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            if n > min(size - 8, 200_000_000):
                raise ValueError(f"header length {n} exceeds the file size")
            header = json.loads(f.read(n))
    except (ValueError, UnicodeDecodeError) as e:
        raise TuluError(f"{path}: corrupt safetensors file ({e})") from None
    except OSError as e:
        raise TuluError(f"{path}: cannot read ({e.strerror or e})") from None
    if not isinstance(header, dict):
        raise TuluError(f"{path}: corrupt safetensors file (header is not a mapping)")
    header.pop("__metadata__", None)
    data_size = size - 8 - n
    for key, info in header.items():
        try:
            start, end = info["data_offsets"]
            numel = 1
            for d in info["shape"]:
                numel *= int(d)
            expected = numel * ITEMSIZE[info["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise TuluError(f"{path}: corrupt safetensors file (bad entry for tensor '{key}')") from None
        if end - start != expected:
            raise TuluError(f"{path}: corrupt safetensors file (tensor '{key}' has {end - start} bytes, its shape needs {expected})")
        if end > data_size:
            raise TuluError(f"{path}: truncated safetensors file (tensor '{key}' ends at byte {end}, the file holds {data_size} data bytes)")
    return header


def weight_files(folder: Path, label: str) -> tuple[dict[str, Path], str]:
    """Map every tensor name to the file holding it; second value is "safetensors" or "bin"."""
    for name in WEIGHT_INDEXES:
        index = folder / name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except OSError as e:
                raise TuluError(f"{index}: cannot read ({e.strerror or e})") from None
            except (ValueError, KeyError, TypeError):
                raise TuluError(f"{index}: corrupt index file (expected a JSON object with a 'weight_map')") from None
            files = {k: folder / v for k, v in weight_map.items()}
            for f in sorted(set(files.values())):
                if not f.is_file():
                    raise TuluError(f"{index}: lists shard '{f.name}', which is missing")
            return files, "safetensors" if name.startswith("model.safetensors") else "bin"
    for name in WEIGHT_SINGLES:
        single = folder / name
        if single.is_file():
            return {"": single}, "safetensors" if name.endswith(".safetensors") else "bin"
    if (folder / "adapter_config.json").is_file():
        raise TuluError(f"{label} {folder}: this is a PEFT adapter, not a full model (merge it with `tulu weights merge --adapter {folder}`)")
    raise TuluError(f"{label} {folder}: no model weights found (expected model.safetensors, pytorch_model.bin or their .index.json)")


class Checkpoint:
    """Tensor names, shapes and dtypes from headers; each tensor read on demand, one at a time.

    A safetensors file is opened per read: ``safe_open`` memory-maps the file and every page
    touched stays in the process's resident set while it is open, so keeping files open would
    grow memory to the whole checkpoint. Pytorch ``.bin`` files (the format of the released
    Alpaca and Tulu v1 diffs) are memory-mapped one file at a time.
    """

    def __init__(self, folder: str | Path, label: str):
        self.folder = Path(folder)
        self.label = label
        if not self.folder.is_dir():
            raise TuluError(f"{label} {self.folder}: folder does not exist")
        files, self.format = weight_files(self.folder, label)
        self.file_of: dict[str, Path] = {}
        self.dtype: dict[str, str] = {}  # torch dtype names
        self.shape: dict[str, tuple[int, ...]] = {}
        self._bin_path: Path | None = None
        self._bin_state: dict[str, Any] | None = None
        if self.format == "safetensors":
            for path in sorted(set(files.values())):
                for key, info in read_safetensors_header(path).items():
                    self.file_of[key] = path
                    self.dtype[key] = ST_TO_TORCH.get(info["dtype"], info["dtype"])
                    self.shape[key] = tuple(int(d) for d in info["shape"])
        else:
            for path in sorted(set(files.values()), key=lambda p: p.name):
                for key, t in self._load_bin(path).items():
                    self.file_of[key] = path
                    self.dtype[key] = dtype_name(t.dtype)
                    self.shape[key] = tuple(t.shape)
        if "" not in files:
            missing = sorted(k for k in files if k not in self.file_of)
            if missing:
                raise TuluError(f"{self.folder}: index lists tensor '{missing[0]}' but its shard does not contain it ({len(missing)} missing)")

    def _load_bin(self, path: Path) -> dict[str, Any]:
        import torch

        if self._bin_path != path:
            self._bin_state = None  # drop the previous mapping first
            try:
                try:
                    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
                except RuntimeError as e:
                    if "mmap" not in str(e):
                        raise
                    state = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
            except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged file
                raise TuluError(f"{path}: cannot read pytorch checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
            if not isinstance(state, dict):
                raise TuluError(f"{path}: not a state dict")
            self._bin_path, self._bin_state = path, state
        return self._bin_state  # type: ignore[return-value]

    def keys(self) -> list[str]:
        return list(self.file_of)

    def nbytes(self, key: str) -> int:
        n = ITEMSIZE[TORCH_TO_ST[self.dtype[key]]]
        for d in self.shape[key]:
            n *= d
        return n

    def get(self, key: str):
        """A fresh CPU tensor (owning its memory) for ``key``."""
        path = self.file_of[key]
        if self.format == "bin":
            return self._load_bin(path)[key].clone()
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return f.get_tensor(key)  # an owned copy: valid after the file is closed
        except Exception as e:  # noqa: BLE001 - the header check passed, so this is damage inside the file
            raise TuluError(f"{path}: cannot read tensor '{key}' ({e})") from None

    def config(self) -> dict[str, Any]:
        """The folder's config.json; missing or unreadable is the user's to fix."""
        path = self.folder / "config.json"
        if not path.is_file():
            raise TuluError(f"{self.label} {self.folder}: config.json is missing (not a Hugging Face model folder)")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise TuluError(f"{path}: cannot read the model config ({e})") from None
        if not isinstance(config, dict) or "model_type" not in config:
            raise TuluError(f"{path}: not a model config (no 'model_type' key)")
        return config
