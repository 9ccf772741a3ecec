"""Stage 5: cache text-encoder outputs (Qwen2.5-VL + byT5) with musubi's hv_1_5_cache_text_encoder_outputs."""

from __future__ import annotations

from pathlib import Path

from .. import cache, frames, musubi
from ..context import RunContext
from ..errors import StageFailed
from ..runner import run_logged

NAME = "cache_text_encoder_outputs"
TITLE = "cache text-encoder outputs"


def command(ctx: RunContext) -> musubi.Command:
    return musubi.cache_text_encoder_outputs(ctx.settings, ctx.dataset_toml, ctx.weights)


def run(ctx: RunContext) -> dict:
    """Run the text cache; every media file needs its text cache (musubi silently skips latents without one),
    then the cache is marked complete for --skip_cache."""
    if ctx.settings.skip_cache:
        cache.require_complete(ctx.cache_root)
        return {
            "skipped": True,
            "reused": str(ctx.cache_root),
            "text_encoder_caches": cache.text_encoder_counts(ctx.cache_dirs),
        }
    cmd = command(ctx)
    run_logged(cmd.executable(), stage=NAME, log_path=ctx.paths.log(NAME), env=ctx.env)
    expected = {
        name: {frames.text_cache_name(Path(f.flat).stem) for f in ctx.data.blocks[name].files}
        for name in ctx.cache_dirs
    }
    missing, _ = cache.compare(ctx.cache_dirs, expected, musubi.TEXT_ENCODER_CACHE_SUFFIX)
    counts = cache.text_encoder_counts(ctx.cache_dirs)
    ctx.summary.update("items", {"text_encoder_caches": counts})
    if missing:
        raise StageFailed(
            NAME,
            f"musubi did not write {len(missing)} text-encoder cache(s) (e.g. {', '.join(missing[:5])}); see the log",
            cmd.executable(),
            ctx.paths.log(NAME),
        )
    cache.mark_complete(
        ctx.cache_root,
        {
            "latent_caches": cache.latent_counts(ctx.cache_dirs),
            "text_encoder_caches": counts,
            "run": str(ctx.paths.root),
        },
    )
    return {"exit_code": 0, "command": cmd.executable(), "text_encoder_caches": counts}
