"""The Tulu 2 suite's presets are all registered, listed by `tulu eval list --json`, and in docs/eval.md's table."""

from __future__ import annotations

import json
import re
from pathlib import Path

from _eval_helpers import invoke

ROOT = Path(__file__).resolve().parents[1]
# DESIGN.md: "Eval presets of the Tulu 2 suite"
DESIGN_PRESETS = [
    "mmlu_0shot", "mmlu_5shot", "gsm_direct", "gsm_cot", "math", "bbh_direct", "bbh_cot",
    "tydiqa_goldp_1shot", "tydiqa_no_context_1shot", "codex_eval_temp_0.1", "codex_eval_temp_0.8",
    "humanevalplus", "mbppplus", "ifeval", "truthfulqa", "toxigen", "xstest", "alpaca_eval", "alpaca_eval_2",
]  # fmt: skip


def _listed() -> dict:
    res = invoke(["eval", "list", "--json"])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def test_design_presets_registered_and_listed():
    from tulu_cli.evaluation.tasks import all_tasks, broken_modules

    assert broken_modules() == {}
    registered = all_tasks()
    listed = _listed()
    for name in DESIGN_PRESETS:
        assert name in registered, name
        assert name in listed, name
        assert listed[name]["metrics"] and listed[name]["description"]
    assert set(listed) == set(registered)


def test_design_md_list_matches_when_present():
    design = Path("/work/shared/DESIGN.md")
    if not design.is_file():
        return  # the list above is the copy kept with the tests
    text = " ".join(design.read_text().split())
    m = re.search(r"Eval presets of the Tulu 2 suite: (.*?)\.(?: |$)", text)
    assert m is not None
    names = [re.sub(r"\s*\(.*?\)", "", n).strip() for n in m.group(1).split(",")]
    assert names == DESIGN_PRESETS


def test_docs_preset_table_matches_registry():
    doc = (ROOT / "docs" / "eval.md").read_text()
    section = doc[doc.index("## Presets") : doc.index("## Backends")]
    rows = re.findall(r"^\| `([^`]+)` \|", section, re.M)
    assert sorted(rows) == sorted(_listed()), "docs/eval.md preset table and `tulu eval list --json` differ"
    for link in set(re.findall(r"\]\(([^)#]+\.md)\)", section)):
        assert (ROOT / "docs" / link).is_file(), link
    for page in ("eval-math-tydiqa-truthfulqa.md", "eval-code.md", "ifeval.md", "sandbox.md", "eval-safety-and-alpaca.md"):
        assert f"]({page})" in section, page


def test_every_preset_names_where_its_definition_comes_from():
    import re

    from tulu_cli.evaluation.tasks import all_tasks

    for name, task in all_tasks().items():
        assert re.match(r"open-instruct (f3424591|f7f3d3f1) eval/\S+\.py", task.source) or task.source.startswith("tulu: "), (name, task.source)
        assert task.info()["source"] == task.source
    # The Tulu 2 suite itself is all reference presets; tulu's own variants carry their own names.
    ours = sorted(n for n, t in all_tasks().items() if t.source.startswith("tulu: "))
    assert ours == ["humanevalplus_evalplus", "mbppplus_evalplus"]
