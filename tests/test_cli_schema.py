"""One schema per command: flags, --help defaults, config keys and docs tables all come from the option models."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from tulu_cli.cli import _schema
from tulu_cli.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


COMMANDS = _schema.generated_commands(app)
IDS = [" ".join(p) for p, _, _ in COMMANDS]


def _help(path: list[str]) -> str:
    """--help as printed, one line: box characters dropped and rich's wrapping undone."""
    r = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", r.output).split())


def test_every_command_is_generated():
    """No hand-written flag lists left: each command of the CLI comes from an option model."""
    walked = []

    def walk(group, path):
        walked.extend(path + [c.name] for c in group.registered_commands)
        for g in group.registered_groups:
            walk(g.typer_instance, path + [g.name])

    walk(app, [])
    assert sorted(walked) == sorted(p for p, _, _ in COMMANDS)
    assert len(COMMANDS) == 19


@pytest.mark.parametrize("path,cls,extras", COMMANDS, ids=IDS)
def test_help_lists_every_field_with_the_model_default(path, cls, extras):
    text = _help(path)
    for model in [cls] + ([extras] if extras else []):
        for key in _schema.cli_fields(model):
            meta = model.model_fields[key].json_schema_extra["cli"]
            name = meta["argument"] or _schema.flags_of(model, key)[0].split("/")[0]
            assert name in text, (key, name)
            # the sentence and its default, side by side as one help cell
            assert " ".join(_schema.help_text(model, key).split()) in text, key


@pytest.mark.parametrize("path,cls,extras", COMMANDS, ids=IDS)
def test_flags_are_exactly_the_fields(path, cls, extras):
    """The command's parameters are the model's CLI fields (plus extras, --config, --dry-run), no more."""
    click_cmd = typer.main.get_command(app)
    for name in path:
        click_cmd = click_cmd.commands[name]
    params = {p.name for p in click_cmd.params} - {"help"}
    expected = set(_schema.cli_fields(cls)) | (set(_schema.cli_fields(extras)) if extras else set()) | {"config", "dry_run"}
    assert params == expected
    # a field not offered on the CLI is marked so in the model (internal), never silently dropped
    for key, field in cls.model_fields.items():
        assert "cli" in (field.json_schema_extra or {}), f"{cls.__name__}.{key}"


# Hand-typed spot checks: the numbers a reader looks for, written as the help must show them.
SPOT = [
    (["train", "sft"], "Peak learning rate. Default: 2e-5."),
    (["train", "sft"], "Fraction of steps spent warming up. Default: 0.03."),
    (["train", "sft"], "Passes over the data. Default: 2."),
    (["train", "sft"], "AdamW epsilon (added to the root of the second moment). Default: 1e-8."),
    (["train", "sft"], "Recompute activations to save memory. Default: no."),
    (["train", "dpo"], "Peak learning rate (Tulu 2 DPO; use ~5e-5 with --lora). Default: 5e-7."),
    (["train", "dpo"], "Fraction of steps spent warming up. Default: 0.1."),
    (["train", "dpo"], "Passes over the pairs. Default: 3."),
    (["train", "dpo"], "Strength of the pull towards the reference model. Default: 0.1."),
    (["train", "lora"], "Peak learning rate (the Tulu 2 LoRA recipe's). Default: 1e-4."),
    (["train", "lora"], "Rank r of the LoRA matrices. Default: 64."),
    (["train", "lora"], "LoRA scaling alpha (the update is scaled by alpha/r). Default: 16."),
    (["train", "qlora"], "Recompute activations to save memory (on in the QLoRA recipe). Default: yes."),
    (["train", "qlora"], "Quantize the quantization constants too (saves ~0.4 bit/parameter). Default: yes."),
    (["train", "plot"], "PNG to write. Default: RUN_DIR/metrics.png."),
    (["weights", "diff"], "Largest safetensors shard, e.g. 5GB, 500MB, 2GiB. Default: 5GB."),
    (["weights", "merge"], "Write the tokenizer (the adapter's if it has one, else the base's). Default: yes."),
    (["weights", "merge"], "(bfloat16, float16, float32). Default: bfloat16."),
    (["weights", "recover"], "The weight diff folder (tulu, Alpaca or Tulu v1 format). Required."),
    (["data", "prepare"], "Seed of templates and sampling (same seed, same output). Default: 42."),
    (["data", "prepare"], "(report and go on). Default: fail."),
    (["data", "inspect"], "Truncate examples to this many tokens. Default: 2048."),
    (["data", "inspect"], "Examples to print with their masks. Default: 3."),
    (["data", "prepare-eval"], "Root folder to write (mmlu/, gsm/, bbh/...). Default: data/eval."),
    (["human-eval", "serve"], "Port; 0 picks a free one. Default: 5001."),
    (["human-eval", "serve"], "Sign-in lifetime in hours. Default: 12."),
    (["human-eval", "metrics"], "SQLite database of accounts and answers. Default: annotations.sqlite."),
    (["eval", "run"], "Seed for subsampling and sampling (Tulu 2's). Default: 42."),
    (["eval", "run"], "Requests in flight at once. Default: 8."),
    (["eval", "run"], "Retries of a failed request (exponential backoff). Default: 6."),
    (["eval", "run"], "Seconds per request. Default: 120."),
    (["eval", "run"], "API base URL, e.g. http://localhost:8000/v1. Default: https://api.openai.com/v1."),
    (["eval", "score"], "Environment variable holding the judge's API key. Default: OPENAI_API_KEY."),
    (["quickstart"], "Seed for the model, data order and sampling. Default: 0."),
    (["quickstart"], 'from `pip install "tulu-cli[demo]"`: LoRA'),
]


def test_run_and_score_share_one_declaration_of_their_common_flags():
    """The judge, classifier, input-file and task-arg flags are fields of one base model, declared once."""
    from tulu_cli.options.eval import EvalRunOptions, EvalScoreOptions, TaskExtraOptions

    shared = set(TaskExtraOptions.model_fields)
    assert {"judge_model", "toxigen_classifier", "truthfulqa_truth_judge", "input_file", "task_args", "sandbox", "data_dir"} <= shared
    for cls in (EvalRunOptions, EvalScoreOptions):
        assert all(_schema.help_text(cls, k) == _schema.help_text(TaskExtraOptions, k) for k in shared)
        assert not shared & set(cls.__annotations__), "redeclared in the subclass"


@pytest.mark.parametrize("path,sentence", SPOT, ids=[f"{' '.join(p)}: {s[:30]}" for p, s in SPOT])
def test_help_spot_checks(path, sentence):
    assert sentence in _help(path)


def test_render_default_by_hand():
    assert [_schema.render_default(v) for v in (2e-5, 5e-7, 1e-8, 1e-4, 1.5e-5, 0.001, 0.03, 0.999, 16.0, 0.0, 120.0, True, False, None, [], "tulu", Path("data/eval"))] == [
        "2e-5", "5e-7", "1e-8", "1e-4", "1.5e-5", "0.001", "0.03", "0.999", "16", "0", "120", "yes", "no", "none", "none", "tulu", "data/eval",
    ]  # fmt: skip


def test_adding_an_option_is_one_field(monkeypatch):
    """A field added to a model subclass appears in --help with its default, and is accepted as flag and config key."""
    from tulu_cli.options.base import opt
    from tulu_cli.options.train import PlotOptions

    class Plot2(PlotOptions):
        dpi: int = opt(150, help="Resolution of the PNG.")
        style: Literal["line", "dots"] = opt("line", help="How points are drawn.")

    seen = []
    t = typer.Typer()
    _schema.add_command(t, "plot", Plot2, lambda call: seen.append(call.options()))
    _schema.add_command(t, "other", PlotOptions, lambda call: None)  # two commands: Typer keeps the group
    r = runner.invoke(t, ["plot", "--help"], env={"COLUMNS": "250"})
    assert "--dpi" in r.output and "Resolution of the PNG. Default: 150." in r.output
    assert "How points are drawn. One of: line, dots. Default: line." in r.output  # a Literal's choices, when the sentence lacks them
    r = runner.invoke(t, ["plot", "runs/x", "--dpi", "300", "--style", "dots"])
    assert r.exit_code == 0, r.output
    assert (seen[-1].dpi, seen[-1].style) == (300, "dots")


# ---- config files ------------------------------------------------------------------------------

# The fewest values that make each model valid (required fields), typed by hand.
REQUIRED = {
    "SFTOptions": {"model": "m", "train_files": ["a.jsonl"]},
    "LoraOptions": {"model": "m", "train_files": ["a.jsonl"]},
    "QLoraOptions": {"model": "m", "train_files": ["a.jsonl"]},
    "DPOOptions": {"model": "m", "train_files": ["a.jsonl"]},
    "PlotOptions": {"run_dir": "runs/x"},
    "DiffOptions": {"base": "b", "tuned": "t", "output": "o"},
    "RecoverOptions": {"base": "b", "diff": "d", "output": "o"},
    "MergeOptions": {"adapter": "a", "output": "o"},
    "PrepareOptions": {"target": "dolly", "output": "o.jsonl"},
    "InspectOptions": {"file": "f.jsonl", "tokenizer": "tok"},
    "PrepareEvalOptions": {"benchmarks": ["gsm"]},
    "ServeOptions": {"comparisons": "c.jsonl"},
    "AddUserOptions": {"name": "alice"},
    "ExportOptions": {},
    "MetricsOptions": {},
    "EvalRunOptions": {"model": "m", "tasks": ["gsm_cot"], "output_dir": "o"},
    "EvalScoreOptions": {"task": "gsm_cot", "predictions": "p.jsonl"},
    "EvalListOptions": {},
    "QuickstartOptions": {},
}


@pytest.mark.parametrize("path,cls,extras", COMMANDS, ids=IDS)
def test_config_file_accepts_every_field(path, cls, extras, tmp_path):
    import yaml

    from tulu_cli.options import options_to_dict, resolve_options

    base = cls.model_validate(REQUIRED[cls.__name__])
    values = {k: v for k, v in options_to_dict(base).items() if k in _schema.cli_fields(cls)}
    cfg = tmp_path / "all.yaml"
    cfg.write_text(yaml.safe_dump({k.replace("_", "-"): v for k, v in values.items()}))
    assert options_to_dict(resolve_options(cls, cfg)) == options_to_dict(base)


@pytest.mark.parametrize("path,cls,extras", COMMANDS, ids=IDS)
def test_config_file_refuses_an_unknown_key(path, cls, extras, tmp_path):
    import yaml

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({**REQUIRED[cls.__name__], "no_such_option": 1}))
    r = runner.invoke(app, [*path, "--config", str(cfg), "--dry-run"])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines == [f"error: {cfg}: unknown key 'no_such_option'"]


@pytest.mark.parametrize("path,cls,extras", COMMANDS, ids=IDS)
def test_an_unknown_flag_is_one_line(path, cls, extras):
    r = runner.invoke(app, [*path, "--no-such-option", "1"])
    assert r.exit_code == 2
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "No such option: --no-such-option" in lines[0], r.output


# ---- imports -----------------------------------------------------------------------------------


def _import_graph(function_level: bool) -> dict[str, set[str]]:
    """Edges between tulu_cli modules; ``from P import m`` of a submodule points at P.m, not at P."""
    mods = {}
    for p in (ROOT / "tulu_cli").rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        tree = ast.parse(p.read_text())
        nodes = ast.walk(tree) if function_level else tree.body
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in nodes:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            graph[m] |= {o for t in targets if t.startswith("tulu_cli") and (o := owner(t)) and o != m}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_at_module_level():
    assert _cycles(_import_graph(function_level=False)) == []


def test_no_import_cycle_counting_function_level_imports():
    """Imports inside functions counted too (the backend factory imports hf/vllm/openai lazily; they import
    the Backend base from backends/base.py, not from the package)."""
    assert _cycles(_import_graph(function_level=True)) == []


def test_cli_imports_no_torch():
    code = "import sys; import tulu_cli.cli.main; print(sorted(m for m in ('torch', 'transformers', 'datasets', 'accelerate') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


# ---- docs --------------------------------------------------------------------------------------


def test_docs_options_page_is_generated():
    """docs/options.md is what `python -m tulu_cli.cli._docs` writes now: the tables cannot drift."""
    from tulu_cli.cli._docs import options_page

    assert (ROOT / "docs" / "options.md").read_text() == options_page(), "regenerate: python -m tulu_cli.cli._docs > docs/options.md"
