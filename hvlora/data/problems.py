"""Findings about the user's data, each naming the file and saying what to do."""

from __future__ import annotations

from dataclasses import dataclass

ERROR, WARNING, NOTE = "error", "warning", "note"


@dataclass(frozen=True)
class Problem:
    """One finding. `severity`: 'error' (the run stops before any weights load), 'warning' (reported; stops the
    run only with --strict) or 'note' (how musubi will treat the file; never stops anything). `file` is the path as
    the user knows it (inside the zip or the input folder); `fix` what to do about it."""

    severity: str
    file: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.severity}: {printable(self.file)}: {self.message}" + (f". {self.fix}" if self.fix else "")

    def to_json(self) -> dict:
        return {"severity": self.severity, "file": self.file, "message": self.message, "fix": self.fix}


def strict(problems: list[Problem]) -> list[Problem]:
    """--strict: every warning becomes an error."""
    return [Problem(ERROR, p.file, p.message, p.fix) if p.severity == WARNING else p for p in problems]


def printable(text: str) -> str:
    """`text` with control characters escaped (a newline in a file name becomes \\n), so one finding stays on one
    line of the console and the report table."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


RANK = {ERROR: 0, WARNING: 2, NOTE: 3}


def by_weight(problems: list[Problem]) -> list[Problem]:
    """Problems ordered by what they mean for the file: errors, then the reason it is left out, then warnings, then
    notes (stable within each)."""
    return sorted(problems, key=lambda p: 1 if p.message.startswith("left out: ") else RANK[p.severity])
