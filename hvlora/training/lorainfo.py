"""LoRA files that describe themselves: the metadata this project adds to every checkpoint and to both final files.

musubi writes its own `ss_*` keys (contract §6) with its segment-local step and epoch counts; here they are set to
the run's true totals, and `hvlora.*` keys say what a user needs to use and reproduce the LoRA: the trigger word
(also as `modelspec.trigger_phrase`, the SAI model-spec key ComfyUI's LoRA info shows), the base model (repo, file,
sha256 from models/manifest.json), the model family, task, rank/alpha, resolution and frame settings, items per bucket, the data's
fingerprint and this project's version. Read them with `safetensors.safe_open(path, "pt").metadata()`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .. import __version__
from ..core.config import Settings
from ..core.fsutil import atomic_write_bytes
from ..weights.manifest import Manifest
from . import lorameta


def base_metadata(s: Settings, items_per_bucket: dict, data_fingerprint: str, models_dir: Path) -> dict[str, str]:
    """The keys every LoRA file of this run gets (besides the step counts)."""
    dit = s.family.weights_for(s.task, s.dit_variant)["dit"]
    record = Manifest(models_dir).get(dit.key)
    md = {
        "modelspec.trigger_phrase": s.trigger_word.strip(),
        "hvlora.version": __version__,
        "hvlora.trigger_word": s.trigger_word.strip(),
        "hvlora.base_model": f"{dit.repo_id}/{dit.filename}",
        "hvlora.base_model_sha256": record.sha256 if record else "",
        "hvlora.base_model_commit": record.commit if record else "",
        "hvlora.model_family": s.model_family,
        "hvlora.task": s.task,
        "hvlora.dit_variant": s.dit_variant,
        "hvlora.rank": str(s.rank),
        "hvlora.alpha": f"{s.alpha:g}",
        "hvlora.resolution": f"{s.resolution[0]}x{s.resolution[1]}",
        "hvlora.target_frames": ",".join(map(str, s.target_frames)),
        "hvlora.frame_extraction": s.frame_extraction,
        "hvlora.lr_scheduler": s.lr_scheduler,
        "hvlora.learning_rate": f"{s.learning_rate:g}",
        "hvlora.items_per_bucket": json.dumps(items_per_bucket, sort_keys=True),
        "hvlora.data_fingerprint": data_fingerprint,
    }
    return md


def step_metadata(step: int, steps_per_epoch: int, total_steps: int) -> dict[str, str]:
    """musubi's step keys with true numbers: ss_steps (the global step the file was saved at), ss_epoch (the epochs
    completed then, rounded up as musubi counts a started epoch) and the run's ss_max_train_steps."""
    epoch = math.ceil(step / steps_per_epoch) if steps_per_epoch else 0
    return {
        "ss_steps": str(step),
        "ss_epoch": str(epoch),
        "ss_max_train_steps": str(total_steps),
        "hvlora.steps": str(step),
        "hvlora.epochs": f"{step / steps_per_epoch:g}" if steps_per_epoch else "0",
    }


def stamp(path: Path, base: dict[str, str], step: int, steps_per_epoch: int, total_steps: int) -> None:
    """Rewrite `path`'s metadata with `base` and the true step keys (hashes recomputed as musubi computes them)."""
    lorameta.rewrite_metadata(path, {**base, **step_metadata(step, steps_per_epoch, total_steps)})


def missing_keys(path: Path, expected: dict[str, str]) -> list[str]:
    """Keys of `expected` that `path`'s metadata lacks or holds with another value (e.g. after a conversion)."""
    md = lorameta.read_metadata(path)
    return [k for k, v in expected.items() if md.get(k) != v]


LORA_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")  # musubi networks/lora.py LoRAModule's keys
DDP_PREFIX = "module."  # accelerate's save_state keeps a DDP-wrapped network's prefix (unwrap=False)


def from_state(state_dir: Path, dst: Path, save_precision: str, metadata: dict[str, str]) -> int:
    """Write the LoRA file musubi would have saved from the training state `state_dir`, atomically, and return its
    tensor count.

    A state's model.safetensors is the LoRA network's state dict (accelerate's save_state after musubi's hook drops
    the DiT): musubi's own key names (`lora_unet_..._attn_q.lora_down.weight`, `.lora_up.weight`, `.alpha`); a
    `module.` prefix of a network DDP-wrapped over several GPUs is dropped. As musubi's LoRANetwork.save_weights does,
    every tensor is cast to the --save_precision dtype and the metadata gets sshs_model_hash/sshs_legacy_hash
    (`lorameta.musubi_hashes`). Raises ValueError when the file holds anything but LoRA weights, SafetensorsError
    or OSError when it cannot be read.
    """
    import torch
    from safetensors.torch import load_file, save

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[save_precision]
    weights = load_file(Path(state_dir) / "model.safetensors")
    tensors = {k.removeprefix(DDP_PREFIX): v.to(dtype).contiguous() for k, v in weights.items()}
    odd = sorted(k for k in tensors if not k.endswith(LORA_SUFFIXES))
    if not tensors or odd:
        raise ValueError(f"{state_dir}/model.safetensors holds no LoRA network weights ({odd[:3] or 'empty'})")
    meta = dict(metadata)
    meta["sshs_model_hash"], meta["sshs_legacy_hash"] = lorameta.musubi_hashes(tensors, meta)
    atomic_write_bytes(dst, save(tensors, meta))
    return len(tensors)
