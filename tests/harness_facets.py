"""AppTest harness: metadata_charts on a synthetic frame; the mask goes back through session state."""

import streamlit as st

from pages.components.facets import metadata_charts
from sample_data.synthetic import synthetic_notes

frame = synthetic_notes(120, seed=1).assign(ord=range(120))
mask = metadata_charts(frame, ["specialty", "site", "age", "visit_date"],
                       selected_ords=st.session_state.get("harness_selected"))
st.session_state["harness_mask"] = mask
st.text(f"{int(mask.sum())} of {len(frame)} notes shown")
