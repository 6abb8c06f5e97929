"""Data: add a corpus (demo or upload), embed it, see what each corpus holds."""

import hashlib
import tempfile
from pathlib import Path

import streamlit as st

from core.corpus import IngestError, corpus_info, ingest_file, ingest_frame, preview
from core.embed import embed_corpus, long_note_summary
from core.options import EmbedOptions
from core.space import EmbeddingSpace
from core.store import StoreError
from pages.common import corpus_picker, encoder_picker, progress_bar, store
from sample_data.demo import DEMOS

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
            st.session_state["corpus"] = demo

with add_file:
    upload = st.file_uploader("Notes file", type=["csv", "tsv", "parquet", "jsonl"],
                              help="One note per row. Larger-than-memory files: use `notespace ingest`.")
    if upload is not None:
        # One folder per content, so two sessions uploading the same file name never collide.
        folder = Path(tempfile.gettempdir()) / "notespace-uploads" / hashlib.sha256(upload.getbuffer()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Path(upload.name).name
        path.write_bytes(upload.getbuffer())
        try:
            head = preview(path)
        except IngestError as exc:
            st.error(str(exc))
        else:
            st.dataframe(head, hide_index=True, width="stretch")
            columns = [str(c) for c in head.columns]
            guess = next((c for c in columns if c.lower() in ("text", "note", "notes", "review", "body")), columns[0])
            with st.form("ingest_form"):
                name = st.text_input("Corpus name", value=Path(upload.name).stem.replace(" ", "-")[:64])
                text_col = st.selectbox("Text column", columns, index=columns.index(guess))
                id_col = st.selectbox("Id column (optional)", ["(row number)"] + columns, key="ingest_id")
                meta = st.multiselect("Metadata columns", columns, default=[c for c in columns if c not in (text_col, id_col)])
                submitted = st.form_submit_button("Ingest", type="primary", key="ingest_submit")
            if submitted:
                bar, update = progress_bar("Checking the file…")
                try:
                    info = ingest_file(store(), path, name, text_col, None if id_col == "(row number)" else id_col,
                                       [m for m in meta if m not in (text_col, id_col)], progress=update)
                except (IngestError, StoreError) as exc:
                    bar.empty()
                    st.error(str(exc))
                else:
                    st.success(f"Ingested '{info['corpus']}': {info['rows']:,} notes, {info['skipped']} empty skipped; "
                               f"metadata: {', '.join(f'{k} ({v})' for k, v in info['meta'].items()) or 'none'}.")
                    st.session_state["corpus"] = info["corpus"]

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
    if st.button("Embed", type="primary", key="embed"):
        bar, update = progress_bar("Starting…")
        try:
            result = embed_corpus(store(), corpus, EmbedOptions(encoder=encoder, long_notes=long_notes,
                                                               precision=precision), progress=update)
        except StoreError as exc:
            st.error(str(exc))
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
