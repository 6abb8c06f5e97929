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
from tests.conftest import parquet_bytes

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
    "nested Parquet column": Case("nested.parquet", parquet_bytes(pd.DataFrame({"text": ["a"], "tags": [[1, 2]]})),
                                  error="nested values"),
    "Parquet renamed .csv": Case("renamed.csv", parquet_bytes(pd.DataFrame({"text": ["a", "b"], "ward": ["A", "B"]})), rows=2),
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
        at.selectbox(key="ingest_text").select("text").run()
    if not at.error:
        at.text_input(key="ingest_name").set_value("c")
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


# ---- exports shaped like a real hospital one: an unnamed index column, long notes, duplicates ------

SPECIALTIES = ["Urology", "Cardiology", "Neurology", "Orthopedic", "Radiology"]


def export_frame(n: int = 30) -> pd.DataFrame:
    """Like a transcription export: index column first, ~300-character notes, a few metadata columns."""
    return pd.DataFrame({
        "description": [f"Follow-up visit {i}." for i in range(n)],
        "medical_specialty": [SPECIALTIES[i % 5] for i in range(n)],
        "sample_name": [f"Sample {i} - {SPECIALTIES[i % 5]}" for i in range(n)],
        "transcription": [f"SUBJECTIVE: The patient, case {i}, returns with {SPECIALTIES[i % 5].lower()} complaints "
                          f"that began {i + 2} days ago. " + "Vital signs stable, no acute distress. " * 6
                          for i in range(n)],
        "keywords": [f"{SPECIALTIES[i % 5].lower()}, visit, follow-up" for i in range(n)],
    })


def export_csv(df: pd.DataFrame | None = None, encoding: str = "utf-8") -> bytes:
    return (export_frame() if df is None else df).to_csv(index=True).encode(encoding)  # index: the unnamed column


def _with_duplicates() -> pd.DataFrame:
    df = export_frame()
    df.loc[27:29, "transcription"] = df.loc[0:2, "transcription"].to_numpy()  # the same notes, filed again...
    df.loc[27:29, "medical_specialty"] = [" Urology", "Urology", "Urology"]  # ...under another specialty
    return df


def _with_ids(duplicate_at: tuple[int, int]) -> pd.DataFrame:
    df = export_frame()
    df.insert(0, "note_id", [f"N{i:04d}" for i in range(len(df))])
    df.loc[duplicate_at[1], "note_id"] = df.loc[duplicate_at[0], "note_id"]
    return df


def _short_and_empty() -> pd.DataFrame:
    df = export_frame()
    df.loc[4, "transcription"], df.loc[9, "transcription"] = "", "ok"
    return df


@dataclass
class Export:
    content: bytes
    args: list[str]
    error: str = ""  # refused with this in the one-line message, or accepted with
    warnings: tuple[str, ...] = ()  # these in the JSON warnings
    expect: dict | None = None  # and these JSON values
    filename: str = "export.csv"


TEXT = ["--text", "transcription"]
MRNS = export_frame().assign(transcription=[f"MRN{i:06d}" for i in range(30)])
EXPORTS = {
    "index column as text": Export(export_csv(), ["--text", "Unnamed: 0"],
                                   error="text column 'Unnamed: 0' holds only numbers"),
    "index column stored as metadata by default": Export(
        export_csv(), TEXT, warnings=("metadata column 'Unnamed: 0' has a different value in every row",
                                      "metadata column 'sample_name' has a different value in every row"),
        expect={"rows": 30, "duplicates": 0, "conflicts": 0}),
    "headerless prose": Export(
        b"The patient is a 54-year-old man seen today for follow-up of his hypertension.\n"
        b"She reports three days of dysuria and frequency without fever or flank pain.\n"
        b"MRI of the lumbar spine shows a small central disc protrusion at L4-L5.\n",
        ["--text", "text"], error="reads like a note: the file seems to have no header row", filename="prose.csv"),
    "headerless prose read with --no-header": Export(
        b"The patient is a 54-year-old man seen today for follow-up of his hypertension.\n"
        b"She reports three days of dysuria and frequency without fever or flank pain.\n",
        ["--text", "column_1", "--no-header"], expect={"rows": 2, "meta": {}}, filename="prose.csv"),
    "headerless prose kept with --force": Export(
        b"The patient is a 54-year-old man seen today for follow-up of his hypertension.,A\n"
        b"She reports three days of dysuria and frequency without fever or flank pain.,B\n",
        ["--text", "The patient is a 54-year-old man seen today for follow-up of his hypertension.", "--force"],
        warnings=("reads like a note",), expect={"rows": 1}, filename="prose.csv"),
    "numeric text column": Export(export_csv(export_frame().assign(transcription=[str(i * 7) for i in range(30)])),
                                  TEXT, error="text column 'transcription' holds only numbers"),
    "identifier text column": Export(export_csv(MRNS), TEXT,
                                     error="text column 'transcription' looks like identifiers"),
    "identifier text column with --force": Export(
        export_csv(MRNS), TEXT + ["--force"],
        warnings=("looks like identifiers", "shorter than 10 characters"), expect={"rows": 30}),
    "duplicate ids across chunks": Export(export_csv(_with_ids((2, 25))), TEXT + ["--id", "note_id"],
                                          warnings=("column 'note_id': 1 ids appear again (e.g. 'N0002' at rows 3 "
                                                    "and 26)",),
                                          expect={"rows": 30}),
    "duplicate texts with conflicting labels": Export(
        export_csv(_with_duplicates()), TEXT + ["--meta", "medical_specialty"],
        warnings=("3 notes repeat an earlier note's text exactly (e.g. row 28 repeats row 1)",
                  "2 groups of identical texts carry different values of column 'medical_specialty' (e.g. rows 2 "
                  "and 29)",
                  "column 'medical_specialty': 1 values had leading or trailing spaces (e.g. ' Urology')"),
        expect={"duplicates": 3, "conflicts": 2, "meta": {"medical_specialty": "categorical"}}),
    "one-value and all-unique metadata": Export(
        export_csv(export_frame().assign(hospital="St Mary")), TEXT + ["--meta", "hospital", "sample_name"],
        warnings=("metadata column 'hospital' has one value in every row",
                  "metadata column 'sample_name' has a different value in every row"),
        expect={"meta": {"hospital": "categorical", "sample_name": "categorical"}}),
    "a column chosen twice": Export(
        export_csv(), TEXT + ["--meta", "medical_specialty", "--meta", "medical_specialty", "keywords",
                              "transcription"],
        warnings=("column 'medical_specialty' was chosen twice as metadata; it is stored once",
                  "column 'transcription' is the text column; it is not stored again as metadata"),
        expect={"meta": {"medical_specialty": "categorical", "keywords": "categorical"}}),
    "empty and very short notes": Export(
        export_csv(_short_and_empty()), TEXT + ["--meta", "medical_specialty"],
        warnings=("1 rows have no text and are skipped (first at row 5)",
                  "1 notes are shorter than 10 characters (first at row 10)"),
        expect={"rows": 29, "skipped": 1}),
    "an empty export with only a header": Export(b",description,medical_specialty,transcription\n", TEXT,
                                                  error="the file has a header but no rows"),
    "Windows cp1252 export": Export(export_csv(export_frame().assign(keywords="patient’s visit"), "cp1252"), TEXT,
                                    error="not UTF-8 text (byte 0x92"),
}


def dump_tables(store: Store) -> dict[str, list]:
    """Every row of every table, sorted: two stores are the same iff their dumps are."""
    with store.connect() as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {t: sorted(map(repr, con.execute(f"SELECT * FROM {t}").fetchall())) for t in tables}


@pytest.fixture()
def store_with_corpus(settled_store, synthetic_df):
    from core.corpus import ingest_frame

    ingest_frame(settled_store, synthetic_df, "old", "text", "note_id")
    return settled_store


@pytest.mark.parametrize("name", list(EXPORTS))
def test_hospital_export_command_line(name, store_with_corpus, tmp_path, capsys, monkeypatch):
    import core.ingest.read

    monkeypatch.setattr(core.ingest.read, "CHUNK_ROWS", 4)  # checks must hold across chunk boundaries
    case = EXPORTS[name]
    path = tmp_path / case.filename
    path.write_bytes(case.content)
    before = dump_tables(store_with_corpus)
    code = cli_main(["--db", str(store_with_corpus.path), "ingest", str(path), "--name", "export"] + case.args)
    out, err = capsys.readouterr()
    if case.error:
        last = err.strip().splitlines()[-1]
        assert code != 0 and out == "" and len(err.strip().splitlines()) == 1, err
        assert case.error in last and case.filename in last, last
        assert dump_tables(store_with_corpus) == before
        return
    assert code == 0, err
    result = json.loads(out)
    assert {"corpus", "rows", "skipped", "meta", "duplicates", "conflicts", "warnings"} <= set(result)
    for warning in case.warnings:
        assert any(warning in w for w in result["warnings"]), (warning, result["warnings"])
        assert warning in err  # also said on stderr
    for key, value in (case.expect or {}).items():
        assert result[key] == value, (key, result[key])
    stored = store_with_corpus.documents(store_with_corpus.corpus("export"))
    assert list(stored.columns) == ["ord", "doc_id", "text"] + list(result["meta"])


def test_stray_spaces_are_trimmed_in_what_is_stored(store_with_corpus, tmp_path):
    from core.corpus import ingest_file

    path = tmp_path / "export.csv"
    path.write_bytes(export_csv(_with_duplicates()))
    ingest_file(store_with_corpus, path, "export", "transcription", None, ["medical_specialty"])
    values = store_with_corpus.documents(store_with_corpus.corpus("export"))["medical_specialty"]
    assert " Urology" not in set(values) and (values == "Urology").sum() == 6 + 3


def test_the_default_text_column_is_the_longest_not_the_index(tmp_path):
    from core.corpus import default_text_column, preview

    path = tmp_path / "export.csv"
    path.write_bytes(export_csv())
    assert default_text_column(preview(path)) == "transcription"
    longer_but_not_notes = pd.DataFrame({"account": [str(10**19 + i) for i in range(30)],  # 20 digits
                                         "code": [f"AB{i:04d}CD{i:04d}" for i in range(30)],  # 12 characters, unique
                                         "note": [f"seen {i}" for i in range(30)]})
    assert default_text_column(longer_but_not_notes) == "note"
