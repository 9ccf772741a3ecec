"""Stage 4: cache VAE latents with musubi's hv_1_5_cache_latents (+ SigLIP features and image latents for i2v).

Afterwards every block's cache folder must hold exactly the latent files the preflight predicted (frames.py mirrors
musubi's clip extraction): the item counts the user was shown are the items that train.
"""

from __future__ import annotations

from .. import cache, musubi
from ..context import RunContext
from ..errors import StageFailed
from ..runner import run_logged

NAME = "cache_latents"
TITLE = "cache latents"


def command(ctx: RunContext) -> musubi.Command:
    return musubi.cache_latents(ctx.settings, ctx.dataset_toml, ctx.weights)


def run(ctx: RunContext) -> dict:
    """Run the latent cache (or, with skip_cache, check the earlier complete cache), then compare its files with
    the preflight's prediction."""
    if ctx.settings.skip_cache:
        cache.require_complete(ctx.cache_root)
        return {"skipped": True, "reused": str(ctx.cache_root), "latent_caches": cache.latent_counts(ctx.cache_dirs)}
    cache.invalidate(ctx.cache_root)  # an interrupted re-cache must not pass for complete
    cmd = command(ctx)
    run_logged(cmd.executable(), stage=NAME, log_path=ctx.paths.log(NAME), env=ctx.env)
    expected = {name: ctx.data.cache_files(name) for name in ctx.cache_dirs}
    missing, extra = cache.compare(ctx.cache_dirs, expected, musubi.LATENT_CACHE_SUFFIX)
    counts = cache.latent_counts(ctx.cache_dirs)
    ctx.summary.update("items", {"latent_caches": counts})
    if extra:
        ctx.log(NAME)(f"warning: musubi wrote latent caches the preflight did not predict: {', '.join(extra[:10])}")
    if missing:
        raise StageFailed(
            NAME,
            f"musubi did not write {len(missing)} latent cache(s) the preflight predicted "
            f"(e.g. {', '.join(missing[:5])}); see the log",
            cmd.executable(),
            ctx.paths.log(NAME),
        )
    return {"exit_code": 0, "command": cmd.executable(), "latent_caches": counts}
