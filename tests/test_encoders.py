import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from core.encoders import fingerprint, get_encoder, list_encoders, load_model, register_local
from core.store import Store, StoreError


def test_packaged_encoder_is_registered_offline(db_path):
    encoders = {e.id: e for e in list_encoders(Store(db_path))}
    assert encoders["minilm"].public() == {"id": "minilm", "name": "all-MiniLM-L6-v2", "kind": "packaged", "dim": 384}


def test_adapted_encoders_under_models_appear_and_vanish(db_path, models_dir):
    store = Store(db_path)
    tiny = get_encoder(store, "tiny")
    assert (tiny.kind, tiny.dim, tiny.provenance["objective"]) == ("adapted", 32, "test")
    shutil.copytree(models_dir / "tiny", models_dir / "half")
    (models_dir / "half" / "notespace_card.json").unlink()  # the card is written last: no card, not registered
    assert "half" not in {e.id for e in list_encoders(store)}
    shutil.rmtree(models_dir / "tiny")
    assert "tiny" not in {e.id for e in list_encoders(store)}


def test_fingerprint_follows_the_weights_not_the_card(tmp_path, tiny_encoder_path):
    folder = tmp_path / "enc"
    shutil.copytree(tiny_encoder_path, folder)
    before = fingerprint(folder)
    (folder / "README.md").write_text("a new card")
    assert fingerprint(folder) == before
    weights = load_file(folder / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1
    save_file(weights, folder / "model.safetensors")
    assert fingerprint(folder) != before


def test_local_folder_needs_safetensors(db_path, tmp_path, tiny_encoder_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_encoder_path, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(StoreError, match="safetensors"):
        register_local(Store(db_path), folder)


def test_local_folder_registers_and_loads_once(db_path, tiny_encoder_path):
    store = Store(db_path)
    enc = register_local(store, tiny_encoder_path, "mine")
    assert get_encoder(store, "mine").fingerprint == enc.fingerprint
    assert load_model(enc) is load_model(enc)  # one load per process
    assert json.dumps(enc.public())


def test_unknown_encoder_lists_known_ones(db_path):
    with pytest.raises(StoreError, match="unknown encoder 'nope'.*minilm"):
        get_encoder(Store(db_path), "nope")
