"""Where the app's own caches and scratch files live: one private folder per user, never a shared one.

Compiled code is not patient data, but a cache in a world-writable folder can be read or planted by
any local user, and a file of ours in the system temp folder outlives us. So every cache the app or
its libraries would write (numba's machine code, matplotlib's font list, torch inductor and triton
kernels) goes under $XDG_CACHE_HOME/notespace (default ~/.cache/notespace), folders mode 0700.
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
from pathlib import Path

# Cache folders the libraries we load read from the environment, each set before the library is imported.
LIBRARY_CACHES = {"NUMBA_CACHE_DIR": "numba", "MPLCONFIGDIR": "matplotlib",
                  "TORCHINDUCTOR_CACHE_DIR": "torchinductor", "TRITON_CACHE_DIR": "triton"}
# What older versions left in the system temp folder: uploaded notes and a shared numba cache.
LEFTOVERS = ("notespace-uploads", "notespace-numba-cache")

_fallback: Path | None = None


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "notespace"


def _private(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:  # made earlier with the umask's mode
        path.chmod(0o700)
    return path


def private_dir(name: str) -> Path:
    """A folder only this user can enter, under cache_root(); when the home folder is read-only
    (locked-down clinical desktops), under a private temp folder removed when the process ends."""
    global _fallback
    try:
        return _private(_private(cache_root()) / name)
    except OSError:
        if _fallback is None:
            _fallback = Path(tempfile.mkdtemp(prefix="notespace-cache-"))  # mkdtemp makes it 0700
            atexit.register(shutil.rmtree, _fallback, True)
        return _private(_fallback / name)


def route_library_caches(environ=os.environ) -> None:
    """Point every library cache we know of at a private folder, unless the user chose one."""
    for variable, name in LIBRARY_CACHES.items():
        if not environ.get(variable):
            environ[variable] = str(private_dir(name))


def remove_leftovers(temp: Path | None = None) -> list[Path]:
    """Delete the files of ours that older versions left in the system temp folder (only those this
    user owns); returns what was removed. Called when the server starts."""
    temp = Path(temp or tempfile.gettempdir())
    removed = []
    for name in LEFTOVERS:
        path = temp / name
        try:
            if path.is_symlink() or path.lstat().st_uid != os.getuid():
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
