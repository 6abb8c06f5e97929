import copy
import threading

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from torch import nn

import core.cpu_inference as cpu_inference
import core.embed as embed
from core.cpu_inference import (ATTENTION, FusedFeedForward, FusedLinear, chunked_attention, fuse_linear_layers,
                                fused_linear_available, lanes, padding_bias, prepare_for_cpu)
from core.embed import Embedder, Settings
from core.encoders import get_encoder
from core.options import EmbedOptions
from core.store import Store

needs_onednn = pytest.mark.skipif(not fused_linear_available(), reason="this torch build has no oneDNN")

# Different lengths, so every batch has padding for the attention mask to handle.
TEXTS = ["Patient admitted with chest pain radiating to the left arm since this morning.",
         "No acute distress; follow up in two weeks.", "Rash"]


def encode(model: SentenceTransformer) -> torch.Tensor:
    return model.encode(TEXTS, convert_to_tensor=True)


@pytest.fixture()
def plain(tiny_encoder_path) -> SentenceTransformer:
    return SentenceTransformer(str(tiny_encoder_path), device="cpu").eval()


@needs_onednn
def test_prepared_model_gives_the_same_vectors(plain):
    prepared = prepare_for_cpu(copy.deepcopy(plain))
    bert = prepared[0].auto_model
    assert bert.config._attn_implementation == ATTENTION
    assert not [m for m in bert.modules() if type(m) is nn.Linear]
    assert sum(isinstance(m, FusedFeedForward) for m in bert.modules()) == bert.config.num_hidden_layers
    torch.testing.assert_close(encode(prepared), encode(plain), atol=1e-5, rtol=1e-4)


@needs_onednn
def test_fused_block_is_the_exact_gelu(plain):
    block = plain[0].auto_model.encoder.layer[0].intermediate
    x = 3 * torch.randn(4, 7, block.dense.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # large inputs, where the tanh approximation of GELU is off by up to ~1e-3
        torch.testing.assert_close(FusedFeedForward(block)(x), block(x), atol=1e-5, rtol=1e-5)


@needs_onednn
def test_other_activations_keep_their_own_pass(plain):
    for layer in plain[0].auto_model.encoder.layer:
        layer.intermediate.intermediate_act_fn = nn.ReLU()
    fused = fuse_linear_layers(copy.deepcopy(plain))
    intermediate = fused[0].auto_model.encoder.layer[0].intermediate
    assert isinstance(intermediate.dense, FusedLinear) and isinstance(intermediate.intermediate_act_fn, nn.ReLU)
    torch.testing.assert_close(encode(fused), encode(plain), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("scores_per_chunk", [1, 500, 1 << 22])  # one sequence, a few, all at once
def test_chunked_attention_matches_pytorch(monkeypatch, scores_per_chunk):
    monkeypatch.setattr(cpu_inference, "SCORES_PER_CHUNK", scores_per_chunk)
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(5, 3, 9, 8, generator=gen) for _ in range(3))
    keep = torch.arange(9)[None, :] < torch.tensor([9, 7, 9, 2, 5])[:, None]
    out, _ = chunked_attention(None, q, k, v, padding_bias(5, 9, 9, keep))
    expected = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
    torch.testing.assert_close(out, expected.transpose(1, 2), atol=1e-6, rtol=1e-5)


def test_no_padding_needs_no_bias():
    assert padding_bias(2, 4, 4, torch.ones(2, 4, dtype=torch.bool)) is None


def test_bf16_prepared_vectors_stay_close_to_fp32(plain):
    prepared = prepare_for_cpu(copy.deepcopy(plain).to(torch.bfloat16))
    cosine = torch.nn.functional.cosine_similarity(encode(prepared).float(), encode(plain))
    assert cosine.min() > 0.99


def test_the_cpu_embedder_runs_the_prepared_model(db_path, models_dir):
    enc = get_encoder(Store(db_path), "tiny")
    embedder = Embedder(enc, Settings.resolve(enc, EmbedOptions(encoder="tiny", device="cpu")), 8)
    assert embedder.model[0].auto_model.config._attn_implementation == ATTENTION


def test_lanes_run_one_thread_each_and_leave_the_process_setting_alone():
    count = torch.get_num_threads()
    pool = lanes()
    assert set(pool.map(lambda _: torch.get_num_threads(), range(4 * count))) == {1}
    seen = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert torch.get_num_threads() == count and seen == [count]


def test_batches_side_by_side_give_the_vectors_of_one_at_a_time(db_path, models_dir, monkeypatch):
    enc = get_encoder(Store(db_path), "tiny")
    embedder = Embedder(enc, Settings.resolve(enc, EmbedOptions(encoder="tiny", device="cpu")), 2)
    texts = [f"note {i}: " + "chest pain " * (i % 7) for i in range(23)]
    assert len(embedder.batches(np.array([len(w) for w in embedder.tokenize(texts)[0]]))) > 1
    side_by_side = embedder.encode(texts)

    class OneAtATime:
        map = staticmethod(map)

    monkeypatch.setattr(embed, "lanes", OneAtATime)
    np.testing.assert_allclose(side_by_side, embedder.encode(texts), rtol=0, atol=1e-6)
