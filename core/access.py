"""Who may reach the notes: where the server may listen, whether login is configured, who is allowed.

The rule: a server that listens beyond this machine must have login configured (Streamlit's OpenID
Connect login, an `[auth]` section in .streamlit/secrets.toml); `notespace app` refuses to start
otherwise and the app itself shows nothing. With login configured every page asks for it, and
NOTESPACE_ALLOWED_USERS (comma-separated e-mail addresses or @domains) narrows who gets in.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

ALLOWED_USERS_VAR = "NOTESPACE_ALLOWED_USERS"
# Streamlit's st.login needs these in [auth] (streamlit/auth_util.py); a section without them fails at login.
AUTH_KEYS = ("redirect_uri", "cookie_secret")


def is_loopback(address: str | None) -> bool:
    """True for addresses only this machine can reach; "" and 0.0.0.0 mean every interface."""
    if not address:
        return False
    if address.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


def login_configured(secrets: Mapping) -> bool:
    """True when the secrets hold an [auth] section st.login can use."""
    auth = secrets.get("auth") if hasattr(secrets, "get") else None
    return isinstance(auth, Mapping) and all(auth.get(key) for key in AUTH_KEYS)


def read_secrets(root: Path) -> dict:
    """The secrets Streamlit reads by default (~/.streamlit/secrets.toml, then the project's, which wins),
    as the command line sees them before the server starts."""
    secrets: dict = {}
    for path in (Path.home() / ".streamlit" / "secrets.toml", root / ".streamlit" / "secrets.toml"):
        if path.exists():
            secrets |= tomllib.loads(path.read_text())
    return secrets


def exposure_refusal(address: str | None, has_login: bool) -> str | None:
    """The one line that refuses to serve notes beyond this machine without login, else None."""
    if has_login or is_loopback(address):
        return None
    return (f"refusing to serve on '{address or 'all interfaces'}' without login: anyone who reaches the port "
            "could read every note. Configure [auth] in .streamlit/secrets.toml (see docs/privacy.md) or serve "
            "on 127.0.0.1.")


def parse_allow_list(text: str | None) -> tuple[str, ...]:
    """'a@x.org, @y.org' -> ('a@x.org', '@y.org'), lower-cased; empty means every signed-in user."""
    return tuple(item.strip().lower() for item in (text or "").split(",") if item.strip())


def allow_list_from_env() -> tuple[str, ...]:
    return parse_allow_list(os.environ.get(ALLOWED_USERS_VAR))


def is_allowed(email: str | None, allow_list: tuple[str, ...]) -> bool:
    """Whether a signed-in user with this e-mail may see the notes: any one when the list is empty,
    else an exact address on the list or an address in a listed @domain (no e-mail, no entry)."""
    if not allow_list:
        return True
    if not email or "@" not in email:
        return False
    email = email.strip().lower()
    domain = "@" + email.rsplit("@", 1)[1]
    return any(entry == email or entry == domain for entry in allow_list)
