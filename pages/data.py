"""Data: add a corpus (demo or upload), embed it, see what each corpus holds."""

from pathlib import Path

import streamlit as st

from core.corpus import (IngestError, InMemoryFile, check, corpus_info, default_text_column, delete_corpus,
                         deletion_summary, ingest_file, ingest_frame, preview, stored_preview)
from core.embed import embed_corpus, long_note_summary
from core.options import EmbedOptions
from core.scale import embed_on_ray, ray_installed
from core.space import EmbeddingSpace
from core.store import StoreError
from pages.common import choose, corpus_picker, encoder_picker, failure_text, progress_bar, show_failure, store
from sample_data.demo import DEMOS

ROW_NUMBER = "(row number)"
CHOICES = ("ingest_text", "ingest_id", "ingest_meta", "ingest_name", "ingest_force", "ingest_replace")


def upload_section(upload) -> None:
    """Choose columns, see exactly what will be stored and what is odd about the file, then ingest. No form:
    every widget keeps its own value whatever order they are touched in, and Enter never ingests."""
    file = InMemoryFile(upload.name, upload.getvalue())  # parsed from memory: no copy of the notes on disk
    no_header = st.checkbox("No header row (the first line is a note)", key="ingest_no_header",
                            help="Columns are then named column_1, column_2, ...")
    if st.session_state.get("ingest_file") != (upload.file_id, no_header):  # a new file: fresh choices
        for key in CHOICES:
            st.session_state.pop(key, None)
        st.session_state["ingest_file"] = (upload.file_id, no_header)
    try:
        head = preview(file, header=not no_header)
    except IngestError as exc:
        st.error(str(exc))
        return
    st.caption("The file as read:")
    st.dataframe(head.head(20), hide_index=True, width="stretch")
    columns = [str(c) for c in head.columns]
    guess = default_text_column(head)
    left, middle = st.columns(2)
    text_col = left.selectbox("Text column", columns, index=columns.index(guess), key="ingest_text",
                              help="Suggested: the column with the longest texts that is neither numbers nor ids")
    id_choice = middle.selectbox("Id column (optional)", [ROW_NUMBER] + columns, key="ingest_id")
    id_col = None if id_choice == ROW_NUMBER else id_choice
    meta = st.multiselect("Metadata columns", columns, default=[c for c in columns if c != guess], key="ingest_meta")
    name = st.text_input("Corpus name", value=Path(upload.name).stem.replace(" ", "-")[:64], key="ingest_name")
    choice = (upload.file_id, no_header, text_col, id_col, tuple(meta))
    if st.session_state.get("ingest_checked", (None,))[0] != choice:  # one pass over the file per choice, not per rerun
        try:
            st.session_state["ingest_checked"] = (choice, check(file, text_col, id_col, meta, header=not no_header))
        except IngestError as exc:
            st.error(str(exc))
            return
    plan = st.session_state["ingest_checked"][1]
    st.markdown("**What will be stored**")
    st.caption(f"{plan.rows:,} notes from column '{text_col}' ({plan.skipped:,} empty skipped), ids from "
               f"{repr(id_col) if id_col else 'the row number'}, metadata: "
               f"{', '.join(f'{k} ({v})' for k, v in plan.meta.items()) or 'none'}; {plan.duplicates:,} duplicate "
               f"texts, {plan.conflicts:,} groups of identical texts with different metadata.")
    st.dataframe(stored_preview(file, plan), hide_index=True, width="stretch")
    for warning in plan.warnings:
        st.warning(warning)
    for refusal in plan.refusals:
        st.error(refusal)
    force = bool(plan.refusals) and st.checkbox("Store it anyway", key="ingest_force")
    exists = name in [c.name for c in store().corpora()]
    replace = exists and st.checkbox(f"Replace the corpus '{name}' that exists already", key="ingest_replace")
    if st.button("Ingest", type="primary", key="ingest_submit", disabled=bool(plan.refusals) and not force):
        bar, update = progress_bar("Storing the notes…")
        try:
            info = ingest_file(store(), file, name, text_col, id_col, meta, progress=update, header=not no_header,
                               force=force, replace=replace)
        except (IngestError, StoreError) as exc:
            bar.empty()
            st.error(str(exc))
        else:
            st.success(f"Ingested '{info['corpus']}': {info['rows']:,} notes, {info['skipped']} empty skipped; "
                       f"metadata: {', '.join(f'{k} ({v})' for k, v in info['meta'].items()) or 'none'}.")
            choose(corpus=info["corpus"])


def delete_section() -> None:
    names = [c.name for c in store().corpora()]
    if outcome := st.session_state.pop("delete_outcome", None):
        (st.success if outcome[0] == "success" else st.error)(outcome[1])
    if not names:
        return
    name = st.selectbox("Corpus to delete", names, index=None, key="delete_name", placeholder="Choose a corpus")
    if name is None:
        return
    d = deletion_summary(store(), name)["deleted"]
    st.warning(f"Deleting '{name}' removes its {d['documents']:,} notes and their metadata, {d['vectors']:,} vectors "
               f"no other corpus uses, {d['maps']} maps, {d['clusters']} clusterings, {d['labels']:,} labels made on "
               f"its maps and {d['runs']} recorded runs. Adapted encoders stay.")
    confirm = st.checkbox(f"Yes, delete '{name}'", key="delete_confirm")
    st.button("Delete corpus", key="delete_button", disabled=not confirm, on_click=_delete, args=(name,))


def _delete(name: str) -> None:
    try:
        d = delete_corpus(store(), name)["deleted"]
    except Exception as exc:
        st.session_state["delete_outcome"] = ("error", failure_text(exc))
        return
    st.session_state["delete_outcome"] = ("success", f"Deleted '{name}': {d['documents']:,} notes, {d['vectors']:,} "
                                                     f"vectors, {d['maps']} maps, {d['clusters']} clusterings, "
                                                     f"{d['labels']:,} labels, {d['runs']} runs.")
    for key in ("delete_name", "delete_confirm"):
        st.session_state.pop(key, None)


st.title("Data")
add_demo, add_file = st.tabs(["Demo corpus", "Upload a file"])

with add_demo:
    st.caption("Real public health text read from installed packages: drug reviews (979), "
               "HPO definitions (~10.6k, organ system), ICD-10-CM descriptions (large).")
    demo = st.selectbox("Demo corpus", list(DEMOS), key="demo_name")
    if st.button("Load demo corpus", type="primary", key="load_demo"):
        try:
            info = corpus_info(store(), demo)
            st.info(f"'{demo}' is already loaded ({info['rows']:,} notes).")
        except StoreError:
            loader, text, id_col, meta = DEMOS[demo]
            bar, update = progress_bar(f"Building '{demo}'…")
            info = ingest_frame(store(), loader(), demo, text, id_col, meta, source=f"demo:{demo}", progress=update)
            st.success(f"Loaded '{demo}': {info['rows']:,} notes, {info['skipped']} skipped.")
            choose(corpus=demo)

with add_file:
    upload = st.file_uploader("Notes file", type=["csv", "tsv", "parquet", "jsonl"],
                              help="One note per row. Larger-than-memory files: use `notespace ingest`.")
    if upload is not None:
        upload_section(upload)

st.divider()
st.subheader("Embed")
corpus = corpus_picker()
if corpus:
    left, middle, right = st.columns(3)
    with left:
        encoder = encoder_picker()
    long_notes = middle.radio(
        "Notes longer than the model's window", ["auto", "chunk", "truncate"], horizontal=True,
        format_func={"auto": "auto", "chunk": "read whole", "truncate": "cut"}.get, key="embed_long_notes",
        help="read whole: embed every overlapping window of a long note and average them; cut: only its first "
             "window. auto: as the corpus was last embedded, else read whole when more than 10% of its notes "
             "are longer than the window")
    precision = right.selectbox("Precision", ["auto", "fp32", "bf16"], help="auto: bf16 where the CPU supports it")
    engine, address, workers = "local", None, None
    if ray_installed():  # the extra 'scale': `notespace embed --engine ray`, with its progress here too
        engine_col, address_col, workers_col = st.columns(3)
        engine = engine_col.radio("Engine", ["local", "ray"], horizontal=True, key="embed_engine",
                                  format_func={"local": "this process", "ray": "Ray"}.get,
                                  help="Ray: the notes go out as Parquet shards to Ray workers, the vectors come "
                                       "back into this store (docs/scale.md)")
        if engine == "ray":
            address = address_col.text_input("Ray address", key="embed_ray_address",
                                             placeholder="empty: a local Ray on this machine (loopback only)") or None
            workers = int(workers_col.number_input("Ray workers", 1, 256, 1, key="embed_ray_workers"))
    if st.button("Embed", type="primary", key="embed"):
        bar, update = progress_bar("Starting Ray…" if engine == "ray" else "Loading the encoder…")
        opts = EmbedOptions(encoder=encoder, long_notes=long_notes, precision=precision)
        try:
            result = (embed_on_ray(store(), corpus, opts, address, workers, progress=update) if engine == "ray"
                      else embed_corpus(store(), corpus, opts, progress=update))
        except Exception as exc:
            show_failure(exc)
        else:
            bar.progress(1.0, text="Done")
            repeats = result["n"] - result["cached"] - result["computed"]
            st.success(f"{result['n']:,} notes: {result['computed']:,} embedded now, {result['cached']:,} "
                       f"from the cache ({result['seconds']:.1f} s)"
                       + (f"; {repeats:,} repeat the text of another note and share its vector" if repeats > 0 else "")
                       + f". Embedding space: {EmbeddingSpace(**result['embedding']).describe()}.")
            if result["longer"]:
                st.info(long_note_summary(result) + ".")
    c = store().corpus(corpus)
    st.caption(f"**{c.name}**: {c.n_docs:,} notes ({c.skipped} empty skipped) from `{c.source}`; "
               f"metadata: {', '.join(f'{k} ({v})' for k, v in c.meta.items()) or 'none'}")
    st.dataframe(store().documents(c, limit=50), hide_index=True, width="stretch")

st.divider()
with st.expander("Delete a corpus"):
    delete_section()
