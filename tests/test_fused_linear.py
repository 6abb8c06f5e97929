import copy

import pytest
import torch
from sentence_transformers import SentenceTransformer
from torch import nn

from core.embed import Embedder, Settings
from core.encoders import get_encoder
from core.fused_linear import FusedFeedForward, FusedLinear, available, fuse_linear_layers
from core.options import EmbedOptions
from core.store import Store

pytestmark = pytest.mark.skipif(not available(), reason="this torch build has no oneDNN")

TEXTS = ["Patient admitted with chest pain.", "No acute distress; follow up in two weeks.", "Rash on both forearms"]


def encode(model: SentenceTransformer) -> torch.Tensor:
    return model.encode(TEXTS, convert_to_tensor=True)


def test_fused_model_gives_the_same_vectors(tiny_encoder_path):
    plain = SentenceTransformer(str(tiny_encoder_path), device="cpu").eval()
    fused = fuse_linear_layers(copy.deepcopy(plain))
    bert = fused[0].auto_model
    assert not [m for m in bert.modules() if type(m) is nn.Linear]
    assert sum(isinstance(m, FusedFeedForward) for m in bert.modules()) == bert.config.num_hidden_layers
    torch.testing.assert_close(encode(fused), encode(plain), atol=1e-5, rtol=1e-4)


def test_fused_block_is_the_exact_gelu(tiny_encoder_path):
    block = SentenceTransformer(str(tiny_encoder_path), device="cpu")[0].auto_model.encoder.layer[0].intermediate
    x = 3 * torch.randn(4, 7, block.dense.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # large inputs, where the tanh approximation of GELU is off by up to ~1e-3
        torch.testing.assert_close(FusedFeedForward(block)(x), block(x), atol=1e-5, rtol=1e-5)


def test_other_activations_keep_their_own_pass(tiny_encoder_path):
    plain = SentenceTransformer(str(tiny_encoder_path), device="cpu").eval()
    for layer in plain[0].auto_model.encoder.layer:
        layer.intermediate.intermediate_act_fn = nn.ReLU()
    fused = fuse_linear_layers(copy.deepcopy(plain))
    intermediate = fused[0].auto_model.encoder.layer[0].intermediate
    assert isinstance(intermediate.dense, FusedLinear) and isinstance(intermediate.intermediate_act_fn, nn.ReLU)
    torch.testing.assert_close(encode(fused), encode(plain), atol=1e-5, rtol=1e-4)


def test_bf16_fused_vectors_stay_close_to_fp32(tiny_encoder_path):
    plain = SentenceTransformer(str(tiny_encoder_path), device="cpu").eval()
    fused = fuse_linear_layers(copy.deepcopy(plain).to(torch.bfloat16))
    cosine = torch.nn.functional.cosine_similarity(encode(fused).float(), encode(plain))
    assert cosine.min() > 0.99


def test_the_cpu_embedder_runs_the_fused_model(db_path, models_dir):
    enc = get_encoder(Store(db_path), "tiny")
    embedder = Embedder(enc, Settings.resolve(enc, EmbedOptions(encoder="tiny", device="cpu")), 8)
    assert any(isinstance(m, FusedFeedForward) for m in embedder.model.modules())
