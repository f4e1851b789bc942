"""JSONL reading with file:line errors, atomic writing, row validation, the stdlib xlsx reader."""

from __future__ import annotations

import gzip
import zipfile

import pytest
from _xlsx import write_simple_xlsx

from tulu_cli.data.io import JsonlWriter, read_jsonl, read_records, write_jsonl
from tulu_cli.data.validate import check_messages, check_row
from tulu_cli.data.xlsx import read_first_sheet
from tulu_cli.errors import TuluError
from tulu_cli.paths import temp_path


def test_read_jsonl_line_numbers_skip_blank_lines(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert list(read_jsonl(p)) == [(1, {"a": 1}), (3, {"a": 2})]


def test_read_jsonl_gzip(tmp_path):
    p = tmp_path / "a.jsonl.gz"
    with gzip.open(p, "wt") as f:
        f.write('{"a": 1}\n')
    assert list(read_jsonl(p)) == [(1, {"a": 1})]


@pytest.mark.parametrize(
    "line,msg",
    [
        ("{bad", "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"a" 1}', r"invalid JSON: Expecting ':' delimiter \(column 6\)"),
        # Cut inside a string: the parser alone would say "Invalid control character" (the line break).
        ('{"a": "cut here', r"truncated JSON: the text ends before the value is complete \(Unterminated string starting at column 7\)"),
        ('{"a": 1, ', r"truncated JSON: the text ends before the value is complete \(Expecting property name enclosed in double quotes at column 10\)"),
    ],
)
def test_read_jsonl_errors_name_file_and_line(tmp_path, line, msg):
    p = tmp_path / "a.jsonl"
    p.write_text('{"a": 1}\n' + line + "\n")
    with pytest.raises(TuluError, match=rf"a.jsonl:2: {msg}"):
        list(read_jsonl(p))


def test_read_jsonl_on_bad_callback_continues(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{bad\n{"a": 2}\n')
    seen = []
    assert list(read_jsonl(p, lambda where, m: seen.append(where))) == [(2, {"a": 2})]
    assert seen == [f"{p}:1"]


def test_read_jsonl_stream_names_the_member_and_keeps_it_open():
    import io

    f = io.BytesIO(b'\xef\xbb\xbf{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(TuluError, match=r"^x.zip!core.jsonl:3: truncated JSON"):
        list(read_jsonl("x.zip!core.jsonl", stream=f))
    assert not f.closed  # the caller's archive member is the caller's to close


def test_read_jsonl_whole_lines_reports_a_last_line_cut_short(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": 2}')  # complete JSON, but the append stopped before its line break
    assert list(read_jsonl(p)) == [(1, {"a": 1}), (2, {"a": 2})]
    seen = []
    assert list(read_jsonl(p, lambda where, m: seen.append(f"{where}: {m}"), whole_lines=True)) == [(1, {"a": 1})]
    assert seen == [f"{p}:2: the last line has no line break (a write cut short)"]


def test_read_jsonl_folder_and_missing_file_are_one_line(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(TuluError, match=r"d: is a folder, not a JSONL file$"):
        list(read_jsonl(tmp_path / "d"))
    with pytest.raises(TuluError, match=r"nope.jsonl: file does not exist$"):
        list(read_jsonl(tmp_path / "nope.jsonl"))


def test_read_records_json_list_and_errors(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('[{"x": 1}, {"x": 2}]')
    assert [w.split("/")[-1] for w, _ in read_records(p)] == ["a.json[0]", "a.json[1]"]
    p.write_text('[{"x": 1},\n {"x": }]')
    with pytest.raises(TuluError, match=r"a.json:2: invalid JSON"):
        list(read_records(p))
    p.write_text('"just a string"')
    with pytest.raises(TuluError, match="expected a JSON list"):
        list(read_records(p))


def test_writer_is_atomic(tmp_path):
    out = tmp_path / "o.jsonl"
    with pytest.raises(RuntimeError):
        with JsonlWriter(out) as w:
            w.write({"a": 1})
            # Rows go to a hidden staging name beside the output that a later run deletes if this one is killed.
            assert [p.name for p in tmp_path.iterdir()] == [temp_path(out).name]
            raise RuntimeError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert write_jsonl(out, [{"a": "é"}]) == 1
    assert out.read_text(encoding="utf-8") == '{"a": "é"}\n'


def _m(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


@pytest.mark.parametrize(
    "messages,problem",
    [
        (_m(("user", "hi"), ("assistant", "yo")), None),
        (_m(("system", "s"), ("user", "hi"), ("assistant", "yo"), ("user", "again"), ("assistant", "ok")), None),
        ([], "non-empty list"),
        (_m(("human", "hi"), ("assistant", "yo")), "role 'human' is not one of"),
        (_m(("user", "hi"), ("assistant", " \n")), "messages[1]: empty assistant content"),
        (_m(("user", "hi"), ("system", "s"), ("assistant", "yo")), "messages[1]: a system message may only come first"),
        (_m(("user", "hi"), ("user", "again"), ("assistant", "yo")), "messages[1]: expected a assistant turn, got user"),
        (_m(("assistant", "yo"), ("user", "hi")), "messages[0]: expected a user turn"),
        (_m(("user", "hi"), ("assistant", "yo"), ("user", "more")), "ends with a user turn"),
        (_m(("user", "hi")), "no assistant turn"),
        ([{"role": "user", "content": 3}], "content must be a string"),
        ([{"role": "user", "content": "x", "name": "bob"}, {"role": "assistant", "content": "y"}], "unexpected key"),
    ],
)
def test_check_messages(messages, problem):
    got = check_messages(messages)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


def test_non_alternating_allowed_when_not_required():
    assert check_messages(_m(("user", "a"), ("user", "b"), ("assistant", "c")), alternate=False) is None


def test_check_row_preference_pairs():
    chosen = _m(("user", "q"), ("assistant", "good"))
    ok = {"dataset": "d", "id": "d_0", "messages": chosen, "chosen": chosen, "rejected": _m(("user", "q"), ("assistant", "bad"))}
    assert check_row(ok) is None
    bad = dict(ok, rejected=_m(("user", "other"), ("assistant", "bad")))
    assert "share the same prompt" in check_row(bad)
    assert "field 'id'" in check_row(dict(ok, id=""))


def test_xlsx_roundtrip_and_inline_strings(tmp_path):
    p = tmp_path / "a.xlsx"
    write_simple_xlsx(p, [["Prompt", "Output"], ["a & b", "<c>"]])
    assert read_first_sheet(p) == [["Prompt", "Output"], ["a & b", "<c>"]]
    # Inline strings, a skipped column and a number, as other spreadsheet writers produce them.
    q = tmp_path / "b.xlsx"
    with zipfile.ZipFile(p) as src, zipfile.ZipFile(q, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "xl/worksheets/sheet1.xml":
                data = (
                    b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
                    b'<row r="1"><c r="A1" t="inlineStr"><is><t>x</t></is></c><c r="C1"><v>42</v></c></row></sheetData></worksheet>'
                )
            dst.writestr(item, data)
    assert read_first_sheet(q) == [["x", None, "42"]]
    (tmp_path / "c.xlsx").write_text("not a zip")
    with pytest.raises(TuluError, match="not an .xlsx workbook"):
        read_first_sheet(tmp_path / "c.xlsx")


def test_jsonl_content_under_a_json_name(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('{"x": 1}\n{"x": 2}\n')
    assert [w.split("/")[-1] for w, _ in read_records(p)] == ["a.json:1", "a.json:2"]
