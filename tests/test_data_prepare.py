"""`tulu data prepare` end to end: mixtures, sampling, keyword filter, downloads, and every error path."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
from _data_helpers import FIXTURES, prepare, rows
from _fileserver import file_server, hub_online  # noqa: F401

from tulu_cli.data import download
from tulu_cli.data.mixtures import FILTER_STRINGS, filter_hit


@pytest.fixture(autouse=True)
def _fast_retry(monkeypatch, tmp_path):
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    monkeypatch.setenv("TULU_CACHE", str(tmp_path / "tulu-cache"))  # never the user's ~/.cache


def _raw_copy(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(FIXTURES, raw)
    return raw


# ------------------------------------------------------------------ mixtures


def test_tulu_v2_mixture_with_keyword_filter(tmp_path):
    out_dir = tmp_path / "processed"
    r = prepare("tulu_v2", "--raw-dir", FIXTURES, "-o", out_dir, "-s", "sharegpt.max_tokens=0")
    assert r.exit_code == 0, r.output
    kept = rows(out_dir / "tulu_v2_data.jsonl")
    removed = rows(out_dir / "tulu_v2_data.filtered_out.jsonl")
    datasets = {r["dataset"].split(".")[0] for r in kept}
    assert datasets == {"flan_v2", "cot", "oasst1", "lima", "gpt4_alpaca", "code_alpaca", "sharegpt", "wizardlm", "open_orca", "science", "hard_coded"}
    # Tulu 2 keeps only the best-rated OASST path and repeats the hard-coded set 10 times.
    assert sum(r["dataset"] == "oasst1" for r in kept) == 1
    assert sum(r["dataset"] == "hard_coded" for r in kept) == 30
    # Hard-coded rows are exempt even though one says "ChatGPT"; the ShareGPT one is removed.
    assert any("ChatGPT" in r["messages"][0]["content"] for r in kept if r["dataset"] == "hard_coded")
    assert [r["id"] for r in removed] == ["sharegpt_2"]  # user/chatgpt speakers are dropped (open-instruct's split)
    assert all(filter_hit(r) is None for r in kept if r["dataset"] != "hard_coded")
    stats = json.loads((out_dir / "tulu_v2_data.stats.json").read_text())
    assert stats["filtered"] == 1 and stats["written"] == len(kept)
    assert stats["filter_hits"] == {"ChatGPT": 1}
    assert "asked for 20000 examples, only 2 available" in stats["components"][4]["notes"]
    assert "tulu_v2" in r.output and "published" in r.output


def test_tulu_v1_mixture(tmp_path):
    raw = _raw_copy(tmp_path)
    shutil.copy(raw / "flan_v2/flan_v2_resampled_50k.jsonl", raw / "flan_v2/tulu_v1_resampled_flan_100k.jsonl")
    out = tmp_path / "v1.jsonl"
    r = prepare("tulu_v1", "--raw-dir", raw, "-o", out, "-s", "sharegpt.max_tokens=0")
    assert r.exit_code == 0, r.output
    got = rows(out)
    counts = {}
    for row in got:
        counts[row["dataset"]] = counts.get(row["dataset"], 0) + 1
    assert counts == {"flan_v2": 4, "cot": 6, "oasst1": 3, "dolly": 3, "gpt4_alpaca": 2, "code_alpaca": 2, "sharegpt": 3}
    assert not (tmp_path / "v1.filtered_out.jsonl").exists()  # Tulu 1 had no keyword filter


def test_keyword_filter_strings_are_the_published_ones():
    for s in ("OpenAI", "ChatGPT", "GPT-4", "BARD", "Palm", "Claude", "LAION", "Open Assistant", "Anthropic", "Bing Chat"):
        assert s in FILTER_STRINGS
    row = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "I was trained by openai."}]}
    assert filter_hit(row) == "OpenAI"  # case-insensitive


MIX = """\
name: small
keyword_filter: true
components:
  - source: super_ni
    count: 4
  - source: dolly
    fraction: 0.67
    options:
      template: plain
  - source: prompt_completion
    path: {pc}
    name: my_pc
  - source: messages
    path: {msgs}
    keyword_filter: false
"""


def _mixture(tmp_path, extra_msgs=True):
    msgs = tmp_path / "mine.jsonl"
    msgs.write_text(json.dumps({"messages": [{"role": "user", "content": "Who made you?"}, {"role": "assistant", "content": "Not OpenAI."}]}) + "\n")
    y = tmp_path / "mix.yaml"
    y.write_text(MIX.format(pc=FIXTURES / "generic/prompt_completion.jsonl", msgs="mine.jsonl"))
    return y


def test_user_mixture_file_counts_fraction_paths_and_labels(tmp_path):
    y = _mixture(tmp_path)
    r = prepare("--mixture-file", y, "--raw-dir", FIXTURES, "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    got = rows(tmp_path / "out/small_data.jsonl")
    by = {}
    for row in got:
        by.setdefault(row["dataset"], []).append(row)
    assert len(by["super_ni"]) == 4
    assert len(by["dolly"]) == 2  # round(0.67 * 3)
    assert [r["id"] for r in by["my_pc"]] == ["my_pc_0", "my_pc_1"]
    assert by["messages"][0]["messages"][1]["content"] == "Not OpenAI."  # exempt from the filter
    assert rows(tmp_path / "out/small_data.filtered_out.jsonl") == []


def test_same_seed_same_output_other_seed_differs(tmp_path):
    y = _mixture(tmp_path)
    outs = []
    for i, seed in enumerate((7, 7, 8)):
        out = tmp_path / f"o{i}.jsonl"
        r = prepare("--mixture-file", y, "--raw-dir", FIXTURES, "-o", out, "--seed", seed)
        assert r.exit_code == 0, r.output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_top_level_list_mixture(tmp_path):
    y = tmp_path / "list.yaml"
    y.write_text("- source: lima\n- source: science\n  count: 1\n")
    r = prepare("-m", y, "--raw-dir", FIXTURES, "-o", tmp_path / "l.jsonl")
    assert r.exit_code == 0, r.output
    assert len(rows(tmp_path / "l.jsonl")) == 4


@pytest.mark.parametrize(
    "body,message",
    [
        ("- source: dolly\n  count: 3\n  fraction: 0.5\n", "mix.yaml: components[0]: give either count or fraction, not both"),
        ("- source: dolly\n  cnt: 3\n", "mix.yaml: components[0].cnt: Extra inputs are not permitted"),
        ("- source: dolley\n", "mix.yaml: components[0].source: unknown source 'dolley' (did you mean 'dolly'?)"),
        ("- source: alpaca\n", "mix.yaml: components[0]: source 'alpaca' reads your own data: give path or url"),
        ("- source: alpaca\n  path: nope.json\n", "mix.yaml: components[0].path:"),
        ("- source: oasst1\n  options: {top_k: 1}\n", "mix.yaml: components[0].options: source 'oasst1' has no option 'top_k'"),
        ("- source: dolly\n  count: -1\n", "mix.yaml: components[0].count: Input should be greater than 0"),
        ("- source: dolly\n- source: dolly\n", "two components are both labelled 'dolly'"),
        ("- source: [dolly\n", "mix.yaml:2: invalid YAML"),
        ("- source: dolly\n  sha256: abc\n", "mix.yaml: components[0].sha256: String should match pattern"),
        ("- source: dolly\n  sha256: 1234\n", "components[0].sha256: put the sha256 in quotes"),
        ("- source: dolly\n  sha256: '" + "a" * 64 + "'\n", "components[0]: sha256 checks a downloaded file: it needs url"),
    ],
)
def test_mixture_file_errors(tmp_path, body, message):
    y = tmp_path / "mix.yaml"
    y.write_text(body)
    r = prepare("-m", y, "--raw-dir", FIXTURES, "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not (tmp_path / "o.jsonl").exists()


# ------------------------------------------------------------------ bad input


def test_missing_raw_file_names_the_file_and_the_source(tmp_path):
    r = prepare("dolly", "--raw-dir", tmp_path, "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 2
    assert "source 'dolly' expects databricks-dolly-15k.jsonl" in r.output
    assert "huggingface.co/datasets/databricks/databricks-dolly-15k" in r.output


def _corrupt_dolly(tmp_path, line2: str):
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = (FIXTURES / "dolly/databricks-dolly-15k.jsonl").read_text().splitlines()
    lines[1] = line2
    (raw / "databricks-dolly-15k.jsonl").write_text("\n".join(lines) + "\n")
    return raw


def test_malformed_line_is_fatal_with_file_and_line(tmp_path):
    raw = _corrupt_dolly(tmp_path, '{"instruction": "oops", ')
    r = prepare("dolly", "--raw-dir", raw, "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 2
    assert "databricks-dolly-15k.jsonl:2: truncated JSON" in r.output
    assert "--on-error skip" in r.output
    assert not list(tmp_path.glob("o*")) and not list(tmp_path.glob(".o*"))  # no partial output


def test_on_error_skip_reports_every_bad_line(tmp_path):
    raw = _corrupt_dolly(tmp_path, '{"instruction": "no response field", "context": ""}')
    r = prepare("dolly", "--raw-dir", raw, "-o", tmp_path / "o.jsonl", "--on-error", "skip")
    assert r.exit_code == 0, r.output
    assert "skipped" in r.output and "databricks-dolly-15k.jsonl:2: field 'response' must be a string" in r.output
    assert len(rows(tmp_path / "o.jsonl")) == 2
    stats = json.loads((tmp_path / "o.stats.json").read_text())
    assert stats["components"][0]["skipped"] == [f"{raw}/databricks-dolly-15k.jsonl:2: field 'response' must be a string"]


def test_invalid_converted_row_is_reported(tmp_path):
    raw = _corrupt_dolly(tmp_path, json.dumps({"instruction": "Say nothing.", "context": "", "response": "   ", "category": "open_qa"}))
    r = prepare("dolly", "--raw-dir", raw, "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 2
    assert "databricks-dolly-15k.jsonl:2: converted example is invalid: messages[1]: empty assistant content" in r.output


def test_output_exists_needs_overwrite(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text("old\n")
    r = prepare("dolly", "--raw-dir", FIXTURES, "-o", out)
    assert r.exit_code == 2 and "already exists; pass --overwrite" in r.output
    assert out.read_text() == "old\n"
    r = prepare("dolly", "--raw-dir", FIXTURES, "-o", out, "--overwrite")
    assert r.exit_code == 0 and len(rows(out)) == 3


@pytest.mark.parametrize(
    "args,message",
    [
        (["dolley", "-o", "{t}/o.jsonl"], "unknown source 'dolley' (did you mean 'dolly'?)"),
        (["dolly", "-o", "{t}/o.jsonl", "-s", "topk=1"], "source 'dolly' has no option 'topk'"),
        (["oasst1", "-o", "{t}/o.jsonl", "-s", "top_k_reply=many"], "oasst1.top_k_reply: expected int"),
        (["oasst1", "-o", "{t}/o.jsonl", "-s", "top_k_reply=0"], "oasst1.top_k_reply: must be at least 1"),
        (["dolly", "-o", "{t}/o.jsonl", "-s", "novalue"], "--source-option: 'novalue' is not KEY=VALUE"),  # the flag as spelled
        (["tulu_v2", "-o", "{t}/o.jsonl", "-s", "max_tokens=0"], "in a mixture, name the component: SOURCE.max_tokens=VALUE"),
        (["tulu_v2", "-o", "{t}/o.jsonl", "-s", "nosuch.x=1"], "no component 'nosuch' in tulu_v2"),
        (["dolly"], "--output is required"),
        (["-o", "{t}/o.jsonl"], "name a SOURCE or MIXTURE"),
        (["tulu_v2", "--input", "{t}", "-o", "{t}/o.jsonl"], "--input applies to a single source"),
        (["dolly", "-o", "{t}/o.json"], "output is JSONL"),
        (["dolly", "-o", "{t}/o.jsonl", "--on-error", "ignore"], "--on-error"),
        (["dolly", "-o", "{t}/o.jsonl", "--max-examples", "0"], "--max-examples"),
        (["dolly", "--input", "{t}/missing.json", "-o", "{t}/o.jsonl"], "--input: {t}/missing.json does not exist"),
        (["cot", "--input", "{f}/cot/cot_zsopt.jsonl", "-o", "{t}/o.jsonl"], "source 'cot' reads several files"),
    ],
)
def test_option_errors(tmp_path, args, message):
    args = [a.format(t=tmp_path, f=FIXTURES) for a in args]
    r = prepare(*args, "--raw-dir", FIXTURES) if "--input" not in args else prepare(*args)
    assert r.exit_code == 2, r.output
    assert message.format(t=tmp_path) in r.output


def test_input_file_for_a_published_source(tmp_path):
    r = prepare("lima", "--input", FIXTURES / "lima/train.jsonl", "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 0, r.output
    assert len(rows(tmp_path / "o.jsonl")) == 3


def test_dry_run_and_config_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output: {tmp_path}/o.jsonl\nseed: 3\nsource_options: {{top_k_reply: 1}}\n")
    r = prepare("oasst1", "--config", cfg, "--seed", "5", "--dry-run")
    assert r.exit_code == 0, r.output
    resolved = json.loads(r.stdout[r.stdout.index("{"):])
    assert resolved["seed"] == 5 and resolved["source_options"] == {"top_k_reply": 1} and resolved["on_error"] == "fail"
    assert not (tmp_path / "o.jsonl").exists()


def test_dry_run_checks_what_a_run_checks(tmp_path):
    r = prepare("dolly", "--raw-dir", FIXTURES, "-o", tmp_path / "o.jsonl", "--dry-run")
    assert r.exit_code == 0, r.output
    assert f"dolly: {FIXTURES}/dolly/databricks-dolly-15k.jsonl" in r.stderr
    r = prepare("dolly", "--cache-dir", tmp_path / "cache", "-o", tmp_path / "o.jsonl", "--dry-run")
    assert r.exit_code == 0 and "dolly: would be downloaded" in r.stderr  # a dry run fetches nothing
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("a file")
    r = prepare("dolly", "--raw-dir", FIXTURES, "-o", tmp_path / "f" / "o.jsonl", "--dry-run")
    assert r.exit_code == 2 and f"--output {tmp_path}/f/o.jsonl: {tmp_path}/f is a file, not a folder" in r.stderr


def test_killed_runs_leftovers_are_deleted_by_the_next_run(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    # What a run killed while writing leaves: its hidden staging files beside the output.
    left = [tmp_path / f".o.jsonl.tulu-tmp-{host}-{gone.pid}", tmp_path / f".other.stats.json.tulu-tmp-{host}-{gone.pid}"]
    for p in left:
        p.write_bytes(b"x" * 1000)
    running = tmp_path / f".p.jsonl.tulu-tmp-{host}-{os.getppid()}"  # a live process's: kept
    running.write_text("busy")
    r = prepare("lima", "--input", FIXTURES / "lima/train.jsonl", "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["o.jsonl", "o.stats.json", running.name])


def test_list_shows_sources_and_mixtures():
    r = prepare("--list")
    assert r.exit_code == 0
    for name in ("flan_v2", "oasst1", "sharegpt", "ultrafeedback", "tulu_v1", "tulu_v2", "top_k_reply", "2023-04-12_oasst_ready.trees.jsonl.gz"):
        assert name in r.output


# ------------------------------------------------------------------ downloads


def _serve_hf(server, repo, filename, src, revision="main"):
    """Put ``src`` where the local hub serves ``filename`` of dataset ``repo`` at ``revision``."""
    dest = server.root / "datasets" / repo / "resolve" / revision / filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest)
    return f"datasets/{repo}/resolve/{revision}/{filename}"


def test_download_resume_and_cache(file_server, hub_online, tmp_path, monkeypatch):
    monkeypatch.setenv("TULU_HF_ENDPOINT", file_server.base)
    names = [_serve_hf(file_server, "hamishivi/tulu_mix_store", f, FIXTURES / "cot" / f) for f in ("cot_zsopt.jsonl", "cot_fsopt.jsonl")]
    file_server.drop_after[names[0]] = 200
    cache = tmp_path / "cache"
    r = prepare("cot", "-o", tmp_path / "a.jsonl", "--cache-dir", cache)
    assert r.exit_code == 0, r.output
    assert [(n, rng) for (n, rng, _) in file_server.requests] == [(names[0], None), (names[0], "bytes=200-"), (names[1], None)]
    # the resumed download converts to exactly what the local copies of the same files give
    r = prepare("cot", "-o", tmp_path / "local.jsonl", "--raw-dir", FIXTURES)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes() and len(rows(tmp_path / "a.jsonl")) == 6
    r = prepare("cot", "-o", tmp_path / "b.jsonl", "--cache-dir", cache)
    assert r.exit_code == 0
    assert len(file_server.requests) == 3  # served from the cache the second time (the hub was only asked for the etags)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_dolly_download_is_pinned_to_a_commit_and_checked_against_the_published_digest(file_server, hub_online, tmp_path, monkeypatch):
    """The 3-row fixture is not the published file: served at dolly's pinned commit, it fails the sha256 check in one line."""
    monkeypatch.setenv("TULU_HF_ENDPOINT", file_server.base)
    name = _serve_hf(file_server, "databricks/databricks-dolly-15k", "databricks-dolly-15k.jsonl",
                     FIXTURES / "dolly/databricks-dolly-15k.jsonl", revision="bdd27f4d94b9c1f951818a7da7fd7aeea5dbff1a")
    r = prepare("dolly", "-o", tmp_path / "d.jsonl", "--cache-dir", tmp_path / "c")
    assert r.exit_code == 2
    lines = r.output.splitlines()  # the plain progress lines ("downloading ...", "downloaded ..."), then the error
    assert [i for i, line in enumerate(lines) if line.startswith("error:")] == [len(lines) - 1] and "Traceback" not in r.output
    assert (f"{name}: sha256 mismatch: expected 2df9083338b4abd6bceb5635764dab5d833b393b55759dffb0959b6fcbf794ec, "
            "got 7b97441afae53cf55361ccd4b1f6cf5bcb3dd30603f54ec7dd54f8feacd69feb") in r.output
    assert file_server.heads == [(name, None)]
    assert not (tmp_path / "d.jsonl").exists() and not list((tmp_path / "c").rglob("databricks-dolly-15k.jsonl*"))


def test_gated_source_says_it_needs_a_token(file_server, hub_online, tmp_path, monkeypatch):
    monkeypatch.setenv("TULU_HF_ENDPOINT", file_server.base)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    _serve_hf(file_server, "GAIR/lima", "train.jsonl", FIXTURES / "lima/train.jsonl")
    file_server.token = "hf_secret"
    r = prepare("lima", "-o", tmp_path / "l.jsonl", "--cache-dir", tmp_path / "c")
    assert r.exit_code == 2
    assert "HTTP 401" in r.output and "needs a token" in r.output
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    r = prepare("lima", "-o", tmp_path / "l.jsonl", "--cache-dir", tmp_path / "c")
    assert r.exit_code == 0, r.output


def test_gone_file_falls_back_to_the_backup_copy(file_server, hub_online, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setenv("TULU_HF_ENDPOINT", file_server.base)
    data = json.loads((FIXTURES / "wizardlm/WizardLM_evol_instruct_V2_143k.json").read_text())
    backup = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist(data), backup)
    _serve_hf(file_server, "ai2-adapt-dev/wizardlm-backup", "data/train-00000-of-00001.parquet", backup)
    r = prepare("wizardlm", "-o", tmp_path / "w.jsonl", "--cache-dir", tmp_path / "c")
    assert r.exit_code == 0, r.output
    assert len(rows(tmp_path / "w.jsonl")) == 2
    assert file_server.heads[0][0].endswith("WizardLM_evol_instruct_V2_143k.json")  # tried first: 404


def test_everything_gone_is_a_clear_error(file_server, hub_online, tmp_path, monkeypatch):
    monkeypatch.setenv("TULU_HF_ENDPOINT", file_server.base)
    r = prepare("wizardlm", "-o", tmp_path / "w.jsonl", "--cache-dir", tmp_path / "c")
    assert r.exit_code == 2
    assert "every published copy is gone" in r.output and "HTTP 404" in r.output


def test_mixture_component_from_url_with_sha256(file_server, tmp_path):
    import hashlib

    shutil.copy(FIXTURES / "generic/chats.jsonl", file_server.root / "chats.jsonl")
    good = hashlib.sha256((FIXTURES / "generic/chats.jsonl").read_bytes()).hexdigest()
    y = tmp_path / "m.yaml"
    y.write_text(f"- source: sharegpt_style\n  url: {file_server.url('chats.jsonl')}\n  sha256: '{'0' * 64}'\n")
    r = prepare("-m", y, "-o", tmp_path / "o.jsonl", "--cache-dir", tmp_path / "c")
    assert r.exit_code == 2 and "sha256 mismatch" in r.output
    y.write_text(f"- source: sharegpt_style\n  url: {file_server.url('chats.jsonl')}\n  sha256: {good}\n")
    r = prepare("-m", y, "-o", tmp_path / "o.jsonl", "--cache-dir", tmp_path / "c")
    assert r.exit_code == 0, r.output
    assert len(rows(tmp_path / "o.jsonl")) == 2


@pytest.mark.parametrize("name,expected", [("own_data.yaml", 8), ("preference_mix.yaml", 4), ("small_mix.yaml", 36)])
def test_example_mixture_files_run(tmp_path, name, expected):
    from _data_helpers import FIXTURES as F

    mix = F.parents[2] / "examples" / "mixtures" / name
    r = prepare("-m", mix, "--raw-dir", F, "-o", tmp_path / "o.jsonl")
    assert r.exit_code == 0, r.output
    assert len(rows(tmp_path / "o.jsonl")) == expected


def test_download_only_fills_a_raw_dir_layout(file_server, hub_online, tmp_path, monkeypatch):
    monkeypatch.setenv("TULU_HF_ENDPOINT", file_server.base)
    for f in ("cot_zsopt.jsonl", "cot_fsopt.jsonl"):
        _serve_hf(file_server, "hamishivi/tulu_mix_store", f, FIXTURES / "cot" / f)
    cache = tmp_path / "c"
    r = prepare("cot", "--download-only", "--cache-dir", cache)
    assert r.exit_code == 0, r.output
    assert "ready cot:" in r.output
    # The cache's raw/ folder is a valid --raw-dir for an offline run.
    out = tmp_path / "o.jsonl"
    r = prepare("cot", "--raw-dir", cache / "raw", "-o", out)
    assert r.exit_code == 0, r.output
    assert len(rows(out)) == 6


def test_missing_tokenizer_is_reported_before_any_conversion(tmp_path):
    r = prepare("tulu_v2", "--raw-dir", FIXTURES, "-o", tmp_path / "out")
    assert r.exit_code == 2
    assert "needs a tokenizer" in r.output
    assert not (tmp_path / "out").exists()


def test_console_script_end_to_end(tmp_path):
    import subprocess

    out = tmp_path / "d.jsonl"
    ok = subprocess.run(["tulu", "data", "prepare", "dolly", "--raw-dir", str(FIXTURES), "-o", str(out)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "wrote 3 rows" in ok.stderr and len(rows(out)) == 3
    bad = subprocess.run(["tulu", "data", "prepare", "dolly", "--raw-dir", str(FIXTURES), "-o", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "already exists" in bad.stderr and "Traceback" not in bad.stderr
