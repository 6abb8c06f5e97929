"""Cosine geometry's one row normaliser, shared by every measure (neighbours, maps, clusters,
separability, few-shot curves). numpy only, so the modules that measure stay torch-free to import."""

from __future__ import annotations

import numpy as np


def unit_rows(X) -> np.ndarray:
    """Rows scaled to length 1 (float32), so a dot product is the cosine; all-zero rows stay zero."""
    A = np.asarray(X, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", A, A))[:, None]  # no squared copy of a large X
    return A / np.maximum(norms, 1e-12)
