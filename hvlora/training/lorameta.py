"""safetensors headers: read a LoRA's metadata without loading tensors, check a file is whole, rewrite metadata.

A safetensors file is `u64 little-endian header length N` + `N bytes of JSON` + the tensor data. The JSON maps each
tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data section) and may hold a
`__metadata__` dict of str -> str. musubi-tuner writes its training metadata there (`ss_*`, `modelspec.*`) plus two
hashes, `sshs_model_hash` and `sshs_legacy_hash`, computed by `utils/model_utils.py`
`precalculate_safetensors_hashes` over a serialization that keeps only the `ss_*` keys. `rewrite_metadata`
recomputes them the same way, so a file whose `ss_steps`/`ss_epoch` we change carries the hashes musubi would have
written for that metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..core.fsutil import atomic_write_bytes

MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on the JSON header
HASH_KEYS = ("sshs_model_hash", "sshs_legacy_hash")
_LEGACY_OFFSET = 0x100000  # addnet_hash_legacy: sha256 of 64 KiB at 1 MiB into the file, first 8 hex digits
_LEGACY_LENGTH = 0x10000


class SafetensorsError(ValueError):
    """A file is not a whole safetensors file (too short, bad header, size not matching the header)."""


def read_header(path: Path) -> tuple[int, dict[str, Any]]:
    """The header of a safetensors file: (N, the parsed JSON dict). Reads 8 + N bytes, no tensor data.

    Raises SafetensorsError when the length prefix is impossible (beyond the file or above 100 MB) or the JSON is
    not a dict; OSError when the file cannot be read.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise SafetensorsError(f"{path}: {size} bytes, shorter than the 8-byte header length")
        n = int.from_bytes(prefix, "little")
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise SafetensorsError(f"{path}: header length {n} does not fit in a file of {size} bytes")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise SafetensorsError(f"{path}: header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    return n, header


def data_end(header: Mapping[str, Any]) -> int:
    """The largest tensor end offset in a parsed header (bytes from the start of the data section); 0 if none.

    Raises SafetensorsError for an entry without valid `data_offsets`.
    """
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1]):
            raise SafetensorsError(f"tensor {name!r} has no valid data_offsets")
        end = max(end, int(offsets[1]))
    return end


def safetensors_problem(path: Path) -> str | None:
    """None when `path` is a whole safetensors file (size == 8 + N + the largest data end offset), else why not.

    A file cut short by a kill during `save_file` fails this check; so does a missing or empty file. Reads only the
    header.
    """
    path = Path(path)
    try:
        n, header = read_header(path)
        expected = 8 + n + data_end(header)
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, SafetensorsError) as e:
        return f"{path.name}: {e}"
    if size != expected:
        return f"{path.name} has {size} bytes, its header says {expected}"
    return None


def read_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` dict of a safetensors file (empty if it has none), read from the header only.

    Raises SafetensorsError for a broken header or non-string metadata values, OSError when unreadable.
    """
    _, header = read_header(path)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise SafetensorsError(f"{path}: __metadata__ is not a dict of strings")
    return dict(meta)


def musubi_hashes(tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) as musubi's `precalculate_safetensors_hashes` computes them.

    Mirrors musubi-tuner v0.3.4 utils/model_utils.py: serialize `tensors` (a dict of torch tensors) with only the
    `ss_*` metadata by `safetensors.torch.save`; the model hash is the sha256 (hex) of everything after the header
    (`addnet_hash_safetensors`), the legacy hash the first 8 hex digits of the sha256 of the 64 KiB at offset
    1 MiB (`addnet_hash_legacy`; of an empty read for files under 1 MiB).
    """
    from safetensors.torch import save

    data = save(dict(tensors), {k: v for k, v in metadata.items() if k.startswith("ss_")})
    n = int.from_bytes(data[:8], "little")
    model_hash = hashlib.sha256(data[8 + n :]).hexdigest()
    legacy_hash = hashlib.sha256(data[_LEGACY_OFFSET : _LEGACY_OFFSET + _LEGACY_LENGTH]).hexdigest()[:8]
    return model_hash, legacy_hash


def rewrite_metadata(path: Path, updates: Mapping[str, str], remove: Iterable[str] = ()) -> None:
    """Rewrite `path` with the same tensors and its metadata updated: `remove` keys dropped, then `updates` set.

    When the original metadata had `sshs_model_hash`/`sshs_legacy_hash`, both are recomputed for the new metadata
    as musubi does (`musubi_hashes`); values for them in `updates` are overridden. The new file is written to a
    temporary file in the same folder, fsynced, given the original's permission bits and moved over `path` with
    `os.replace`; a crash or error at any point leaves the original untouched (the temporary is removed when the
    error is seen in-process). Loads all tensors into memory (a LoRA: up to about 1 GB).

    Raises TypeError for a non-string key or value, SafetensorsError for a broken source file.
    """
    from safetensors.torch import load_file, save

    path = Path(path)
    _check_strings(updates)
    meta = read_metadata(path)
    had_hashes = any(k in meta for k in HASH_KEYS)
    for key in remove:
        meta.pop(key, None)
    meta.update(updates)
    tensors = load_file(path)
    if had_hashes:
        meta["sshs_model_hash"], meta["sshs_legacy_hash"] = musubi_hashes(tensors, meta)
    atomic_write_bytes(path, save(tensors, meta or None), mode=path.stat().st_mode & 0o7777)


def _check_strings(updates: Mapping[str, str]) -> None:
    """safetensors metadata is str -> str only; refuse anything else before any file is touched."""
    for k, v in updates.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"metadata must map str to str, got {k!r}: {v!r}")
