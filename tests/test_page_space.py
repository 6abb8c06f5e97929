"""AppTest: the embedding space chosen on the Data page (whole notes) is the one Explore, search,
Compare, Separability and Few-shot read, and none of them embeds the corpus again."""

import shutil
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import core.embed
from core.corpus import ingest_frame
from core.store import Store

pytestmark = pytest.mark.filterwarnings("ignore:precomputed_knn")
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def settle(at) -> None:
    """Wait for the clustering the Explore page starts in the background, then rerun as its poll would."""
    for thread in threading.enumerate():
        if thread.name == "notespace-cluster":
            thread.join(300)
    at.run()


def test_the_data_pages_space_is_read_everywhere_without_embedding_again(db_path, models_dir, synthetic_df,
                                                                         monkeypatch):
    shutil.copytree(models_dir / "tiny", models_dir / "tiny2")  # a second encoder for Compare
    ingest_frame(Store(db_path), synthetic_df, "clinic", "text", "note_id", ["specialty"])
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("pages/data.py").run()
    for encoder in ("tiny", "tiny2"):
        at.selectbox(key="encoder").select(encoder).run()
        at.radio(key="embed_long_notes").set_value("chunk")
        at.button(key="embed").click().run()
        assert not at.exception
        # tiny2 has tiny's weights: the same fingerprint, so its vectors come from the cache
        assert any(f"Embedding space: {encoder} (whole notes" in s.value for s in at.success), \
            [s.value for s in at.success] + [e.value for e in at.error]

    def embedded_again(*args, **kwargs):
        raise AssertionError("vectors were computed and written again")

    monkeypatch.setattr(core.embed, "write_vectors", embedded_again)  # the spy: no page may embed again

    at.session_state["explore_method"] = "pca"  # no UMAP job in the background
    at.switch_page("pages/explore.py").run()
    at.selectbox(key="encoder").select("tiny").run()
    settle(at)
    assert not at.exception and not at.error
    assert not any("is not embedded" in i.value for i in at.info)
    assert "PCA of tiny (whole notes, 256-token windows" in at.caption[0].value
    at.text_input(key="explore_query").input("chest pain").run()
    assert not at.exception
    assert any("full 32-d tiny (whole notes" in c.value for c in at.caption)
    at.radio(key="explore_view").set_value("Compare").run()
    assert not at.exception and not at.error
    assert any("PCA of tiny2 (whole notes" in m.value for m in at.markdown)

    at.switch_page("pages/separability.py").run()
    at.multiselect(key="sep_encoders").set_value(["tiny"]).run()
    at.button(key="sep_run").click().run()
    assert not at.exception and not at.error

    at.switch_page("pages/fewshot.py").run()
    at.multiselect(key="fs_encoders").set_value(["tiny"])
    at.multiselect(key="fs_shots").set_value([1, 2])
    at.number_input(key="fs_seeds").set_value(1)
    at.button(key="fs_run").click().run()
    assert not at.exception and not at.error
