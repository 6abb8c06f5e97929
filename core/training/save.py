"""Write the trained encoder as a sentence-transformers folder, with a model card, atomically.

The folder holds Transformer + mean Pooling (+ Normalize when the base had it), in safetensors, so
`SentenceTransformer(path)` loads it anywhere, offline. Pooling is always mean: that is what every
objective trained. The MLM head is not saved: it only served training.
It is written to a temporary sibling folder and renamed at the end, so a run killed while saving
never leaves a half-written model under the final name (the next save of that name clears the leftover).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import torch

from core.cards import CARD_FILE



def hardware(device: torch.device) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return {"device": device.type, "device_name": name, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "platform": platform.platform()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def save_encoder(st_model, out_dir: Path, card: dict) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize
    from sentence_transformers.sentence_transformer.modules import Pooling

    out_dir = Path(out_dir)
    transformer = st_model[0]
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), "mean")]
    if any(isinstance(m, Normalize) for m in st_model):
        modules.append(Normalize())
    encoder = SentenceTransformer(modules=modules, device=str(next(transformer.parameters()).device))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    encoder.save(str(tmp), create_model_card=False, safe_serialization=True)
    (tmp / CARD_FILE).write_text(json.dumps(card, indent=1, default=str))
    (tmp / "README.md").write_text(model_card_markdown(card))
    if out_dir.exists() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    os.replace(tmp, out_dir)
    return out_dir


def _curve(losses: list[float], points: int = 20) -> str:
    if not losses:
        return "(no steps)"
    stride = max(1, len(losses) // points)
    picks = list(range(0, len(losses), stride))
    if picks[-1] != len(losses) - 1:
        picks.append(len(losses) - 1)
    return "\n".join(f"| {i + 1} | {losses[i]:.4f} |" for i in picks)


def model_card_markdown(card: dict) -> str:
    params = "\n".join(f"| `{k}` | `{v}` |" for k, v in card.get("params", {}).items())
    details = "\n".join(f"| `{k}` | `{v}` |" for k, v in card.get("objective_details", {}).items())
    hw = card.get("hardware", {})
    base = f"`{card['base_encoder']}` (`{card['base']}`)" if card.get("base_encoder") else f"`{card['base']}`"
    source = (f"corpus `{card['corpus']}` (data hash `{card.get('data_hash')}`), job {card.get('job_id')}"
              if card.get("corpus") else "texts given directly to `train()`")
    return f"""# {card.get('name') or 'NoteSpace encoder'}

Continued pre-training of a sentence encoder by NoteSpace, on the user's own notes, offline.

- **Objective:** `{card['objective']}`
- **Base encoder:** {base}
- **Trained on:** {source}
- **Usable documents:** {card['usable_docs']} of {card['total_docs']}
- **Steps:** {card['steps']} ({card['seconds']:.0f} s, {card['tokens_per_s']:.0f} tokens/s)
- **Final loss:** {card['final_loss']}
- **Hardware:** {hw.get('device_name')} ({hw.get('device')}), torch {hw.get('torch')}, {hw.get('threads')} threads
- **Saved:** Transformer + mean Pooling{' + Normalize' if card.get('normalize') else ''} (MLM head not kept)

Load it with `SentenceTransformer(path)`; nothing is downloaded.

## Settings

| parameter | value |
|---|---|
{params}

## Objective details

| detail | value |
|---|---|
{details}

## Loss curve (sampled; every step is in `{CARD_FILE}`)

| step | loss |
|---|---|
{_curve(card.get('losses', []))}
"""
