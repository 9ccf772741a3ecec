"""Which cache files a run needs and where they live: the preflight's items mapped onto the two stores of
cachestore.py, planned before stage 1 (so `--skip_cache` can be judged before any download).

What changes a latent file (its store key): task (i2v adds image latents and SigLIP features), resolution (an
image's file name carries its original size, not its bucket), the VAE (and SigLIP) files and revisions and the
device (bf16 on CPU, fp16 on GPU). What changes a text-encoder file: the Qwen2.5-VL and byT5 files, their precision
(bf16, or fp8 with --fp8_vl) and the device. Frame settings change which clips exist, not what a clip's file holds
(its name says start, length and bucket), so they are not in the key: changing --target_frames encodes only the new
clip lengths.

Memory knobs never invalidate a cached item: the VAE tiling (--vae_sample_size, --vae_enable_patch_conv) only
changes how the VAE fits in memory and is not in the key, and a run asking for fp8 text-encoder outputs reuses
the bf16 ones of the same files (equal or higher precision; `Caches.te_reuse`). A run that has begun training keeps
the caches it began with whatever these settings say now (encoding.kept_view).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import Settings
from ..data.preflight import DataReport
from ..families.hunyuan_video_1_5 import catalog
from ..training.presets import MemoryPlan
from . import cachestore


@dataclass
class Caches:
    """The stores a run uses and its entries in them (`latents`, `te`), the text-encoder stores of higher precision
    whose items it may reuse (`te_reuse`), plus the content key of every planned media file (input name -> key)."""

    latent_store: cachestore.Store
    te_store: cachestore.Store
    te_reuse: list[cachestore.Store] = field(default_factory=list)  # higher-precision stores of the same files
    latents: list[cachestore.Entry] = field(default_factory=list)
    te: list[cachestore.Entry] = field(default_factory=list)
    media_keys: dict[str, str] = field(default_factory=dict)
    latent_key_info: dict = field(default_factory=dict)
    te_key_info: dict = field(default_factory=dict)


def _weights(s: Settings, components: tuple[str, ...]) -> list[str]:
    files = catalog.weights_for(s.task, s.dit_variant)
    return sorted(f"{w.repo_id}/{w.filename}@{s.revision_for(w.repo_id)}" for c, w in files.items() if c in components)


def latent_settings(s: Settings) -> dict:
    """What the latent store's key covers (not the VAE tiling: see the module docstring)."""
    return {
        "task": s.task,
        "resolution": list(s.resolution),
        "weights": _weights(s, ("vae", "image_encoder")),
        "device": s.device,
    }


def te_settings(s: Settings, fp8_vl: bool) -> dict:
    """What a text-encoder store's key covers: the encoder files, their precision and the device."""
    return {
        "weights": _weights(s, ("text_encoder", "byt5")),
        "precision": "fp8" if fp8_vl else "bf16",
        "device": s.device,
    }


def plan(s: Settings, report: DataReport, memory: MemoryPlan, index: cachestore.DigestIndex | None) -> Caches:
    """The entries of every planned file. `index` remembers the digests of a folder input's files."""
    lkey, tkey = latent_settings(s), te_settings(s, memory.fp8_vl)
    root = s.output_dir / "cache"
    caches = Caches(
        cachestore.Store(root / f"latents-{cachestore.settings_key(lkey)}"),
        cachestore.Store(root / f"te-{cachestore.settings_key(tkey)}", "fp8 Qwen2.5-VL" if memory.fp8_vl else "bf16"),
        latent_key_info=lkey,
        te_key_info=tkey,
    )
    if memory.fp8_vl:  # bf16 outputs of the same files are better and free to reuse
        caches.te_reuse.append(cachestore.Store(root / f"te-{cachestore.settings_key(te_settings(s, False))}", "bf16"))
    for f in report.planned:
        key = cachestore.media_key(f.identity, f.path, index)
        caches.media_keys[f.name] = key
        stem = Path(f.flat).stem
        caches.latents += cachestore.latent_entries(f.block, key, stem, f.cache_files)
        caches.te.append(cachestore.te_entry(f.block, stem, f.caption or ""))
    return caches


def missing(caches: Caches) -> list[str]:
    """The cache files not (validly) in the stores, as `block: name` lines (for --skip_cache's refusal)."""
    out = [f"{e.block}/{e.view_name}" for e in caches.latents if not caches.latent_store.valid(e)]
    stores = [caches.te_store, *caches.te_reuse]
    out += [f"{e.block}/{e.view_name}" for e in caches.te if not any(st.valid(e) for st in stores)]
    return out
