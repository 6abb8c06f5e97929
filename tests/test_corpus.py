import hashlib
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import core.ingest.read as reading
from core.corpus import IngestError, ingest_file, ingest_frame


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_all_formats(df, tmp_path):
    paths = {"csv": tmp_path / "notes.csv", "tsv": tmp_path / "notes.tsv",
             "parquet": tmp_path / "notes.parquet", "jsonl": tmp_path / "notes.jsonl"}
    df.to_csv(paths["csv"], index=False)
    df.to_csv(paths["tsv"], index=False, sep="\t")
    df.to_parquet(paths["parquet"], index=False)
    df.to_json(paths["jsonl"], orient="records", lines=True, date_format="iso")
    return paths


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl"])
def test_ingest_each_format_detects_types(settled_store, synthetic_df, tmp_path, fmt):
    path = write_all_formats(synthetic_df, tmp_path)[fmt]
    result = ingest_file(settled_store, path, f"notes-{fmt}", "text", "note_id", ["specialty", "site", "age", "visit_date"])
    assert result == {"corpus": f"notes-{fmt}", "rows": 120, "skipped": 0,
                      "meta": {"specialty": "categorical", "site": "categorical", "age": "numeric",
                               "visit_date": "date"},
                      "duplicates": 0, "conflicts": 0, "warnings": []}
    docs = settled_store.documents(settled_store.corpus(f"notes-{fmt}"))
    assert docs["doc_id"].tolist() == synthetic_df["note_id"].tolist()
    assert docs["text"].tolist() == synthetic_df["text"].tolist()
    assert docs["age"].tolist() == synthetic_df["age"].astype(float).tolist()
    assert str(docs["visit_date"].dtype).startswith("datetime64")


def test_streaming_in_small_chunks_gives_the_same_corpus(settled_store, synthetic_df, tmp_path, monkeypatch):
    path = write_all_formats(synthetic_df, tmp_path)["csv"]
    ingest_file(settled_store, path, "whole", "text", "note_id")
    monkeypatch.setattr(reading, "CHUNK_ROWS", 7)
    ingest_file(settled_store, path, "chunked", "text", "note_id")
    whole, chunked = settled_store.documents(settled_store.corpus("whole")), settled_store.documents(settled_store.corpus("chunked"))
    pd.testing.assert_frame_equal(whole, chunked)
    assert settled_store.corpus("whole").data_hash == settled_store.corpus("chunked").data_hash


def test_empty_texts_are_skipped_and_counted(settled_store, tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("text,ward\nfirst note,A\n   ,B\n,C\nlast note,D\n", encoding="utf-8")
    result = ingest_file(settled_store, path, "n", "text")
    assert (result["rows"], result["skipped"]) == (2, 2)
    assert settled_store.documents(settled_store.corpus("n"))["doc_id"].tolist() == ["1", "4"]  # row numbers survive skips


def test_bom_and_utf16_and_quoted_newlines_are_read(settled_store, tmp_path):
    text = 'text,ward\n"line one\nline two",A\ncafé,B\n'
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    (tmp_path / "u16.csv").write_bytes(text.encode("utf-16"))
    for name in ("bom", "u16"):
        result = ingest_file(settled_store, tmp_path / f"{name}.csv", name, "text")
        assert result["rows"] == 2 and result["meta"] == {"ward": "categorical"}
        assert settled_store.documents(settled_store.corpus(name))["text"].tolist() == ["line one\nline two", "café"]


def test_a_parquet_file_with_the_wrong_extension_is_still_read(settled_store, synthetic_df, tmp_path):
    path = tmp_path / "export.csv"
    synthetic_df.to_parquet(path, index=False)
    assert ingest_file(settled_store, path, "p", "text", "note_id")["rows"] == 120


BAD_INPUTS = {
    "empty": (lambda p: p.write_bytes(b""), "notes.csv", "empty"),
    "header only": (lambda p: p.write_text("text,ward\n"), "notes.csv", "header but no rows"),
    "missing column": (lambda p: p.write_text("body,ward\nx,A\n"), "notes.csv", "no column 'text'"),
    "latin-1": (lambda p: p.write_bytes("text\ncaf\xe9\n".encode("latin-1")), "notes.csv", "not UTF-8"),
    "ragged": (lambda p: p.write_text("text,ward\na,A\nb,B,extra\n"), "notes.csv", "line 3"),
    "all empty": (lambda p: p.write_text("text,ward\n ,A\n,B\n"), "notes.csv", "all 2 texts"),
    "broken jsonl": (lambda p: p.write_text('{"text": "a"}\n{"text": \n'), "notes.jsonl", "line 2"),
    "not parquet": (lambda p: p.write_text("text\na\n"), "notes.parquet", "not a Parquet file"),
    "nested parquet": (lambda p: pd.DataFrame({"text": ["a"], "tags": [[1, 2]]}).to_parquet(p), "notes.parquet",
                       "column 'tags' holds nested values"),
    # its schema is its header; a reader that yielded no chunk at all would say "no rows" instead
    "parquet without row groups": (lambda p: pq.ParquetWriter(p, pa.schema([("text", pa.string())])).close(),
                                   "notes.parquet", "notes.parquet: the file has a header but no rows"),
    "jsonl of blank lines": (lambda p: p.write_text("\n  \n\n"), "notes.jsonl", "notes.jsonl: the file has no rows"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_named_and_leaves_the_store_unchanged(settled_store, tmp_path, case):
    make, filename, expected = BAD_INPUTS[case]
    path = tmp_path / filename
    make(path)
    before = digest(settled_store.path)
    meta = ["tags"] if case == "nested parquet" else None
    with pytest.raises(IngestError, match=expected) as info:
        ingest_file(settled_store, path, "bad", "text", None, meta)
    assert filename in str(info.value) or case == "empty"
    assert digest(settled_store.path) == before
    assert settled_store.corpora() == []


def test_a_failure_while_writing_rolls_back(settled_store, synthetic_df):
    ingest_frame(settled_store, synthetic_df, "taken", "text", "note_id")
    with pytest.raises(IngestError, match="exists already; choose another name, or replace it"):
        ingest_frame(settled_store, synthetic_df, "taken", "text", "note_id")
    assert [c.name for c in settled_store.corpora()] == ["taken"]
    assert settled_store.summary()["documents"] == 120


def test_mixed_metadata_and_missing_values(settled_store):
    df = pd.DataFrame({"text": ["a", "b", "c", "d"], "score": ["1", "2.5", "", "NaN"],
                       "mixed": ["1", "two", "", "3"], "when": ["2024-01-02", "2024-02-03", "", "2024-03-04"]})
    result = ingest_frame(settled_store, df, "m", "text")
    assert result["meta"] == {"score": "numeric", "mixed": "categorical", "when": "date"}
    docs = settled_store.documents(settled_store.corpus("m"))
    assert docs["score"].isna().tolist() == [False, False, True, True]
    assert docs["mixed"].tolist()[:2] == ["1", "two"] and pd.isna(docs["mixed"].iloc[2])


def test_huge_single_text_is_kept(settled_store):
    big = "word " * 1_000_000  # 5 MB
    result = ingest_frame(settled_store, pd.DataFrame({"text": [big, "small"]}), "big", "text")
    assert result["rows"] == 2
    assert settled_store.documents(settled_store.corpus("big"))["text"].str.len().max() == len(big)


def test_ingest_records_a_run_with_its_inputs(settled_store, synthetic_df):
    ingest_frame(settled_store, synthetic_df, "prov", "text", "note_id", ["specialty"])
    run = settled_store.runs("ingest")[0]
    assert run["params"]["meta"] == {"specialty": "categorical"}
    assert run["result"]["data_hash"] == settled_store.corpus("prov").data_hash
    assert json.dumps(run)  # provenance is plain JSON


# ---- delete and replace, table by table, on a settled_store holding vectors, maps, clusters, labels and runs ---


def _rows(store) -> dict[str, list[tuple]]:
    with store.connect() as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {t: con.execute(f"SELECT * FROM {t}").fetchall() for t in tables}


def _columns(store, table: str) -> list[str]:
    with store.connect() as con:
        return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


def _sorted(rows) -> list[str]:
    return sorted(map(repr, rows))


@pytest.fixture()
def full_store(settled_store, models_dir):
    """Two corpora sharing 5 texts, each embedded, mapped, clustered and labelled with the tiny encoder."""
    from core.clusters import cluster_corpus
    from core.embed import embed_corpus
    from core.labels import add_labels
    from core.maps import project_corpus
    from core.options import ClusterOptions, EmbedOptions, ProjectOptions
    from sample_data.synthetic import synthetic_notes

    keep = synthetic_notes(80, seed=1)
    gone = pd.concat([synthetic_notes(40, seed=2), keep.iloc[:5]], ignore_index=True)
    gone["note_id"] = [f"g{i}" for i in range(len(gone))]
    for name, frame in (("keep", keep), ("gone", gone)):
        ingest_frame(settled_store, frame, name, "text", "note_id", ["specialty"])
        embed_corpus(settled_store, name, EmbedOptions(encoder="tiny"))
        project_corpus(settled_store, name, ProjectOptions(encoder="tiny", method="pca"))
        cluster_corpus(settled_store, name, ClusterOptions(encoder="tiny", method="kmeans", k=3))
        add_labels(settled_store, name, "triage", [0, 1, 2], "urgent")
    return settled_store


def _expected_after_deleting(store, before: dict, corpus_id: int, keep_hashes: set) -> dict:
    """Every table as it was, less the rows keyed by the corpus (and its runs), and less the vectors of
    texts that only that corpus held."""
    runs = {r[0] for r in before["runs"] if r[2] == corpus_id}
    own = {r[4] for r in before["documents"] if r[0] == corpus_id} - keep_hashes
    expected = {}
    for table, rows in before.items():
        if table == f"meta_c{corpus_id}":
            continue
        cols = _columns(store, table)
        if table == "corpora":
            rows = [r for r in rows if r[0] != corpus_id]
        elif "corpus_id" in cols:
            rows = [r for r in rows if r[cols.index("corpus_id")] != corpus_id]
        elif "run_id" in cols:
            rows = [r for r in rows if r[cols.index("run_id")] not in runs]
        elif table.startswith("vectors_d"):
            rows = [r for r in rows if r[cols.index("text_hash")] not in own]
        expected[table] = _sorted(rows)
    return expected


def test_delete_removes_exactly_what_is_keyed_by_the_corpus(full_store, capsys):
    from core.cli import main as cli_main

    gone, keep = full_store.corpus("gone"), full_store.corpus("keep")
    before = _rows(full_store)
    keep_hashes = {r[4] for r in before["documents"] if r[0] == keep.id}
    expected = _expected_after_deleting(full_store, before, gone.id, keep_hashes)
    assert cli_main(["--db", str(full_store.path), "delete", "gone"]) == 0
    result = json.loads(capsys.readouterr().out)
    after = _rows(full_store)
    assert {t: _sorted(rows) for t, rows in after.items()} == expected
    gone_runs = [r for r in before["runs"] if r[2] == gone.id]
    assert result == {"corpus": "gone", "deleted": {
        "documents": 45, "vectors": len(before["vectors_d32"]) - len(after["vectors_d32"]),
        "maps": sum(r[1] == "projection" for r in gone_runs), "clusters": sum(r[1] == "cluster" for r in gone_runs),
        "labels": 3, "runs": len(gone_runs)}}
    assert result["deleted"]["vectors"] == 40  # the 5 texts "keep" also holds keep their vectors
    assert (result["deleted"]["maps"], result["deleted"]["clusters"]) == (1, 1)
    assert after["encoders"] == before["encoders"]  # adapted encoders are never deleted with a corpus


def test_delete_of_an_unknown_corpus_is_one_line_and_changes_nothing(settled_store, capsys):
    from core.cli import main as cli_main

    ingest_frame(settled_store, pd.DataFrame({"text": ["a note", "another"]}), "there", "text")
    before = _rows(settled_store)
    assert cli_main(["--db", str(settled_store.path), "delete", "nowhere"]) != 0
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "no corpus named 'nowhere'" in err
    assert _rows(settled_store) == before


def test_delete_waits_for_a_job_on_the_corpus(settled_store):
    from core.corpus import delete_corpus
    from core.store import StoreError

    ingest_frame(settled_store, pd.DataFrame({"text": ["a note", "another"]}), "busy", "text")
    with settled_store.transaction() as con:
        con.execute("INSERT INTO jobs (kind, params, state) VALUES ('pretrain', ?, 'running')",
                    [json.dumps({"corpus": "busy"})])
    before = _rows(settled_store)
    with pytest.raises(StoreError, match="corpus 'busy' is in use by pretrain job 1"):
        delete_corpus(settled_store, "busy")
    assert _rows(settled_store) == before


def test_replace_is_all_or_nothing(full_store, tmp_path, capsys):
    from core.cli import main as cli_main

    gone, keep = full_store.corpus("gone"), full_store.corpus("keep")
    old_texts = full_store.texts(gone)["text"]
    path = tmp_path / "new.csv"
    pd.DataFrame({"text": [str(i) for i in range(30)]}).to_csv(path, index=False)  # numbers: refused
    before = _rows(full_store)
    args = ["--db", str(full_store.path), "ingest", str(path), "--name", "gone", "--text", "text", "--replace"]
    assert cli_main(args) != 0
    assert "holds only numbers" in capsys.readouterr().err
    assert _rows(full_store) == before  # the old corpus untouched

    new_texts = list(old_texts[:10]) + [f"a brand new note number {i}" for i in range(7)]
    pd.DataFrame({"text": new_texts}).to_csv(path, index=False)
    assert cli_main(args) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 17
    after = _rows(full_store)
    new = full_store.corpus("gone")
    keep_hashes = {r[4] for r in before["documents"] if r[0] == keep.id} | {r[4] for r in after["documents"]
                                                                             if r[0] == new.id}
    expected = _expected_after_deleting(full_store, before, gone.id, keep_hashes)
    for table, rows in expected.items():
        if table in ("corpora", "documents", "runs"):  # the new corpus's rows are added
            rows = sorted(rows + _sorted(r for r in after[table] if (r[0] if table == "corpora" else r[0 if
                          table == "documents" else 2]) == new.id))
        assert _sorted(after[table]) == rows, table
    assert full_store.texts(new)["text"].tolist() == new_texts
    from core.embed import embed_corpus
    from core.options import EmbedOptions

    assert embed_corpus(full_store, "gone", EmbedOptions(encoder="tiny"))["computed"] == 7  # shared vectors kept
