import copy
import threading
import types

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from torch import nn

import core.cpu_inference as cpu_inference
import core.embed as embed
from bench.embed import GATE_COSINE, GATE_KNN, knn_overlap, min_cosine
from core.cpu_inference import (ATTENTION, FusedFeedForward, FusedLinear, chunked_attention, fuse_linear_layers,
                                fused_linear_works, lanes, padding_bias, prepare_for_cpu)
from core.embed import Settings, cpu_has_bf16, load_embedder
from core.encoders import packaged_path
from core.encoders import get_encoder
from core.options import EmbedOptions
from core.store import Store

needs_onednn = pytest.mark.skipif(not fused_linear_works(), reason="this torch build has no working fused oneDNN op")

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


def rewritten(model: nn.Module) -> bool:
    return any(isinstance(m, FusedLinear) for m in model.modules())


def op_that_fails(*args):
    raise RuntimeError("mkldnn: no kernel for this CPU")


@pytest.mark.parametrize("take_away", [
    lambda mp: mp.setattr(torch.ops, "mkldnn", types.SimpleNamespace()),  # a torch build without the op
    lambda mp: mp.setattr(torch.ops.mkldnn, "_linear_pointwise", op_that_fails, raising=False),
    lambda mp: mp.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda x, w, *a: x @ w.T, raising=False),  # wrong
], ids=["missing", "failing", "wrong"])
def test_without_a_working_fused_op_the_stock_linear_layers_run(plain, monkeypatch, take_away):
    take_away(monkeypatch)
    assert not fused_linear_works()
    prepared = prepare_for_cpu(copy.deepcopy(plain))
    assert not rewritten(prepared)
    assert sum(type(m) is nn.Linear for m in prepared.modules()) == sum(type(m) is nn.Linear for m in plain.modules())
    torch.testing.assert_close(encode(prepared), encode(plain), atol=1e-5, rtol=1e-4)


def build_encoder(out_dir, config_class, **sizes) -> SentenceTransformer:
    """A random encoder of another architecture on the packaged tokenizer, as a sentence-transformers model."""
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_path()))
    AutoModel.from_config(config_class(vocab_size=tokenizer.vocab_size, **sizes)).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return SentenceTransformer(modules=[Transformer(str(out_dir), max_seq_length=128), Pooling(32, "mean")],
                               device="cpu").eval()


@pytest.mark.parametrize("architecture", ["distilbert", "mpnet", "roberta"])
def test_architectures_not_checked_are_left_stock(tmp_path, architecture):
    from transformers import DistilBertConfig, MPNetConfig, RobertaConfig

    config_class, sizes = {
        "distilbert": (DistilBertConfig, {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}),
        "mpnet": (MPNetConfig, {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                "intermediate_size": 64}),
        "roberta": (RobertaConfig, {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                    "intermediate_size": 64, "pad_token_id": 0}),
    }[architecture]
    stock = build_encoder(tmp_path / architecture, config_class, **sizes)
    assert stock[0].auto_model.config.model_type == architecture
    prepared = prepare_for_cpu(copy.deepcopy(stock))
    assert not rewritten(prepared) and prepared[0].auto_model.config._attn_implementation != ATTENTION
    assert torch.equal(encode(prepared), encode(stock))


@pytest.fixture(scope="module")
def minilm_and_reviews():
    from sample_data.demo import drug_reviews

    return SentenceTransformer(str(packaged_path()), device="cpu").eval(), drug_reviews()["review"].tolist()[:200]


@pytest.mark.real_model
def test_rewritten_minilm_matches_stock_sentence_transformers_in_fp32(minilm_and_reviews):
    stock, texts = minilm_and_reviews
    prepared = prepare_for_cpu(copy.deepcopy(stock))
    bert = prepared[0].auto_model
    assert bert.config._attn_implementation == ATTENTION
    assert rewritten(prepared) == fused_linear_works()
    cosine = min_cosine(prepared.encode(texts, batch_size=32), stock.encode(texts, batch_size=32))
    assert cosine >= 0.9999


@pytest.mark.real_model
@pytest.mark.skipif(not cpu_has_bf16(), reason="bf16 is used only on CPUs with native bf16 (AVX512-BF16 or AMX)")
def test_rewritten_minilm_in_bf16_passes_the_bench_quality_gate(minilm_and_reviews):
    stock, texts = minilm_and_reviews
    prepared = prepare_for_cpu(copy.deepcopy(stock).to(torch.bfloat16))
    assert rewritten(prepared) == fused_linear_works(torch.bfloat16)
    vectors = prepared.encode(texts, batch_size=32, convert_to_tensor=True).float().numpy()
    baseline = stock.encode(texts, batch_size=32)
    assert min_cosine(vectors, baseline) >= GATE_COSINE and knn_overlap(vectors, baseline) >= GATE_KNN


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
    embedder = load_embedder(enc, Settings.resolve(enc, EmbedOptions(encoder="tiny", device="cpu")), 8)
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
    embedder = load_embedder(enc, Settings.resolve(enc, EmbedOptions(encoder="tiny", device="cpu")), 2)
    texts = [f"note {i}: " + "chest pain " * (i % 7) for i in range(23)]
    assert len(embedder.batches(np.array([len(w) for w in embedder.tokenize(texts)[0]]))) > 1
    side_by_side = embedder.encode(texts)

    class OneAtATime:
        map = staticmethod(map)

    monkeypatch.setattr(embed, "lanes", OneAtATime)
    np.testing.assert_allclose(side_by_side, embedder.encode(texts), rtol=0, atol=1e-6)
