"""Stage 3: write musubi's dataset config for training (RUN/dataset.toml, see datasetconfig.py).

Each block reads its media from RUN/dataset/<block>/ and its caches from RUN/cache/<block>/, the run's view of the
shared, item-keyed cache stores (cachestore.py), which the cache stages fill.
"""

from __future__ import annotations

from ..core.context import RunContext
from ..core.errors import StageFailed
from ..data import datasetconfig

NAME = "dataset_toml"
TITLE = "write dataset TOML"


def run(ctx: RunContext) -> dict:
    """Write the TOML, verify it round-trips, set ctx.dataset_toml."""
    s, report, log = ctx.settings, ctx.data, ctx.log(NAME)
    tables = [
        datasetconfig.block_table(s, b, ctx.paths.block(name), ctx.paths.cache_view / name)
        for name, b in report.blocks.items()
    ]
    path = ctx.paths.dataset_toml
    try:
        datasetconfig.write(path, tables)
    except ValueError as e:
        raise StageFailed(NAME, str(e)) from None
    ctx.dataset_toml = path
    log(f"{path}: blocks {', '.join(report.blocks)}; caches seen through {ctx.paths.cache_view}")
    return {"dataset_config": str(path), "blocks": list(report.blocks), "cache_view": str(ctx.paths.cache_view)}
