"""Few-shot learning curves on frozen embeddings, and "label from the map" (train + suggest next).

The held-out test split is fixed by the seed and depends only on the labels, and shot samples are
nested (k=2 extends k=1) and likewise label-only: every encoder is scored on the same notes with
the same training notes, so curves of different encoders are paired comparisons.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.errors import UserError
from core.intervals import N_BOOT, paired_difference, percentile_interval, resample_counts
from core.geometry import unit_rows
from core.separability import as_labels, keep_classes, single_blas

CLASSIFIERS = ("logreg", "knn")


@contextlib.contextmanager
def _fitting():
    """One BLAS thread; silence sklearn's "looks like regression" warning, which 1 shot per class trips."""
    with single_blas(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        yield


def make_classifier(name: str = "logreg", n_train: int = 0, knn_k: int = 10, seed: int = 0):
    """Logistic regression (default) or a distance-weighted cosine kNN (k capped by training size)."""
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression

        # balanced: past a small class's size "k per class" is no longer balanced, and unweighted the
        # frequent classes took over (macro-F1 fell as shots grew on the drug reviews)
        return LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced", random_state=seed)
    if name == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        # distance weights: with 1 shot per class a uniform vote would be a k-way tie
        return KNeighborsClassifier(n_neighbors=max(1, min(knn_k, n_train)), weights="distance", metric="cosine")
    raise UserError(f"unknown classifier {name!r}; choose from {CLASSIFIERS}")


def text_groups(groups, n: int) -> np.ndarray:
    """Group number per note: notes with the same text hash share one; every note its own without hashes."""
    return np.arange(n) if groups is None else pd.factorize(np.asarray(groups, dtype=object))[0]


def split_train_test(codes: np.ndarray, test_size: float = 0.3, seed: int = 0,
                     groups=None) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split keeping at least one note of every class on each side. With `groups` (a text
    hash per note) identical texts go to the same side, so a duplicate is never tested on its twin:
    texts are split per class (a text filed under several classes counts for the first)."""
    rng = np.random.default_rng(seed)
    g = text_groups(groups, len(codes))
    first = np.unique(g, return_index=True)[1]  # first note of each text, in text order
    text_class = codes[first]
    test_texts = []
    for c in np.unique(codes):
        texts = rng.permutation(np.flatnonzero(text_class == c))
        n_test = int(min(len(texts) - 1, max(1, round(test_size * len(texts)))))
        test_texts.append(texts[:n_test])
    in_test = np.isin(g, np.concatenate(test_texts))
    return np.flatnonzero(~in_test), np.flatnonzero(in_test)


def shot_orders(codes: np.ndarray, pool: np.ndarray, seed, groups=None) -> list[np.ndarray]:
    """Per class, a seeded random order of its distinct pool texts (one note each); the first k are the
    k-shot sample, so k shots are k different texts."""
    rng = np.random.default_rng(seed)
    g = text_groups(groups, len(codes))
    out = []
    for c in np.unique(codes[pool]):
        rows = pool[codes[pool] == c]
        out.append(rng.permutation(rows[np.unique(g[rows], return_index=True)[1]]))
    return out


def full_proba(clf, X: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over every class (columns of classes the model never saw stay 0)."""
    P = np.zeros((len(X), n_classes))
    P[:, clf.classes_] = clf.predict_proba(X)
    return P


def classification_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Macro-F1 (over the classes in `true`), accuracy and balanced accuracy: the metrics with intervals
    (a ROC-AUC was reported without one until it was dropped)."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    present = np.unique(true)
    return {
        "macro_f1": float(f1_score(true, pred, labels=present, average="macro", zero_division=0)),
        "accuracy": float((true == pred).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(true, pred)),
    }


@dataclass
class FewShotRun:
    shot: int
    seed: int
    train_idx: np.ndarray
    pred: np.ndarray  # class codes, aligned with LearningCurve.test_idx
    confidence: np.ndarray
    metrics: dict[str, float | None]


def weighted_scores(true: np.ndarray, pred: np.ndarray, n_classes: int, W: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and balanced accuracy of one set of predictions per row of note counts W
    (a bootstrap resample; a row of ones gives the plain scores). Classes absent from a resample are
    left out of its macro averages, as sklearn leaves out classes absent from `true`."""
    onehot_true = np.zeros((len(true), n_classes))
    onehot_true[np.arange(len(true)), true] = 1.0
    onehot_pred = np.zeros_like(onehot_true)
    onehot_pred[np.arange(len(pred)), pred] = 1.0
    correct = (true == pred).astype(np.float64)
    hits, actual, predicted = W @ (onehot_true * correct[:, None]), W @ onehot_true, W @ onehot_pred
    present = actual > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(actual + predicted > 0, 2 * hits / (actual + predicted), 0.0)
        recall = np.where(present, hits / actual, np.nan)
        return {"accuracy": W @ correct / W.sum(axis=1),
                "macro_f1": np.where(present, f1, 0.0).sum(axis=1) / present.sum(axis=1),
                "balanced_accuracy": np.nanmean(recall, axis=1)}


INTERVAL_METRICS = ("macro_f1", "accuracy", "balanced_accuracy")


@dataclass
class LearningCurve:
    classes: list[str]
    test_idx: np.ndarray  # row indices into the X given (never used for training)
    test_codes: np.ndarray
    classifier: str
    runs: list[FewShotRun] = field(default_factory=list)
    dropped_classes: dict[str, int] = field(default_factory=dict)
    pool_sizes: dict[str, int] = field(default_factory=dict)  # distinct training texts per class

    def exhausted(self, shot: int) -> list[str]:
        """Classes whose whole training pool is in every draw at this shot count: their draws never differ."""
        return [c for c in self.classes if self.pool_sizes.get(c, 0) <= shot]

    def replicates(self, shot: int, n_boot: int = N_BOOT) -> dict[str, np.ndarray]:
        """Bootstrap replicates of the mean over draws: test notes and draws both resampled, seeded by
        their numbers only, so curves scored on the same notes and draws pair up replicate by replicate."""
        rs = sorted((r for r in self.runs if r.shot == shot), key=lambda r: r.seed)
        n, C = len(self.test_codes), len(self.classes)
        draws = next(resample_counts(len(rs), n_boot, [1, len(rs)], max_cells=n_boot * len(rs)))
        out: dict[str, list[np.ndarray]] = {m: [] for m in INTERVAL_METRICS}
        start = 0
        for W in resample_counts(n, n_boot, [2, n]):
            V = draws[start:start + len(W)]
            start += len(W)
            per_draw = [weighted_scores(self.test_codes, r.pred, C, W) for r in rs]
            for m in INTERVAL_METRICS:
                out[m].append((V * np.stack([d[m] for d in per_draw], axis=1)).sum(axis=1) / len(rs))
        return {m: np.concatenate(v) for m, v in out.items()}

    def per_class(self, shot: int) -> dict[str, dict]:
        """Per class: test notes, and F1 and recall (share of its test notes found) averaged over draws."""
        from sklearn.metrics import f1_score, recall_score

        rs = [r for r in self.runs if r.shot == shot]
        labels = np.arange(len(self.classes))
        f1 = np.mean([f1_score(self.test_codes, r.pred, labels=labels, average=None, zero_division=0) for r in rs], 0)
        recall = np.mean([recall_score(self.test_codes, r.pred, labels=labels, average=None, zero_division=0)
                          for r in rs], axis=0)
        n_test = np.bincount(self.test_codes, minlength=len(labels))
        return {c: {"test_notes": int(n_test[i]), "f1": float(f1[i]), "recall": float(recall[i])}
                for i, c in enumerate(self.classes) if n_test[i]}

    def summary(self) -> dict[str, dict]:
        """Per shot (string key): mean over draws, 95% bootstrap interval over test notes and draws,
        the classes whose pool every draw exhausts, baselines and per-class scores."""
        out = {}
        counts = np.bincount(self.test_codes, minlength=len(self.classes))
        for k in sorted({r.shot for r in self.runs}):
            rs = [r for r in self.runs if r.shot == k]
            col = {m: [r.metrics[m] for r in rs] for m in rs[0].metrics}
            reps, entry = self.replicates(k), {}
            for metric in INTERVAL_METRICS:
                entry[metric] = float(np.mean(col[metric]))
                entry[f"{metric}_ci"] = percentile_interval(reps[metric])
            out[str(k)] = entry | {
                "n_train": float(np.mean([len(r.train_idx) for r in rs])), "seeds": len(rs),
                "exhausted_classes": self.exhausted(k),
                "majority_baseline": float(counts.max() / counts.sum()), "chance": 1.0 / int((counts > 0).sum()),
                "per_class": self.per_class(k),
            }
        return out

    def run(self, shot: int, seed: int = 0) -> FewShotRun:
        return next(r for r in self.runs if r.shot == shot and r.seed == seed)

    def predictions_frame(self, shot: int, seed: int | None = 0, ids=None) -> pd.DataFrame:
        """One row per test note: id, true label, predicted label, confidence, correct.

        seed=None: every seed's predictions, one block per seed, with a `seed` column.
        """
        if seed is None:
            seeds = sorted({r.seed for r in self.runs if r.shot == shot})
            return pd.concat([self.predictions_frame(shot, s, ids).assign(seed=s) for s in seeds], ignore_index=True)
        r, names = self.run(shot, seed), np.array(self.classes, dtype=object)
        note = np.asarray(ids, dtype=object)[self.test_idx] if ids is not None else self.test_idx
        return pd.DataFrame({"id": note, "true": names[self.test_codes], "predicted": names[r.pred],
                             "confidence": r.confidence, "correct": r.pred == self.test_codes})

    def confusion_frame(self, shot: int, seed: int | None = 0) -> pd.DataFrame:
        """Counts, rows = true label, columns = predicted label; seed=None sums over every seed."""
        from sklearn.metrics import confusion_matrix

        seeds = sorted({r.seed for r in self.runs if r.shot == shot}) if seed is None else [seed]
        m = sum(confusion_matrix(self.test_codes, self.run(shot, s).pred, labels=np.arange(len(self.classes)))
                for s in seeds)
        return pd.DataFrame(m, index=pd.Index(self.classes, name="true"),
                            columns=pd.Index(self.classes, name="predicted"))

    def to_dict(self) -> dict:
        """JSON-ready, predictions included, so a stored curve can be shown again without refitting."""
        return {"classes": self.classes, "classifier": self.classifier, "dropped_classes": self.dropped_classes,
                "pool_sizes": self.pool_sizes, "test_idx": self.test_idx.tolist(), "test_codes": self.test_codes.tolist(),
                "summary": self.summary(),
                "runs": [{"shot": r.shot, "seed": r.seed, "train_idx": r.train_idx.tolist(), "pred": r.pred.tolist(),
                          "confidence": np.round(r.confidence, 4).tolist(), "metrics": r.metrics}
                         for r in self.runs]}

    @classmethod
    def from_dict(cls, d: dict) -> LearningCurve:
        runs = [FewShotRun(r["shot"], r["seed"], np.asarray(r["train_idx"], dtype=np.int64),
                           np.asarray(r["pred"], dtype=np.int64), np.asarray(r["confidence"], dtype=np.float64),
                           r["metrics"]) for r in d["runs"]]
        return cls(list(d["classes"]), np.asarray(d["test_idx"], dtype=np.int64),
                   np.asarray(d["test_codes"], dtype=np.int64), d["classifier"], runs, dict(d["dropped_classes"]),
                   dict(d["pool_sizes"]))


def learning_curve(X, y, shots=(1, 2, 4, 8, 16), seeds: int = 5, test_size: float = 0.3,
                   classifier: str = "logreg", knn_k: int = 10, seed: int = 0,
                   progress: Callable[[float, str], None] | None = None, groups=None) -> LearningCurve:
    """Train on k notes per class (k in shots, `seeds` draws each) and score on a fixed test split;
    `groups` (a text hash per note) keeps identical texts on one side (see `split_train_test`)."""
    Xn = unit_rows(X)
    return paired_curve(y, lambda train, test, draw, report: (Xn[train], Xn[test]), shots, seeds, test_size,
                        classifier, knn_k, seed, progress, groups)


Features = Callable[[np.ndarray, np.ndarray, int, Callable[[float, str], None]], tuple[np.ndarray, np.ndarray]]


def paired_curve(y, features: Features, shots=(1, 2, 4, 8, 16), seeds: int = 5, test_size: float = 0.3,
                 classifier: str = "logreg", knn_k: int = 10, seed: int = 0,
                 progress: Callable[[float, str], None] | None = None, groups=None) -> LearningCurve:
    """The learning curve of any vectors: `features(train, test, draw, progress)` returns the L2-normalised
    vectors of the training and test rows (indices into `y`) for seed draw `draw`, so vectors may depend
    on the training notes (SetFit fine-tunes on them) while the split and shot samples stay label-only.
    With `groups` (a text hash per note) a class needs two distinct texts, one per side."""
    y = as_labels(y)
    g = text_groups(groups, len(y))
    first_of_text = ~pd.DataFrame({"label": y, "text": g}).duplicated().to_numpy()
    _, dropped = keep_classes(np.where(first_of_text, y, None))  # a class needs a text on each side of the split
    mask = np.array([v is not None and v not in dropped for v in y], dtype=bool)
    rows = np.flatnonzero(mask)
    classes, codes = np.unique(y[mask].astype(str), return_inverse=True)
    if len(classes) < 2:
        raise UserError("few-shot needs at least two classes with >= 2 different notes each")
    train_pool, test = split_train_test(codes, test_size, seed, g[mask])
    pool_texts = pd.DataFrame({"code": codes[train_pool], "text": g[mask][train_pool]}).drop_duplicates()
    pool_sizes = {str(classes[c]): int(n) for c, n in pool_texts["code"].value_counts().items()}
    curve = LearningCurve([str(c) for c in classes], rows[test], codes[test], classifier, dropped_classes=dropped,
                          pool_sizes=pool_sizes)
    shot_list = sorted({int(k) for k in shots})
    report, points = progress or (lambda fraction, message: None), seeds * len(shot_list)
    for s in range(seeds):
        orders = shot_orders(codes, train_pool, [seed, s], g[mask])
        for j, k in enumerate(shot_list):
            done = s * len(shot_list) + j

            def point(fraction: float, message: str, done: int = done) -> None:  # this draw's share of the bar
                report((done + fraction) / points, message)

            point(0.0, f"few-shot seed {s + 1} of {seeds}, {k} per class")
            tr = np.sort(np.concatenate([o[:k] for o in orders]))  # nested: k=2 extends k=1
            X_train, X_test = features(rows[tr], curve.test_idx, s, point)
            with _fitting():  # not around `features`: one BLAS thread would starve a fine-tune
                clf = make_classifier(classifier, len(tr), knn_k, seed).fit(X_train, codes[tr])
                P = full_proba(clf, X_test, len(classes))
            pred = P.argmax(axis=1)
            curve.runs.append(FewShotRun(k, s, rows[tr], pred, P.max(axis=1),
                                         classification_metrics(codes[test], pred)))
    return curve


def compare_curves(a: LearningCurve, b: LearningCurve, metrics=("macro_f1", "accuracy")) -> list[dict]:
    """Per shot and metric, b minus a with its 95% paired-bootstrap interval (same test notes, same
    draws resampled for both); the curves must share their split and draws (`paired_curve` does)."""
    if not np.array_equal(a.test_idx, b.test_idx):
        raise ValueError("these curves were not scored on the same test notes, so they cannot be paired")
    out = []
    for k in sorted({r.shot for r in a.runs} & {r.shot for r in b.runs}):
        ra, rb = a.replicates(k), b.replicates(k)
        for m in metrics:
            est_a = float(np.mean([r.metrics[m] for r in a.runs if r.shot == k]))
            est_b = float(np.mean([r.metrics[m] for r in b.runs if r.shot == k]))
            out.append({"metric": m, "shots": k} | paired_difference(est_a, est_b, ra[m], rb[m]))
    return out


def summary_frame(summaries: dict[str, dict]) -> pd.DataFrame:
    """{name: LearningCurve.summary()} as one row per (name, shot), for tables and charts."""
    rows = [{"encoder": name, "shot": int(k), "macro_f1": s["macro_f1"], "macro_f1_low": s["macro_f1_ci"][0],
             "macro_f1_high": s["macro_f1_ci"][1], "accuracy": s["accuracy"],
             "accuracy_low": (s.get("accuracy_ci") or [None, None])[0],
             "accuracy_high": (s.get("accuracy_ci") or [None, None])[1], "seeds": s.get("seeds")}
            for name, summary in summaries.items() for k, s in summary.items()]
    return pd.DataFrame(rows, columns=["encoder", "shot", "macro_f1", "macro_f1_low", "macro_f1_high", "accuracy",
                                       "accuracy_low", "accuracy_high", "seeds"])


# ---------------------------------------------------------------- label from the map
@dataclass
class LabelModel:
    classes: list[str]
    proba: np.ndarray  # n x classes, for every note
    predictions: np.ndarray  # label per note (object array)
    labelled_idx: np.ndarray

    def frame(self, ids=None) -> pd.DataFrame:
        labelled = np.zeros(len(self.proba), dtype=bool)
        labelled[self.labelled_idx] = True
        return pd.DataFrame({"id": ids if ids is not None else np.arange(len(self.proba)),
                             "predicted": self.predictions, "confidence": self.proba.max(axis=1),
                             "uncertainty": uncertainty(self.proba), "labelled": labelled})


def train_from_labels(X, labelled_idx, labels, classifier: str = "logreg", knn_k: int = 10,
                      seed: int = 0, groups=None) -> LabelModel:
    """Fit on the notes a user labelled; predict a label and probabilities for every note.

    With `groups` (a text hash per note), a text labelled on several copies trains once, and every
    copy of a text labelled with one label carries that label (and counts as labelled): the model
    never "predicts" a note from its own identical twin."""
    idx = np.asarray(labelled_idx, dtype=np.int64)
    lab = as_labels(labels)
    if len(lab) != len(idx):
        raise ValueError("labels and labelled_idx differ in length")
    keep = np.array([v is not None for v in lab], dtype=bool)
    idx, lab = idx[keep], lab[keep].astype(str)
    g = text_groups(groups, len(X))
    once = ~pd.DataFrame({"text": g[idx], "label": lab}).duplicated().to_numpy()
    idx, lab = idx[once], lab[once]
    classes, codes = np.unique(lab, return_inverse=True)
    if len(classes) < 2:
        raise UserError("label notes of at least two different classes first")
    Xn = unit_rows(X)
    with _fitting():
        clf = make_classifier(classifier, len(idx), knn_k, seed).fit(Xn[idx], codes)
        P = full_proba(clf, Xn, len(classes))
    by_text = pd.DataFrame({"text": g[idx], "code": codes}).groupby("text")["code"]
    single = by_text.nunique() == 1  # a text labelled two ways keeps the model's prediction
    hand = by_text.first()[single]
    copies = np.flatnonzero(np.isin(g, hand.index.to_numpy()))
    P[copies] = 0.0
    P[copies, hand.loc[g[copies]].to_numpy()] = 1.0
    return LabelModel([str(c) for c in classes], P, classes[P.argmax(axis=1)].astype(object),
                      np.union1d(idx, copies))


def uncertainty(proba: np.ndarray) -> np.ndarray:
    """1 - (top1 - top2) probability margin: 1 = a coin toss between two labels."""
    if proba.shape[1] < 2:
        return np.zeros(len(proba))
    top2 = np.sort(proba, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def suggest_next(X, proba, labelled_idx, n: int = 10, pool_factor: int = 5) -> np.ndarray:
    """Next notes to label: uncertain (margin) AND diverse (greedy, far from labelled and chosen).

    The `n * pool_factor` most uncertain unlabelled notes are candidates; each step picks the one
    maximising uncertainty x cosine distance to the nearest labelled-or-chosen note, so
    near-duplicates of a picked note score ~0. Deterministic (ties go to the more uncertain note).
    """
    Xn = unit_rows(X)
    unc = uncertainty(np.asarray(proba, dtype=np.float64))
    labelled = np.unique(np.asarray(labelled_idx, dtype=np.int64))
    free = np.setdiff1d(np.arange(len(Xn)), labelled)
    if len(free) == 0 or n <= 0:
        return np.array([], dtype=np.int64)
    cand = free[np.argsort(-unc[free], kind="stable")[: max(n, n * pool_factor)]]
    C = Xn[cand]
    # distance to the nearest labelled note; 1 (orthogonal) when nothing is labelled yet
    near = 1.0 - (C @ Xn[labelled].T).max(axis=1) if len(labelled) else np.ones(len(cand))
    near = np.maximum(near, 0.0)
    chosen: list[int] = []
    for _ in range(min(n, len(cand))):
        score = unc[cand] * near
        score[chosen] = -np.inf
        j = int(np.argmax(score))
        chosen.append(j)
        near = np.minimum(near, np.maximum(1.0 - C @ C[j], 0.0))
    return cand[chosen]
