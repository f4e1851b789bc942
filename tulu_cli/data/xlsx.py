"""Read the first sheet of an .xlsx workbook with the standard library (no openpyxl dependency)."""

from __future__ import annotations

import posixpath
import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

from tulu_cli.errors import TuluError

NS = {
    "m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "rel": "http://schemas.openxmlformats.org/package/2006/relationships",
}


def _col_index(ref: str) -> int:
    letters = re.match(r"[A-Z]+", ref)
    n = 0
    for ch in letters.group(0) if letters else "A":
        n = n * 26 + (ord(ch) - 64)
    return n - 1


def _text(el: ET.Element) -> str:
    # Rich-text cells split their string into runs; join every <t> below the element.
    return "".join(t.text or "" for t in el.iter(f"{{{NS['m']}}}t"))


def read_first_sheet(path: str | Path) -> list[list[str | None]]:
    """Rows of the first worksheet as lists of strings (None for empty cells)."""
    p = Path(path)
    try:
        z = zipfile.ZipFile(p)
    except zipfile.BadZipFile:
        raise TuluError(f"{p}: not an .xlsx workbook (not a zip archive)") from None
    with z:
        try:
            wb = ET.fromstring(z.read("xl/workbook.xml"))
            rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
        except KeyError as e:
            raise TuluError(f"{p}: not an .xlsx workbook (missing {e})") from None
        first = wb.find("m:sheets/m:sheet", NS)
        if first is None:
            raise TuluError(f"{p}: workbook has no sheets")
        rid = first.get(f"{{{NS['r']}}}id")
        target = next((r.get("Target") for r in rels.findall("rel:Relationship", NS) if r.get("Id") == rid), None)
        if target is None:
            raise TuluError(f"{p}: cannot find the first sheet's part")
        sheet_path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
        shared: list[str] = []
        if "xl/sharedStrings.xml" in z.namelist():
            sst = ET.fromstring(z.read("xl/sharedStrings.xml"))
            shared = [_text(si) for si in sst.findall("m:si", NS)]
        sheet = ET.fromstring(z.read(sheet_path))
    rows: list[list[str | None]] = []
    for row in sheet.iterfind("m:sheetData/m:row", NS):
        cells: dict[int, str | None] = {}
        for i, c in enumerate(row.findall("m:c", NS)):
            col = _col_index(c.get("r", "")) if c.get("r") else i
            kind = c.get("t")
            v = c.find("m:v", NS)
            if kind == "s" and v is not None and v.text is not None:
                cells[col] = shared[int(v.text)]
            elif kind == "inlineStr":
                is_ = c.find("m:is", NS)
                cells[col] = _text(is_) if is_ is not None else ""
            else:
                cells[col] = v.text if v is not None else None
        width = max(cells) + 1 if cells else 0
        rows.append([cells.get(i) for i in range(width)])
    return rows
