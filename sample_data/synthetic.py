"""A small synthetic note generator for tests: planted vocabulary per specialty, deterministic.

Each specialty has its own words, so a model (or TF-IDF) can tell them apart; `site` is unrelated
to the text, so separability metrics should rank it below `specialty`.
"""

from __future__ import annotations

import random

import pandas as pd

SPECIALTIES: dict[str, list[str]] = {
    "cardiology": ["chest", "pain", "troponin", "ecg", "angina", "stent", "arrhythmia", "palpitations"],
    "urology": ["catheter", "prostate", "bladder", "urine", "cystoscopy", "kidney", "stone", "retention"],
    "psychiatry": ["mood", "anxiety", "sleep", "sertraline", "therapy", "psychosis", "insomnia", "affect"],
    "orthopaedics": ["fracture", "knee", "cast", "hip", "xray", "tendon", "sprain", "femur"],
}
FILLER = ["patient", "reviewed", "today", "plan", "follow", "up", "noted", "history", "with", "and", "the", "of"]
SITES = ["north", "south", "east"]


def synthetic_notes(n: int = 200, seed: int = 0, min_words: int = 8, max_words: int = 40) -> pd.DataFrame:
    """`n` notes with columns note_id, text, specialty, site, age, visit_date."""
    rng = random.Random(seed)
    names = list(SPECIALTIES)
    rows = []
    for i in range(n):
        specialty = names[i % len(names)]
        length = rng.randint(min_words, max_words)
        words = [
            rng.choice(SPECIALTIES[specialty]) if rng.random() < 0.5 else rng.choice(FILLER)
            for _ in range(length)
        ]
        rows.append(
            {
                "note_id": f"n{i:05d}",
                "text": " ".join(words).capitalize() + ".",
                "specialty": specialty,
                "site": rng.choice(SITES),
                "age": rng.randint(18, 95),
                "visit_date": pd.Timestamp("2024-01-01") + pd.Timedelta(days=rng.randint(0, 365)),
            }
        )
    return pd.DataFrame(rows)
