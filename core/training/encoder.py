"""Load a local sentence-transformers folder for training, with an optional MLM head on top.

Loading is strictly offline: `local_files_only`, no remote code, safetensors only (no pickles).
The MLM head is built fresh from the encoder's config and its decoder is tied to the encoder's word
embeddings, as `BertForMaskedLM.from_pretrained` does for a sentence-transformers folder (those
folders never ship the head). The head is discarded at save time: only the encoder is kept.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn


def load_sentence_transformer(path: str, device: torch.device):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(
        str(path), device=str(device), local_files_only=True, trust_remote_code=False,
        model_kwargs={"use_safetensors": True},
    )


@contextlib.contextmanager
def quiet_transformers():
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def build_mlm_head(encoder: nn.Module) -> nn.Module:
    """A freshly initialised MLM head for `encoder`, its decoder sharing the word embeddings."""
    from transformers import AutoModelForMaskedLM

    with quiet_transformers():
        mlm = AutoModelForMaskedLM.from_config(encoder.config)
    head = getattr(mlm, "cls", None)  # BERT family
    if head is None:
        head = getattr(mlm, "lm_head", None)  # RoBERTa family
    if head is None:
        raise NotImplementedError(f"no MLM head support for {type(mlm).__name__}")
    # Swap the random body for the real encoder, then re-tie so the decoder *is* the embedding matrix.
    setattr(mlm, mlm.base_model_prefix, encoder)
    mlm.get_output_embeddings().weight = encoder.get_input_embeddings().weight
    return head


class TrainableEncoder(nn.Module):
    """The transformer inside a SentenceTransformer, plus (optionally) an MLM head."""

    def __init__(self, st_model, with_mlm_head: bool) -> None:
        super().__init__()
        transformer = st_model[0]
        self.encoder = transformer.auto_model
        self.tokenizer = transformer.tokenizer
        self.mlm_head = build_mlm_head(self.encoder).to(self.device) if with_mlm_head else None

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @property
    def pad_multiple(self) -> int:
        # Tensor cores like multiples of 8; on CPU extra padding is pure waste.
        return 8 if self.device.type == "cuda" else 1

    @property
    def vocab_size(self) -> int:
        return self.encoder.get_input_embeddings().weight.shape[0]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.mlm_head is None:
            raise RuntimeError("this model was built without an MLM head")
        return self.mlm_head(hidden)
