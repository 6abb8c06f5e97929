"""Data-parallel training across processes (torch.distributed, started by torchrun): the few
collective operations the loop and the objectives need, each a no-op in a single process.

Every rank draws the same global batch from the same seeded stream and works on its own contiguous
rows (`rows`); the batch's randomness (MLM masks, DeCLUTR spans) is drawn for the whole batch on
every rank, so a rank's rows are masked as in a single-process run. Contrastive objectives gather
the embeddings of all ranks (`gather`, differentiable) so their in-batch negatives are the whole
global batch. Gradients are averaged over ranks (`average_gradients`): each rank's loss is scaled so
that the average is the gradient of the single-process loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rows(n: int) -> slice:
    """This rank's contiguous share of a global batch of `n` (n divides evenly: check_options)."""
    share = n // world_size()
    return slice(rank() * share, (rank() + 1) * share)


def gather(local: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, in rank order; gradients flow back to each rank's own rows. The backward
    sums the gradient of every rank's (identical) loss, i.e. world_size x the true one, which
    `average_gradients` divides back."""
    if not active():
        return local
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(local))


def total(value: float | int) -> float:
    """The sum over ranks of a number."""
    if not active():
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def average_gradients(model: torch.nn.Module) -> None:
    """All-reduce the gradients (one flat buffer) and divide by the number of ranks."""
    if not active():
        return
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def broadcast_model(model: torch.nn.Module) -> None:
    """Rank 0's weights everywhere (after a resume, or to rule out any drift at the start)."""
    if active():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def share(obj):
    """Rank 0's `obj` on every rank (pickled; small things and the run's texts)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree(flag: bool) -> bool:
    """Rank 0's decision (e.g. stop now) on every rank."""
    return bool(share(bool(flag)) if active() else flag)
