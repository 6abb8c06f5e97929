"""Home: the workflow in one glance, and what the store holds."""

import pandas as pd
import streamlit as st

from pages.common import store

st.title("NoteSpace")
st.markdown(
    "See, measure and improve how a language model organises **your** notes — entirely on this machine. "
    "Nothing is sent anywhere."
)

steps = [
    ("Data", "pages/data.py", "Upload notes (CSV, TSV, Parquet, JSONL) or load a demo corpus; embed them."),
    ("Explore", "pages/explore.py", "Maps coloured by any metadata, clusters, selection, search, two encoders side by side."),
    ("Pretrain", "pages/pretrain.py", "Adapt the encoder to your notes: MLM, DeCLUTR or metadata-contrastive."),
    ("Separability", "pages/separability.py", "How well each metadata column separates in each encoder's space."),
    ("Few-shot", "pages/fewshot.py", "Learning curves of classifiers trained on a few labelled notes."),
]
for column, (title, page, text) in zip(st.columns(len(steps)), steps):
    with column:
        st.page_link(page, label=title, icon=":material/arrow_forward:")
        st.caption(text)

st.subheader("In the store")
s = store()
counts = s.summary()
metrics = st.columns(4)
metrics[0].metric("Corpora", counts["corpora"])
metrics[1].metric("Notes", f"{counts['documents']:,}")
metrics[2].metric("Encoders", counts["encoders"])
metrics[3].metric("Cached vectors", f"{counts['vectors']:,}")
corpora = s.corpora()
if corpora:
    st.dataframe(
        pd.DataFrame([{"corpus": c.name, "notes": c.n_docs, "skipped": c.skipped, "source": c.source,
                       "metadata": ", ".join(f"{k} ({v})" for k, v in c.meta.items())} for c in corpora]),
        hide_index=True, width="stretch",
    )
else:
    st.info("The store is empty. Start on the **Data** page.")
st.caption(f"Store: `{s.path}`")
