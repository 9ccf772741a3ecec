"""A minimal TensorBoard event file writer (TFRecord framing + hand-encoded Event protos), so the stand-in's
`--logging_dir` run folder holds a real, readable event file without tensorboard installed; and a matching
reader for tests (`read_scalars`), which also reads the scalar summaries of real event files.

Mirrors only the file layout musubi gets from accelerate's TensorBoard tracker:
`{logging_dir}/{log_prefix}{YYYYmmddHHMMSS}/{log_tracker_name or network_train}/events.out.tfevents.*`, and that
the tracker flushes after every `accelerator.log` call (each record is flushed here).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
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


# --- reading (for tests) ----------------------------------------------------------------------------------------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def _fields(data: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message; value: int, bytes, or raw 4/8-byte chunks."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield num, wire, value


def read_records(path: Path) -> Iterator[bytes]:
    """The payloads of a TFRecord file, CRCs checked; a truncated last record ends the iteration."""
    data = Path(path).read_bytes()
    pos = 0
    while pos + 12 <= len(data):
        header = data[pos : pos + 8]
        if struct.unpack("<I", data[pos + 8 : pos + 12])[0] != _masked_crc(header):
            raise ValueError(f"{path}: bad length CRC at {pos}")
        n = struct.unpack("<Q", header)[0]
        if pos + 12 + n + 4 > len(data):
            return
        payload = data[pos + 12 : pos + 12 + n]
        if struct.unpack("<I", data[pos + 12 + n : pos + 16 + n])[0] != _masked_crc(payload):
            raise ValueError(f"{path}: bad data CRC at {pos}")
        yield payload
        pos += 16 + n


def read_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} in file order, from one event file or every `events.out.tfevents.*` below a
    folder (sorted by path)."""
    path = Path(path)
    files = sorted(path.rglob("events.out.tfevents.*")) if path.is_dir() else [path]
    out: dict[str, list[tuple[int, float]]] = {}
    for file in files:
        for record in read_records(file):
            step, values = 0, []
            for num, _, value in _fields(record):
                if num == 2:
                    step = value
                elif num == 5:
                    for vnum, _, v in _fields(value):
                        if vnum != 1:
                            continue
                        tag, simple = None, None
                        for fnum, fwire, f in _fields(v):
                            if fnum == 1:
                                tag = f.decode()
                            elif fnum == 2 and fwire == 5:
                                simple = struct.unpack("<f", f)[0]
                        if tag is not None and simple is not None:
                            values.append((tag, simple))
            for tag, v in values:
                out.setdefault(tag, []).append((step, v))
    return out
