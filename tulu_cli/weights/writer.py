"""Write a sharded safetensors checkpoint one tensor at a time into an output folder that appears atomically."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any, Iterator, Sequence

from tulu_cli import paths
from tulu_cli.errors import TuluError
from tulu_cli.weights.checkpoint import ITEMSIZE, TORCH_TO_ST, dtype_name

Entry = tuple[str, str, tuple[int, ...]]  # tensor name, torch dtype name, shape
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5", ".ckpt")


def parse_size(value: int | str) -> int:
    """``"5GB"`` -> 5_000_000_000, ``"2GiB"`` -> 2 * 2**30 (the units save_pretrained accepts)."""
    if isinstance(value, int):
        return value
    text = value.strip().upper()
    units = {"GIB": 2**30, "MIB": 2**20, "KIB": 2**10, "GB": 10**9, "MB": 10**6, "KB": 10**3, "B": 1}
    for unit, factor in units.items():
        if text.endswith(unit):
            number = text[: -len(unit)].strip()
            return int(float(number) * factor)
    return int(text)


def tensor_bytes(t: Any):
    """The raw little-endian bytes of a tensor as a uint8 numpy array (no copy when already contiguous)."""
    import torch

    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()


def sha256_of(t: Any) -> str:
    return hashlib.sha256(memoryview(tensor_bytes(t))).hexdigest()


def nbytes(dtype: str, shape: Sequence[int]) -> int:
    n = ITEMSIZE[TORCH_TO_ST[dtype]]
    for d in shape:
        n *= d
    return n


class ShardedWriter:
    """HF-style shards (``model.safetensors`` or ``model-0000i-of-0000N.safetensors`` + index).

    Every output tensor's name, dtype and shape is known before any data is produced, so each
    shard's header is written up front and tensors are appended as they come: memory holds one
    tensor, never a whole shard.
    """

    def __init__(self, folder: Path, entries: Sequence[Entry], max_shard_size: int):
        self.folder = folder
        shards: list[list[Entry]] = [[]]
        size = 0
        for e in entries:
            n = nbytes(e[1], e[2])
            if shards[-1] and size + n > max_shard_size:
                shards.append([])
                size = 0
            shards[-1].append(e)
            size += n
        count = len(shards)
        self.names = ["model.safetensors"] if count == 1 else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        self.shards = shards
        self.order = [e for shard in shards for e in shard]
        self._shard_of = [i for i, shard in enumerate(shards) for _ in shard]
        self.total_size = sum(nbytes(e[1], e[2]) for e in entries)
        self._next = 0
        self._shard = -1
        self._file: Any = None

    def _open_shard(self, index: int) -> None:
        if self._file is not None:
            self._file.close()
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, dtype, shape in self.shards[index]:
            n = nbytes(dtype, shape)
            header[name] = {"dtype": TORCH_TO_ST[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # keep tensor data 8-byte aligned, as safetensors itself does
        self._file = (self.folder / self.names[index]).open("wb")
        self._file.write(struct.pack("<Q", len(raw)) + raw)
        self._shard = index

    def write(self, name: str, tensor: Any) -> None:
        """Append the next tensor; it must come in plan order with the planned dtype and shape."""
        exp_name, exp_dtype, exp_shape = self.order[self._next]
        if name != exp_name or dtype_name(tensor.dtype) != exp_dtype or tuple(tensor.shape) != tuple(exp_shape):
            raise RuntimeError(f"writer expected {exp_name} {exp_dtype}{list(exp_shape)}, got {name} {tensor.dtype}{list(tensor.shape)}")
        shard = self._shard_of[self._next]
        if shard != self._shard:
            self._open_shard(shard)
        self._file.write(memoryview(tensor_bytes(tensor)))
        self._next += 1

    def close(self) -> None:
        if self._next != len(self.order):
            raise RuntimeError(f"writer closed after {self._next} of {len(self.order)} tensors")
        if self._file is not None:
            self._file.close()
            self._file = None
        if len(self.names) > 1:
            weight_map = {name: self.names[i] for i, shard in enumerate(self.shards) for name, _, _ in shard}
            index = {"metadata": {"total_size": self.total_size}, "weight_map": weight_map}
            (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def check_output(output: Path, overwrite: bool, inputs: Sequence[tuple[str, Path]]) -> None:
    """Refuse an existing output without --overwrite, and an output that is (or holds, or sits in) an input."""
    out = output.resolve()
    for flag, path in inputs:
        p = path.resolve()
        if out == p or out in p.parents or p in out.parents:
            raise TuluError(f"--output {output}: overlaps {flag} {path}; write to a separate folder")
    if output.exists() or output.is_symlink():
        if not output.is_dir():
            raise TuluError(f"--output {output}: exists and is not a folder")
        if any(output.iterdir()) and not overwrite:
            raise TuluError(f"--output {output}: folder already exists and is not empty; pass --overwrite to replace it")
    paths.check_output(output, "--output", "folder")


@contextlib.contextmanager
def atomic_folder(output: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``output`` in one rename, on failure it vanishes.

    A killed run cannot clean up: its folder keeps a name (paths.temp_path) that the next run in the
    same place recognises and deletes.
    """
    with paths.new_folders_undone(output.parent):
        output.parent.mkdir(parents=True, exist_ok=True)
        paths.clean_stale(output.parent)
        tmp = paths.temp_path(output)
        shutil.rmtree(tmp, ignore_errors=True)  # an earlier process with this pid (pids are reused)
        tmp.mkdir()
        try:
            yield tmp
            if output.exists() and any(output.iterdir()):
                old = paths.temp_path(output, "old")
                os.replace(output, old)
                os.replace(tmp, output)
                shutil.rmtree(old, ignore_errors=True)
            else:
                if output.exists():
                    output.rmdir()
                os.replace(tmp, output)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def copy_side_files(src: Path, dst: Path, skip: Sequence[str] = ()) -> list[str]:
    """Copy config, tokenizer and other small files (everything but weights, indexes and ``skip``)."""
    copied = []
    for f in sorted(src.iterdir()):
        if not f.is_file() or f.name in skip or f.name.endswith(WEIGHT_SUFFIXES) or f.name.endswith(".index.json"):
            continue
        shutil.copy2(f, dst / f.name)
        copied.append(f.name)
    return copied


def set_config_fields(folder: Path, **fields: Any) -> None:
    """Update config.json in place; ``dtype`` goes under whichever key the file already uses."""
    path = folder / "config.json"
    if not path.is_file():
        return
    cfg = json.loads(path.read_text())
    for key, value in fields.items():
        if key == "dtype":
            key = "torch_dtype" if "torch_dtype" in cfg and "dtype" not in cfg else "dtype"
        cfg[key] = value
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator[Any]:
    """A rich byte-count progress bar on stderr (silent when stderr is not a terminal); yields ``advance(n)``."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=console, disable=not console.is_terminal, transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
