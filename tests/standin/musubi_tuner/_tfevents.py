"""A minimal TensorBoard event file writer (TFRecord framing + hand-encoded Event protos), so the stand-in's
`--logging_dir` run folder holds a real, readable event file without tensorboard installed.

Mirrors only the file layout musubi gets from accelerate's TensorBoard tracker:
`{logging_dir}/{log_prefix}{YYYYmmddHHMMSS}/{log_tracker_name or network_train}/events.out.tfevents.*`.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    c = _crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field_bytes(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _event(
    wall_time: float, step: int, *, file_version: str | None = None, scalars: dict[str, float] | None = None
) -> bytes:
    """Event{1: wall_time double, 2: step int64, 3: file_version string, 5: Summary{1: Value{1: tag, 2: float}}}"""
    msg = _varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3 | 0) + _varint(step)
    if file_version is not None:
        msg += _field_bytes(3, file_version.encode())
    if scalars:
        values = b"".join(
            _field_bytes(1, _field_bytes(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", v))
            for tag, v in scalars.items()
        )
        msg += _field_bytes(5, values)
    return msg


class EventWriter:
    """Appends records to `directory/events.out.tfevents.<unix time>.standin`."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"events.out.tfevents.{int(time.time())}.standin"
        self._f = open(self.path, "ab")
        self._write(_event(time.time(), 0, file_version="brain.Event:2"))

    def _write(self, data: bytes) -> None:
        header = struct.pack("<Q", len(data))
        self._f.write(header + struct.pack("<I", _masked_crc(header)) + data + struct.pack("<I", _masked_crc(data)))
        self._f.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._write(_event(time.time(), step, scalars=values))

    def close(self) -> None:
        self._f.close()
