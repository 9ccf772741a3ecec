"""What the two cache stages share: find the entries the store lacks, give musubi exactly those to encode, move
what it wrote into the store, and show the run its files.

musubi reads a staging dataset (RUN/staging/<stage>/<block>/: a link to each item's media file, named by its
content key, beside its caption) with `--skip_existing --keep_cache` into the store's staging cache folder, so a
run killed mid-cache keeps every complete file and loses only the truncated one. When nothing is missing no musubi
process starts at all (no VAE or text encoder is loaded).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.console import ProgressConsole, is_bar
from ..core.context import RunContext
from ..core.errors import StageFailed
from ..core.runner import run_logged
from ..data import datasetconfig
from ..data.preflight import FileRecord
from ..training import progress, resume
from ..training.musubi import Command
from .cachestore import Entry, Store


@dataclass(frozen=True)
class Staged:
    """One file musubi is given to encode: `name` its staging name (content key + extension), `media` the file it
    links to, `caption` its caption text, `block` its dataset block."""

    block: str
    name: str
    media: Path
    caption: str


def encode(
    ctx: RunContext,
    stage: str,
    store: Store,
    entries: list[Entry],
    staged: dict[str, Staged],
    command: Callable[[Path], Command],
    reuse: list[Store] | None = None,
) -> dict:
    """Encode the entries `store` lacks (all with --recache) and link the run's view. `staged` maps an entry's
    item key to what musubi reads for it; `command(dataset_config)` builds the musubi invocation; `reuse`: stores
    of higher precision whose whole items count as cached (`Store.reuse_from`). A run that has begun training keeps
    its view as it is (`kept_view`). Returns summary info: items encoded and reused, damaged files removed, the
    cache's size. Raises StageFailed if musubi fails or does not write an expected file."""
    s, log = ctx.settings, ctx.log(stage)
    kept = kept_view(ctx, stage, entries)
    if kept is not None:
        return kept
    total = len({e.store_name for e in entries})
    if not s.recache:
        for root, n in store.reuse_from(reuse or [], entries).items():
            log(
                f"{n} of {total} items reused from {root} ({_precision(reuse, root)}: higher precision than the "
                f"{store.precision} asked for)"
            )
    todo, damaged = store.missing(entries, recache=s.recache)
    for problem in damaged:
        log(f"removed a damaged cache file: {problem}")
    log(f"{len(todo)} of {total} items to encode ({total - len(todo)} cached already in {store.root})")
    salvaged = 0
    if todo:
        for name in store.prepare_staging(todo, s.recache):
            log(f"removed a half-written file of an interrupted run: {name}")
        salvaged = sum(1 for e in todo if store.staged_path(e).is_file())
        if salvaged:
            log(f"{salvaged} of them were finished by an interrupted run and are kept (musubi skips them)")
        config = _staging_config(ctx, stage, store, todo, staged)
        cmd = command(config)
        counter = _CacheCounter(store, todo, stage)
        console = ProgressConsole(is_bar, counter.status_line, tick=counter.count)
        try:
            run_logged(
                cmd.executable(),
                stage=stage,
                log_path=ctx.paths.log(stage),
                env=ctx.env,
                console=console,
                on_start=ctx.on_child,
            )
        finally:
            console.close()
        problems = store.take_staged(todo)
        if problems:
            raise StageFailed(
                stage,
                f"musubi did not write {len(problems)} cache file(s) the preflight predicted "
                f"(e.g. {'; '.join(problems[:3])}); see the log",
                cmd.executable(),
                ctx.paths.log(stage),
            )
    store.link_view(entries, ctx.paths.cache_view)
    info = {
        "encoded": len(todo) - salvaged,
        "reused": total - len(todo),
        "salvaged": salvaged,
        "damaged_removed": len(damaged),
    }
    if todo:
        info["command"] = cmd.executable()
    info["cache_bytes"] = store.size_bytes(entries)
    info["store"] = str(store.root)
    return info


def kept_view(ctx: RunContext, stage: str, entries: list[Entry]) -> dict | None:
    """A run that has begun training trains on the caches it began with: RUN/cache/ holds hard links to them, so
    when every entry's file there is whole nothing is encoded or linked again, whatever the cache settings say now
    (another VAE tiling, --fp8_vl, another device). Returns the stage's info then, else None."""
    if not resume.SegmentLog.in_run(ctx.paths.root).all():
        return None
    view = ctx.paths.cache_view
    if any(Store.problem(view / e.block / e.view_name, e) for e in entries):
        return None
    total = len({e.store_name for e in entries})  # counted as `encode` counts them: files sharing content once
    ctx.log(stage)(
        f"0 of {total} items to encode: this run began training on the caches in {view} and keeps them (settings "
        "that change only how an encoder fits in memory never re-encode a run's data)"
    )
    size = sum((view / e.block / e.view_name).stat().st_size for e in entries)
    return {"encoded": 0, "reused": total, "salvaged": 0, "damaged_removed": 0, "cache_bytes": size, "store": str(view)}


def _precision(stores: list[Store] | None, root: Path) -> str:
    return next((st.precision or "" for st in stores or [] if st.root == root), "")


def _staging_config(ctx: RunContext, stage: str, store: Store, todo: list[Entry], staged: dict[str, Staged]) -> Path:
    """RUN/staging/<stage>/<block>/ with the items to encode and RUN/<stage>.toml reading them."""
    root = ctx.paths.staging(stage)
    keys = {e.item_key for e in todo}
    blocks: dict[str, list[Staged]] = {}
    for key in sorted(keys):
        item = staged[key]
        blocks.setdefault(item.block, []).append(item)
    tables = []
    for name, items in sorted(blocks.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for item in items:
            _link(item.media, folder / item.name)
            caption = folder / (Path(item.name).stem + datasetconfig.CAPTION_EXTENSION)
            caption.write_text(item.caption, encoding="utf-8")
        cache_dir = store.staging / "cache" / name
        tables.append(datasetconfig.block_table(ctx.settings, ctx.data.blocks[name], folder, cache_dir))
    path = ctx.paths.root / f"{stage}.toml"
    datasetconfig.write(path, tables)
    return path


def _link(src: Path, dst: Path) -> None:
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    os.symlink(os.path.realpath(src), dst)


def staged_media(files: list[FileRecord], keys: dict[str, str], dataset_dir: Callable[[str], Path]) -> dict:
    """item key -> Staged for the latent stage: each planned file under its content key."""
    out = {}
    for f in files:
        key = keys[f.name]
        out[key] = Staged(f.block, key + Path(f.flat).suffix, dataset_dir(f.block) / f.flat, f.caption or "")
    return out


class _CacheCounter:
    """The cache stage's progress: complete files in the staging folder (counted at most every 2 s), shown as
    `cache latents: 12/48 items  3.1 items/s  ETA 12s`."""

    def __init__(self, store: Store, todo: list[Entry], stage: str):
        label = stage.replace("_", " ").replace("text encoder outputs", "text-encoder outputs")
        self.store, self.todo = store, todo
        self.progress = progress.CacheProgress(len(todo), label=label)
        self.last = float("-inf")

    def count(self) -> None:
        now = time.monotonic()
        if now - self.last >= 2.0:
            self.last = now
            self.progress.update(sum(1 for e in self.todo if self.store.staged_path(e).is_file()))

    def status_line(self) -> str:
        return self.progress.status_line()
