"""Privacy defaults: local binding, no telemetry, no network at run time, private caches, the access gate."""

import os
import socket
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from core.access import (exposure_refusal, is_allowed, is_loopback, login_configured, parse_allow_list,
                         read_secrets)
from core.caches import LEFTOVERS, private_dir, remove_leftovers, route_library_caches
from core.corpus import ingest_frame
from core.embed import embed_corpus
from core.options import EmbedOptions
from core.store import Store

ROOT = Path(__file__).resolve().parent.parent
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "a-long-random-test-secret-0123456789",
        "client_id": "notespace", "client_secret": "secret", "server_metadata_url": "http://localhost:1/.well-known"}

# A sitecustomize for a served app: every connection or name lookup beyond this machine is refused
# and written to $NOTESPACE_TEST_NETWORK_LOG, in the server and in every process it starts.
SOCKETS_BLOCKED = '''
import ipaddress, os, socket
_log = os.environ["NOTESPACE_TEST_NETWORK_LOG"]
_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

def _local(host):
    host = str(host).strip("[]").split("%")[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

def _refuse(what):
    with open(_log, "a") as log:
        log.write(f"{os.getpid()} {what}\\n")
    raise OSError(101, f"network blocked by the test: {what}")

def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _refuse(f"connect {address}")
    return _connect(self, address)

def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _refuse(f"connect {address}")
    return _connect_ex(self, address)

def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _local(host.decode() if isinstance(host, bytes) else host):
        _refuse(f"lookup {host}")
    return _getaddrinfo(host, *args, **kwargs)

socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
'''


def sockets_blocked_env(folder: Path) -> dict:
    """Environment for a server process (and its children) whose network beyond loopback is blocked
    and logged to folder/network.log (created empty)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SOCKETS_BLOCKED)
    (folder / "network.log").write_text("")
    return {"PYTHONPATH": f"{folder}{os.pathsep}{ROOT}", "NOTESPACE_TEST_NETWORK_LOG": str(folder / "network.log")}


def test_streamlit_config_is_private_and_idle_by_default():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["maxUploadSize"] <= 2048
    assert config["server"]["fileWatcherType"] == "none"
    assert config["server"]["runOnSave"] is False
    assert config["browser"]["gatherUsageStats"] is False
    assert config["runner"]["postScriptGC"] is False


def test_the_served_command_watches_no_files():
    from core.cli import serve_command

    command = serve_command("127.0.0.1", 8600)
    flags = dict(zip(command[5::2], command[6::2]))
    assert flags["--server.fileWatcherType"] == "none"
    assert flags["--server.runOnSave"] == "false"
    assert flags["--runner.postScriptGC"] == "false"
    assert flags["--server.address"] == "127.0.0.1"
    assert flags["--browser.gatherUsageStats"] == "false"


def test_favicon_and_page_icons_need_no_font_cdn():
    """A ':material/...:' page_icon makes the browser fetch the favicon from fonts.gstatic.com."""
    source = (ROOT / "app.py").read_text()
    assert 'page_icon=":material' not in source
    assert 'page_icon="' in source


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


def test_the_blocking_sitecustomize_refuses_and_logs_outbound_connections(tmp_path):
    env = os.environ | sockets_blocked_env(tmp_path)
    probe = ("import socket\ns = socket.socket()\ntry:\n    s.connect(('192.0.2.1', 443))\nexcept OSError as e:\n"
             "    print('refused', e.errno)")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "refused 101"
    assert "192.0.2.1" in (tmp_path / "network.log").read_text()


# ---- who gets in ---------------------------------------------------------------------------


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.0.1.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("", False), (None, False), ("10.1.2.3", False), ("::", False), ("notespace.example", False),
])
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


@pytest.mark.parametrize("address, has_login, refused", [
    ("127.0.0.1", False, False), ("localhost", False, False), ("0.0.0.0", False, True), ("", False, True),
    ("10.1.2.3", True, False),
])
def test_exposure_refusal(address, has_login, refused):
    assert (exposure_refusal(address, has_login) is not None) == refused


def test_login_needs_a_usable_auth_section():
    assert login_configured({"auth": AUTH})
    assert not login_configured({})
    assert not login_configured({"auth": {"client_id": "x"}})  # st.login would fail without redirect_uri


@pytest.mark.parametrize("email, allow, allowed", [
    ("ann@ward.example", "", True), (None, "", True),
    ("Ann@Ward.example", "ann@ward.example", True), ("bob@ward.example", "ann@ward.example", False),
    ("bob@ward.example", "ann@x.example, @ward.example", True), ("bob@evilward.example", "@ward.example", False),
    ("bob@ward.example.evil", "@ward.example", False), (None, "@ward.example", False), ("", "@ward.example", False),
])
def test_allow_list(email, allow, allowed):
    assert is_allowed(email, parse_allow_list(allow)) is allowed


def notespace_app(*args):
    return subprocess.run([sys.executable, "-m", "core.cli", "app", *args], cwd=ROOT, capture_output=True, text=True,
                          env=os.environ | {"PYTHONPATH": str(ROOT)}, timeout=120)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3"])
def test_app_refuses_to_serve_beyond_this_machine_without_login(host, db_path):
    if login_configured(read_secrets(ROOT)):
        pytest.skip("login is configured on this machine")
    result = notespace_app("--host", host, "--port", "8599")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "without login" in lines[0] and host in lines[0]


@pytest.fixture()
def served_beyond(monkeypatch):
    """The in-process Streamlit config of a server listening on every interface."""
    previous = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    yield
    st_config.set_option("server.address", previous)


@pytest.fixture()
def secret_corpus(db_path, synthetic_df):
    ingest_frame(Store(db_path), synthetic_df.head(10), "ward-7-secret", "text", "note_id")
    return "ward-7-secret"


def page_text(at: AppTest) -> str:
    return " ".join(str(getattr(e, "value", "")) + " " + str(getattr(e, "label", "")) for e in at.main) + " ".join(
        str(getattr(e, "value", "")) + " " + str(getattr(e, "label", "")) for e in at.sidebar)


def test_the_app_on_localhost_opens_without_login(secret_corpus):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert not at.error


def test_the_app_beyond_this_machine_without_login_shows_nothing(secret_corpus, served_beyond):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert "without login" in at.error[0].value
    assert secret_corpus not in page_text(at)
    assert len(at.main) == 1  # the refusal, nothing else


def signed(user: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.secrets["auth"] = AUTH
    at.user = user
    at.run()
    assert not at.exception
    return at


def test_with_login_configured_a_signed_out_visitor_sees_only_the_login(secret_corpus):
    at = signed({"is_logged_in": False})
    assert [b.label for b in at.button] == ["Log in"]
    assert secret_corpus not in page_text(at)


def test_a_signed_in_user_on_the_allow_list_gets_the_app_and_sees_who_they_are(secret_corpus, monkeypatch):
    monkeypatch.setenv("NOTESPACE_ALLOWED_USERS", "boss@elsewhere.example, @ward.example")
    at = signed({"is_logged_in": True, "email": "ann@ward.example"})
    assert not at.error
    assert any("ann@ward.example" in c.value for c in at.sidebar.caption)
    assert "Log out" in [b.label for b in at.sidebar.button]
    at.switch_page("pages/data.py").run()
    assert not at.exception
    assert secret_corpus in page_text(at) + str(at.get("selectbox"))


def test_a_signed_in_user_off_the_allow_list_is_refused(secret_corpus, monkeypatch):
    monkeypatch.setenv("NOTESPACE_ALLOWED_USERS", "@ward.example")
    at = signed({"is_logged_in": True, "email": "eve@elsewhere.example"})
    assert "not allowed" in at.error[0].value
    assert [b.label for b in at.button] == ["Log out"]
    assert secret_corpus not in page_text(at)


# ---- caches and leftovers ------------------------------------------------------------------


def test_caches_go_to_private_folders_of_the_user(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    environ = {"MPLCONFIGDIR": str(tmp_path / "chosen")}
    route_library_caches(environ)
    assert environ["MPLCONFIGDIR"] == str(tmp_path / "chosen")  # the user's own choice is kept
    for variable in ("NUMBA_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        folder = Path(environ[variable])
        assert folder.parent == tmp_path / "cache" / "notespace"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700


def test_an_existing_cache_folder_is_made_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "notespace" / "numba").mkdir(parents=True, mode=0o777)
    os.chmod(tmp_path / "notespace" / "numba", 0o777)
    assert stat.S_IMODE(private_dir("numba").stat().st_mode) == 0o700


def test_the_numba_cache_is_private(tmp_path):
    probe = "import os, core.projection as p; print(p.numba_cache_dir()); print(oct(os.stat(p.numba_cache_dir()).st_mode & 0o777))"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"XDG_CACHE_HOME": str(tmp_path),
                                                                             "PYTHONPATH": str(ROOT)}
    folder, mode = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                                  check=True).stdout.split()
    assert Path(folder) == tmp_path / "notespace" / "numba" and mode == "0o700"


def test_leftovers_of_older_versions_are_removed(tmp_path):
    for name in LEFTOVERS:
        (tmp_path / name / "abc").mkdir(parents=True)
        (tmp_path / name / "abc" / "notes.csv").write_text("id,text\n1,secret\n")
    (tmp_path / "someone-else").mkdir()
    assert sorted(p.name for p in remove_leftovers(tmp_path)) == sorted(LEFTOVERS)
    assert [p.name for p in tmp_path.iterdir()] == ["someone-else"]
    assert remove_leftovers(tmp_path) == []


def test_no_page_renders_raw_html():
    sources = [ROOT / "app.py", *(ROOT / "pages").rglob("*.py")]
    assert len(sources) > 10
    assert [p.name for p in sources if "unsafe_allow_html" in p.read_text() or "st.html(" in p.read_text()] == []
