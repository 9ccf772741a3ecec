"""Stage 4: cache VAE latents with the family's musubi cache_latents script (with i2v's image latents and features),
only for the items the latent store lacks (encoding.py): a re-run with nothing changed starts no process.

Every file the preflight predicted (frames.py mirrors musubi's clip extraction) must then be in the store: the
item counts the user was shown are the items that train.
"""

from __future__ import annotations

from ..cache import encoding
from ..core.context import RunContext
from ..training.musubi import Command

NAME = "cache_latents"
TITLE = "cache latents"


def command(ctx: RunContext, dataset_config=None) -> Command:
    """The musubi command (on the staging config of the items to encode; the dry run shows it on dataset.toml)."""
    scripts = ctx.settings.family.scripts
    return scripts.cache_latents(ctx.settings, dataset_config or ctx.dataset_toml, ctx.weights, ctx.plan.memory)


def run(ctx: RunContext) -> dict:
    """Encode what is missing, link the run's view; with --skip_cache only link (everything was checked present
    before stage 1)."""
    c = ctx.caches
    if ctx.settings.skip_cache:
        if encoding.kept_view(ctx, NAME, c.latents) is None:
            c.latent_store.link_view(c.latents, ctx.paths.cache_view)
        return {"skipped": True, "reused": len(c.latents), "store": str(c.latent_store.root)}
    staged = encoding.staged_media(ctx.data.planned, c.media_keys, ctx.paths.block)
    info = encoding.encode(ctx, NAME, c.latent_store, c.latents, staged, lambda cfg: command(ctx, cfg))
    ctx.summary.update(
        "items",
        {
            "latents_encoded": info["encoded"],
            "latents_reused": info["reused"],
            "latent_cache_bytes": info["cache_bytes"],
        },
    )
    return info
