"""A local Ray started by `embed --engine ray` (core/scale.py) listens on loopback only: every listening
socket of this process and of the Ray processes it starts is checked while the run embeds."""

from __future__ import annotations

import ipaddress

import psutil
import pytest

ray = pytest.importorskip("ray", reason="the optional extra 'scale' (make test installs it)")

from core.corpus import ingest_frame  # noqa: E402
from core.options import EmbedOptions  # noqa: E402
from core.scale import embed_on_ray  # noqa: E402
from core.store import Store  # noqa: E402


def listening() -> dict[str, set[str]]:
    """Addresses listened on by this process and its descendants, by process name."""
    found: dict[str, set[str]] = {}
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            sockets = process.net_connections(kind="inet")
            name = process.name()
        except psutil.Error:  # ended meanwhile
            continue
        for s in sockets:
            if s.status == psutil.CONN_LISTEN:
                found.setdefault(name, set()).add(s.laddr.ip)
    return found


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback  # ::ffff:127.0.0.1 too


def test_a_local_ray_listens_on_loopback_only(db_path, models_dir, synthetic_df):
    assert not ray.is_initialized()  # the run starts its own local Ray
    store = Store(db_path)
    ingest_frame(store, synthetic_df.head(20), "clinic", "text", "note_id")
    seen: dict[str, set[str]] = {}

    def during(fraction, message) -> None:  # called while Ray runs, after each of the 2 shards is imported
        for name, ips in listening().items():
            seen.setdefault(name, set()).update(ips)

    result = embed_on_ray(store, "clinic", EmbedOptions(encoder="tiny"), workers=1, shard_rows=10, progress=during)
    assert result["computed"] == synthetic_df.head(20)["text"].nunique() and not ray.is_initialized()
    assert {"gcs_server", "raylet"} <= set(seen)  # Ray's own servers were seen listening
    assert {name: ips for name, ips in seen.items() if not all(map(is_loopback, ips))} == {}
