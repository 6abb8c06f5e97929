"""End to end with the real packaged model: ingest, embed, reopen, everything cached."""

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from core.corpus import ingest_frame
from core.embed import embed_corpus, load_embeddings
from core.encoders import packaged_path
from core.store import Store
from sample_data.demo import drug_reviews


@pytest.mark.real_model
def test_ingest_embed_reopen_all_cached(db_path):
    reviews = drug_reviews().head(50)
    store = Store(db_path)
    assert ingest_frame(store, reviews, "reviews", "review", "review_id", ["condition", "rating"])["rows"] == 50
    first = embed_corpus(store, "reviews")
    assert (first["computed"], first["cached"]) == (50, 0)

    reopened = Store(db_path)  # as a new process would
    again = embed_corpus(reopened, "reviews")
    assert (again["computed"], again["cached"]) == (0, 50)
    X = load_embeddings(reopened, "reviews", compute_missing=False)
    assert X.shape == (50, 384)

    plain = SentenceTransformer(str(packaged_path()), device="cpu").encode(reviews["review"].tolist())
    cosine = (X * plain).sum(1) / np.linalg.norm(X, axis=1) / np.linalg.norm(plain, axis=1)
    assert cosine.min() > 0.999  # the default (bf16 where supported) stays faithful to fp32
