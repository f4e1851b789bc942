"""`tulu weights` command group: diff, recover, merge (heavy imports stay inside the functions)."""

from __future__ import annotations

from tulu_cli.cli._common import TuluTyper, print_resolved
from tulu_cli.cli._schema import Call, add_command
from tulu_cli.options.weights import DiffOptions, MergeOptions, RecoverOptions

def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _checked(what: str, opts) -> None:
    """Dry run: the inputs and the output passed every check a real run makes before writing."""
    _console().print(f"checked: {what}; --output {opts.output} can be written; nothing written")
    print_resolved(opts)


def diff_cmd(call: Call) -> None:
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
    opts = call.options()
    from tulu_cli.weights import make_diff

    if call.dry_run:
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


def recover_cmd(call: Call) -> None:
    """Add a weight diff back onto its base and write the tuned model.

    Handles the [PAD] row the Alpaca / Tulu v1 scripts added to the base (mean-initialised
    embedding rows). With a tulu manifest every recovered tensor is checked against its sha256
    and the output is bit-identical to the tuned model; --dtype auto then writes each tensor in
    its original dtype (float32 for diffs without a manifest, as the reference scripts did).
    A wrong base, a corrupt diff or a failed --check-sum is refused and nothing is written.

    Example:

        tulu weights recover --base llama-7b --diff tulu-7b-diff --output tulu-7b --check-sum 50637.1836
    """
    opts = call.options()
    from tulu_cli.weights import recover

    if call.dry_run:
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


def merge_cmd(call: Call) -> None:
    """Merge a LoRA adapter into its base and write a plain Hugging Face model (safetensors shards).

    Tensors stream from the base checkpoint one at a time; the LoRA delta is added in float32.
    When the adapter's tokenizer (or its saved embeddings) is larger than the base vocabulary,
    the embeddings are resized first (new rows: the mean row, unless the adapter saved them).
    --dtype auto keeps the base's dtype (LoRA) or the compute dtype (QLoRA).

    Examples:

        tulu weights merge --adapter runs/lora-7b --output tulu-lora-7b-merged

        tulu weights merge --adapter runs/qlora-7b --base llama-2-7b --qlora --output merged
    """
    opts = call.options()
    from tulu_cli.weights import merge

    if call.dry_run:
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


app = TuluTyper(help="Diff, recover and merge model weights.")
add_command(app, "diff", DiffOptions, diff_cmd)
add_command(app, "recover", RecoverOptions, recover_cmd)
add_command(app, "merge", MergeOptions, merge_cmd)
