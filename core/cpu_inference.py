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

The fused op has no backward pass, so only the embedding loader applies 1 and 2. Both apply only to
architectures they were checked on against stock sentence-transformers (`REWRITTEN_MODEL_TYPES`); any
other model runs as loaded. Fusing uses PyTorch's private `torch.ops.mkldnn._linear_pointwise`, so it is
first tried on a small input in the model's precision: where the op is missing, fails or disagrees with
stock `nn.Linear`, the linear layers stay stock.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import torch
from torch import nn

ATTENTION = "notespace_cpu"
# Checked against stock sentence-transformers: the packaged MiniLM and random BERTs (tests/test_cpu_inference.py).
REWRITTEN_MODEL_TYPES = frozenset({"bert"})
CHUNKED_ATTENTION_MAX_HEAD_DIM = 32  # measured only there; larger heads keep PyTorch's kernel
SCORES_PER_CHUNK = 1 << 20  # attention scores computed at once (2 MB in bf16): best of 2^18-2^22 measured


def prepare_for_cpu(model: nn.Module) -> nn.Module:
    """Apply both rewrites in place to each transformer of a checked architecture in `model`; returns `model`."""
    for transformer in rewritable_transformers(model):
        fuse_linear_layers(transformer)
        if _head_dim(transformer.config) <= CHUNKED_ATTENTION_MAX_HEAD_DIM:
            _register_attention()
            transformer.set_attn_implementation(ATTENTION)
    return model


def rewritable_transformers(model: nn.Module) -> list[nn.Module]:
    """The outermost Hugging Face models inside `model` whose architecture the rewrites were checked on."""
    from transformers import PreTrainedModel

    found, inside = [], set()
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and id(module) not in inside:
            inside.update(id(m) for m in module.modules())
            if module.config.model_type in REWRITTEN_MODEL_TYPES:
                found.append(module)
    return found


# ---- fused linear layers ------------------------------------------------------------------------


def linear_pointwise():
    """PyTorch's private fused oneDNN linear op, or None where this build lacks it."""
    try:
        return getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


def fused_linear_works(dtype: torch.dtype = torch.float32) -> bool:
    """The fused op exists here and gives stock Linear's (and exact GELU's) output in `dtype`."""
    op = linear_pointwise()
    if op is None:
        return False
    gen = torch.Generator().manual_seed(0)
    linear = nn.Linear(16, 8).to(dtype)
    x = torch.randn(3, 5, 16, generator=gen).to(dtype)
    tolerance = {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 5e-2, "rtol": 5e-2}
    try:
        with torch.no_grad():
            for activation, stock in (("none", linear(x)), ("gelu", nn.functional.gelu(linear(x)))):
                torch.testing.assert_close(FusedLinear(linear, activation, op)(x), stock, **tolerance)
    except (RuntimeError, AssertionError):  # AssertionError: torch.testing's "not close"
        return False
    return True


class FusedLinear(nn.Module):
    def __init__(self, linear: nn.Linear, activation: str = "none", op=None):
        super().__init__()
        self.weight, self.bias, self.activation = linear.weight, linear.bias, activation
        self.op = op or linear_pointwise()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The last argument is the post-op's algorithm: for "gelu", "none" means the exact (erf) GELU.
        return self.op(x, self.weight, self.bias, self.activation, [], "none" if self.activation == "gelu" else "")


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
    """Rewrite `model` in place (a no-op where the fused op is missing or fails in its precision); returns it."""
    weights = next(model.parameters(), None)
    if weights is None or not fused_linear_works(weights.dtype):
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
