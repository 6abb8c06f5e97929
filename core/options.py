"""One schema of options shared by the command line and the app pages.

Each stage's settings are a frozen dataclass. Field metadata carries the CLI flag's help text and
choices, so `cli.py` builds its parser from these classes and the pages read the same defaults.
`as_params()` gives the dict recorded as provenance beside each stage's output.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ENCODER = "minilm"
DEFAULT_MAX_LENGTH = 256  # tokens per window, when neither the user nor the corpus's space says otherwise


def opt(default: Any, help: str, choices: tuple | None = None, flag: str | None = None) -> Any:
    """A dataclass field with CLI help text (and optional choices / flag name)."""
    meta = {"help": help, "choices": choices, "flag": flag}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class Options:
    """Mixin: provenance dict, argparse wiring and construction from parsed args."""

    def as_params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, skip: tuple[str, ...] = (),
                      choices: dict[str, Any] | None = None) -> None:
        """A flag per field; `choices` gives a field's allowed values where a registry, not this
        schema, knows them (the objectives)."""
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            meta = f.metadata
            flag = meta.get("flag") or "--" + f.name.replace("_", "-")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kwargs: dict[str, Any] = {"dest": f.name, "help": meta.get("help", ""), "default": default}
            allowed = (choices or {}).get(f.name, meta.get("choices"))
            if allowed is not None:  # not truth-tested: a registry's names load when argparse reads them
                kwargs["choices"] = allowed
            if isinstance(default, bool):
                kwargs["action"] = argparse.BooleanOptionalAction
            elif default is not None and not isinstance(default, (list, tuple)):
                kwargs["type"] = type(default)
            parser.add_argument(flag, **kwargs)

    @classmethod
    def from_args(cls, args: argparse.Namespace):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in vars(args).items() if k in names})


@dataclass(frozen=True)
class EmbedOptions(Options):
    encoder: str = opt(DEFAULT_ENCODER, "encoder id (see `notespace encoders`)")
    batch_size: int = opt(64, "texts per batch (upper bound; batches are also capped by tokens)")
    device: str = opt("auto", "where to run the encoder", ("auto", "cpu", "cuda", "mps"))
    precision: str = opt("auto", "auto: the corpus's embedding space, else bf16 where the CPU/GPU supports it",
                         ("auto", "fp32", "bf16", "fp16"))
    max_length: int = opt(0, "tokens per window (0: the corpus's embedding space, else 256)")
    long_notes: str = opt("auto", "notes longer than max_length: truncate (first window only), or chunk (whole "
                                  "note: overlapping windows, averaged); auto: the corpus's embedding space, else "
                                  "chunk when more than 10%% of its notes are longer", ("auto", "truncate", "chunk"))


@dataclass(frozen=True)
class ProjectOptions(Options):
    encoder: str = opt(DEFAULT_ENCODER, "encoder id")
    method: str = opt("umap", "projection method", ("umap", "pca"))
    n_neighbors: int = opt(15, "UMAP neighbourhood size")
    min_dist: float = opt(0.1, "UMAP minimum distance between points")
    metric: str = opt("cosine", "UMAP metric", ("cosine", "euclidean"))
    seed: int = opt(42, "random seed")


@dataclass(frozen=True)
class ClusterOptions(Options):
    encoder: str = opt(DEFAULT_ENCODER, "encoder id")
    method: str = opt("hdbscan", "clustering method", ("hdbscan", "kmeans"))
    min_cluster_size: int = opt(0, "HDBSCAN minimum cluster size (0 = scaled to corpus size)")
    k: int = opt(0, "KMeans number of clusters (0 = scaled to corpus size)")
    seed: int = opt(42, "random seed")


@dataclass(frozen=True)
class PretrainOptions(Options):
    objective: str = opt("mlm", "continued pre-training objective (core/training/objectives/)")
    name: str = opt("", "name of the new encoder (a folder under models/)")
    label: str = opt("", "metadata column used as label by objectives that need one (metadata)")
    base: str = opt(DEFAULT_ENCODER, "encoder to start from (any registered encoder)")
    steps: int = opt(300, "optimizer steps")
    batch_size: int = opt(16, "documents per batch")
    lr: float = opt(5e-5, "peak learning rate")
    max_length: int = opt(128, "tokens per text / span")
    device: str = opt("auto", "where to train", ("auto", "cpu", "cuda", "mps"))
    seed: int = opt(42, "random seed")
    mlm_weight: float = opt(1.0, "weight of the MLM term added to contrastive objectives (0 = off)")
    temperature: float = opt(0.0, "contrastive temperature (0 = the objective's default)")
    grad_accum: int = opt(1, "gradient accumulation steps")
    nproc: int = opt(1, "training processes, data-parallel (torchrun; one per GPU, or CPU processes); "
                        "each takes batch_size / nproc of every batch")
    warmup_steps: int = opt(0, "learning-rate warm-up steps (0 = a tenth of the steps, at most 200)")
    head_warmup: int = opt(0, "steps that train only the fresh MLM head on the frozen encoder first (0 = none)")
    spans: str = opt("adaptive", "DeCLUTR spans: adaptive to each note's length, or the original filter "
                                 "(notes under anchors x max span x 2 tokens dropped)", ("adaptive", "original"))
    batches: str = opt("balanced", "metadata objective batches: class-balanced, or random as in the paper",
                       ("balanced", "random"))


@dataclass(frozen=True)
class EvaluateOptions(Options):
    label: str = opt("", "metadata column to evaluate, or a derived label column: 'cluster' (the latest "
                         "clustering with the first of --encoders that has one; noise left out) or 'map: SET' "
                         "(labels of a label set made on the map)")
    shots: str = opt("1,2,4,8,16", "labelled notes per class, comma separated")
    seeds: int = opt(5, "repeats per shot count")
    knn_k: int = opt(10, "k of the kNN label accuracy")
    test_size: float = opt(0.3, "held-out fraction never used for training")
    classifier: str = opt("logreg", "few-shot classifier on frozen embeddings", ("logreg", "knn"))

    def shot_list(self) -> list[int]:
        return sorted({int(s) for s in str(self.shots).split(",") if s.strip()})
