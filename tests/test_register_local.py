"""Registering a local sentence-transformers folder: `notespace encoders --add` and the app's form."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.encoders import list_encoders
from core.store import Store

HARNESS = str(Path(__file__).resolve().parent / "harness_register.py")


def notespace(*args, db):
    return subprocess.run([sys.executable, "-m", "core.cli", *map(str, args)], capture_output=True, text=True,
                          env=os.environ | {"NOTESPACE_DB": str(db)}, timeout=300)


def local_encoders(db) -> list[str]:
    return [e.id for e in list_encoders(Store(db)) if e.kind == "local"]


@pytest.fixture()
def pickled(tmp_path, tiny_encoder_path) -> Path:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_encoder_path, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    return folder


@pytest.fixture()
def custom_code(tmp_path, tiny_encoder_path) -> Path:
    """A folder whose modules.json names a class of its own: loading it would run the folder's code."""
    folder = tmp_path / "custom"
    shutil.copytree(tiny_encoder_path, folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules[0]["type"] = "custom_module.Transformer"
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "custom_module.py").write_text("raise SystemExit('custom code ran')\n")
    return folder


def test_cli_adds_a_local_folder_that_lists_and_embeds(db_path, tiny_encoder_path, tmp_path, synthetic_df):
    added = notespace("encoders", "--add", tiny_encoder_path, "--name", "mine", db=db_path)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"id": "mine", "name": "mine", "kind": "local", "dim": 32}
    listed = json.loads(notespace("encoders", db=db_path).stdout)
    assert {"id": "mine", "name": "mine", "kind": "local", "dim": 32} in listed
    notes = tmp_path / "notes.csv"
    synthetic_df.head(12).to_csv(notes, index=False)
    assert notespace("ingest", notes, "--name", "clinic", "--text", "text", db=db_path).returncode == 0
    embedded = notespace("embed", "--corpus", "clinic", "--encoder", "mine", db=db_path)
    assert embedded.returncode == 0, embedded.stderr
    assert json.loads(embedded.stdout)["computed"] == 12


@pytest.mark.parametrize("folder, message", [
    ("pickled", "has no .safetensors weights"),
    ("custom_code", "not part of Sentence Transformers"),
    ("missing", "does not exist"),
    ("tiny_encoder_path:minilm", "the name 'minilm' is taken by the packaged encoder"),
])
def test_cli_refuses_a_bad_folder_with_one_line_and_registers_nothing(db_path, tmp_path, request, folder, message):
    fixture, _, name = folder.partition(":")
    path = tmp_path / "missing" if fixture == "missing" else request.getfixturevalue(fixture)
    out = notespace("encoders", "--add", path, *(["--name", name] if name else []), db=db_path)
    assert out.returncode != 0 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("notespace encoders: error:") and message in lines[0], out.stderr
    assert "custom code ran" not in out.stderr
    assert local_encoders(db_path) == []


def test_cli_name_without_add_is_refused(db_path):
    out = notespace("encoders", "--name", "mine", db=db_path)
    assert out.returncode != 0 and "--name goes with --add" in out.stderr


def fill_and_register(at: AppTest, path, name: str = "") -> AppTest:
    at.text_input(key="register_local_path").input(str(path))
    at.text_input(key="register_local_name").input(name)
    next(b for b in at.button if b.label == "Register").click()
    return at.run()


def test_app_form_registers_a_folder_and_selects_it(db_path, tiny_encoder_path):
    at = AppTest.from_file(HARNESS, default_timeout=120).run()
    assert at.selectbox(key="picked").value == "minilm" and not at.exception
    fill_and_register(at, tiny_encoder_path, "mine")
    assert not at.exception and not at.error
    assert at.selectbox(key="picked").value == "mine" and "mine" in at.selectbox(key="picked").options
    assert "Registered **mine** (32-d)." in at.success[0].value
    assert local_encoders(db_path) == ["mine"]


def test_app_form_shows_why_a_folder_is_refused(db_path, pickled):
    at = fill_and_register(AppTest.from_file(HARNESS, default_timeout=120).run(), pickled)
    assert not at.exception
    assert len(at.error) == 1 and "has no .safetensors weights" in at.error[0].value
    assert at.selectbox(key="picked").value == "minilm" and local_encoders(db_path) == []
