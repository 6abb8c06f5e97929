"""One training run: load the base encoder, run an objective for `opts.steps` steps, save the result.

AdamW (weight decay 0.01, none on biases and LayerNorm), linear warm-up then linear decay, gradient
clipping at 1.0, gradient accumulation, bf16 autocast on CUDA. Every step draws its randomness
(span sampling, masking, dropout) from generators seeded by (seed, step, micro-batch), and the batch
streams are replayed from the seed, so a run is reproducible and a resumed run equals an
uninterrupted one. Note: with gradient accumulation the contrastive negatives come from one
micro-batch only; raise batch_size rather than grad_accum for the contrastive objectives.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.options import PretrainOptions
from core.training import parallel
from core.training.checkpoint import checkpoints, latest_checkpoint, load_checkpoint, remove_partial, save_checkpoint
from core.devices import resolve_device
from core.training.encoder import TrainableEncoder, load_sentence_transformer, quiet_transformers
from core.training.registry import get_objective
from core.training.save import hardware, save_encoder

HEAD_WARMUP_LR = 1e-3  # a head alone on a frozen body takes a larger step than the whole model
MAX_WARMUP = 200  # the paper's MLM warm-up; short runs warm up over their first 10 %


@dataclass
class TrainResult:
    path: Path | None  # the saved encoder; None when cancelled
    objective: str
    steps: int  # optimizer steps done (including those before a resume)
    seconds: float  # training time, summed over resumed sessions
    final_loss: float | None
    usable_docs: int
    losses: list[float] = field(default_factory=list)
    tokens_per_s: float = 0.0
    device: str = "cpu"
    cancelled: bool = False
    resumed_from: int = 0  # step of the checkpoint this call started from (0 = fresh)


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    clean = [t if isinstance(t, str) else "" for t in texts]  # None / NaN: an empty note
    with quiet_transformers():  # silences "longer than the model maximum": objectives cut the tokens
        return tokenizer(clean, add_special_tokens=False, truncation=False)["input_ids"]


def _optimizer(model: torch.nn.Module, opts: PretrainOptions, device: torch.device):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel for all tensors; on CPU ~6x faster than foreach (measured 11 vs 64 ms for MiniLM)
    optimizer = torch.optim.AdamW(groups, lr=opts.lr, fused=device.type in ("cuda", "cpu"))
    steps, warmup = opts.steps, opts.warmup_steps or min(MAX_WARMUP, max(1, opts.steps // 10))

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return max(0.0, (steps - s) / max(1, steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _autocast(device: torch.device):
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    # CPU stays fp32: bf16 autocast was not reliably faster for training on 2 (shared) cores, same
    # losses (bench/pretrain.py --cpu-bf16 on MiniLM: 1.6x MLM, 1.1x DeCLUTR, 0.7x metadata).
    return contextlib.nullcontext()


def _seed_step(seed: int, step: int, micro: int) -> np.random.Generator:
    # Reseeds torch's global generator (dropout draws from it): training owns its process.
    seq = np.random.SeedSequence([seed, step, micro])
    torch.manual_seed(int(seq.generate_state(1, dtype=np.uint64)[0] >> 1))  # dropout
    return np.random.default_rng(seq)  # spans, masking


def _fingerprint(texts, labels, base_path: str, opts: PretrainOptions) -> str:
    h = hashlib.sha256()
    # may resume elsewhere, or with another number of processes (the same run: loop docstring)
    params = {k: v for k, v in opts.as_params().items() if k not in ("device", "nproc")}
    h.update(json.dumps([params, str(base_path)], sort_keys=True).encode())
    for t, lab in zip(texts, labels if labels is not None else itertools.repeat(None)):
        h.update(f"{t}\x1f{lab}\x1e".encode())
    return h.hexdigest()


@dataclass
class Run:
    """A run ready to step: the base loaded on its device, the objective's data prepared, the optimizer."""

    device: torch.device
    st_model: object
    objective: object
    model: TrainableEncoder
    optimizer: torch.optim.Optimizer
    scheduler: object
    usable: int


def build_run(texts: list[str], labels: list[str] | None, base_path: str, opts: PretrainOptions) -> Run:
    """Load the base, let the objective pick its documents, build the optimizer."""
    if opts.steps < 1 or opts.batch_size < 1 or opts.grad_accum < 1 or opts.max_length < 8:
        raise ValueError("need steps, batch_size and grad_accum >= 1 and max_length >= 8")
    torch.manual_seed(opts.seed)  # the MLM head's initial weights
    device = torch.device(resolve_device(opts.device))
    st_model = load_sentence_transformer(base_path, device)
    objective = get_objective(opts.objective)(opts, st_model[0].tokenizer)
    usable = objective.prepare(_tokenize(st_model[0].tokenizer, texts), labels)
    model = TrainableEncoder(st_model, with_mlm_head=objective.uses_mlm).train()
    if opts.head_warmup and model.mlm_head is not None:
        _warm_up_head(model, objective, opts)
    optimizer, scheduler = _optimizer(model, opts, device)
    return Run(device, st_model, objective, model, optimizer, scheduler, usable)


def _warm_up_head(model: TrainableEncoder, objective, opts: PretrainOptions) -> None:
    """Train the fresh MLM head alone on the frozen encoder for `opts.head_warmup` steps, so continued
    pre-training does not start by back-propagating a random head's errors into the encoder. The
    decoder is tied to the word embeddings, which stay frozen with the rest of the encoder."""
    tied = model.encoder.get_input_embeddings().weight
    head = [p for p in model.mlm_head.parameters() if p is not tied]
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(head, lr=HEAD_WARMUP_LR)
    batches = objective.index_batches(opts.seed + 1)  # not the main run's stream
    for step in range(1, opts.head_warmup + 1):
        with _autocast(next(model.parameters()).device):
            out = objective.compute_loss(model, next(batches), _seed_step(opts.seed + 1, step, 0))
        if out.loss.requires_grad:  # only the head has gradients; a contrastive term adds none
            out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for p in model.encoder.parameters():
        p.requires_grad_(True)


def run_step(run: Run, opts: PretrainOptions, batches, step: int) -> tuple[float, dict, int]:
    """One optimizer step (with gradient accumulation): (loss, loss parts, real tokens seen)."""
    step_loss, parts, tokens = 0.0, {}, 0
    for micro in range(opts.grad_accum):
        rng = _seed_step(opts.seed, step, micro)
        with _autocast(run.device):
            out = run.objective.compute_loss(run.model, next(batches), rng)
        (out.loss / opts.grad_accum).backward()
        step_loss += float(out.loss.detach()) / opts.grad_accum
        tokens += out.tokens
        for k, v in out.parts.items():
            parts[k] = parts.get(k, 0.0) + v / opts.grad_accum
    parallel.average_gradients(run.model)
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    if parallel.active():  # the whole batch's figures: ranks' losses average to it, tokens add up
        n = parallel.world_size()
        step_loss, tokens = parallel.total(step_loss) / n, int(parallel.total(tokens))
        parts = {k: parallel.total(v) / n for k, v in sorted(parts.items())}
    return step_loss, parts, tokens


def measure_speed(texts: list[str], labels: list[str] | None, base_path: str, opts: PretrainOptions,
                  steps: int = 3) -> dict:
    """Time a few steps on these (sample) texts, saving nothing: {setup_s (load the base, prepare the
    texts), step_s (median seconds per step; the first step, with its one-off allocations, left out)}."""
    t0 = time.perf_counter()
    run = build_run(texts, labels, base_path, opts)
    setup_s = time.perf_counter() - t0
    batches = run.objective.index_batches(opts.seed)
    times = []
    for step in range(1, steps + 2):
        t = time.perf_counter()
        run_step(run, opts, batches, step)
        if run.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return {"setup_s": setup_s, "step_s": float(np.median(times[1:])), "device": run.device.type}


def train(texts: list[str], labels: list[str] | None, base_path: str, opts: PretrainOptions, out_dir: Path,
          progress: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
          checkpoint_dir: Path | None = None, checkpoint_every: int = 50, checkpoint_seconds: float | None = None,
          card_extra: dict | None = None) -> TrainResult | None:
    """Train `opts.objective` from `base_path` and save a sentence-transformers folder at `out_dir`.

    `labels` (one per text) are needed by the metadata objective only. `progress` gets a dict every
    few steps; `should_stop` is asked before each step, and a stop returns `cancelled=True` with no
    model saved (but a checkpoint, if `checkpoint_dir` is given). With `checkpoint_dir`, a checkpoint
    is written every `checkpoint_every` steps (0 = never) and every `checkpoint_seconds` of wall time,
    and a later call with the same texts, settings and folder resumes from the newest one; the folder
    is emptied once the model is saved. `card_extra` (e.g. corpus, data hash, job) joins the card.
    Raises FileExistsError if `out_dir` holds files, ValueError for unusable data or settings.

    Data-parallel (started by torchrun, see core/jobs/rank.py): rank 0 passes everything and
    alone reads checkpoints, asks `should_stop`, reports and saves; the other ranks pass None for the
    texts, labels, base, options and folders and get rank 0's.
    """
    leader = parallel.rank() == 0
    shared = parallel.share((texts, labels, base_path, opts))
    if shared is None:  # rank 0 has no (further) run for us
        return None
    texts, labels, base_path, opts = shared
    if leader:
        out_dir = Path(out_dir)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise FileExistsError(f"{out_dir} already holds files; pick another name")
    run = build_run(texts, labels, base_path, opts)
    device, st_model, objective, model = run.device, run.st_model, run.objective, run.model
    optimizer, scheduler, usable = run.optimizer, run.scheduler, run.usable

    start, losses, seconds, tokens = 0, [], 0.0, 0
    fingerprint = _fingerprint(texts, labels, base_path, opts)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None and leader else None
    if ckpt_dir is not None:
        remove_partial(ckpt_dir)
        found = latest_checkpoint(ckpt_dir)
        if found is not None:
            state = json.loads((found / "state.json").read_text())
            if state.get("fingerprint") != fingerprint:
                raise ValueError(f"checkpoint {found} belongs to another run (texts or settings differ)")
            state = load_checkpoint(found, model, optimizer, scheduler)
            start, losses, seconds, tokens = state["step"], state["losses"], state["seconds"], state["tokens"]
    if parallel.active():  # every rank starts from rank 0's weights, optimizer and place in the run
        parallel.broadcast_model(model)
        saved = parallel.share((optimizer.state_dict(), scheduler.state_dict(), start, losses, seconds, tokens)
                               if leader else None)
        if not leader:
            optimizer.load_state_dict(saved[0])
            scheduler.load_state_dict(saved[1])
            start, losses, seconds, tokens = saved[2:]

    def snapshot(step: int) -> None:
        if ckpt_dir is not None and step > 0:
            save_checkpoint(ckpt_dir, step, model, optimizer, scheduler, {
                "fingerprint": fingerprint, "losses": losses, "seconds": seconds, "tokens": tokens,
                "rng": {"seed": opts.seed, "scheme": "SeedSequence([seed, step, micro])"}})

    def result(path: Path | None, cancelled: bool) -> TrainResult:
        return TrainResult(path, opts.objective, len(losses), seconds, losses[-1] if losses else None, usable,
                           list(losses), tokens / seconds if seconds else 0.0, device.type, cancelled, start)

    batches = objective.index_batches(opts.seed)
    for _ in range(start * opts.grad_accum):  # replay the stream up to the resume point
        next(batches)
    every, last_report = max(1, opts.steps // 100), time.monotonic()
    last_checkpoint = time.monotonic()
    for step in range(start + 1, opts.steps + 1):
        if parallel.agree(should_stop is not None and should_stop()):
            snapshot(step - 1)
            return result(None, cancelled=True)
        t0 = time.perf_counter()
        step_loss, parts, step_tokens = run_step(run, opts, batches, step)
        tokens += step_tokens
        seconds += time.perf_counter() - t0
        losses.append(step_loss)
        if progress is not None and (step % every == 0 or step in (start + 1, opts.steps)
                                     or time.monotonic() - last_report > 5.0):
            last_report = time.monotonic()
            progress({"step": step, "steps": opts.steps, "loss": step_loss, **parts,
                      "lr": scheduler.get_last_lr()[0], "tokens_per_s": tokens / seconds,
                      "eta_s": seconds / step * (opts.steps - step), "elapsed_s": seconds})
        due = (checkpoint_every > 0 and step % checkpoint_every == 0) or (
            checkpoint_seconds is not None and time.monotonic() - last_checkpoint >= checkpoint_seconds)
        if due and step < opts.steps:
            snapshot(step)
            last_checkpoint = time.monotonic()

    model.eval()
    if not leader:
        return result(None, cancelled=False)
    card = {"name": opts.name, "objective": opts.objective, "params": opts.as_params(), "base": str(base_path),
            "usable_docs": usable, "total_docs": len(texts), "objective_details": objective.describe(),
            "steps": len(losses), "seconds": seconds, "tokens_per_s": tokens / seconds if seconds else 0.0,
            "final_loss": losses[-1] if losses else None, "losses": losses, "resumed_from": start,
            "hardware": hardware(device), "processes": parallel.world_size(), "normalize": any(type(m).__name__ == "Normalize" for m in st_model),
            **(card_extra or {})}
    path = save_encoder(st_model, out_dir, card)
    if ckpt_dir is not None:  # a finished run has nothing to resume
        for old in checkpoints(ckpt_dir):
            shutil.rmtree(old, ignore_errors=True)
        with contextlib.suppress(OSError):
            ckpt_dir.rmdir()  # only if nothing else lives there
    return result(path, cancelled=False)
