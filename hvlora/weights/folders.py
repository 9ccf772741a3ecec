"""Model folders made of files stored elsewhere: whether one catalog file can stand in for a folder's own weight
shards, and the link that puts it there (WeightFolder.shared), so that a file two families use is stored once.

transformers' `from_pretrained(folder)` loads `model.safetensors` when the folder has it, before any shard index
(modeling_utils._get_resolved_checkpoint_files, 4.57), and refuses a safetensors file whose metadata names another
format than "pt" (load_state_dict: "does not contain the valid metadata"; no metadata at all is accepted). A file
stands in only when it holds exactly the tensors the folder's own index lists (the same names, so no weight is
left randomly initialised) and transformers accepts its header. Only headers are read (milliseconds).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..training.lorameta import SafetensorsError, read_header

ACCEPTED_FORMATS = (None, "pt")  # __metadata__["format"] values transformers loads as PyTorch weights


def standin_problem(shared: Path, index: Path) -> str | None:
    """Why the safetensors file `shared` cannot stand in for the shards that `index` (a transformers
    model.safetensors.index.json) lists, or None when it can. Never raises."""
    try:
        _, header = read_header(shared)
    except (OSError, SafetensorsError) as e:
        return f"its header cannot be read ({e})"
    meta = header.pop("__metadata__", None)
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if meta is not None and fmt not in ACCEPTED_FORMATS:
        return f"its safetensors metadata says format {fmt!r}, which transformers refuses (it loads 'pt')"
    try:
        wanted = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{index.name} cannot be read ({e})"
    have = set(header)
    if have != wanted:
        missing, extra = sorted(wanted - have), sorted(have - wanted)
        return (
            f"it holds {len(have)} tensors, {index.name} lists {len(wanted)}"
            + (f"; missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}" if missing else "")
            + (f"; not in the index {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}" if extra else "")
        )
    return None


def links_to(link: Path, target: Path) -> bool:
    """Whether `link` is (a link to) the file `target`: the same file on disk."""
    try:
        return link.exists() and os.path.samefile(link, target)
    except OSError:
        return False


def link(link: Path, target: Path) -> str:
    """Make `link` a relative symbolic link to `target` (what the folder's users follow wherever MODELS_DIR is
    mounted), or a hard link where the file system has no symbolic links; atomic (a temporary link is renamed over
    the old one). Returns "symbolic" or "hard". Raises OSError when neither can be made."""
    link.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{link.name}.", dir=link.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        try:
            os.symlink(os.path.relpath(target, link.parent), tmp)
            kind = "symbolic"
        except OSError:
            os.link(target, tmp)
            kind = "hard"
        os.replace(tmp, link)
    finally:
        tmp.unlink(missing_ok=True)
    return kind
