"""Messy exports, generated in code, through the command line and the app.

Each case either lands with the expected rows, or is rejected with a message that names the file,
row or column, a non-zero exit (CLI) or st.error (app), and a store that is byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.cli import main as cli_main
from core.store import Store

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@dataclass
class Case:
    filename: str
    content: bytes
    rows: int | None = None  # accepted with this many notes, or
    error: str = ""  # rejected with this text in the message
    id_col: str | None = None


def _csv(text: str, encoding: str = "utf-8") -> bytes:
    return text.encode(encoding)


def _parquet(df: pd.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _jsonl(records) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode() + b"\n"


CASES = {
    "empty file": Case("empty.csv", b"", error="empty"),
    "header only": Case("header.csv", _csv("text,ward\n"), error="header but no rows"),
    "latin-1": Case("latin1.csv", _csv("text,ward\ncafé au lait,A\n", "latin-1"), error="not UTF-8"),
    "utf-16": Case("utf16.csv", _csv("text,ward\ncafé,A\nthé,B\n", "utf-16"), rows=2),
    "utf-8 with BOM": Case("bom.csv", b"\xef\xbb\xbf" + _csv("text,ward\nnote,A\n"), rows=1),
    "mixed line endings": Case("eol.csv", _csv("text,ward\r\nfirst,A\nsecond,B\r\nthird,C\n"), rows=3),
    "quoted newlines": Case("quoted.csv", _csv('text,ward\n"line one\nline two",A\n"x, y",B\n'), rows=2),
    "ragged rows": Case("ragged.csv", _csv("text,ward\na,A\nb,B,surplus\n"), error="line 3"),
    "missing text column": Case("nocol.csv", _csv("body,ward\na,A\n"), error="no column 'text'"),
    "all texts empty": Case("blank.csv", _csv("text,ward\n  ,A\n,B\n"), error="texts in column 'text' are empty"),
    "one 5 MB note": Case("big.csv", _csv("text,ward\n" + "word " * 1_000_000 + ",A\nsmall,B\n"), rows=2),
    "duplicate ids": Case("dups.csv", _csv("id,text\n7,a\n8,b\n7,c\n"), rows=3, id_col="id"),
    "mixed types and NaN": Case("mixed.csv", _csv("text,score,when\na,1,2024-01-01\nb,two,NaN\nc,,2024-02-01\n"), rows=3),
    "broken JSONL line": Case("broken.jsonl", _jsonl([{"text": "a"}]) + b'{"text": "b"\n', error="line 2"),
    "JSONL not objects": Case("list.jsonl", b"[1, 2]\n", error="line 1"),
    "nested Parquet column": Case("nested.parquet", _parquet(pd.DataFrame({"text": ["a"], "tags": [[1, 2]]})),
                                  error="nested values"),
    "Parquet renamed .csv": Case("renamed.csv", _parquet(pd.DataFrame({"text": ["a", "b"], "ward": ["A", "B"]})), rows=2),
    "CSV renamed .parquet": Case("fake.parquet", _csv("text\na\n"), error="not a Parquet file"),
    "unknown extension": Case("notes.xlsx", b"PK\x03\x04binary", error="unknown file type"),
    "binary garbage": Case("garbage.csv", bytes(range(256)) * 4, error="not UTF-8"),
    "TSV with tabs": Case("notes.tsv", _csv("text\tward\nfirst note\tA\nsecond\tB\n"), rows=2),
    "whitespace-only rows skipped": Case("ws.csv", _csv("text,ward\n \t ,A\nreal note,B\n"), rows=1),
    "formula-looking metadata": Case("formula.csv", _csv('text,ward\nnote,"=HYPERLINK(""x"")"\n'), rows=1),
    "markup in notes": Case("markup.csv", _csv('text\n"<script>alert(1)</script> [link](http://x) $x^2$"\n'), rows=1),
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def settled_store(db_path):
    store = Store(db_path)
    store.summary()  # migrate first, so "unchanged" compares a settled file
    return store


@pytest.mark.parametrize("name", list(CASES))
def test_command_line(name, settled_store, tmp_path, capsys):
    case = CASES[name]
    path = tmp_path / case.filename
    path.write_bytes(case.content)
    before = digest(settled_store.path)
    args = ["--db", str(settled_store.path), "ingest", str(path), "--name", "c", "--text", "text"]
    code = cli_main(args + (["--id", case.id_col] if case.id_col else []))
    out, err = capsys.readouterr()
    if case.error:
        assert code != 0 and out == ""
        last = err.strip().splitlines()[-1]
        assert case.error in last and (case.filename in last or "empty" in last)
        assert digest(settled_store.path) == before
    else:
        assert code == 0, err
        assert json.loads(out)["rows"] == case.rows


def test_200k_rows_stream_in(settled_store, tmp_path, capsys):
    path = tmp_path / "big.csv"
    pd.DataFrame({"text": [f"note number {i} about ward {i % 7}" for i in range(200_000)],
                  "ward": [f"w{i % 7}" for i in range(200_000)]}).to_csv(path, index=False)
    assert cli_main(["--db", str(settled_store.path), "ingest", str(path), "--name", "big", "--text", "text"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 200_000


APP_CASES = [n for n, c in CASES.items() if n != "missing text column" and c.filename.split(".")[-1] in
             ("csv", "tsv", "parquet", "jsonl") and n != "one 5 MB note"]


@pytest.mark.parametrize("name", APP_CASES)
def test_app_upload(name, settled_store):
    case = CASES[name]
    before = digest(settled_store.path)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/data.py").run()
    at.file_uploader[0].set_value((case.filename, case.content, "application/octet-stream"))
    at.run()
    if not at.error:  # the preview worked: choose columns and ingest
        at.text_input[0].set_value("c")
        if case.id_col:
            at.selectbox(key="ingest_id").select(case.id_col)
        at.button(key="ingest_submit").click().run()
    assert not at.exception
    if case.error:
        assert any(case.error in e.value for e in at.error), [e.value for e in at.error]
        assert digest(settled_store.path) == before
    else:
        assert not at.error, [e.value for e in at.error]
        assert settled_store.corpus("c").n_docs == case.rows
