"""Inference-only rewrites that make a loaded encoder faster on CPUs (README, Performance).

1. Fused linear layers: each Linear becomes one oneDNN call with its bias, and in BERT-style
   feed-forward blocks the exact GELU after it, fused into the matmul. PyTorch's CPU Linear copies the
   bias into the output before the matmul, and the GELU is one more pass over the widest activation;
   oneDNN's bf16 kernel also runs closer to the CPU's peak on these shapes.
2. Chunked attention for small heads: PyTorch's CPU flash-attention kernel is overhead-bound at
   MiniLM's 32-dimensional heads (40-110 GFLOP/s against ~400 for the linear layers). Plain batched
   matmul, softmax, matmul, over a few sequences at a time so the scores stay in cache, is faster.
3. Batches side by side (`lanes`): one single-threaded worker per core, each running whole batches,
   beats splitting every op across the cores, where the small ops (softmax, LayerNorm, adds) spend
   much of their time waiting on each other. The vectors are bit-identical.

The fused op has no backward pass, so only the embedding loader applies 1 and 2.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import torch
from torch import nn

ATTENTION = "notespace_cpu"
CHUNKED_ATTENTION_MAX_HEAD_DIM = 32  # measured only there; larger heads keep PyTorch's kernel
SCORES_PER_CHUNK = 1 << 20  # attention scores computed at once (2 MB in bf16): best of 2^18-2^22 measured


def prepare_for_cpu(model: nn.Module) -> nn.Module:
    """Apply both rewrites in place where they are supported; returns `model`."""
    fuse_linear_layers(model)
    for module in model.modules():
        config = getattr(module, "config", None)
        if hasattr(module, "set_attn_implementation") and _head_dim(config) <= CHUNKED_ATTENTION_MAX_HEAD_DIM:
            _register_attention()
            module.set_attn_implementation(ATTENTION)  # a model without the attention interface keeps its own
    return model


# ---- fused linear layers ------------------------------------------------------------------------


def fused_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class FusedLinear(nn.Module):
    def __init__(self, linear: nn.Linear, activation: str = "none"):
        super().__init__()
        self.weight, self.bias, self.activation = linear.weight, linear.bias, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The last argument is the post-op's algorithm: for "gelu", "none" means the exact (erf) GELU.
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.activation, [],
                                                  "none" if self.activation == "gelu" else "")


class FusedFeedForward(nn.Module):
    """A BERT-style intermediate block (dense layer, then exact GELU) as one call."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.dense = FusedLinear(block.dense, "gelu")

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dense(hidden_states)


def _is_exact_gelu_block(module: nn.Module) -> bool:
    from transformers.activations import GELUActivation

    act = getattr(module, "intermediate_act_fn", None)
    return (isinstance(getattr(module, "dense", None), nn.Linear) and type(act) is GELUActivation
            and act.act is nn.functional.gelu)


def fuse_linear_layers(model: nn.Module) -> nn.Module:
    """Rewrite `model` in place (a no-op where oneDNN is missing); returns it."""
    if not fused_linear_available():
        return model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _is_exact_gelu_block(child):
                setattr(parent, name, FusedFeedForward(child))
            elif type(child) is nn.Linear:
                setattr(parent, name, FusedLinear(child))
    return model


# ---- chunked attention --------------------------------------------------------------------------


def _head_dim(config) -> int:
    heads = getattr(config, "num_attention_heads", None)
    if not heads:
        return 1 << 30  # unknown: keep the model's own attention
    return getattr(config, "head_dim", None) or config.hidden_size // heads


def padding_bias(batch_size: int, q_length: int, kv_length: int, attention_mask: torch.Tensor | None = None,
                 dtype: torch.dtype = torch.float32, **_) -> torch.Tensor | None:
    """Additive (batch, 1, 1, keys) bias from the padding mask; None when nothing is padded."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    bias = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
    return bias.masked_fill_(~attention_mask.bool(), float("-inf"))[:, None, None, :]


def chunked_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                      **_) -> tuple[torch.Tensor, None]:
    """Softmax attention over (batch, heads, length, head_dim) inputs; output is (batch, length, heads, head_dim)."""
    batch, heads, length, head_dim = query.shape
    scaling = scaling if scaling is not None else head_dim ** -0.5
    out = torch.empty(batch, length, heads, head_dim, dtype=query.dtype, device=query.device)
    step = max(1, SCORES_PER_CHUNK // (heads * length * length))
    for i in range(0, batch, step):
        scores = torch.matmul(query[i:i + step] * scaling, key[i:i + step].transpose(-1, -2))
        if attention_mask is not None:
            # Sequences of similar length share a batch, so only the last few key columns need the bias.
            bias = attention_mask[i:i + step]
            padded = torch.nonzero(bias.ne(0).flatten(0, 2).any(0))
            if len(padded):
                first = int(padded[0])
                scores[..., first:] += bias[..., first:]
        out[i:i + step] = torch.matmul(scores.softmax(-1), value[i:i + step]).transpose(1, 2)
    return out, None


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, chunked_attention)
    AttentionMaskInterface.register(ATTENTION, padding_bias)


# ---- batches side by side -----------------------------------------------------------------------


@cache
def lanes() -> ThreadPoolExecutor:
    """A pool of single-threaded workers, one per intra-op thread of the process."""
    count = torch.get_num_threads()
    started = threading.Barrier(count)
    pool = ThreadPoolExecutor(count, thread_name_prefix="notespace-lane", initializer=_single_threaded)
    list(pool.map(lambda _: started.wait(), range(count)))  # every lane now exists and runs one thread
    torch.set_num_threads(count)  # setting it also set the default for threads started later: restore that
    return pool


def _single_threaded() -> None:
    torch.get_num_threads()  # runs this thread's lazy thread-count setup now; later it would undo the 1
    torch.set_num_threads(1)
