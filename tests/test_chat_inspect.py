"""`tulu data inspect`: masked examples, summary table and JSON, and its error paths (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _chat_helpers import tiny_bpe_tokenizer, write_jsonl
from tulu_cli.cli.main import app

FIXTURES = Path(__file__).parent / "fixtures" / "chat"
SAMPLE = FIXTURES / "sample.jsonl"


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("chat_tok") / "tok"
    tiny_bpe_tokenizer().save_pretrained(path)
    return path


def run(*args: str):
    return CliRunner().invoke(app, ["data", "inspect", *args])


def test_json_summary(tok_dir):
    r = run(str(SAMPLE), "--tokenizer", str(tok_dir), "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["examples"] == 4
    assert s["dropped"] == 1  # the user-only conversation
    assert s["truncated"] == 0
    assert 0 < s["trainable_tokens"] < s["tokens"]
    assert s["trainable_share"] == round(s["trainable_tokens"] / s["tokens"], 4)
    lp = s["length_percentiles"]
    assert lp["min"] <= lp["p50"] <= lp["p90"] <= lp["p99"] <= lp["max"]
    assert set(s["by_dataset"]) == {"oasst1", "open_orca", "flan_v2"}
    assert s["by_dataset"]["oasst1"]["examples"] == 2 and s["by_dataset"]["oasst1"]["dropped"] == 1


def test_summary_counts_match_encoder(tok_dir):
    """The numbers are those of encode_example, not an estimate."""
    from tulu_cli.chat import encode_example

    tok = tiny_bpe_tokenizer()
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    encs = [encode_example(r, tok, 20, with_stats=True) for r in rows]
    r = run(str(SAMPLE), "-t", str(tok_dir), "--max-seq-length", "20", "--json")
    s = json.loads(r.stdout)
    assert s["tokens"] == sum(len(e["input_ids"]) for e in encs)
    assert s["trainable_tokens"] == sum(sum(x != -100 for x in e["labels"]) for e in encs)
    truncated = sum(e["num_tokens_untruncated"] > 20 for e in encs)
    assert s["truncated"] == truncated and 0 < truncated < len(rows) and s["max_seq_length"] == 20
    assert s["dropped"] == sum(all(x == -100 for x in e["labels"]) for e in encs)


def test_human_output_marks_trained_text(tok_dir):
    r = run(str(SAMPLE), "--tokenizer", str(tok_dir), "--num-examples", "2")
    assert r.exit_code == 0, r.output
    out = r.stdout
    # no colour under the test runner: trained runs are bracketed, masked text is not
    assert "[[The capital of France is Paris.</s>\n]]" in out
    assert "[[Madrid.</s>]]" in out
    assert "<|user|>\nWhat is the capital of France?\n<|assistant|>\n[[" in out
    assert "open_orca_0" in out and "flan_v2_0" not in out  # only two examples shown
    for word in ("examples", "trainable tokens", "truncated", "dropped", "p50", "p99", "by dataset"):
        assert word in out
    assert "1 example(s) have no trainable token" in out


def test_colours_in_a_terminal(tok_dir):
    """Trained and masked runs get different styles."""
    from tulu_cli.chat import encode_messages
    from tulu_cli.chat.inspect import MASKED_STYLE, TRAINED_STYLE, masked_text

    tok = tiny_bpe_tokenizer()
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    enc = encode_messages(msgs, tok, 64)
    text = masked_text(enc["input_ids"], enc["labels"], tok)
    styled = [(text.plain[s.start : s.end], str(s.style)) for s in text.spans]
    assert styled == [("<s><|user|>\nhi\n<|assistant|>\n", MASKED_STYLE), ("hello</s>", TRAINED_STYLE)]
    enc = encode_messages(msgs + msgs, tok, 64)
    text = masked_text(enc["input_ids"], enc["labels"], tok)
    assert [text.plain[s.start : s.end] for s in text.spans if str(s.style) == TRAINED_STYLE] == ["hello</s>↵\n", "hello</s>"]


def test_other_template_and_dry_run(tok_dir):
    r = run(str(SAMPLE), "-t", str(tok_dir), "--template", "chatml", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["template"] == "chatml"
    r = run(str(SAMPLE), "-t", str(tok_dir), "--template", "tokenizer", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["template"] == "tokenizer" and s["dropped"] == 1 and s["trainable_tokens"] > 0
    r = run(str(SAMPLE), "-t", str(tok_dir), "--max-seq-length", "64", "--dry-run")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["max_seq_length"] == 64


def test_limit(tok_dir):
    r = run(str(SAMPLE), "-t", str(tok_dir), "--limit", "2", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["examples"] == 2 and set(s["by_dataset"]) == {"oasst1", "open_orca"}


def test_config_file_and_flag_precedence(tok_dir, tmp_path):
    cfg = tmp_path / "inspect.yaml"
    cfg.write_text(f"tokenizer: {tok_dir}\nmax-seq-length: 16\ntemplate: zephyr\n")
    r = run(str(SAMPLE), "--config", str(cfg), "--max-seq-length", "32", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["max_seq_length"] == 32 and s["template"] == "zephyr"


def test_error_missing_file(tok_dir, tmp_path):
    r = run(str(tmp_path / "nope.jsonl"), "--tokenizer", str(tok_dir))
    assert r.exit_code == 2
    assert "nope.jsonl: no such file" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_error_folder_instead_of_file(tok_dir, tmp_path):
    r = run(str(tmp_path), "--tokenizer", str(tok_dir))
    assert r.exit_code == 2 and "is a folder, expected a JSONL file" in r.stderr


def test_error_not_utf8_and_bom_accepted(tok_dir, tmp_path):
    good = SAMPLE.read_bytes().splitlines(keepends=True)[0]
    f = tmp_path / "latin1.jsonl"
    f.write_bytes(good + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n')
    r = run(str(f), "--tokenizer", str(tok_dir))
    assert r.exit_code == 2 and "latin1.jsonl:2: not valid UTF-8" in r.stderr
    f = tmp_path / "bom.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + good)
    r = run(str(f), "--tokenizer", str(tok_dir), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["examples"] == 1


def test_error_malformed_line(tok_dir):
    r = run(str(FIXTURES / "malformed.jsonl"), "--tokenizer", str(tok_dir))
    assert r.exit_code == 2
    # The line stops mid-object (a truncated copy): said so, not the parser's "Expecting value".
    assert "malformed.jsonl:2: truncated JSON" in r.stderr and "Traceback" not in r.output


def test_error_bad_role_names_line_and_field(tok_dir):
    r = run(str(FIXTURES / "bad_role.jsonl"), "--tokenizer", str(tok_dir))
    assert r.exit_code == 2
    assert "bad_role.jsonl:2: field 'messages[0].role': unknown role 'human'" in r.stderr


def test_error_row_without_messages(tok_dir, tmp_path):
    f = write_jsonl(tmp_path / "rows.jsonl", [{"id": "x", "text": "hello"}, ["not", "an", "object"]])
    r = run(str(f), "--tokenizer", str(tok_dir))
    assert r.exit_code == 2 and "rows.jsonl:1: expected a field 'messages'" in r.stderr
    f = write_jsonl(tmp_path / "rows2.jsonl", [["not", "an", "object"]])
    r = run(str(f), "--tokenizer", str(tok_dir))
    assert r.exit_code == 2 and "rows2.jsonl:1: expected a JSON object, got list" in r.stderr


def test_error_missing_tokenizer_dir(tmp_path):
    r = run(str(SAMPLE), "--tokenizer", str(tmp_path / "no_tok"))
    assert r.exit_code == 2
    assert "--tokenizer" in r.stderr and "no_tok: no such directory" in r.stderr


def test_error_folder_without_tokenizer(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run(str(SAMPLE), "--tokenizer", str(tmp_path / "empty"))
    assert r.exit_code == 2
    assert "empty: no tokenizer in this folder (none of tokenizer.json" in r.stderr and "Traceback" not in r.output


def test_error_damaged_tokenizer_is_one_whole_line(tmp_path, tok_dir):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tok_dir, bad)
    (bad / "tokenizer.json").unlink()  # config left, no vocabulary: transformers' many-line message
    r = run(str(SAMPLE), "--tokenizer", str(bad))
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.stderr
    assert "cannot load a tokenizer from this folder" in lines[0] and not lines[0].rstrip().endswith(":")


def test_error_tokenizer_flag_required():
    r = run(str(SAMPLE))
    assert r.exit_code == 2 and "--tokenizer DIR is required" in r.stderr


def test_error_bad_options(tok_dir):
    r = run(str(SAMPLE), "-t", str(tok_dir), "--template", "vicuna")
    assert r.exit_code == 2 and "--template" in r.stderr
    r = run(str(SAMPLE), "-t", str(tok_dir), "--max-seq-length", "0")
    assert r.exit_code == 2 and "--max-seq-length" in r.stderr


def test_error_template_tokenizer_without_chat_template(tmp_path):
    tok = tiny_bpe_tokenizer()
    tok.chat_template = None
    tok.save_pretrained(tmp_path / "tok")
    r = run(str(SAMPLE), "-t", str(tmp_path / "tok"), "--template", "tokenizer")
    assert r.exit_code == 2
    assert "sample.jsonl:1: --template tokenizer: the tokenizer has no chat_template" in r.stderr
