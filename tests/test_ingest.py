"""core/ingest/, piece by piece: what each reader yields, the exact words of every check, the
boundaries of the checks, chunk boundaries, and the rows, types and provenance a file becomes.

The oracles are independent of the code under test: the CLI's own parser and the Data page's own
labels for the remedies a message names, pandas for what a file holds, the settled_store read back for what a
preview promised, and hashes pinned once so that a settled_store written earlier keeps its cache."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import core.ingest.read as reading
from core.cli import build_parser
from core.corpus import (IngestError, check, corpus_info, delete_corpus, deletion_summary, ingest_file,
                         ingest_frame, preview, stored_preview, text_hash)
from core.ingest.check import SENTENCE_HEADER, SHORT_TEXT, confirmed
from core.ingest.profiles import MIN_ROWS_FOR_SHAPE, default_text_column
from core.store import StoreError
from tests.conftest import parquet_bytes

DATA_PAGE = Path(__file__).resolve().parents[1] / "pages" / "data.py"
NOTE_HEADER = "the patient was admitted with chest pain and shortness of breath"  # a note read as a header


def file(tmp_path, name: str, content) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def refusal(path, text_col="text", id_col=None, meta_cols=None, header=True) -> str:
    """The one line an unconfirmed ingest of the file is refused with."""
    with pytest.raises(IngestError) as info:
        confirmed(check(path, text_col, id_col, meta_cols, header), force=False)
    return str(info.value)


# ---- every message, word for word, and the remedies it names exist --------------------------------------

def _numbers(n: int) -> str:
    return "text,ward\n" + "".join(f"{i},A\n" for i in range(n))


MESSAGES = {  # file name, content, text column, id column, metadata columns -> the exact message
    "header cell reads like a note, column missing": (
        "s.csv", f"{NOTE_HEADER},ward\nnote one,A\n", "text", None, None,
        "s.csv: no column 'text' for the text, and the header cell 'the patient was admitted with chest pain…' "
        "reads like a note: the file seems to have no header row; read it without one (CLI: --no-header; "
        "Data page: 'No header row')"),
    "header cell reads like a note": (
        "s2.csv", f"text,{NOTE_HEADER}\nnote one,A\n", "text", None, None,
        "s2.csv: the header cell 'the patient was admitted with chest pain…' reads like a note, not a column "
        "name: the file seems to have no header row; read it without one (CLI: --no-header; Data page: "
        "'No header row'), or confirm to keep it (CLI: --force)"),
    "metadata column missing": (
        "m.csv", "body,ward\nx,A\n", "body", None, ["wrd"],
        "m.csv: no column 'wrd' for the metadata (columns: body, ward); pick one of those"),
    "id column missing": (
        "i.csv", "body,ward\nx,A\n", "body", "nid", None,
        "i.csv: no column 'nid' for the id (columns: body, ward); pick one of those"),
    "numbers as text": (
        "n.csv", _numbers(5), "text", None, None,
        "n.csv: the text column 'text' holds only numbers (a row index or a measurement?); pick the column "
        "holding the notes, or confirm (CLI: --force)"),
    "codes as text": (
        "c.csv", "text\n" + "".join(f"code{i:04d}\n" for i in range(25)), "text", None, None,
        "c.csv: the text column 'text' looks like identifiers (near-unique values of 8 characters on average); "
        "pick the column holding the notes, or confirm (CLI: --force)"),
    "two refusals": (
        "two.csv", _numbers(5).replace("ward", NOTE_HEADER, 1), "text", None, None,
        "two.csv: the header cell 'the patient was admitted with chest pain…' reads like a note, not a column "
        "name: the file seems to have no header row; read it without one (CLI: --no-header; Data page: "
        "'No header row'), or confirm to keep it (CLI: --force) (1 more check(s) also failed)"),
    "all texts empty": (
        "blank.csv", "text,ward\n  ,A\n,B\n", "text", None, None,
        "blank.csv: all 2 texts in column 'text' are empty; pick the column holding the notes"),
    "ragged row": (
        "r.csv", "text,ward\na,A\nb,B,extra\n", "text", None, None,
        "r.csv: Expected 2 fields in line 3, saw 3; fix that row (quote fields that contain ',' or line breaks) "
        "and retry"),
    "blank lines only": (
        "e.csv", "\n\n\n", "text", None, None, "e.csv: no header row found; the first line must name the columns"),
    "latin-1": (
        "l.csv", "text\ncaf\xe9\n".encode("latin-1"), "text", None, None,
        "l.csv: not UTF-8 text (byte 0xe9 at offset 8); re-save the file as UTF-8 and ingest again"),
    "nested Parquet column chosen": (
        "p.parquet", parquet_bytes(pd.DataFrame({"text": ["a note"], "tags": [[1, 2]]})), "text", None, ["tags"],
        "p.parquet: column 'tags' holds nested values (list<element: int64>); flatten it to text or numbers, "
        "or leave it out"),
}


def _remedies(message: str) -> tuple[list[str], list[str]]:
    return re.findall(r"CLI: (--[\w-]+)", message), re.findall(r"Data page: '([^']+)'", message)


@pytest.mark.parametrize("case", list(MESSAGES))
def test_each_refusal_is_one_exact_line_whose_remedies_exist(tmp_path, case):
    name, content, text_col, id_col, meta_cols, expected = MESSAGES[case]
    message = refusal(file(tmp_path, name, content), text_col, id_col, meta_cols)
    assert message == expected
    flags, labels = _remedies(message)
    ingest_options = build_parser().parse_args(["ingest", "x.csv", "--name", "x", "--text", "text", *flags])  # an unknown flag exits
    assert all(getattr(ingest_options, f.removeprefix("--").replace("-", "_")) for f in flags)
    page = DATA_PAGE.read_text()
    assert all(re.search(r'st\.\w+\(\s*"' + re.escape(label), page) for label in labels), labels


def test_no_such_file_and_an_existing_name_say_what_to_do(settled_store, tmp_path):
    with pytest.raises(IngestError) as info:
        ingest_file(settled_store, tmp_path / "nowhere.csv", "x", "text")
    assert str(info.value) == f"{tmp_path / 'nowhere.csv'}: no such file"
    ingest_frame(settled_store, pd.DataFrame({"text": ["a note"]}), "taken", "text")
    with pytest.raises(IngestError) as info:
        ingest_frame(settled_store, pd.DataFrame({"text": ["a note"]}), "taken", "text")
    assert str(info.value) == "a corpus named 'taken' exists already; choose another name, or replace it (CLI: --replace)"
    with pytest.raises(IngestError, match="exists already"):
        ingest_file(settled_store, file(tmp_path, "t.csv", "text\nanother note\n"), "taken", "text")
    numbers = pd.DataFrame({"text": [str(i) for i in range(5)]})
    with pytest.raises(IngestError, match="holds only numbers"):
        ingest_frame(settled_store, numbers, "numbers", "text")
    with pytest.raises(IngestError, match="holds only numbers"):
        ingest_file(settled_store, file(tmp_path, "n.csv", "text\n1\n2\n"), "numbers", "text")
    assert [c.name for c in settled_store.corpora()] == ["taken"]
    assert build_parser().parse_args(["ingest", "x.csv", "--name", "x", "--text", "text", "--replace"]).replace


def test_the_warnings_of_a_messy_export_word_for_word(tmp_path):
    path = file(tmp_path, "d.csv", "id,text,ward,unit\n1,first note here,A,x\n2,first note here,B,x\n"
                                   "1,another note,A,x\n")
    plan = check(path, "text", "id", ["ward", "id", "ward", "text"])
    assert plan.meta == {"ward": "categorical"}
    assert plan.warnings == [
        "d.csv: column 'id' is the id column; it is not stored again as metadata",
        "d.csv: column 'ward' was chosen twice as metadata; it is stored once",
        "d.csv: column 'text' is the text column; it is not stored again as metadata",
        "d.csv: column 'text': 1 notes repeat an earlier note's text exactly (e.g. row 2 repeats row 1); they are "
        "kept and embedded once",
        "d.csv: 1 groups of identical texts carry different values of column 'ward' (e.g. rows 1 and 2); the same "
        "note filed twice? check the export",
        "d.csv: column 'id': 1 ids appear again (e.g. '1' at rows 1 and 3); make ids unique or leave the id "
        "column out",
    ]
    assert (plan.duplicates, plan.conflicts) == (1, 1)


# ---- the boundaries of the checks ------------------------------------------------------------------------

@pytest.mark.parametrize("cell, reads_like_a_note", [
    ("x" * SENTENCE_HEADER, True), ("x" * (SENTENCE_HEADER - 1), False),  # by length alone
    ("a b c d e f", True), ("a b c d e", False),  # by words alone (6 or more)
    ("one two three four five " + "y" * 20, True),  # 5 words, long enough
])
def test_a_header_cell_reads_like_a_note_from_40_characters_or_6_words(tmp_path, cell, reads_like_a_note):
    plan = check(file(tmp_path, "h.csv", f"text,{cell}\nfirst note,A\nsecond note,B\n"), "text")
    assert bool(plan.refusals) == reads_like_a_note
    assert not check(file(tmp_path, "n.csv", f"a note,{cell}\n"), "column_1", header=False).refusals  # no header row


def test_short_notes_are_those_under_10_characters_counted_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "CHUNK_ROWS", 2)
    notes = ["a long enough note", "x", "y" * (SHORT_TEXT - 1), "z" * SHORT_TEXT, "another long note", "q"]
    plan = check(file(tmp_path, "s.csv", "text\n" + "\n".join(notes) + "\n"), "text")
    assert plan.warnings == ["s.csv: column 'text': 3 notes are shorter than 10 characters (first at row 2); "
                             "check that this column holds the notes"]


@pytest.mark.parametrize("values, warning", [
    (["A", "", "A", "n/a"], "has one value in every row"),  # missing values are not a second value
    (["A", "A"], "has one value in every row"),  # two rows are enough to tell
    (["A"], None),
    ([str(i) for i in range(MIN_ROWS_FOR_SHAPE)], "has a different value in every row"),
    ([str(i) for i in range(MIN_ROWS_FOR_SHAPE - 1)], None),
])
def test_the_shape_of_a_metadata_column(tmp_path, values, warning):
    rows = "".join(f"note number {i},{v}\n" for i, v in enumerate(values))
    plan = check(file(tmp_path, "m.csv", "text,unit\n" + rows), "text")
    shape = [w for w in plan.warnings if "metadata column 'unit'" in w]
    if warning is None:
        assert shape == []
    else:
        assert len(shape) == 1 and warning in shape[0]
    if warning == "has one value in every row":
        assert shape[0].endswith("it cannot tell notes apart: leave it out unless you need it")
    if warning == "has a different value in every row":
        assert shape[0].endswith("(an id or row index?); it cannot group notes: leave it out, or choose it as "
                                 "the id column")


def test_stray_spaces_are_counted_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "CHUNK_ROWS", 3)
    wards = [" A", "B ", "C", " D ", "E", "F", "G ", "H"]
    rows = "".join(f"note number {i},{w}\n" for i, w in enumerate(wards))
    plan = check(file(tmp_path, "t.csv", "text,ward\n" + rows), "text")
    assert plan.trimmed == {"ward": 4}
    assert "t.csv: column 'ward': 4 values had leading or trailing spaces (e.g. ' A'); they are stored trimmed" \
        in plan.warnings


def test_one_word_notes_read_in_chunks_are_not_taken_for_codes(tmp_path, monkeypatch):
    """Identifier-like means short on average over the whole column, not over its last chunk."""
    monkeypatch.setattr(reading, "CHUNK_ROWS", 3)
    words = [f"hypercholesterolaemia{i:02d}" for i in range(MIN_ROWS_FOR_SHAPE)]  # 23 characters, no space
    assert not check(file(tmp_path, "w.csv", "text\n" + "\n".join(words) + "\n"), "text").refusals
    codes = [f"c{i:03d}" for i in range(MIN_ROWS_FOR_SHAPE)]
    assert check(file(tmp_path, "c.csv", "text\n" + "\n".join(codes) + "\n"), "text").refusals


# ---- what each reader yields ------------------------------------------------------------------------------

def _formats(tmp_path, df: pd.DataFrame) -> dict[str, Path]:
    paths = {fmt: tmp_path / f"notes.{fmt}" for fmt in ("csv", "tsv", "parquet", "jsonl")}
    df.to_csv(paths["csv"], index=False)
    df.to_csv(paths["tsv"], index=False, sep="\t")
    df.to_parquet(paths["parquet"], index=False, row_group_size=2)
    df.to_json(paths["jsonl"], orient="records", lines=True)
    return paths


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl"])
def test_every_format_is_read_in_chunks_of_the_asked_size(tmp_path, fmt):
    df = pd.DataFrame({"text": [f"note {i}" for i in range(5)], "ward": list("ABCAB")})
    path = _formats(tmp_path, df)[fmt]
    chunks = list(reading.read_chunks(path, chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert pd.concat(chunks, ignore_index=True).equals(df)
    assert len(preview(path, n=3)) == 3


def test_a_preview_is_the_first_200_rows(tmp_path):
    path = file(tmp_path, "p.csv", "text\n" + "".join(f"note {i}\n" for i in range(500)))
    assert preview(path)["text"].tolist() == [f"note {i}" for i in range(200)]
    headless = preview(file(tmp_path, "h.csv", "first note,A\nsecond note,B\n"), header=False)
    assert headless.columns.tolist() == ["column_1", "column_2"] and len(headless) == 2


def test_jsonl_blank_lines_nested_values_and_absent_keys(tmp_path):
    lines = ['{"text": "first note", "ward": "A", "tags": [1, 2], "score": 3}', "", "   ",
             '{"text": "second note", "ward": null, "tags": {"a": 1}, "score": 4.5, "flag": true}',
             '{"text": "third note", "ward": "B"}', '{"text": "fourth note"}', '{"text": "fifth note"}']
    chunks = list(reading.read_chunks(file(tmp_path, "n.jsonl", "\n".join(lines) + "\n"), chunk_rows=2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert chunks[0].to_dict("records") == [
        {"text": "first note", "ward": "A", "tags": "[1, 2]", "score": "3", "flag": ""},
        {"text": "second note", "ward": "", "tags": '{"a": 1}', "score": "4.5", "flag": "True"}]
    assert chunks[1].to_dict("records") == [{"text": "third note", "ward": "B"}, {"text": "fourth note", "ward": ""}]
    assert chunks[2].to_dict("records") == [{"text": "fifth note"}]
    last = list(reading.read_chunks(file(tmp_path, "l.jsonl", "\n".join(lines[4:]) + "\n")))
    assert last[0].to_dict("records")[1] == {"text": "fourth note", "ward": ""}


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_jsonl_with_a_byte_order_mark(tmp_path, encoding):
    path = file(tmp_path, "b.jsonl", '{"text": "café note"}\n'.encode(encoding))
    assert next(reading.read_chunks(path)).to_dict("records") == [{"text": "café note"}]


def test_parquet_reads_only_the_columns_asked(tmp_path):
    path = tmp_path / "w.parquet"
    pd.DataFrame({"text": ["a note"], "ward": ["A"], "scan": [b"\x00" * 1000], "tags": [[1]]}).to_parquet(path)
    assert next(reading.read_chunks(path, ["text", "ward"])).columns.tolist() == ["text", "ward"]


def test_a_utf16_big_endian_file_is_read(tmp_path):
    path = file(tmp_path, "be.csv", "\ufefftext,ward\ncafé note,A\n".encode("utf-16-be"))
    assert reading.read_chunks(path).__next__().to_dict("records") == [{"text": "café note", "ward": "A"}]


def test_csv_cells_are_read_as_written(settled_store, tmp_path):
    """Leading zeros, "NA" and empty cells: a delimited file is strings until the metadata is typed."""
    path = file(tmp_path, "c.csv", "id,text,ward,dose\n007,NA,A,1.50\n008,,B,\n009,a real note,NA,2\n")
    assert next(reading.read_chunks(path)).to_dict("records")[0] == {"id": "007", "text": "NA", "ward": "A",
                                                                       "dose": "1.50"}
    result = ingest_file(settled_store, path, "c", "text", "id", ["ward", "dose"], force=True)
    assert (result["rows"], result["skipped"]) == (2, 1)
    docs = settled_store.documents(settled_store.corpus("c"))
    assert docs["doc_id"].tolist() == ["007", "009"] and docs["text"].tolist() == ["NA", "a real note"]
    assert docs["dose"].tolist() == [1.5, 2.0] and docs["ward"].tolist()[0] == "A" and pd.isna(docs["ward"][1])


def test_parquet_nulls_are_missing_and_unchosen_nested_columns_are_not_read(settled_store, tmp_path):
    path = tmp_path / "n.parquet"
    pd.DataFrame({"text": ["first note", None, "third note"], "ward": ["A", None, "B"],
                  "tags": [[1], [2], [3]]}).to_parquet(path, index=False)
    result = ingest_file(settled_store, path, "p", "text", None, ["ward"])
    assert (result["rows"], result["skipped"], result["meta"]) == (2, 1, {"ward": "categorical"})
    plan = check(path, "text", None, ["ward"])
    assert stored_preview(path, plan).columns.tolist() == ["(id)", "(text)", "ward"]
    docs = settled_store.documents(settled_store.corpus("p"))
    assert docs["doc_id"].tolist() == ["1", "3"] and docs["ward"].tolist() == ["A", "B"]


def test_a_dataframe_with_missing_values(settled_store):
    df = pd.DataFrame({"text": ["first note", None, "third note", float("nan")], "ward": ["A", "B", None, "C"],
                       "dose": [1.0, 2.0, float("nan"), 4.0]}, index=[10, 20, 30, 40])
    result = ingest_frame(settled_store, df, "f", "text")
    assert (result["rows"], result["skipped"]) == (2, 2)
    docs = settled_store.documents(settled_store.corpus("f"))
    assert docs["doc_id"].tolist() == ["1", "3"]  # row numbers, not the frame's index
    assert docs["ward"].tolist()[0] == "A" and pd.isna(docs["ward"][1]) and pd.isna(docs["dose"][1])


# ---- what is stored ---------------------------------------------------------------------------------------

def test_metadata_is_stored_typed(settled_store, tmp_path):
    path = file(tmp_path, "t.csv", "text,dose,seen,ward\nfirst note,1.5,2024-01-02,A\nsecond note,,3 Feb 2024,\n"
                                   "third note,-2,2024/03/04 10:30,B\n")
    assert ingest_file(settled_store, path, "t", "text")["meta"] == {"dose": "numeric", "seen": "date", "ward": "categorical"}
    docs = settled_store.documents(settled_store.corpus("t"))
    assert str(docs["dose"].dtype) == "float64" and docs["dose"].tolist()[::2] == [1.5, -2.0]
    assert pd.isna(docs["dose"][1])
    assert docs["seen"].tolist() == [pd.Timestamp(2024, 1, 2), pd.Timestamp(2024, 2, 3),
                                     pd.Timestamp(2024, 3, 4, 10, 30)]
    assert docs["ward"].tolist()[::2] == ["A", "B"] and pd.isna(docs["ward"][1])


def test_without_an_id_column_each_note_is_named_by_its_row_across_chunks(settled_store, tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "CHUNK_ROWS", 3)
    notes = ["first note", "", "third note", "fourth note", "  ", "sixth note", "seventh note", "", "ninth note"]
    path = file(tmp_path, "r.csv", "text\n" + "\n".join(f'"{n}"' for n in notes) + "\n")
    seen = []
    ingest_file(settled_store, path, "r", "text", progress=lambda fraction, message: seen.append((fraction, message)))
    texts = settled_store.texts(settled_store.corpus("r"))
    kept = [i + 1 for i, n in enumerate(notes) if n.strip()]
    assert texts["doc_id"].tolist() == [str(i) for i in kept]
    assert texts["text"].tolist() == [notes[i - 1] for i in kept] and texts["ord"].tolist() == list(range(6))
    with settled_store.connect() as con:
        n_chars = con.execute("SELECT n_chars FROM documents ORDER BY ord").fetchall()
    assert [n for (n,) in n_chars] == [len(notes[i - 1]) for i in kept]
    assert seen == [(2 / 6, "2 of 6 notes stored"), (4 / 6, "4 of 6 notes stored"), (1.0, "6 of 6 notes stored")]


def test_a_single_note_ingest_reports_it_all_stored(settled_store):
    seen = []
    ingest_frame(settled_store, pd.DataFrame({"text": ["the only note"]}), "one", "text",
                 progress=lambda fraction, message: seen.append((fraction, message)))
    assert seen == [(1.0, "1 of 1 notes stored")]


def test_the_stored_preview_is_what_the_store_then_holds(settled_store, tmp_path):
    rows = "".join(f"{100 + i},{'' if i % 7 == 3 else f'note number {i}'}, {'AB'[i % 2]} ,{i / 2}\n"
                   for i in range(30))
    path = file(tmp_path, "p.csv", "nid,body,ward,dose\n" + rows)
    plan = check(path, "body", "nid", ["ward", "dose"])
    shown = stored_preview(path, plan)
    ingest_file(settled_store, path, "p", "body", "nid", ["ward", "dose"])
    stored = settled_store.documents(settled_store.corpus("p"))
    assert len(shown) == 20 - 3  # the first 20 rows, less the 3 without text
    assert shown["(id)"].tolist() == stored["doc_id"].tolist()[:17]
    assert shown["(text)"].tolist() == stored["text"].tolist()[:17]
    assert shown["ward"].tolist() == stored["ward"].tolist()[:17] and shown["dose"].tolist() == stored["dose"].tolist()[:17]
    assert len(stored_preview(path, plan, n=5)) == 5 - 1


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_stored_preview_of_a_file_without_header_or_without_ids(settled_store, tmp_path, fmt):
    frame = pd.DataFrame({"nid": ["n1", "n2", "n3"], "body": ["first note", "", "third note"], "ward": ["A", "B", "C"]})
    if fmt == "csv":
        path = tmp_path / "h.csv"
        frame.to_csv(path, index=False, header=False)
        args = dict(text_col="column_2", id_col=None, meta_cols=["column_3"], header=False)
    else:
        path = tmp_path / "h.parquet"
        frame.to_parquet(path, index=False)
        args = dict(text_col="body", id_col="nid", meta_cols=["ward"])
    shown = stored_preview(path, check(path, **args))
    ingest_file(settled_store, path, "h", **args)
    stored = settled_store.documents(settled_store.corpus("h"))
    assert shown["(id)"].tolist() == stored["doc_id"].tolist() == (["1", "3"] if fmt == "csv" else ["n1", "n3"])
    assert shown["(text)"].tolist() == stored["text"].tolist() == ["first note", "third note"]


def test_the_corpus_and_its_ingest_run_record_how_it_was_read(settled_store, tmp_path):
    path = file(tmp_path, "h.csv", "first note,A,1\nsecond note,B,2\n")
    ingest_file(settled_store, path, "h", "column_1", None, ["column_2"], header=False)
    corpus = settled_store.corpus("h")
    assert (corpus.source, corpus.text_column, corpus.id_column, corpus.meta) == (
        f"file:{path.resolve()}", "column_1", None, {"column_2": "categorical"})
    with settled_store.connect() as con:
        params = json.loads(con.execute("SELECT params FROM corpora WHERE name = 'h'").fetchone()[0])
    assert params == {"text": "column_1", "id": None, "meta": ["column_2"], "header": False}
    run = settled_store.runs("ingest", corpus.id)[0]
    assert run["params"] == {"source": f"file:{path.resolve()}", "text": "column_1", "id": None,
                             "meta": {"column_2": "categorical"}, "header": False, "replace": False}
    assert run["result"] == {"rows": 2, "skipped": 0, "data_hash": corpus.data_hash, "duplicates": 0, "conflicts": 0}
    ingest_frame(settled_store, pd.DataFrame({"text": ["a note", "a note"], "ward": ["A", "B"]}), "h", "text", replace=True)
    corpus = settled_store.corpus("h")
    run = settled_store.runs("ingest", corpus.id)[0]
    assert run["params"] == {"source": "dataframe", "text": "text", "id": None, "meta": {"ward": "categorical"},
                             "header": True, "replace": True}
    assert run["result"] | {"data_hash": None} == {"rows": 2, "skipped": 0, "data_hash": None, "duplicates": 1,
                                                   "conflicts": 1}
    assert corpus_info(settled_store, "h") == {"corpus": "h", "rows": 2, "skipped": 0, "meta": {"ward": "categorical"}}


def test_hashes_are_those_earlier_stores_hold():
    """Pinned: a settled_store written by an earlier version must find its cached vectors and its data hash."""
    assert text_hash("a note") == "e59e940a26a84df0c49b742f28166732"
    assert text_hash("é") == "d4b1b0202b21bb84e60a3d272ecab0db"


def test_the_data_hash_is_that_of_the_ids_and_texts(settled_store, tmp_path):
    ingest_frame(settled_store, pd.DataFrame({"nid": ["a", "b"], "text": ["a note", "é"], "ward": ["A", "B"]}), "x", "text",
                 "nid")
    assert settled_store.corpus("x").data_hash == "01f31d9322805312f199359dc7f97be9"


# ---- choosing the text column, deleting ---------------------------------------------------------------------

def test_the_checks_of_a_dataframe_name_the_corpus(settled_store):
    result = ingest_frame(settled_store, pd.DataFrame({"text": ["the same note"] * 2}), "twice", "text")
    assert result["warnings"] == ["twice: column 'text': 1 notes repeat an earlier note's text exactly (e.g. row 2 "
                                  "repeats row 1); they are kept and embedded once"]


def test_the_default_text_column_is_the_longest_usable_one():
    frame = pd.DataFrame({"a_note": ["a long clinical note here", "another long note"], "z_code": ["x1", "y2"],
                          "n": ["1", "2"]})
    assert default_text_column(frame) == "a_note"
    assert default_text_column(pd.DataFrame({"a": ["1", "2"], "b": ["100", "2000"]})) == "b"  # all numbers


def test_what_a_deletion_would_remove_is_what_it_removes(settled_store):
    ingest_frame(settled_store, pd.DataFrame({"text": ["a note", "another"]}), "gone", "text")
    ingest_frame(settled_store, pd.DataFrame({"text": ["kept note"]}), "kept", "text")
    before = Path(settled_store.path).read_bytes()
    summary = deletion_summary(settled_store, "gone")
    assert Path(settled_store.path).read_bytes() == before
    assert summary == {"corpus": "gone", "deleted": {"documents": 2, "vectors": 0, "maps": 0, "clusters": 0,
                                                     "labels": 0, "runs": 1}}
    with settled_store.transaction() as con:
        con.execute("INSERT INTO jobs (kind, params, state) VALUES ('pretrain', ?, 'queued')",
                    [json.dumps({"corpus": "gone"})])
    queued = Path(settled_store.path).read_bytes()
    busy = ("corpus 'gone' is in use by pretrain job 1; wait for it to finish or cancel it on the Pretrain page, "
            "then try again")
    for attempt in (lambda: delete_corpus(settled_store, "gone"),
                    lambda: ingest_frame(settled_store, pd.DataFrame({"text": ["new"]}), "gone", "text", replace=True)):
        with pytest.raises(StoreError) as info:
            attempt()
        assert str(info.value) == busy
    assert Path(settled_store.path).read_bytes() == queued
    with settled_store.transaction() as con:
        con.execute("UPDATE jobs SET state = 'done'")
    assert delete_corpus(settled_store, "gone") == summary
    assert [c.name for c in settled_store.corpora()] == ["kept"]


def test_the_kind_of_a_column_does_not_depend_on_where_chunks_end(settled_store, tmp_path, monkeypatch):
    """Numbers, then dates in a later chunk: not a date column (its numbers would be stored as missing)."""
    path = file(tmp_path, "k.csv", "text,code\nfirst note,1\nsecond note,2\nthird note,2024-01-05\n")
    assert check(path, "text").meta == {"code": "categorical"}
    monkeypatch.setattr(reading, "CHUNK_ROWS", 2)
    assert check(path, "text").meta == {"code": "categorical"}
    ingest_file(settled_store, path, "k", "text")
    assert settled_store.documents(settled_store.corpus("k"))["code"].tolist() == ["1", "2", "2024-01-05"]
    years = file(tmp_path, "y.csv", "text,seen\nfirst note,2019\nsecond note,2020\nthird note,2024-01-05\n")
    assert check(years, "text").meta == {"seen": "date"}  # years are dates where the rest are
