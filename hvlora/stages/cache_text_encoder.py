"""Stage 5: cache text-encoder outputs (Qwen2.5-VL + byT5) with musubi's hv_1_5_cache_text_encoder_outputs."""
from __future__ import annotations

from .. import cache, musubi
from ..context import RunContext
from ..errors import StageFailed
from ..runner import run_logged

NAME = "cache_text_encoder_outputs"
TITLE = "cache text-encoder outputs"


def command(ctx: RunContext) -> musubi.Command:
    return musubi.cache_text_encoder_outputs(ctx.settings, ctx.dataset_toml, ctx.weights)


def run(ctx: RunContext) -> dict:
    """Run the text cache; then every latent must have its text cache (musubi skips latents without one), and
    the cache is marked complete for --skip_cache."""
    if ctx.settings.skip_cache:
        cache.require_complete(ctx.cache_root)
        return {"skipped": True, "reused": str(ctx.cache_root),
                "text_encoder_caches": cache.text_encoder_counts(ctx.cache_dirs)}
    cmd = command(ctx)
    run_logged(cmd.executable(), stage=NAME, log_path=ctx.paths.log(NAME), env=ctx.env)
    counts = cache.text_encoder_counts(ctx.cache_dirs)
    ctx.summary.update("items", {"text_encoder_caches": counts})
    expected = {"images": len(ctx.dataset.images), "videos": len(ctx.dataset.videos)}
    short = {k: (counts.get(k, 0), expected[k]) for k in ctx.cache_dirs if counts.get(k, 0) < expected[k]}
    if short:
        detail = ", ".join(f"{k}: {got} of {want}" for k, (got, want) in short.items())
        raise StageFailed(NAME, f"musubi wrote fewer text-encoder caches than captions ({detail}); see the log",
                          cmd.executable(), ctx.paths.log(NAME))
    cache.mark_complete(ctx.cache_root, {"latent_caches": cache.latent_counts(ctx.cache_dirs),
                                         "text_encoder_caches": counts, "run": str(ctx.paths.root)})
    return {"exit_code": 0, "command": cmd.executable(), "text_encoder_caches": counts}
