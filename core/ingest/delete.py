"""Deleting a corpus, or the one an ingest replaces: everything keyed by it, counted first for the
confirmation, and never while a job uses it."""

from __future__ import annotations

from core.jobs import ACTIVE
from core.store import Store, StoreError, meta_table

VECTOR_TABLES = "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'vectors_d%'"
OWN_TEXTS = ("SELECT text_hash FROM documents WHERE corpus_id = ? EXCEPT "
             "SELECT text_hash FROM documents WHERE corpus_id <> ?")  # texts no other corpus holds


def refuse_if_busy(con, name: str) -> None:
    busy = con.execute("SELECT id, kind FROM jobs WHERE list_contains(?, state) AND "
                       "json_extract_string(params, '$.corpus') = ? ORDER BY id", [list(ACTIVE), name]).fetchall()
    if busy:
        raise StoreError(f"corpus '{name}' is in use by {busy[0][1]} job {busy[0][0]}; wait for it to finish or "
                         "cancel it on the Pretrain page, then try again")


def _doomed(con, corpus_id: int) -> dict[str, int]:
    """How many rows deleting the corpus removes, by kind."""
    def count(sql: str, params: list) -> int:
        return int(con.execute(sql, params).fetchall()[0][0])

    return {
        "documents": count("SELECT count(*) FROM documents WHERE corpus_id = ?", [corpus_id]),
        "vectors": sum(count(f"SELECT count(*) FROM {t[0]} WHERE text_hash IN ({OWN_TEXTS})", [corpus_id, corpus_id])
                       for t in con.execute(VECTOR_TABLES).fetchall()),
        "maps": count("SELECT count(*) FROM runs WHERE corpus_id = ? AND kind = 'projection'", [corpus_id]),
        "clusters": count("SELECT count(*) FROM runs WHERE corpus_id = ? AND kind = 'cluster'", [corpus_id]),
        "labels": count("SELECT count(*) FROM map_labels WHERE corpus_id = ?", [corpus_id]),
        "runs": count("SELECT count(*) FROM runs WHERE corpus_id = ?", [corpus_id]),
    }


def delete_rows(con, corpus_id: int) -> dict[str, int]:
    """Everything keyed by the corpus: documents, metadata, runs (ingest, maps, clusters, evaluations) with
    their rows, labels made on its maps, the embedding spaces it remembers, and the vectors of texts no other corpus holds. Encoders stay."""
    deleted = _doomed(con, corpus_id)
    for (table,) in con.execute(VECTOR_TABLES).fetchall():
        con.execute(f"DELETE FROM {table} WHERE text_hash IN ({OWN_TEXTS})", [corpus_id, corpus_id])
    for table in ("projections", "cluster_members", "cluster_labels"):
        con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT id FROM runs WHERE corpus_id = ?)", [corpus_id])
    for table in ("runs", "map_labels", "corpus_spaces", "documents"):
        con.execute(f"DELETE FROM {table} WHERE corpus_id = ?", [corpus_id])
    con.execute(f"DROP TABLE IF EXISTS {meta_table(corpus_id)}")
    con.execute("DELETE FROM corpora WHERE id = ?", [corpus_id])
    return deleted


def deletion_summary(store: Store, name: str) -> dict:
    """What deleting the corpus would remove, counted without removing anything (for the confirmation)."""
    c = store.corpus(name)
    with store.connect() as con:
        return {"corpus": c.name, "deleted": _doomed(con, c.id)}


def delete_corpus(store: Store, name: str) -> dict:
    """Delete a corpus and everything keyed by it, all or nothing; returns {"corpus", "deleted": counts}."""
    c = store.corpus(name)
    with store.transaction() as con:
        refuse_if_busy(con, c.name)
        deleted = delete_rows(con, c.id)
    return {"corpus": c.name, "deleted": deleted}
