"""`tulu data prepare` backend: find or download raw files, convert, validate, sample, filter, write."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from tulu_cli.data.download import Gone, fetch, resolve_url
from tulu_cli.paths import cache_root
from tulu_cli.data.io import JsonlWriter
from tulu_cli.data.mixtures import MIXTURES, Component, Mixture, filter_hit, load_mixture_file
from tulu_cli.data.sources import Context, RawFile, Source, get_source
from tulu_cli.data.validate import check_row
from tulu_cli.errors import TuluError
from tulu_cli.paths import check_output, clean_stale, new_folders_undone, temp_path

if TYPE_CHECKING:
    from tulu_cli.options.data import PrepareOptions

DATA_SUFFIXES = (".json", ".jsonl", ".jsonl.gz", ".parquet")
SHOWN_SKIPS = 10  # bad records printed per component; all of them go to the stats file


@dataclass
class ComponentReport:
    label: str
    source: str
    files: list[str]
    available: int = 0  # valid examples the source produced
    written: int = 0
    filtered: int = 0
    skipped: list[str] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)
    requested: int | None = None
    published: int | None = None


@dataclass
class PrepareReport:
    name: str
    output: Path
    filtered_output: Path | None
    stats: Path
    components: list[ComponentReport]
    filter_hits: dict[str, int] = field(default_factory=dict)
    published_total: int | None = None

    @property
    def written(self) -> int:
        return sum(c.written for c in self.components)

    @property
    def filtered(self) -> int:
        return sum(c.filtered for c in self.components)


# ---------------------------------------------------------------- which mixture


def plan(opts: "PrepareOptions") -> Mixture:
    """The mixture to build: a published one, a user YAML file, or a single source."""
    if opts.mixture_file is not None:
        mix = load_mixture_file(opts.mixture_file)
    elif opts.target in MIXTURES:
        base = MIXTURES[opts.target]
        mix = Mixture(
            base.name,
            [Component(**{**vars(c), "options": dict(c.options)}) for c in base.components],
            base.keyword_filter,
            base.published,
            base.published_total,
        )
    else:
        assert opts.target is not None
        src = get_source(opts.target)
        path = Path(opts.input).expanduser() if opts.input else None
        if src.generic and path is None:
            raise TuluError(f"source '{src.name}' converts your own file: pass --input FILE")
        if path is not None and not path.exists():
            raise TuluError(f"--input: {path} does not exist")
        mix = Mixture(src.name, [Component(src.name, path=path)], keyword_filter=False)
    _apply_source_options(mix, opts.source_options)
    for c in mix.components:
        c.options = get_source(c.source).resolve_options(c.options, where="--source-option")
    return mix


def _apply_source_options(mix: Mixture, given: dict[str, Any]) -> None:
    """``key=value`` applies to a single-source run; ``source.key=value`` to that mixture component."""
    for key, value in given.items():
        target, dot, opt = key.rpartition(".")
        if not dot:
            if len(mix.components) != 1:
                raise TuluError(f"--source-option {key}: in a mixture, name the component: SOURCE.{key}=VALUE")
            mix.components[0].options[key] = value
            continue
        hits = [c for c in mix.components if target in (c.source, c.label)]
        if not hits:
            names = ", ".join(c.label for c in mix.components)
            raise TuluError(f"--source-option {key}: no component '{target}' in {mix.name} ({names})")
        for c in hits:
            c.options[opt] = value


# ---------------------------------------------------------------- raw files


def _find(raw: RawFile, base: Path, source: str) -> Path | None:
    for folder in (base / source, base):
        for name in (raw.name, *raw.aliases):
            p = folder if name == "." else folder / name
            if raw.marker is not None:
                if (p / raw.marker).is_file():
                    return p
            elif p.is_file():
                return p
    return None


def _find_set(sets: list[list[RawFile]], base: Path, source: str) -> list[Path] | None:
    for files in sets:
        found = [_find(f, base, source) for f in files]
        if files and all(found):
            return found  # type: ignore[return-value]
    return None


def _describe_sets(sets: list[list[RawFile]]) -> str:
    def one(f: RawFile) -> str:
        where = f" (published at {resolve_url(f.url)})" if f.url else ""
        return f.name + where

    return " or ".join(" + ".join(one(f) for f in files) for files in sets)


def locate(comp: Component, src: Source, raw_dir: Path | None, cache_dir: Path, progress: bool, download: bool = True) -> list[Path] | None:
    """Paths of the raw files for one component, downloading into the cache when allowed.

    With ``download`` off (dry runs), a component whose files would be downloaded gives None.
    """
    sets = src.file_sets(comp.options)
    if comp.url:
        dest = cache_dir / "raw" / comp.label / Path(comp.url.split("?")[0]).name
        check_output(cache_dir, "--cache-dir", "folder")
        return [fetch(comp.url, dest, sha256=comp.sha256, progress=progress)] if download else None
    if comp.path is not None:
        if comp.path.is_file():
            if src.generic or any(len(s) == 1 for s in sets):
                return [comp.path]
            raise TuluError(f"{comp.path}: source '{src.name}' reads several files ({_describe_sets(sets)}): give the folder that holds them")
        if src.generic:
            files = sorted(p for p in comp.path.iterdir() if p.name.endswith(DATA_SUFFIXES))
            if not files:
                raise TuluError(f"{comp.path}: no {', '.join(DATA_SUFFIXES)} files in this folder")
            return files
        found = _find_set(sets, comp.path, src.name)
        if found is None:
            raise TuluError(f"{comp.path}: source '{src.name}' expects {_describe_sets(sets)} in this folder")
        return found
    if raw_dir is not None:
        found = _find_set(sets, raw_dir, src.name)
        if found is None:
            raise TuluError(
                f"--raw-dir {raw_dir}: source '{src.name}' expects {_describe_sets(sets)} "
                f"(looked in {raw_dir / src.name} and {raw_dir})"
            )
        return found
    cache = cache_dir / "raw"
    found = _find_set(sets, cache, src.name)
    if found is not None:
        return found
    gone: list[str] = []
    for files in sets:
        if not files or not all(f.url for f in files):
            continue
        check_output(cache_dir, "--cache-dir", "folder")
        if not download:
            return None
        try:
            return [fetch(f.url, cache / src.name / f.name, sha256=f.sha256, progress=progress) for f in files]  # type: ignore[arg-type]
        except Gone as e:
            gone.append(e.message)  # try the next published copy
    if gone:
        raise TuluError(f"source '{src.name}': every published copy is gone: {'; '.join(gone)}")
    raise TuluError(f"source '{src.name}' has no download address: put {_describe_sets(sets)} in --raw-dir")


# ---------------------------------------------------------------- sampling


class _Reservoir:
    """Uniform sample of k items from a stream of unknown length, in one pass and O(k) memory."""

    def __init__(self, k: int, rng: random.Random):
        self.k, self.rng, self.seen = k, rng, 0
        self.items: list[tuple[int, Any]] = []

    def add(self, item: Any) -> None:
        if len(self.items) < self.k:
            self.items.append((self.seen, item))
        else:
            j = self.rng.randrange(self.seen + 1)
            if j < self.k:
                self.items[j] = (self.seen, item)
        self.seen += 1

    def result(self) -> list[Any]:
        # Back in source order: deterministic and easy to diff against the raw file.
        return [it for _, it in sorted(self.items, key=lambda t: t[0])]


def _split_count(count: int, parts: tuple[str, ...]) -> dict[str, int]:
    base, extra = divmod(count, len(parts))
    return {p: base + (1 if i < extra else 0) for i, p in enumerate(parts)}


def sample(rows: Iterable[tuple[str | None, dict]], comp: Component, src: Source, cap: int | None, rng: random.Random, report: ComponentReport) -> Iterator[dict]:
    """Apply count / fraction / --max-examples; stream everything when no sampling is asked."""
    count = comp.count
    if cap is not None:
        count = min(count, cap) if count is not None else cap
    if comp.fraction is not None:
        everything = [row for _, row in rows]
        report.available = len(everything)
        k = round(comp.fraction * len(everything))
        if cap is not None:
            k = min(k, cap)
        report.requested = k
        picked = sorted(rng.sample(range(len(everything)), k))
        yield from (everything[i] for i in picked)
        return
    report.requested = count
    if count is None:
        for _, row in rows:
            report.available += 1
            yield row
        return
    parts = src.parts or ("",)
    quotas = _split_count(count, parts)
    pools = {p: _Reservoir(quotas[p], rng) for p in parts}
    for part, row in rows:
        report.available += 1
        key = part if part in pools else parts[0]
        pools[key].add(row)
    for p in parts:
        got = pools[p].result()
        if len(got) < quotas[p]:
            what = f"{p} examples" if p else "examples"
            report.notes[f"asked for {quotas[p]} {what}, only {len(got)} available"] = 1
        yield from got


# ---------------------------------------------------------------- conversion


def _converted(comp: Component, src: Source, files: list[Path], ctx: Context) -> Iterator[tuple[str | None, dict]]:
    """Validated rows (id filled in later), tagged with their sampling part."""
    for ex in src.convert(files, ctx):
        row: dict[str, Any] = {"dataset": ex.dataset or comp.label, "id": "?", "messages": ex.messages}
        if src.kind == "preference":
            row["chosen"], row["rejected"] = ex.chosen, ex.rejected
        problem = check_row(row, alternate=src.alternate)
        if problem:
            ctx.bad(ex.where, f"converted example is invalid: {problem}")
            continue
        yield ex.part, row


def output_paths(output: Path, name: str, keyword_filter: bool) -> tuple[Path, Path | None, Path]:
    if output.suffix == ".json":
        raise TuluError(f"--output {output}: output is JSONL: name the file *.jsonl, or give a folder")
    main = output if output.suffix == ".jsonl" else output / f"{name}_data.jsonl"
    filtered = main.with_name(main.stem + ".filtered_out.jsonl") if keyword_filter else None
    return main, filtered, main.with_name(main.stem + ".stats.json")


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.completed:,} examples"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )


def _dirs(opts: "PrepareOptions") -> tuple[Path | None, Path]:
    raw_dir = Path(opts.raw_dir).expanduser() if opts.raw_dir else None
    if raw_dir is not None and not raw_dir.is_dir():
        raise TuluError(f"--raw-dir {raw_dir}: not a folder")
    return raw_dir, Path(opts.cache_dir).expanduser() if opts.cache_dir else cache_root()


@dataclass
class Preflight:
    """Everything checked before the first row is converted: the plan, its outputs, its raw files."""

    mix: Mixture
    keyword_filter: bool
    outputs: tuple[Path, Path | None, Path] | None  # main, filtered-out, stats; None for --download-only
    sources: dict[str, Source]
    files: dict[str, list[Path] | None]  # None: would be downloaded (dry run)


def _check_not_empty(paths: list[Path]) -> None:
    for p in paths:
        if p.is_file() and (p.stat().st_size == 0 or (p.stat().st_size < 1 << 20 and not p.read_bytes().strip())):
            raise TuluError(f"{p}: the file is empty: no records to convert")


def preflight(opts: "PrepareOptions", *, download: bool, progress: bool = True) -> Preflight:
    """Every check a run makes before converting: plan, output paths (usable, not overwritten
    without --overwrite), raw files found or (``download``) fetched, not empty, source checks.

    A dry run calls it with ``download`` off: files that would be downloaded are reported as None.
    """
    mix = plan(opts)
    keyword_filter = mix.keyword_filter if opts.keyword_filter is None else opts.keyword_filter
    outputs = None
    if opts.output is not None and not opts.download_only:
        output = Path(opts.output)
        if output.suffix != ".jsonl":
            check_output(output, "--output", "folder")
        outputs = output_paths(output, mix.name, keyword_filter)
        for p in outputs:
            if p is not None:
                check_output(p, "--output", "file")
                if not opts.overwrite and p.exists():
                    raise TuluError(f"{p}: already exists; pass --overwrite to replace it")
    raw_dir, cache_dir = _dirs(opts)
    # Every raw file is found (or downloaded) before any conversion starts, so a missing
    # file is reported in seconds rather than after an hour of converting.
    sources = {c.label: get_source(c.source) for c in mix.components}
    files = {c.label: locate(c, sources[c.label], raw_dir, cache_dir, progress, download) for c in mix.components}
    for c in mix.components:
        found = files[c.label]
        if found is None:
            continue
        _check_not_empty(found)
        check = sources[c.label].preflight
        if check is not None:
            check(found, c.options, opts.tokenizer)
    return Preflight(mix, keyword_filter, outputs, sources, files)


def download_raw(opts: "PrepareOptions", *, progress: bool = True) -> dict[str, list[Path]]:
    """Fetch (or, with --raw-dir, check) every raw file of the plan without converting anything.

    Downloads land in ``<cache>/raw/<source>/<file>``: the layout --raw-dir reads, so the
    folder can be copied to an offline machine as is.
    """
    mix = plan(opts)
    raw_dir, cache_dir = _dirs(opts)
    return {c.label: locate(c, get_source(c.source), raw_dir, cache_dir, progress) for c in mix.components}  # type: ignore[misc]


def prepare(opts: "PrepareOptions", *, progress: bool = True, log=None) -> PrepareReport:
    """Build the requested source or mixture into one validated JSONL file (and its filtered-out rows)."""
    log = log or (lambda msg: None)
    assert opts.output is not None
    pf = preflight(opts, download=True, progress=progress)
    mix, keyword_filter, sources, files = pf.mix, pf.keyword_filter, pf.sources, pf.files
    assert pf.outputs is not None
    main, filtered_path, stats_path = pf.outputs
    clean_stale(main.parent)  # temp files of runs that were killed before they could publish

    reports: list[ComponentReport] = []
    hits: dict[str, int] = {}
    filtered_writer = JsonlWriter(filtered_path) if filtered_path else None
    with new_folders_undone(main.parent), JsonlWriter(main) as kept, (filtered_writer or _Null()) as dropped, _progress(progress) as bar:
        for comp in mix.components:
            src = sources[comp.label]
            rep = ComponentReport(comp.label, src.name, [str(p) for p in files[comp.label]], published=mix.published.get(comp.label))
            ctx = Context(
                source=src.name,
                options=comp.options,
                rng=random.Random(f"{opts.seed}:{comp.label}:convert"),
                on_error=opts.on_error,
                tokenizer=opts.tokenizer,
            )
            task = bar.add_task(comp.label, total=None)
            rows = _converted(comp, src, files[comp.label], ctx)
            for index, row in enumerate(sample(rows, comp, src, opts.max_examples, random.Random(f"{opts.seed}:{comp.label}:sample"), rep)):
                row["id"] = f"{comp.label}_{index}"
                hit = filter_hit(row) if keyword_filter and comp.keyword_filter else None
                if hit is not None:
                    dropped.write(row)
                    rep.filtered += 1
                    hits[hit] = hits.get(hit, 0) + 1
                else:
                    kept.write(row)
                    rep.written += 1
                bar.update(task, completed=rep.written + rep.filtered)
            bar.remove_task(task)
            rep.skipped = ctx.skipped
            rep.notes.update(ctx.stats)
            if rep.available == 0:
                # A run that converts nothing is a wrong input, not a result (scripts would train on 0 rows).
                where = ", ".join(rep.files)
                if ctx.skipped:
                    raise TuluError(f"{comp.label}: all {len(ctx.skipped)} records of {where} are bad (first: {ctx.skipped[0]})")
                raise TuluError(f"{comp.label}: no examples found in {where}")
            for line in ctx.skipped[:SHOWN_SKIPS]:
                log(f"[yellow]skipped[/yellow] {line}")
            if len(ctx.skipped) > SHOWN_SKIPS:
                log(f"[yellow]skipped[/yellow] ... and {len(ctx.skipped) - SHOWN_SKIPS} more bad records of {comp.label} (all listed in {stats_path})")
            reports.append(rep)
    report = PrepareReport(mix.name, main, filtered_path, stats_path, reports, hits, mix.published_total)
    _write_stats(report, opts, mix, keyword_filter)
    return report


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def write(self, row):  # pragma: no cover - only reached with the filter on
        raise AssertionError("filter output requested without a filter file")


def _write_stats(report: PrepareReport, opts: "PrepareOptions", mix: Mixture, keyword_filter: bool) -> None:
    data = {
        "name": mix.name,
        "seed": opts.seed,
        "output": str(report.output),
        "filtered_output": str(report.filtered_output) if report.filtered_output else None,
        "keyword_filter": keyword_filter,
        "written": report.written,
        "filtered": report.filtered,
        "published_total": mix.published_total,
        "filter_hits": report.filter_hits,
        "components": [
            {
                "label": c.label,
                "source": c.source,
                "files": c.files,
                "available": c.available,
                "requested": c.requested,
                "written": c.written,
                "filtered": c.filtered,
                "published": c.published,
                "notes": c.notes,
                "skipped": c.skipped,
            }
            for c in report.components
        ],
    }
    tmp = temp_path(report.stats)
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, report.stats)
