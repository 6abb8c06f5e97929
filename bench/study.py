"""The study behind docs/results.md (issue 21): the paper's claims tested on notes held out from adaptation.

    python bench/study.py [--parts all | PART,PART...] [--report-only] [--smoke]
                          [--db PATH] [--results DIR] [--out docs/results.md] [--base minilm] [--device cpu]

Each corpus is split once into an adaptation part and a held-out part (stored as corpora NAME-adapt and
NAME-heldout); encoders adapt on the first, every number comes from the second. The study is cut into
parts; each part saves its results (RESULTS/PART.json, bootstrap replicates in PART.npz, with the git
commit and dirty flag that made them) as it finishes, and a rerun skips finished parts. docs/results.md
is written from whatever parts are saved: a claim whose part has not run says "not run yet".

Parts, per corpus (drug-reviews, hpo, long-notes; the long notes are sample_data/long_notes.py):
- `CORPUS:main`  MLM, DeCLUTR and the metadata objective, each with adaptation seeds 1, 2, 3; the metadata
  encoders also on a label they were not trained on (drug reviews: rating; long notes: layout; HPO has
  none), and beside a supervised control (logistic regression on the base's vectors, trained on the
  same adaptation labels);
- `CORPUS:mlm0`  DeCLUTR and the metadata objective with `--mlm-weight 0` (seeds 1-3);
- `CORPUS:fixes` the two fixes ablated: DeCLUTR with the original length filter (`--spans original`),
  the metadata objective with random batches (`--batches random`) (seeds 1-3);
- `CORPUS:setfit` SetFit-style curves of the base (core/setfit.py) beside its frozen curve, same draws, the tuned
  encoder reading each note as the frozen vectors do (the corpus space: whole notes where it chunks).

Sizes (SIZES below), the same for every objective so that they are compute-matched by notes seen:
250 steps x 4 notes = 1,000 notes, 128 tokens. MLM at the paper's lr 2e-5 with 200 warm-up steps; the
contrastive objectives at the paper code's 5e-5. The base (all-MiniLM-L6-v2, packaged) ships no MLM
head and no small packaged base without sentence tuning and with an MLM head was found in the package
lists, so every objective with an MLM term first trains its fresh head alone on the frozen encoder for
100 steps (`--head-warmup`). The base stays sentence-tuned: a confound the report names.

Time plan (2 idle cores; estimates from the step times in bench/out/study_adapt.json of the old study,
MiniLM: ~3 s a step at 16 notes for MLM and the metadata objective, ~2.8 s at 8 notes for DeCLUTR's 48
spans; so at 4 notes a run takes ~3 min (MLM, plus ~0.5 min for the head), ~6 min (DeCLUTR), ~3 min
(metadata), ~0.5 min more to load and save; evaluating an encoder on a held-out part ~0.5-2 min):
  drug-reviews:main 45 min, hpo:main 55 (3,172 held-out notes), long-notes:main 45,
  long-notes:mlm0 30, long-notes:fixes 35 (the long notes are where full-length spans have room),
  drug-reviews:fixes 15 (its short notes leave the original filter (nearly) nothing to train on, so
  mostly the batch ablation: 49 conditions, many rare), drug-reviews:setfit 6, long-notes:setfit 6.
Every part under 60 minutes; the default plan (PLANNED_MIN) ~ 237 min, under the 4-hour budget. The
other parts (hpo:mlm0, hpo:fixes, drug-reviews:mlm0, hpo:setfit) run with --parts all or by name.

--device cuda adapts on a GPU (a clean tree's copy sent there names its commit in STUDY_COMMIT); each part
records the machine and device it ran on.

--smoke: the tiny random BERT (built into NOTESPACE_MODELS if missing), 60 notes per corpus, 2 steps,
2 seeds, everything under bench/out/study-smoke: the whole pipeline in minutes, for the tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.cli import StderrProgress  # noqa: E402
from core.corpus import ingest_frame, text_hash  # noqa: E402
from core.encoders import Encoder, get_encoder, list_encoders  # noqa: E402
from core.fewshot import compare_curves, learning_curve, paired_curve, split_train_test  # noqa: E402
from core.intervals import paired_difference, percentile_interval, resample_counts  # noqa: E402
from core.jobs import run_pretrain_now  # noqa: E402
from core.options import DEFAULT_ENCODER, EmbedOptions, PretrainOptions  # noqa: E402
from core import stages  # noqa: E402
from core.store import Corpus, Store, StoreError  # noqa: E402
from sample_data.demo import DEMOS  # noqa: E402
from sample_data.long_notes import long_notes  # noqa: E402

SPLIT_SEED = 0
EVAL_SEED = 0  # one split, one set of draws and resamples for every encoder: comparisons are paired
RESULTS = ROOT / "bench" / "results" / "study"  # tracked: docs/results.md is written from these
# Written by hand, kept on rewrite from the first of these headings on: the commentary on the claims, then
# bench/long_notes.py's section.
KEPT = ("## Commentary", "## Long notes: the first window or the whole note")
SMOKE_DIR = ROOT / "bench" / "out" / "study-smoke"
EXHAUSTED = "exhausted"
FEW = 4  # "few labels": the mean of the curve up to this many notes per class
# Classes evaluated need this many held-out notes: 70 % of 8 leaves a training pool of 5 or more, so draws of
# up to FEW notes still vary (a pool used whole in every draw gives degenerate intervals and no verdict).
MIN_CLASS_NOTES = 8


@dataclass(frozen=True)
class Sizes:
    steps: int = 250
    batch_size: int = 4
    max_length: int = 128
    mlm_lr: float = 2e-5  # the paper's MLM
    mlm_warmup: int = 200  # the paper's MLM
    contrastive_lr: float = 5e-5  # the paper code's DeCLUTR
    head_warmup: int = 100
    seeds: tuple[int, ...] = (1, 2, 3)
    shots: tuple[int, ...] = (1, 2, 4, 8, 16)
    draws: int = 5
    setfit_shots: tuple[int, ...] = (1, 2, 4, 8)
    setfit_draws: int = 3
    setfit_steps: int = 12
    limit: int | None = None  # notes per corpus (a seeded sample), None = all
    min_class_notes: int = MIN_CLASS_NOTES


SIZES = Sizes()
SMOKE = Sizes(steps=2, batch_size=4, max_length=32, mlm_warmup=1, head_warmup=1, seeds=(1, 2), shots=(1, 2),
              draws=2, setfit_shots=(2,), setfit_draws=1, setfit_steps=1, limit=60, min_class_notes=2)


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    label: str
    other_label: str | None  # a label the metadata objective is not trained on
    own_split: tuple[str, str, str] | None = None  # (column, adaptation value, held-out value)
    heldout: float = 0.3


def _long_notes() -> tuple[pd.DataFrame, str, str, list[str]]:
    return long_notes(), "text", "note_id", ["organ_system", "layout"]


def _demo(name: str):
    loader, text, id_col, meta = DEMOS[name]
    return lambda: (loader(), text, id_col, meta)


LOADERS = {"drug-reviews": _demo("drug-reviews"), "hpo": _demo("hpo"), "long-notes": _long_notes}
STUDIES = [
    Study("drug-reviews", "Drug reviews by condition", "condition", "rating", own_split=("split", "train", "test")),
    Study("hpo", "HPO definitions by organ system", "organ_system", None),
    Study("long-notes", "Long synthetic notes by organ system", "organ_system", "layout"),
]


@dataclass(frozen=True)
class Variant:
    name: str
    objective: str
    changes: dict = field(default_factory=dict)


KINDS = {
    "main": [Variant("mlm", "mlm"), Variant("declutr", "declutr"), Variant("metadata", "metadata")],
    "mlm0": [Variant("declutr-mlm0", "declutr", {"mlm_weight": 0.0}),
             Variant("metadata-mlm0", "metadata", {"mlm_weight": 0.0})],
    "fixes": [Variant("declutr-original-spans", "declutr", {"spans": "original"}),
              Variant("metadata-random-batches", "metadata", {"batches": "random"})],
    "setfit": [],
}
# The default plan: estimated minutes per part on 2 idle cores (docstring); measured times are saved with each part.
PLANNED_MIN = {"drug-reviews:main": 45, "hpo:main": 55, "long-notes:main": 45, "long-notes:mlm0": 30,
               "long-notes:fixes": 35, "drug-reviews:fixes": 15, "drug-reviews:setfit": 6, "long-notes:setfit": 6}
DEFAULT_PARTS = list(PLANNED_MIN)


# ---------------------------------------------------------------- provenance
def code_version() -> dict:
    """The commit that made a result and whether the work tree had uncommitted changes. A copy of a clean
    tree sent elsewhere (a GPU machine) names its commit in STUDY_COMMIT: that copy's own git, if any, knows
    another base."""
    if os.environ.get("STUDY_COMMIT"):
        return {"commit": os.environ["STUDY_COMMIT"], "dirty": False, "from": "STUDY_COMMIT"}
    return {"commit": "unknown", "dirty": None} | stages.code_version()


def _machine(device: str) -> str:
    import platform

    import torch

    cpu = f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores), {platform.platform()}"
    return f"{torch.cuda.get_device_name()}, {cpu}" if device == "cuda" else cpu


# ---------------------------------------------------------------- corpora
def prefix(study: Study, sizes: Sizes) -> str:
    return f"{study.name}-sample-{sizes.limit}" if sizes.limit else study.name


def split(frame: pd.DataFrame, study: Study, text: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(adaptation, held-out), split by text hash: a text repeated in the corpus sits on one side only."""
    hashes = frame[text].astype(str).map(text_hash)
    if study.own_split:
        column, adapt_value, heldout_value = study.own_split
        adapt = frame[column] == adapt_value
        return frame[adapt], frame[(frame[column] == heldout_value) & ~hashes.isin(set(hashes[adapt]))]
    codes = pd.factorize(frame[study.label].astype(str))[0]
    adapt_idx, heldout_idx = split_train_test(codes, study.heldout, SPLIT_SEED, hashes.to_numpy())
    return frame.iloc[adapt_idx], frame.iloc[heldout_idx]


def corpora(store: Store, study: Study, sizes: Sizes) -> tuple[str, str]:
    names = (f"{prefix(study, sizes)}-adapt", f"{prefix(study, sizes)}-heldout")
    known = {c.name for c in store.corpora()}
    if all(n in known for n in names):
        return names
    frame, text, id_col, meta = LOADERS[study.name]()
    if sizes.limit:
        frame = frame.sample(n=min(sizes.limit, len(frame)), random_state=SPLIT_SEED).sort_index()
    how = (f"own `{study.own_split[0]}` column" if study.own_split
           else f"stratified by `{study.label}`, {study.heldout:.0%} held out, seed {SPLIT_SEED}")
    for name, part, which in zip(names, split(frame, study, text), ("adaptation", "held-out")):
        if name not in known:
            ingest_frame(store, part, name, text, id_col, meta, source=f"study:{study.name}; {which} part, split by {how}")
    return names


# ---------------------------------------------------------------- adaptation
def pretrain_options(variant: Variant, study: Study, sizes: Sizes, seed: int, name: str, base: str,
                     device: str) -> PretrainOptions:
    mlm = variant.objective == "mlm"
    opts = PretrainOptions(objective=variant.objective, name=name, base=base, steps=sizes.steps,
                           batch_size=sizes.batch_size, max_length=sizes.max_length, device=device, seed=seed,
                           label=study.label if variant.objective == "metadata" else "",
                           lr=sizes.mlm_lr if mlm else sizes.contrastive_lr,
                           warmup_steps=sizes.mlm_warmup if mlm else 0)
    opts = opts.replace(**variant.changes)
    return opts.replace(head_warmup=sizes.head_warmup if (mlm or opts.mlm_weight > 0) else 0)


def _check_made_from(enc: Encoder, corpus: Corpus, opts: PretrainOptions) -> None:
    """Raise unless the existing encoder was made from `corpus` with `opts` (another would leak or mislead)."""
    card = enc.provenance
    differs = [k for k, v in opts.as_params().items() if card.get("params", {}).get(k) != v]
    if card.get("corpus") != corpus.name or card.get("data_hash") != corpus.data_hash:
        differs.insert(0, f"corpus (made from '{card.get('corpus')}')")
    if differs:
        raise StoreError(f"encoder '{enc.id}' ({enc.path}) exists but was not made by this study ({', '.join(differs)} "
                         f"differ); remove it, or point NOTESPACE_MODELS elsewhere")


def adapt_one(store: Store, corpus: str, opts: PretrainOptions) -> dict:
    """Train (or reuse) one encoder; its record. A run no notes could feed is recorded with its reason."""
    c = store.corpus(corpus)
    enc = next((e for e in list_encoders(store) if e.id == opts.name), None)
    wall = None
    if enc:
        _check_made_from(enc, c, opts)
    else:
        print(f"{opts.name}: adapting on '{corpus}' ({opts.steps} steps x {opts.batch_size})", file=sys.stderr)
        started = time.perf_counter()
        try:
            run_pretrain_now(store, corpus, opts, progress=StderrProgress())
        except ValueError as exc:  # e.g. the original DeCLUTR filter keeps fewer than 2 notes
            return {"encoder": opts.name, "error": str(exc), "total_docs": c.n_docs}
        wall, enc = round(time.perf_counter() - started, 1), get_encoder(store, opts.name)
    card = enc.provenance
    return {"encoder": opts.name, "wall_s": wall, "train_s": round(card["seconds"], 1),
            "final_loss": card["final_loss"], "usable_docs": card["usable_docs"], "total_docs": card["total_docs"],
            "notes_seen": opts.steps * opts.batch_size, "fingerprint": enc.fingerprint}


# ---------------------------------------------------------------- evaluation
@dataclass
class Heldout:
    texts: list[str]
    y: np.ndarray
    rows: np.ndarray  # rows of the held-out corpus evaluated (classes with >= min_notes notes)


def heldout_rows(store: Store, corpus: str, label: str, min_notes: int = MIN_CLASS_NOTES) -> Heldout:
    docs = store.documents(store.corpus(corpus))
    labels = docs[label].astype("string")
    counts = labels.value_counts()
    keep = labels.notna() & (labels != "") & labels.map(counts).ge(min_notes).fillna(False).astype(bool)
    rows = np.flatnonzero(keep.to_numpy())
    return Heldout(docs["text"].iloc[rows].astype(str).tolist(), labels.iloc[rows].astype(str).to_numpy(), rows)


def vectors(store: Store, corpus: str, encoder: str) -> np.ndarray:
    from core.embed import load_embeddings

    return load_embeddings(store, corpus, EmbedOptions(encoder=encoder))


def evaluate_vectors(X: np.ndarray, data: Heldout, sizes: Sizes) -> tuple[dict, dict]:
    """(summary, replicates): separability and the few-shot curve with their bootstrap replicates."""
    from core.separability import separability

    sep = separability(X, data.y, seed=EVAL_SEED, groups=data.texts)
    curve = learning_curve(X, data.y, shots=sizes.shots, seeds=sizes.draws, seed=EVAL_SEED, groups=data.texts)
    sep_d, summary = sep.to_dict(), curve.summary()
    reps = {f"sep/{k}": np.asarray(v) for k, v in sep_d.get("bootstrap", {}).items()}
    for k in sizes.shots:
        for m, r in curve.replicates(k).items():
            reps[f"fewshot/{k}/{m}"] = np.asarray(r)
    out = {k: v for k, v in sep_d.items() if k not in ("bootstrap", "per_class")}
    out["fewshot"] = {str(k): {m: v[m] for m in ("macro_f1", "macro_f1_ci", "accuracy", "accuracy_ci",
                                               "exhausted_classes") if m in v} for k, v in summary.items()}
    return out, reps


def supervised_control(store: Store, adapt_corpus: str, heldout: str, label: str, encoder: str, data: Heldout,
                       sizes: Sizes) -> np.ndarray:
    """Per held-out test note (the curves' test split), 1 if logistic regression trained on every labelled
    adaptation note's vectors gets it right: the labels used directly, not through adaptation."""
    from sklearn.linear_model import LogisticRegression

    from core.geometry import unit_rows

    docs = store.documents(store.corpus(adapt_corpus), with_text=False)
    train_y = docs[label].astype("string")
    ok = (train_y.notna() & (train_y != "")).to_numpy()
    Xa = vectors(store, adapt_corpus, encoder)[ok]
    Xh = vectors(store, heldout, encoder)[data.rows]
    # no draws: only the curves' split, whose test notes this control is scored on
    test = paired_curve(data.y, None, shots=(), seeds=1, seed=EVAL_SEED, groups=data.texts).test_idx
    model = LogisticRegression(max_iter=2000).fit(unit_rows(Xa), train_y[ok].astype(str).to_numpy())
    return (model.predict(unit_rows(Xh[test])) == data.y[test]).astype(np.float64)


def accuracy_replicates(correct: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of an accuracy over resampled test notes (the resamples depend only on n)."""
    return np.concatenate([c @ correct / len(correct) for c in resample_counts(len(correct), seed=EVAL_SEED)])


# ---------------------------------------------------------------- parts
def _save(results: Path, part: str, record: dict, reps: dict[str, np.ndarray]) -> None:
    results.mkdir(parents=True, exist_ok=True)
    stem = part.replace(":", "__")
    np.savez_compressed(results / f"{stem}.npz", **{k: v.astype(np.float32) for k, v in reps.items()})
    tmp = results / f"{stem}.json.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    tmp.replace(results / f"{stem}.json")  # last: a part is finished only once its JSON is there


def load_part(results: Path, part: str) -> tuple[dict, dict] | None:
    stem = part.replace(":", "__")
    if not (results / f"{stem}.json").exists():
        return None
    with np.load(results / f"{stem}.npz") as z:
        reps = {k: z[k] for k in z.files}
    return json.loads((results / f"{stem}.json").read_text(encoding="utf-8")), reps


def run_part(store: Store, part: str, sizes: Sizes, base: str, results: Path, device: str = "cpu") -> dict:
    corpus_name, kind = part.split(":")
    study = next(s for s in STUDIES if s.name == corpus_name)
    started = time.perf_counter()
    adapt_corpus, heldout = corpora(store, study, sizes)
    record = {"part": part, "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "code": code_version(), "machine": _machine(device), "device": device, "sizes": sizes.__dict__ | {"seeds": list(sizes.seeds)},
              "base": base, "adapt_corpus": adapt_corpus, "heldout_corpus": heldout, "runs": {}, "encoders": {}}
    reps: dict[str, np.ndarray] = {}
    labels = [study.label] + ([study.other_label] if kind == "main" and study.other_label else [])
    data = {lab: heldout_rows(store, heldout, lab, sizes.min_class_notes) for lab in labels}
    record["evaluated"] = {lab: {"notes": len(d.y), "classes": len(set(d.y))} for lab, d in data.items()}
    encoders = [base] if kind != "mlm0" and kind != "fixes" else []
    for variant in KINDS[kind]:
        for seed in sizes.seeds:
            name = f"{prefix(study, sizes)}-{variant.name}-s{seed}"
            r = adapt_one(store, adapt_corpus, pretrain_options(variant, study, sizes, seed, name, base, device))
            record["runs"][name] = r | {"variant": variant.name, "seed": seed}
            if "error" not in r:
                encoders.append(name)
    for enc in encoders:
        X = vectors(store, heldout, enc)
        for lab in labels if (enc == base or "metadata" in enc) else [study.label]:
            summary, r = evaluate_vectors(X[data[lab].rows], data[lab], sizes)
            record["encoders"].setdefault(enc, {})[lab] = summary
            reps |= {f"{enc}/{lab}/{k}": v for k, v in r.items()}
    if kind == "main":
        for enc in [base] + [e for e in encoders if "-metadata-" in e]:
            correct = supervised_control(store, adapt_corpus, heldout, study.label, enc, data[study.label], sizes)
            record["encoders"].setdefault(enc, {}).setdefault("control", {})["accuracy"] = float(correct.mean())
            reps[f"{enc}/control/accuracy"] = accuracy_replicates(correct)
    if kind == "setfit":
        record["setfit"] = setfit_part(store, heldout, base, data[study.label], sizes, reps)
    record["seconds"] = round(time.perf_counter() - started, 1)
    _save(results, part, record, reps)
    print(f"{part}: done in {record['seconds'] / 60:.1f} min", file=sys.stderr)
    return record


def setfit_part(store: Store, heldout: str, base: str, data: Heldout, sizes: Sizes, reps: dict) -> dict:
    """The base's SetFit-style curve and its frozen curve on the same split and draws."""
    from core.embed import corpus_space
    from core.setfit import finetune_options, setfit_curve

    X, space = vectors(store, heldout, base)[data.rows], corpus_space(store, heldout, base)
    frozen = learning_curve(X, data.y, shots=sizes.setfit_shots, seeds=sizes.setfit_draws, seed=EVAL_SEED,
                            groups=data.texts)
    tuned = setfit_curve(data.texts, data.y, str(get_encoder(store, base).path), X,
                         finetune_options(steps=sizes.setfit_steps), max_length=space.max_length,
                         long_notes=space.long_notes,
                         shots=sizes.setfit_shots, seeds=sizes.setfit_draws, seed=EVAL_SEED,
                         progress=StderrProgress())
    return {"frozen": frozen.summary(), "setfit": tuned.summary(),
            "comparisons": compare_curves(frozen, tuned, ("macro_f1",))}


# ---------------------------------------------------------------- pooling seeds and the claims
def pooled(reps: dict, keys: list[str], rng_seed: int) -> tuple[float, np.ndarray] | None:
    """Estimate and replicates of the mean over adaptation seeds: each replicate resamples the seeds as
    well as the notes and draws, so seed-to-seed variance is inside the interval. The seed picks depend
    only on (number of seeds, rng_seed): two variants pick the same seed numbers in a replicate, so runs
    sharing a seed (same batches) stay paired, like the notes and draws."""
    if not keys or any(k not in reps for k in keys):
        return None
    per_seed = np.vstack([reps[k] for k in keys])
    pick = np.random.default_rng(rng_seed).integers(0, len(keys), (per_seed.shape[1], len(keys)))
    return float(per_seed.mean(axis=1).mean()), per_seed[pick, np.arange(per_seed.shape[1])[:, None]].mean(axis=1)


class Evidence:
    """Every saved part's replicates, looked up by (variant, label, quantity) with seeds pooled."""

    def __init__(self, study: Study, sizes: Sizes, base: str, results: Path) -> None:
        self.study, self.sizes, self.base, self.reps, self.parts, self.runs = study, sizes, base, {}, {}, {}
        for kind in KINDS:
            loaded = load_part(results, f"{study.name}:{kind}")
            if loaded:
                self.parts[kind], r = loaded
                # the first part to score an encoder keeps it (main, before setfit re-scores the base): the
                # base's replicates then come from the run of the encoders they are paired with
                self.reps |= {k: v for k, v in r.items() if k not in self.reps}
                self.runs |= loaded[0]["runs"]
        # shot counts at which some class's whole pool is in every draw: left out of every verdict
        self.exhausted: dict[str, set[int]] = {}
        for part in self.parts.values():
            for per_label in part["encoders"].values():
                for label, summary in per_label.items():
                    self.exhausted.setdefault(label, set()).update(
                        int(k) for k, v in summary.get("fewshot", {}).items() if v.get("exhausted_classes"))

    def keys(self, variant: str) -> list[str]:
        if variant == "base":
            return [self.base]
        return [f"{prefix(self.study, self.sizes)}-{variant}-s{s}" for s in self.sizes.seeds]

    def quantity(self, variant: str, label: str, what: str) -> tuple[float, np.ndarray] | None:
        """what: "sep/METRIC", "few/macro_f1" (mean over shots <= FEW), or "control/accuracy"."""
        if what.startswith("few/"):
            shots = [k for k in self.sizes.shots if k <= FEW]
            found = [pooled(self.reps, [f"{e}/{label}/fewshot/{k}/{what[4:]}" for e in self.keys(variant)], k)
                     for k in shots]
            if not shots or any(f is None for f in found):
                return None
            found = [f for k, f in zip(shots, found) if k not in self.exhausted.get(label, set())]
            if not found:
                return EXHAUSTED
            return float(np.mean([f[0] for f in found])), np.mean([f[1] for f in found], axis=0)
        keys = [f"{e}/{what}" if what.startswith("control/") else f"{e}/{label}/{what}" for e in self.keys(variant)]
        return pooled(self.reps, keys, 7)

    def diff(self, a: str, b: str, label: str, what: str) -> dict | None:
        qa, qb = self.quantity(a, label, what), self.quantity(b, label, what)
        if qa is None or qb is None:
            return None
        if EXHAUSTED in (qa, qb):
            return {"diff": None, "ci": [None, None], "excludes_zero": False,
                    "why": f"some class's training notes are all used at every count up to {FEW}"}
        return paired_difference(qa[0], qb[0], qa[1], qb[1])


def _d(c: dict | None, name: str) -> str:
    if c is None:
        return f"{name}: not run yet"
    if c["diff"] is None:
        return f"{name}: no verdict ({c.get('why', 'no estimate')})"
    lo, hi = c["ci"]
    return f"{name} {c['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _all_better(cs: list[dict | None], higher: bool = True) -> str:
    """supported: every interval excludes 0 on the better side; not supported: one excludes 0 on the
    worse side; not shown: the intervals include 0. Point estimates never decide."""
    if any(c is None for c in cs):
        return "not run yet"
    if any(c["diff"] is None for c in cs):
        return "not shown"
    if any(c["excludes_zero"] and (c["diff"] < 0) == higher for c in cs):
        return "not supported"
    return "supported" if all(c["excludes_zero"] for c in cs) else "not shown"


def claims(ev: Evidence) -> list[list[str]]:
    """Rows (claim, corpus, paired differences with 95% intervals, verdict) for one corpus."""
    s, lab, title = ev.study, ev.study.label, ev.study.title
    few = f"few-shot macro-F1, mean over 1-{FEW} notes per class"
    rows = []
    vs = [ev.diff(o, "declutr", lab, "few/macro_f1") for o in ("base", "mlm", "metadata")]
    rows.append(["DeCLUTR beats the other objectives and the base with a frozen encoder and few labels", title,
                 f"{few}, DeCLUTR " + "; ".join(_d(c, f"minus {o}") for c, o in zip(vs, ("base", "MLM", "metadata"))),
                 _all_better(vs)])
    c = ev.diff("declutr", "metadata", lab, "few/macro_f1")
    rows.append(["The metadata objective does not further improve classification", title,
                 f"{few}, metadata minus {_d(c, 'DeCLUTR')}",
                 "not run yet" if c is None else "not supported" if c["excludes_zero"] and (c["diff"] or 0) > 0
                 else "supported" if c["excludes_zero"] else "not shown"])
    vs = [ev.diff(o, "metadata", lab, "sep/silhouette") for o in ("base", "mlm", "declutr")]
    rows.append(["The metadata objective separates its own categories most clearly", title,
                 "silhouette, metadata " + "; ".join(_d(c, f"minus {o}") for c, o in zip(vs, ("base", "MLM", "DeCLUTR"))),
                 _all_better(vs)])
    vs = [ev.diff("base", o, lab, "few/macro_f1") for o in ("mlm", "declutr", "metadata")]
    rows.append(["Every adapted encoder beats its base", title,
                 f"{few}, minus base: " + "; ".join(_d(c, o) for c, o in zip(vs, ("MLM", "DeCLUTR", "metadata"))),
                 _all_better(vs)])
    if s.other_label:
        c = ev.diff("base", "metadata", s.other_label, "few/macro_f1")
        rows.append([f"(control) The metadata encoder on a label it was not trained on (`{s.other_label}`)", title,
                     f"{few}, metadata minus {_d(c, 'base')}", _all_better([c])])
    c = ev.diff("base", "metadata", lab, "control/accuracy")
    rows.append(["(control) Metadata adaptation adds to a supervised classifier trained on the same labels", title,
                 f"accuracy of logistic regression on all adaptation labels, metadata encoder minus {_d(c, 'base')}",
                 _all_better([c])])
    vs = [ev.diff(f"{o}-mlm0", o, lab, "few/macro_f1") for o in ("declutr", "metadata")]
    rows.append(["(ablation) The MLM term helps the contrastive objectives", title,
                 f"{few}, with minus without (`--mlm-weight 0`): "
                 + "; ".join(_d(c, o) for c, o in zip(vs, ("DeCLUTR", "metadata"))), _all_better(vs)])
    usable = _usable(ev)
    c = ev.diff("declutr-original-spans", "declutr", lab, "few/macro_f1")
    impossible = any("error" in r for r in ev.runs.values() if r.get("variant") == "declutr-original-spans")
    rows.append(["(NoteSpace fix) Length-adaptive spans beat DeCLUTR's original length filter", title,
                 usable if impossible else f"{usable}; {few}, adaptive minus {_d(c, 'original')}",
                 "not shown: the original filter leaves too few notes to train on" if impossible
                 else _all_better([c])])
    vs = [ev.diff("metadata-random-batches", "metadata", lab, w) for w in ("few/macro_f1", "sep/silhouette")]
    rows.append(["(NoteSpace fix) Class-balanced batches beat random batches for the metadata objective", title,
                 "balanced minus random: " + "; ".join(_d(c, w) for c, w in zip(vs, (few, "silhouette"))),
                 _all_better(vs)])
    rows.append(["(context) SetFit-style fine-tuning beats frozen embeddings with few labels", title,
                 *_setfit_cells(ev)])
    return rows


def _usable(ev: Evidence) -> str:
    def notes(variant: str) -> str:
        r = [v for v in ev.runs.values() if v.get("variant") == variant]
        if not r:
            return "not run yet"
        return f"{r[0].get('usable_docs', 0):,} of {r[0]['total_docs']:,}" + (" (no run possible)" if "error" in r[0] else "")

    return f"usable notes: adaptive {notes('declutr')}, original {notes('declutr-original-spans')}"


def _setfit_cells(ev: Evidence) -> list[str]:
    part = ev.parts.get("setfit")
    if not part:
        return ["not run yet", "not run yet"]
    # one note per class makes no pair of the same class: nothing to fine-tune on, so SetFit is the frozen base
    cs = [c for c in part["setfit"]["comparisons"] if 2 <= c["shots"] <= FEW]
    text = ("macro-F1, SetFit minus frozen base: " + "; ".join(_d(c, f"{c['shots']} per class") for c in cs)
            + " (1 per class: no pair to fine-tune on, the frozen base itself)")
    return [text, _all_better(cs) if cs else "not shown"]


VARIANT_NAMES = {"base": "base", "mlm": "MLM", "declutr": "DeCLUTR", "metadata": "metadata",
                 "declutr-mlm0": "DeCLUTR, `--mlm-weight 0`", "metadata-mlm0": "metadata, `--mlm-weight 0`",
                 "declutr-original-spans": "DeCLUTR, original length filter",
                 "metadata-random-batches": "metadata, random batches"}


def scores(ev: Evidence) -> list[str]:
    """Each encoder's own scores on the study label (adapted ones: the mean over seeds), beside the baselines."""
    lab = ev.study.label
    base = next((p["encoders"][ev.base][lab] for p in ev.parts.values() if ev.base in p["encoders"]), None)
    if base is None:
        return []
    cols = [("few/macro_f1", f"few-shot macro-F1, 1-{FEW} per class"), ("few/accuracy", f"few-shot accuracy, 1-{FEW} per class"),
            ("sep/knn_accuracy", f"kNN-{base['knn_k']} accuracy"), ("sep/silhouette", "silhouette")]
    lines = [f"**{ev.study.title}**: {base['n']:,} held-out notes in {base['n_classes']} classes; majority class "
             f"{base['majority_baseline']:.3f}, chance {base['chance']:.3f} (accuracy).", "",
             "| Encoder | " + " | ".join(c for _, c in cols) + " |", "|---|" + "---|" * len(cols)]
    for variant, name in VARIANT_NAMES.items():
        found = [ev.quantity(variant, lab, what) for what, _ in cols]
        if all(f is None for f in found):
            continue
        cells = ["not run" if f is None else "no estimate (pools exhausted)" if f == EXHAUSTED
                 else "{:.3f} [{:.3f}, {:.3f}]".format(f[0], *percentile_interval(f[1])) for f in found]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


# ---------------------------------------------------------------- the report
def _provenance(results: Path) -> list[str]:
    lines = ["| Part | Planned (estimate) | Started | Code | Machine | Time | Encoders adapted |",
             "|---|---|---|---|---|---|---|"]
    for study in STUDIES:
        for kind in KINDS:
            part = f"{study.name}:{kind}"
            loaded = load_part(results, part)
            plan = f"~{PLANNED_MIN[part]} min" if part in PLANNED_MIN else "not in the default plan"
            if loaded is None:
                lines.append(f"| {part} | {plan} | not run yet | | | | |")
                continue
            rec = loaded[0]
            code = rec["code"]["commit"][:10] + (" (uncommitted changes)" if rec["code"]["dirty"] else "")
            lines.append(f"| {part} | {plan} | {rec['started']} | `{code}` | {rec['machine']} | {rec['seconds'] / 60:.1f} min | "
                         f"{len([r for r in rec['runs'].values() if 'error' not in r])} |")
    return lines + [""]


def report(results: Path, sizes: Sizes, base: str, command: str) -> str:
    rows = []
    for study in STUDIES:
        rows += claims(Evidence(study, sizes, base, results))
    lines = ["# Results", "",
             f"Written by `python bench/study.py {command}` from the parts saved in `{_shown(results)}`"
             + (" — **a smoke run on a tiny random model: a pipeline check, not a result**" if sizes.limit else "")
             + ". The protocol, sizes and time plan are in the docstring of bench/study.py.", "",
             "Every encoder is adapted on the adaptation part of its corpus and evaluated on the held-out part; "
             f"adapted encoders are made with seeds {', '.join(map(str, sizes.seeds))}, and each interval is a 95% "
             "paired bootstrap over the held-out notes, the few-shot draws *and* the adaptation seeds (seeds "
             "resampled in every replicate). A verdict comes only from a paired interval: **supported** when every "
             "interval it rests on excludes 0 in the claimed direction, **not supported** when one excludes 0 in "
             "the other, **not shown** when they include 0, **not run yet** when a part it needs has not run. "
             f"Classes with fewer than {sizes.min_class_notes} held-out notes are left out, so that draws of up to "
             f"{FEW} notes per class still vary; a shot count at which some class's training notes are all used in "
             "every draw is left out of the few-shot means. "
             f"Objectives are compute-matched: {sizes.steps} steps x {sizes.batch_size} notes, {sizes.max_length} "
             f"tokens; MLM at lr {sizes.mlm_lr:g} with {sizes.mlm_warmup} warm-up steps, the contrastive objectives "
             f"at {sizes.contrastive_lr:g}; every MLM head is fresh (the base ships none) and trained alone on the "
             f"frozen encoder for {sizes.head_warmup} steps first.", "",
             "Confounds that remain: the base, all-MiniLM-L6-v2, is already tuned for sentence similarity (no small "
             "packaged base without that tuning and with an MLM head was found); the long notes are synthetic, "
             "assembled from HPO definitions, so a definition can appear in both an adaptation and a held-out note; "
             "HPO has no second label, so the metadata encoder's unseen-label check is not shown there.", "",
             "## Claims", "", "| Claim | Corpus | Paired difference [95% interval] | Verdict |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "## Scores", "", "Each encoder's own scores with 95% intervals (adapted encoders: the mean over "
              "their seeds, seeds resampled in the interval); the claims above rest on the paired differences, "
              "not on these.", ""]
    for study in STUDIES:
        lines += scores(Evidence(study, sizes, base, results))
    lines += ["", "## Parts", "", "Each part is saved with the commit (and whether the work tree had uncommitted "
              "changes) that made it; the default plan runs the ablations where they can show something (docstring "
              f"of bench/study.py), about {sum(PLANNED_MIN.values())} minutes "
              "estimated.", ""] + _provenance(results)
    lines += ["## Old protocol (superseded)", "",
              "The study of 2026-11-25 (code ed7086a), kept in [results-old-protocol.md](results-old-protocol.md), "
              "is not comparable: one "
              "adaptation seed; MLM with a freshly initialised head at lr 5e-5 and 15-30 warm-up steps; objectives "
              "not compute-matched (DeCLUTR saw 1,200 notes, the others 4,800); the metadata objective evaluated "
              "only on the label it was trained on, with no supervised control; verdicts from point estimates and "
              "overlapping intervals; no ablation of the two fixes.", ""]
    return "\n".join(lines)


def kept_sections(text: str) -> str:
    starts = [text.find(h) for h in KEPT if h in text]
    return "\n" + text[min(starts):] if starts else ""


def stale_warning(results: Path, kept: str) -> str:
    """A line before the commentary when a saved part was made by a commit the commentary does not name:
    it was written for other runs."""
    commits = {loaded[0]["code"]["commit"][:7] for s in STUDIES for k in KINDS
               if (loaded := load_part(results, f"{s.name}:{k}"))}
    unseen = sorted(c for c in commits if KEPT[0] in kept and c not in kept)
    return (f"\n> **The commentary below does not name commit(s) {', '.join(unseen)}, which made some of the parts "
            "above: it was written for other runs. Read the tables.**\n" if unseen else "")


def _shown(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# ---------------------------------------------------------------- command line
def _smoke_setup(args) -> None:
    """Everything under bench/out/study-smoke, the tiny random BERT as base."""
    SMOKE_DIR.mkdir(parents=True, exist_ok=True)
    args.db = args.db or str(SMOKE_DIR / "study.duckdb")
    args.results = args.results or SMOKE_DIR / "results"
    args.out = args.out or str(SMOKE_DIR / "results.md")
    if args.base == DEFAULT_ENCODER:
        args.base = "tiny"
    if "NOTESPACE_MODELS" not in os.environ:
        os.environ["NOTESPACE_MODELS"] = str(SMOKE_DIR / "models")
    models = Path(os.environ["NOTESPACE_MODELS"])
    if args.base == "tiny" and not (models / "tiny").exists():
        from tests.conftest import registered_tiny_encoder

        models.mkdir(parents=True, exist_ok=True)
        registered_tiny_encoder(models)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="default",
                        help="comma-separated parts (CORPUS:main|mlm0|fixes|setfit), 'default' or 'all'")
    parser.add_argument("--report-only", action="store_true", help="write the report from the saved parts only")
    parser.add_argument("--smoke", action="store_true", help="tiny model and sizes, under bench/out/study-smoke")
    parser.add_argument("--base", default=DEFAULT_ENCODER, help="encoder to adapt and compare with")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where encoders adapt (embedding follows the store's default: a GPU where there is one)")
    parser.add_argument("--db", help="store file (default: $NOTESPACE_DB or ~/.notespace/notespace.duckdb)")
    parser.add_argument("--results", type=Path, help=f"saved parts (default {_shown(RESULTS)})")
    parser.add_argument("--out", help="the report (default docs/results.md)")
    args = parser.parse_args(argv)
    command = shlex.join(sys.argv[1:] if argv is None else argv)
    if args.smoke:
        _smoke_setup(args)
    results, out = args.results or RESULTS, Path(args.out or ROOT / "docs" / "results.md")
    sizes = SMOKE if args.smoke else SIZES
    every = [f"{s.name}:{k}" for s in STUDIES for k in KINDS]
    parts = (DEFAULT_PARTS if args.parts == "default" else every if args.parts == "all"
             else [p.strip() for p in args.parts.split(",") if p.strip()])
    unknown = [p for p in parts if p not in every]
    if unknown:
        print(f"study: unknown part(s) {', '.join(unknown)}; choose from {', '.join(every)}", file=sys.stderr)
        return 2
    try:
        store = None if args.report_only else Store(args.db) if args.db else Store()
        for part in [] if args.report_only else parts:
            if load_part(results, part):
                print(f"{part}: finished earlier, skipped", file=sys.stderr)
                continue
            run_part(store, part, sizes, args.base, results, args.device)
    except (StoreError, ValueError) as exc:
        print(f"study: {exc}", file=sys.stderr)
        return 1
    kept = kept_sections(out.read_text(encoding="utf-8") if out.exists() else "")
    out.write_text(report(results, sizes, args.base, command) + stale_warning(results, kept) + kept, encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
