"""Privacy defaults: local binding, no telemetry, no network at run time, exposure warning."""

import socket
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.corpus import ingest_frame
from core.embed import embed_corpus
from core.options import EmbedOptions
from core.store import Store

ROOT = Path(__file__).resolve().parent.parent


def test_streamlit_config_is_private_by_default():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["maxUploadSize"] <= 2048
    assert config["browser"]["gatherUsageStats"] is False


@pytest.fixture()
def no_network(monkeypatch):
    """Any connection to a non-loopback address fails the test."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
            raise AssertionError(f"network access attempted: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(AssertionError(f"network: {a}")))


@pytest.mark.real_model
def test_pipeline_runs_with_sockets_blocked(db_path, synthetic_df, no_network):
    store = Store(db_path)
    ingest_frame(store, synthetic_df.head(30), "offline", "text", "note_id")
    assert embed_corpus(store, "offline", EmbedOptions())["computed"] == 30


def test_the_app_on_localhost_shows_no_exposure_warning(db_path):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert not any("beyond this machine" in w.value for w in at.warning)


@pytest.mark.parametrize("address, has_login, warns", [
    ("127.0.0.1", False, False), ("localhost", False, False), ("0.0.0.0", False, True), ("", False, True),
    ("10.1.2.3", True, False),
])
def test_exposure_warning(address, has_login, warns):
    from pages.common import exposure_warning

    assert (exposure_warning(address, has_login) is not None) == warns
