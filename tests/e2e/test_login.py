"""In a real browser against a real OpenID Connect provider (oidc-provider-mock, started here): with [auth]
configured, a signed-out visitor sees no note, metadata or corpus name on any page address (the first visitor
of a fresh server included); a signed-in user on the allow-list gets the app, sees who they are and can log
out; one off the list is refused."""

import pytest

from core.corpus import ingest_frame
from core.store import Store
from sample_data.synthetic import synthetic_notes
from bench.serving import served_app
from tests.e2e.conftest import ROOT, screenshot, served, wait_idle

pytestmark = pytest.mark.e2e
CORPUS = "ward-7-secret"


@pytest.fixture(scope="module")
def provider():
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def notes(app_env):
    frame = synthetic_notes(40, seed=2)
    ingest_frame(Store(app_env["NOTESPACE_DB"]), frame, CORPUS, "text", "note_id", ["specialty"])
    return frame["text"].str.slice(0, 40).tolist()


@pytest.fixture(scope="module")
def app_url(app_env, provider, notes, tmp_path_factory):
    """The app with Streamlit's OIDC login pointed at the provider, and an allow-list of one domain."""
    secrets = tmp_path_factory.mktemp("secrets") / "secrets.toml"
    secrets.write_text(f'''[auth]
redirect_uri = "http://127.0.0.1:{{port}}/oauth2callback"
cookie_secret = "a-long-random-cookie-secret-for-this-test-only"
client_id = "notespace"
client_secret = "notespace-secret"
server_metadata_url = "{provider}/.well-known/openid-configuration"
''')
    env = app_env | {"STREAMLIT_SECRETS_FILES": str(secrets), "NOTESPACE_ALLOWED_USERS": "boss@else.example, @ward.example"}
    with served(ROOT / "app.py", env, "login") as url:
        yield url


def shows_nothing_private(page, notes) -> None:
    content = page.content()
    assert CORPUS not in content and "specialty" not in content
    assert not any(note in content for note in notes)


def sign_in(page, app_url: str, email: str) -> None:
    page.goto(app_url)
    wait_idle(page)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/oauth2/authorize**")
    page.locator('input[name="sub"]').fill(email)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{app_url}/**")
    wait_idle(page)


def test_signed_out_visitors_see_no_notes_on_any_page(page, app_url, notes):
    # /explore first, on a server no one has visited: Streamlit then serves the files of pages/ on their
    # own, without app.py's door (pages.components.door.stop_unless_allowed keeps them shut)
    for path in ("/explore", "", "/data", "/separability", "/few-shot", "/pretrain"):
        page.goto(app_url + path)
        wait_idle(page)
        page.get_by_role("button", name="Log in").wait_for()
        shows_nothing_private(page, notes)
    screenshot(page, "login-signed-out")


def test_a_fresh_notespace_app_server_serves_a_deep_link_through_app_py(page, app_env):
    """`notespace app` starts Streamlit with its pages-folder mode off: the first visitor opening /explore
    gets app.py's pages (so its door and store session), not every file of pages/ on its own."""
    with served_app(app_env) as (url, _):
        page.goto(url + "/explore")
        wait_idle(page)
        nav = page.get_by_test_id("stSidebarNav")
        nav.get_by_text("Few-shot", exact=True).wait_for()
        assert "common" not in nav.inner_text()


def test_an_allowed_user_gets_the_app_and_can_log_out(page, app_url, notes):
    sign_in(page, app_url, "ann@ward.example")
    page.get_by_text("Signed in as ann@ward.example").wait_for()
    page.get_by_test_id("stSidebarNav").get_by_text("Data", exact=True).click()
    wait_idle(page)
    page.get_by_text(CORPUS).first.wait_for()
    screenshot(page, "login-allowed")
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").or_(page.get_by_role("button", name="End session")).first.wait_for()
    if page.get_by_role("button", name="End session").is_visible():  # the provider confirms the end of its session
        page.get_by_role("button", name="End session").click()
    page.goto(app_url + "/data")
    wait_idle(page)
    page.get_by_role("button", name="Log in").wait_for()
    shows_nothing_private(page, notes)


def test_a_user_off_the_allow_list_is_refused(page, app_url, notes):
    sign_in(page, app_url, "eve@elsewhere.example")
    page.get_by_text("eve@elsewhere.example is not allowed to use this NoteSpace").wait_for()
    shows_nothing_private(page, notes)
    page.goto(app_url + "/data")
    wait_idle(page)
    page.get_by_text("is not allowed").wait_for()
    shows_nothing_private(page, notes)
    screenshot(page, "login-refused")
