"""Time as this project writes it: UTC timestamps for records and names, and durations for people."""

from __future__ import annotations

import datetime as dt
import math


def utc_now() -> str:
    """The current time as ISO 8601 UTC with seconds, e.g. '2025-01-02T03:04:05+00:00' (summary.json, segments.json,
    lock.json, models/manifest.json)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def utc_stamp(now: dt.datetime | None = None) -> str:
    """A UTC time for file and folder names, e.g. '20250102-030405' (run folders, kept-aside outputs)."""
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d-%H%M%S")


def format_duration(seconds: float | None) -> str:
    """A duration for the console: '1.2s' (under 10 s), '12s', '3m05s', '2h12m', '2d03h'; '?' for None, NaN, inf
    or a negative value."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 9.95:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    d, rem = divmod(s, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    if d >= 2:
        return f"{d}d{h:02d}h"
    if d or h:
        return f"{24 * d + h}h{m:02d}m"
    if m:
        return f"{m}m{sec:02d}s"
    return f"{sec}s"


def ago(seconds: float) -> str:
    """An age for the console: '14m00s ago'; 'just now' under 5 s or for a time in the future."""
    return "just now" if seconds < 5 else f"{format_duration(seconds)} ago"
