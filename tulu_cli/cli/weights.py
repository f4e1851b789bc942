"""`tulu weights` command group: diff, recover, merge (heavy imports stay inside the functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tulu_cli.cli._common import ConfigOpt, DryRunOpt, TuluTyper, print_resolved

app = TuluTyper(help="Diff, recover and merge model weights.")

OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder to write (required). Created atomically: it appears complete or not at all.", show_default=False)]
OverwriteOpt = Annotated[Optional[bool], typer.Option("--overwrite/--no-overwrite", help="Replace an existing non-empty --output folder. Default: refuse.", show_default=False)]
ShardOpt = Annotated[Optional[str], typer.Option("--max-shard-size", help="Largest safetensors shard, e.g. 5GB, 500MB, 2GiB. Default: 5GB.", show_default=False)]
DtypeOpt = Annotated[Optional[str], typer.Option("--dtype", help="Output dtype: auto, float32, bfloat16 or float16. Default: auto (see the command help).", show_default=False)]


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _checked(what: str, opts) -> None:
    """Dry run: the inputs and the output passed every check a real run makes before writing."""
    _console().print(f"checked: {what}; --output {opts.output} can be written; nothing written")
    print_resolved(opts)


@app.command("diff")
def diff_cmd(
    base: Annotated[Optional[Path], typer.Option("--base", help="The untuned base model folder (required).", show_default=False)] = None,
    tuned: Annotated[Optional[Path], typer.Option("--tuned", help="The fine-tuned model folder (required).", show_default=False)] = None,
    output: OutputOpt = None,
    overwrite: OverwriteOpt = None,
    max_shard_size: ShardOpt = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Write [bold]tuned minus base[/bold] in the format the Alpaca and Tulu v1 weight diffs were released in.

    The diff is a Hugging Face model folder of float32 tensors (tuned - base) with the tuned
    model's config and tokenizer. When the base has fewer vocabulary rows than the tuned model
    (the [PAD] token those recipes added), the base embeddings are first grown by mean rows,
    exactly as the reference scripts did, so their recover script and `tulu weights recover`
    both restore it. A manifest (tulu_diff_manifest.json) records the sha256 of every tuned
    tensor, of its base and diff tensors, and the Alpaca-style check sum.

    Example:

        tulu weights diff --base llama-7b --tuned my-tulu-7b --output my-tulu-7b-diff
    """
    from tulu_cli.options.weights import DiffOptions
    from tulu_cli.options import resolve_options

    opts = resolve_options(DiffOptions, config, {"base": base, "tuned": tuned, "output": output, "overwrite": overwrite, "max_shard_size": max_shard_size})
    from tulu_cli.weights import make_diff

    if dry_run:
        r = make_diff(opts, check_only=True)
        _checked(f"{r['tensors']} tensors of --tuned pair with --base", opts)
        return
    r = make_diff(opts)
    console = _console()
    console.print(f"[green]wrote[/green] {r['output']}: {r['tensors']} tensors in {r['shards']} shard(s), float32")
    if r["base_rows_added"]:
        console.print(f"base vocabulary grown by {r['base_rows_added']} mean row(s) ([PAD]), as the reference scripts do")
    if r["inexact_elements"]:
        console.print(f"{r['inexact_elements']} element(s) not reproducible by float32 addition were stored as fix-ups")
    console.print(f"check sum (for --check-sum): {r['check_sum']:.4f}")


@app.command("recover")
def recover_cmd(
    base: Annotated[Optional[Path], typer.Option("--base", help="The base model folder the diff was made from (required).", show_default=False)] = None,
    diff: Annotated[Optional[Path], typer.Option("--diff", help="The weight diff folder (tulu, Alpaca or Tulu v1 format) (required).", show_default=False)] = None,
    output: OutputOpt = None,
    check_sum: Annotated[Optional[float], typer.Option("--check-sum", help="Expected sum of all recovered float32 weights (the Alpaca script's naive integrity check, tolerance 0.01). Default: not checked.", show_default=False)] = None,
    dtype: DtypeOpt = None,
    overwrite: OverwriteOpt = None,
    max_shard_size: ShardOpt = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Add a weight diff back onto its base and write the tuned model.

    Handles the [PAD] row the Alpaca / Tulu v1 scripts added to the base (mean-initialised
    embedding rows). With a tulu manifest every recovered tensor is checked against its sha256
    and the output is bit-identical to the tuned model; --dtype auto then writes each tensor in
    its original dtype (float32 for diffs without a manifest, as the reference scripts did).
    A wrong base, a corrupt diff or a failed --check-sum is refused and nothing is written.

    Example:

        tulu weights recover --base llama-7b --diff tulu-7b-diff --output tulu-7b --check-sum 50637.1836
    """
    from tulu_cli.options.weights import RecoverOptions
    from tulu_cli.options import resolve_options

    opts = resolve_options(
        RecoverOptions, config,
        {"base": base, "diff": diff, "output": output, "check_sum": check_sum, "dtype": dtype, "overwrite": overwrite, "max_shard_size": max_shard_size},
    )
    from tulu_cli.weights import recover

    if dry_run:
        r = recover(opts, check_only=True)
        _checked(f"{r['tensors']} tensors of --diff pair with --base" + (", manifest consistent" if r["verified"] else ""), opts)
        return
    r = recover(opts)
    console = _console()
    console.print(f"[green]wrote[/green] {r['output']}: {r['tensors']} tensors in {r['shards']} shard(s)")
    if r["base_rows_added"]:
        console.print(f"base vocabulary grown by {r['base_rows_added']} mean row(s) ([PAD]) before adding the diff")
    if r["verified"]:
        console.print("every tensor matches the sha256 in the diff's manifest (bit-exact)")
    else:
        console.print("[yellow]note:[/yellow] the diff has no tulu manifest, tensors were not verified by sha256")
    console.print(f"check sum: {r['check_sum']:.4f}" + (" (matches --check-sum)" if r["check_sum_verified"] else ""))


@app.command("merge")
def merge_cmd(
    adapter: Annotated[Optional[Path], typer.Option("--adapter", help="PEFT LoRA adapter folder (adapter_config.json + adapter_model.*) (required).", show_default=False)] = None,
    base: Annotated[Optional[Path], typer.Option("--base", help="Base model folder. Default: base_model_name_or_path from adapter_config.json.", show_default=False)] = None,
    output: OutputOpt = None,
    qlora: Annotated[Optional[bool], typer.Option("--qlora/--no-qlora", help="The adapter was trained with QLoRA: load the base in 4-bit nf4 (double quant), dequantize, then merge. Default: off.", show_default=False)] = None,
    compute_dtype: Annotated[Optional[str], typer.Option("--compute-dtype", help="QLoRA only: the bnb compute dtype the adapter was trained with (bfloat16, float16, float32). Default: bfloat16.", show_default=False)] = None,
    dtype: DtypeOpt = None,
    save_tokenizer: Annotated[Optional[bool], typer.Option("--save-tokenizer/--no-save-tokenizer", help="Write the tokenizer (the adapter's if it has one, else the base's). Default: on.", show_default=False)] = None,
    overwrite: OverwriteOpt = None,
    max_shard_size: ShardOpt = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Merge a LoRA adapter into its base and write a plain Hugging Face model (safetensors shards).

    Tensors stream from the base checkpoint one at a time; the LoRA delta is added in float32.
    When the adapter's tokenizer (or its saved embeddings) is larger than the base vocabulary,
    the embeddings are resized first (new rows: the mean row, unless the adapter saved them).
    --dtype auto keeps the base's dtype (LoRA) or the compute dtype (QLoRA).

    Examples:

        tulu weights merge --adapter runs/lora-7b --output tulu-lora-7b-merged

        tulu weights merge --adapter runs/qlora-7b --base llama-2-7b --qlora --output merged
    """
    from tulu_cli.options.weights import MergeOptions
    from tulu_cli.options import resolve_options

    opts = resolve_options(
        MergeOptions, config,
        {
            "adapter": adapter, "base": base, "output": output, "qlora": qlora, "compute_dtype": compute_dtype,
            "dtype": dtype, "save_tokenizer": save_tokenizer, "overwrite": overwrite, "max_shard_size": max_shard_size,
        },
    )
    from tulu_cli.weights import merge

    if dry_run:
        r = merge(opts, check_only=True)
        _checked(f"{r['lora_layers']} LoRA layer(s) of --adapter fit the base {r['base']}", opts)
        return
    r = merge(opts)
    console = _console()
    how = "dequantized 4-bit base" if r["qlora"] else "base"
    console.print(f"[green]wrote[/green] {r['output']}: {r['lora_layers']} LoRA layer(s) merged into the {how} {r['base']}, {r['shards']} shard(s)")
    if r["replaced_tensors"]:
        console.print(f"{r['replaced_tensors']} tensor(s) taken whole from the adapter (modules_to_save / saved embeddings)")
    if r["added_rows"]:
        console.print(f"embeddings resized to {r['vocab_rows']} rows (+{r['added_rows']}) to match the adapter's tokenizer")
    if r["tokenizer"]:
        console.print(f"tokenizer from {r['tokenizer']}")
