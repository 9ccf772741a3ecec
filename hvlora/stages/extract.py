"""Stage 2: lay out the checked data as musubi reads it: one flat folder per dataset block, each media file beside
its final caption.

The preflight (preflight.py, run before stage 1) already unpacked a zip's media into OUTPUT_DIR/cache/media/ (named
by content, shared by all runs) and decided every file's block and flat name (`a/b/c.png` -> `a__b__c.png`: musubi
globs a folder non-recursively and names caches after stems, so equal names in different folders both survive this
way). Here media are hard-linked from that store (a folder input is symlinked, never copied or modified) into
RUN/dataset/<block>/, and each caption is written with the trigger word applied. The input is never written to.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..core.context import RunContext
from ..core.fsutil import link_or_copy
from ..data.datasetconfig import CAPTION_EXTENSION
from ..data.preflight import DataReport

NAME = "extract"
TITLE = "extract data"


def run(ctx: RunContext) -> dict:
    """Create RUN/dataset/<block>/ for every block of the preflight's report (ctx.data)."""
    report: DataReport = ctx.data
    log = ctx.log(NAME)
    shutil.rmtree(ctx.paths.dataset, ignore_errors=True)  # a resumed run lays its data out anew (links only)
    for block in report.blocks.values():
        folder = ctx.paths.block(block.name)
        folder.mkdir(parents=True, exist_ok=True)
        for f in block.files:
            dst = folder / f.flat
            if report.input_kind == "folder":
                os.symlink(f.path, dst)  # nothing copied; the user's file is only read
            else:
                link_or_copy(f.path, dst)
            (folder / (Path(f.flat).stem + CAPTION_EXTENSION)).write_text(f.caption or "", encoding="utf-8")
        log(
            f"{folder}: {len(block.files)} {block.kind}(s)"
            + (f", source_fps {block.source_fps}" if block.source_fps else "")
        )
    counts = {name: len(b.files) for name, b in report.blocks.items()}
    return {"blocks": counts, "dataset_dir": str(ctx.paths.dataset)}
