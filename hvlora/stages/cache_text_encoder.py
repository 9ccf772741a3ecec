"""Stage 5: cache text-encoder outputs with the family's musubi cache_text_encoder_outputs script, only
for the captions the store lacks: each output is keyed by the final caption text, so one changed caption encodes
that one caption, and files sharing a caption share one output."""

from __future__ import annotations

from pathlib import Path

from ..cache import encoding
from ..core.context import RunContext
from ..training.musubi import Command

NAME = "cache_text_encoder_outputs"
TITLE = "cache text-encoder outputs"


def command(ctx: RunContext, dataset_config=None) -> Command:
    return ctx.settings.family.scripts.cache_text_encoder_outputs(
        ctx.settings, dataset_config or ctx.dataset_toml, ctx.weights, ctx.plan.memory
    )


def run(ctx: RunContext) -> dict:
    """Encode the missing captions, link the run's view (musubi's trainer skips a latent whose `_te` file is
    missing, so every planned file gets one)."""
    c = ctx.caches
    if ctx.settings.skip_cache:
        if encoding.kept_view(ctx, NAME, c.te) is None:
            c.te_store.reuse_from(c.te_reuse, c.te)
            c.te_store.link_view(c.te, ctx.paths.cache_view)
        return {"skipped": True, "reused": len(c.te), "store": str(c.te_store.root)}
    staged = {}
    for f, e in zip(ctx.data.planned, c.te, strict=True):
        staged.setdefault(
            e.item_key,
            encoding.Staged(f.block, e.item_key + Path(f.flat).suffix, ctx.paths.block(f.block) / f.flat, e.caption),
        )
    info = encoding.encode(ctx, NAME, c.te_store, c.te, staged, lambda cfg: command(ctx, cfg), c.te_reuse)
    ctx.summary.update(
        "items",
        {
            "captions_encoded": info["encoded"],
            "captions_reused": info["reused"],
            "text_encoder_cache_bytes": info["cache_bytes"],
        },
    )
    return info
