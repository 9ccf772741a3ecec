"""Stage 4: cache VAE latents with musubi's hv_1_5_cache_latents (+ SigLIP features and image latents for i2v)."""
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
    """Run the latent cache (or, with skip_cache, check the earlier complete cache). Fails when musubi produced
    no latent for a block: then nothing of that kind would train."""
    if ctx.settings.skip_cache:
        cache.require_complete(ctx.cache_root)
        return {"skipped": True, "reused": str(ctx.cache_root), "latent_caches": cache.latent_counts(ctx.cache_dirs)}
    cache.invalidate(ctx.cache_root)  # an interrupted re-cache must not pass for complete
    cmd = command(ctx)
    run_logged(cmd.executable(), stage=NAME, log_path=ctx.paths.log(NAME), env=ctx.env)
    counts = cache.latent_counts(ctx.cache_dirs)
    ctx.summary.update("items", {"latent_caches": counts})
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise StageFailed(NAME, f"musubi wrote no latent cache for {', '.join(empty)} in {ctx.cache_root}. For "
                          f"videos: each must have at least {min(ctx.settings.target_frames)} frames (the "
                          "shortest --target_frames). See the log.", cmd.executable(), ctx.paths.log(NAME))
    return {"exit_code": 0, "command": cmd.executable(), "latent_caches": counts}

