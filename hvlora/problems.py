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
        return f"{self.severity}: {self.file}: {self.message}" + (f". {self.fix}" if self.fix else "")

    def to_json(self) -> dict:
        return {"severity": self.severity, "file": self.file, "message": self.message, "fix": self.fix}


def strict(problems: list[Problem]) -> list[Problem]:
    """--strict: every warning becomes an error."""
    return [Problem(ERROR, p.file, p.message, p.fix) if p.severity == WARNING else p for p in problems]
