"""AppTest of the Data page: load a demo corpus, embed it, see the cache at work."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture()
def data_page(db_path, models_dir):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/data.py").run()
    assert not at.exception
    return at


def test_load_demo_then_embed_then_cached(data_page, db_path):
    at = data_page
    at.selectbox(key="demo_name").select("drug-reviews")
    at.button(key="load_demo").click().run()
    assert not at.exception
    assert any("Loaded 'drug-reviews': 979 notes" in s.value for s in at.success)
    at.selectbox(key="encoder").select("tiny")
    at.button(key="embed").click().run()
    assert any("979 notes: 978 embedded now" in s.value for s in at.success), [s.value for s in at.success]
    at.button(key="embed").click().run()
    assert any("978 from the cache" in s.value or "979 from the cache" in s.value for s in at.success)
    at.button(key="load_demo").click().run()
    assert any("already loaded" in i.value for i in at.info)


def test_empty_store_points_to_the_demo(data_page):
    assert data_page.selectbox(key="demo_name").value == "drug-reviews"
    assert any("No corpus yet" in i.value for i in data_page.info)
