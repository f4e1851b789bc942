"""Weight diffs in the format Alpaca and Tulu v1 were released in (float32 tuned-minus-base), and their recovery.

Rule for exactness (see docs/weights.md): a tensor is recovered as
``cast(dtype, float32(diff) + float32(base))``, the base embeddings first grown by mean rows as
the reference scripts grew them for ``[PAD]``. When making a diff, tulu replays that very
computation and stores the few elements it cannot reproduce bit for bit in a fix-up file, and the
manifest holds the sha256 of every tuned tensor; recovery with a manifest is therefore bit-exact
and verified.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tulu_cli.errors import TuluError
from tulu_cli.weights import arch
from tulu_cli.weights.checkpoint import Checkpoint, dtype_name, torch_dtype
from tulu_cli.weights.writer import ShardedWriter, atomic_folder, check_output, copy_side_files, parse_size, progress, set_config_fields, sha256_of

MANIFEST = "tulu_diff_manifest.json"
FIXUPS = "tulu_diff_fixups.safetensors"
MANIFEST_FORMAT = "tulu-weight-diff"
CHECK_SUM_ATOL = 1e-2  # the tolerance of the Alpaca script's naive integrity check


def grow_rows(weight: Any, rows: int) -> Any:
    """Append mean rows, as ``smart_tokenizer_and_embedding_resize`` initialised the added ``[PAD]`` row."""
    import torch

    added = rows - weight.shape[0]
    if added <= 0:
        return weight
    return torch.cat([weight, weight.mean(dim=0, keepdim=True).expand(added, *weight.shape[1:])], dim=0)


def _int_view(t: Any) -> Any:
    import torch

    return t.reshape(-1).view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _check_pairing(base: Checkpoint, other: Checkpoint, other_flag: str, emb: set[str]) -> dict[str, int]:
    """Keys must match one to one and shapes agree, except vocabulary rows that grew; returns {embedding: rows added}."""
    keys = [k for k in other.keys() if not arch.is_non_learned(k)]
    base_keys = {k for k in base.keys() if not arch.is_non_learned(k)}
    missing = [k for k in keys if k not in base_keys]
    if missing:
        raise TuluError(f"--base {base.folder}: wrong base, it lacks tensor '{missing[0]}' of {other_flag} ({len(missing)} missing)")
    extra = sorted(base_keys - set(keys))
    if extra:
        raise TuluError(f"--base {base.folder}: wrong base, it has tensor '{extra[0]}' that {other_flag} lacks ({len(extra)} extra)")
    grown: dict[str, int] = {}
    for k in keys:
        bs, os_ = base.shape[k], other.shape[k]
        if bs == os_:
            continue
        if k in emb and len(bs) == len(os_) and bs[1:] == os_[1:] and os_[0] > bs[0]:
            grown[k] = os_[0] - bs[0]
            continue
        raise TuluError(f"--base {base.folder}: wrong base, tensor '{k}' has shape {list(bs)} but {other_flag} has {list(os_)}")
    if len(set(grown.values())) > 1:
        raise TuluError(f"{other_flag}: embeddings grew by different numbers of rows ({grown})")
    for k in keys:
        if not base.dtype[k].startswith(("float", "bfloat")) or not other.dtype[k].startswith(("float", "bfloat")):
            raise TuluError(f"{other_flag}: tensor '{k}' is {other.dtype[k]}; only floating-point weights can be diffed")
    return grown


def make_diff(opts: Any, check_only: bool = False) -> dict[str, Any]:
    """Write ``tuned - base`` in float32 (HF model folder + tuned tokenizer) plus a manifest; return a summary.

    ``check_only`` (dry run): every check on the inputs and the output, then return before any work.
    """
    check_output(opts.output, opts.overwrite, [("--base", Path(opts.base)), ("--tuned", Path(opts.tuned))])  # first: reading inputs costs
    base = Checkpoint(opts.base, "--base")
    tuned = Checkpoint(opts.tuned, "--tuned")
    base.config(), tuned.config()  # both must be model folders (the reference scripts load them whole): refuse now
    emb, order = arch.describe(tuned.folder)
    emb = emb & set(tuned.keys()) or arch.embedding_keys(tuned.folder, tuned.keys())
    grown = _check_pairing(base, tuned, "--tuned", emb)
    keys = [k for k in tuned.keys() if not arch.is_non_learned(k)]
    entries = [(k, "float32", tuned.shape[k]) for k in keys]
    if check_only:
        return {"output": str(opts.output), "tensors": len(keys), "base_rows_added": max(grown.values(), default=0)}

    tensors: dict[str, dict[str, Any]] = {}
    fixups: dict[str, Any] = {}
    sums: dict[str, Any] = {}
    with atomic_folder(opts.output) as tmp:
        writer = ShardedWriter(tmp, entries, parse_size(opts.max_shard_size))
        with progress("diff", sum(tuned.nbytes(k) for k in keys)) as advance:
            for k, _, _ in writer.order:
                t = tuned.get(k)
                b_raw = base.get(k)
                b = b_raw.float()
                if k in grown:
                    b = grow_rows(b, tuned.shape[k][0])
                d = t.float() - b
                r32 = d + b
                r = r32.to(t.dtype)
                bad = (_int_view(r) != _int_view(t)).nonzero().reshape(-1)
                if bad.numel():
                    fixups[f"{k}::index"] = bad
                    fixups[f"{k}::value"] = t.reshape(-1)[bad].clone()
                sums[k] = r32.sum()
                tensors[k] = {
                    "dtype": dtype_name(t.dtype),
                    "shape": list(t.shape),
                    "sha256": sha256_of(t),
                    "base_sha256": sha256_of(b_raw),
                    "diff_sha256": sha256_of(d),
                    "inexact_elements": int(bad.numel()),
                }
                writer.write(k, d)
                advance(tuned.nbytes(k))
                del t, b, b_raw, d, r32, r
        writer.close()
        if fixups:
            from safetensors.torch import save_file

            save_file(fixups, str(tmp / FIXUPS))
        check_sum = _check_sum(sums, order)
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": 1,
            "diff_dtype": "float32",
            "recovery": "cast(dtype, float32(diff) + float32(base)); embeddings of the base first grow by mean rows; then fix-ups",
            "base_rows_added": max(grown.values(), default=0),
            "grown_embeddings": sorted(grown),
            "check_sum": check_sum,
            "fixups": FIXUPS if fixups else None,
            "tensors": tensors,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        copy_side_files(tuned.folder, tmp, skip=(MANIFEST, FIXUPS))
        set_config_fields(tmp, dtype="float32")
    return {
        "output": str(opts.output),
        "tensors": len(keys),
        "shards": len(writer.names),
        "base_rows_added": max(grown.values(), default=0),
        "inexact_elements": sum(v["inexact_elements"] for v in tensors.values()),
        "check_sum": check_sum,
    }


def _check_sum(sums: dict[str, Any], order: list[str]) -> float:
    """The Alpaca script's naive integrity value: float32 running sum of per-tensor float32 sums, in model order."""
    import torch

    total = torch.zeros((), dtype=torch.float32)
    for k in arch.ordered(list(sums), order):
        total = total + sums[k]
    return float(total)


def load_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("tensors"), dict):
            raise ValueError("not a tulu weight-diff manifest")
    except (ValueError, AttributeError) as e:
        raise TuluError(f"{path}: corrupt diff manifest ({e})") from None
    return manifest


def _load_fixups(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    name = manifest.get("fixups")
    if not name:
        return {}
    path = folder / name
    if not path.is_file():
        raise TuluError(f"--diff {folder}: corrupt diff, the manifest names fix-up file '{name}', which is missing")
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise TuluError(f"{path}: corrupt fix-up file ({e})") from None


def recover(opts: Any, check_only: bool = False) -> dict[str, Any]:
    """Add a diff back onto its base and write the tuned model; refuse (writing nothing) on any mismatch.

    ``check_only`` (dry run): every check that needs no tensor data, then return before any work.
    """
    check_output(opts.output, opts.overwrite, [("--base", Path(opts.base)), ("--diff", Path(opts.diff))])  # first: reading inputs costs
    base = Checkpoint(opts.base, "--base")
    diff = Checkpoint(opts.diff, "--diff")
    base.config(), diff.config()  # the recovered model takes the diff's config; both must be model folders
    manifest = load_manifest(diff.folder)
    emb, order = arch.describe(diff.folder)
    emb = emb & set(diff.keys()) or arch.embedding_keys(diff.folder, diff.keys())
    grown = _check_pairing(base, diff, "--diff", emb)
    keys = [k for k in diff.keys() if not arch.is_non_learned(k)]
    buffers = [k for k in diff.keys() if arch.is_non_learned(k)]
    fixups: dict[str, Any] = {}
    if manifest is not None:
        listed = manifest["tensors"]
        if set(listed) != set(keys):
            odd = sorted(set(listed) ^ set(keys))
            raise TuluError(f"--diff {diff.folder}: corrupt diff, manifest and weights disagree on tensor '{odd[0]}' ({len(odd)} differ)")
        for k in keys:
            if list(listed[k]["shape"]) != list(diff.shape[k]):
                raise TuluError(f"--diff {diff.folder}: corrupt diff, tensor '{k}' has shape {list(diff.shape[k])}, the manifest says {listed[k]['shape']}")
        if grown and manifest.get("base_rows_added") != max(grown.values()):
            raise TuluError(
                f"--base {base.folder}: wrong base, its vocabulary needs {max(grown.values())} added rows to match the diff, "
                f"the diff was made from a base needing {manifest.get('base_rows_added')}"
            )
        fixups = _load_fixups(diff.folder, manifest)

    def out_dtype(k: str) -> str:
        if opts.dtype != "auto":
            return opts.dtype
        return manifest["tensors"][k]["dtype"] if manifest is not None else "float32"

    entries = [(k, out_dtype(k), diff.shape[k]) for k in keys]
    if check_only:
        return {"output": str(opts.output), "tensors": len(keys), "base_rows_added": max(grown.values(), default=0), "verified": manifest is not None}
    sums: dict[str, Any] = {}
    config = None
    for k in buffers:  # summed by the Alpaca check, not written: today's models rebuild them
        if k in base.file_of:
            b = base.get(k).float()
        else:
            config = config or arch.load_config(diff.folder)
            b = arch.rotary_inv_freq(config)
        sums[k] = (diff.get(k).float() + b).sum()

    with atomic_folder(opts.output) as tmp:
        writer = ShardedWriter(tmp, entries, parse_size(opts.max_shard_size))
        with progress("recover", sum(diff.nbytes(k) for k in keys)) as advance:
            for k, dtype, _ in writer.order:
                d_raw = diff.get(k)
                b_raw = base.get(k)
                b = b_raw.float()
                if k in grown:
                    b = grow_rows(b, diff.shape[k][0])
                r32 = d_raw.float() + b
                sums[k] = r32.sum()
                if manifest is not None:
                    info = manifest["tensors"][k]
                    r = r32.to(torch_dtype(info["dtype"]))
                    if f"{k}::index" in fixups:
                        r.reshape(-1)[fixups[f"{k}::index"]] = fixups[f"{k}::value"].to(r.dtype)
                    if sha256_of(r) != info["sha256"]:
                        raise TuluError(_explain_mismatch(k, info, base, b_raw, diff, d_raw))
                else:
                    r = r32
                writer.write(k, r.to(torch_dtype(dtype)))
                advance(diff.nbytes(k))
                del d_raw, b_raw, b, r32, r
        writer.close()
        check_sum = _check_sum(sums, order)
        if opts.check_sum is not None and abs(check_sum - opts.check_sum) > CHECK_SUM_ATOL:
            raise TuluError(
                f"--check-sum {opts.check_sum}: integrity check failed, the recovered weights sum to {check_sum:.4f} "
                f"(tolerance {CHECK_SUM_ATOL}); the base or the diff is not the one the value was published for"
            )
        copy_side_files(diff.folder, tmp, skip=(MANIFEST, FIXUPS))
        dtypes = {e[1] for e in entries}
        if len(dtypes) == 1:
            set_config_fields(tmp, dtype=dtypes.pop())
    return {
        "output": str(opts.output),
        "tensors": len(keys),
        "shards": len(writer.names),
        "base_rows_added": max(grown.values(), default=0),
        "verified": manifest is not None,
        "check_sum": check_sum,
        "check_sum_verified": opts.check_sum is not None,
    }


def _explain_mismatch(k: str, info: dict[str, Any], base: Checkpoint, b_raw: Any, diff: Checkpoint, d_raw: Any) -> str:
    """Say which input is at fault: the manifest also holds the sha256 of each base and diff tensor."""
    if sha256_of(d_raw.float()) != info.get("diff_sha256"):
        return f"--diff {diff.folder}: corrupt diff, tensor '{k}' does not match its sha256 in {MANIFEST}"
    if sha256_of(b_raw) != info.get("base_sha256"):
        return f"--base {base.folder}: wrong base, tensor '{k}' differs from the base this diff was made from"
    return f"--diff {diff.folder}: recovered tensor '{k}' does not match its sha256 in {MANIFEST}"
