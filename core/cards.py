"""The model card every adapted encoder carries: a JSON file beside its weights, written by training
(core/training/save.py), read by the encoder registry and the jobs."""

from __future__ import annotations

import json
from pathlib import Path

CARD_FILE = "notespace_card.json"


def read_card(folder: str | Path) -> dict | None:
    """The card of the encoder saved in `folder`, or None if it has none (yet)."""
    path = Path(folder) / CARD_FILE
    return json.loads(path.read_text()) if path.exists() else None
