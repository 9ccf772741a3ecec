"""What the user sees of a musubi process: its lines as they come, but its tqdm bars replaced by one status line of
ours (the run's true step, ETA, loss, VRAM for training; items done for the caches). The log keeps everything raw.

Used as the `console` of runner.run_logged: it gets the child's raw bytes, splits them into lines (tqdm redraws with
`\\r`), hands each line to `feed` (which says whether the line was a progress bar it consumed), prints the others
(clearing the status line first on a terminal) and redraws the status at most every `redraw_s` seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from ..training.progress import LineSplitter, StatusPrinter, parse_tqdm


class ProgressConsole:
    """A console for run_logged. `feed(line) -> bool`: True when the line was progress (not printed); `status()`:
    the current status line (or "" for none yet); `tick()`: called on each redraw (e.g. to write metrics)."""

    def __init__(
        self,
        feed: Callable[[str], bool],
        status: Callable[[], str],
        stream: TextIO | None = None,
        is_tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        redraw_s: float = 0.5,
        tick: Callable[[], None] | None = None,
    ):
        self.stream = stream or sys.stdout
        tty = self.stream.isatty() if is_tty is None else is_tty
        self.printer = StatusPrinter(self.stream, is_tty=tty, clock=clock)
        self.feed, self.status, self.tick, self.clock, self.redraw_s = feed, status, tick, clock, redraw_s
        self.splitter = LineSplitter()
        self.last = float("-inf")

    def write(self, chunk: bytes) -> None:
        for line in self.splitter.feed(chunk):
            self._line(line)
        self._maybe_redraw()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """The process ended: print what is left and the last status as a finished line."""
        for line in self.splitter.flush():
            self._line(line)
        text = self.status()
        if self.tick:
            self.tick()
        if text:
            self.printer.final(text)

    def _line(self, line: str) -> None:
        if self.feed(line):
            return
        if not line.strip() and line.cr:
            return
        self.printer.clear()
        self.stream.write(line + "\n")
        self.stream.flush()
        self.last = float("-inf")  # redraw the status under the new line

    def _maybe_redraw(self) -> None:
        now = self.clock()
        if now - self.last < self.redraw_s:
            return
        self.last = now
        if self.tick:
            self.tick()
        text = self.status()
        if text:
            self.printer.show(text)


def is_bar(line: str) -> bool:
    """A tqdm progress line (musubi's cache and sampling bars): consumed, not echoed."""
    return parse_tqdm(line) is not None
