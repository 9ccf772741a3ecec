"""Which cache files a run needs and where they live: the preflight's items mapped onto the two stores of
cachestore.py, planned before stage 1 (so `--skip_cache` can be judged before any download).

What changes a store's files (its key) is the family's answer (Family.latent_cache, Family.text_encoder_cache: e.g.
the task, the resolution, the encoders' files and revisions, an encoder's precision) plus the device (bf16 on CPU,
fp16 on GPU). Frame settings change which clips exist, not what a clip's file holds (its name says start, length
and bucket), so they are not in the key: changing --target_frames encodes only the new clip lengths.

Memory knobs never invalidate a cached item: knobs that only change how an encoder fits in memory (HV1.5's VAE
tiling) are not in the key, and a run asking for lower-precision outputs (fp8, CacheInputs.precision_knob)
reuses the higher-precision ones of the same files (`Caches.te_reuse`). A run that has begun training keeps the
caches it began with whatever these settings say now (encoding.kept_view).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import Settings
from ..data.preflight import DataReport
from ..families import CacheInputs
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


def key_settings(s: Settings, memory: MemoryPlan, inputs: CacheInputs, low_precision: bool | None = None) -> dict:
    """What a store's files are made from, as JSON-ready values: the settings and memory knobs `inputs` names, the
    weight files of its components (repo/file@revision; each file of a folder), what the family derives for the
    store, the device, and with a precision knob the precision ("fp8" or "bf16"; `low_precision` None: as the memory
    plan says)."""
    out: dict = {}
    for name in inputs.settings:
        value = getattr(s, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    files = s.family.weights_for(s.task, s.dit_variant)
    weights = (
        f"{p.repo_id}/{p.filename}@{s.revision_for(p.repo_id)}"
        for c, w in files.items()
        if c in inputs.components
        for p in w.parts()
    )
    out.update(weights=sorted(weights), device=s.device)
    out.update((name, getattr(memory, name)) for name in inputs.knobs)
    if inputs.derived is not None:
        out["derived"] = dict(inputs.derived(s))
    if inputs.precision_knob is not None:
        low = bool(getattr(memory, inputs.precision_knob)) if low_precision is None else low_precision
        out["precision"] = "fp8" if low else "bf16"
    return out


def plan(s: Settings, report: DataReport, memory: MemoryPlan, index: cachestore.DigestIndex | None) -> Caches:
    """The entries of every planned file. `index` remembers the digests of a folder input's files."""
    family = s.family
    lkey = key_settings(s, memory, family.latent_cache)
    tkey = key_settings(s, memory, family.text_encoder_cache)
    root = s.output_dir / "cache"
    caches = Caches(
        cachestore.Store(root / f"latents-{cachestore.settings_key(lkey)}"),
        cachestore.Store(root / f"te-{cachestore.settings_key(tkey)}", tkey.get("precision", "")),
        latent_key_info=lkey,
        te_key_info=tkey,
    )
    if tkey.get("precision") == "fp8":  # bf16 outputs of the same files are better and free to reuse
        bf16 = key_settings(s, memory, family.text_encoder_cache, low_precision=False)
        caches.te_reuse.append(cachestore.Store(root / f"te-{cachestore.settings_key(bf16)}", "bf16"))
    for f in report.planned:
        key = cachestore.media_key(f.identity, f.path, index)
        caches.media_keys[f.name] = key
        stem = Path(f.flat).stem
        caches.latents += cachestore.latent_entries(f.block, key, stem, f.cache_files)
        caches.te.append(cachestore.te_entry(f.block, stem, f.caption or "", family.frames.te_suffix))
    return caches


def missing(caches: Caches) -> list[str]:
    """The cache files not (validly) in the stores, as `block: name` lines (for --skip_cache's refusal)."""
    out = [f"{e.block}/{e.view_name}" for e in caches.latents if not caches.latent_store.valid(e)]
    stores = [caches.te_store, *caches.te_reuse]
    out += [f"{e.block}/{e.view_name}" for e in caches.te if not any(st.valid(e) for st in stores)]
    return out
