"""Errors a user can act on, each with the exit code the CLI returns for it."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or setup: the message says what is wrong and how to fix it. Exit code 2.

    Raised before any musubi process starts, so it costs the user seconds, not GPU time.
    """

    exit_code = 2


class ConfigError(UserError):
    """An invalid setting in `train.toml` or on the command line."""


class DataError(UserError):
    """The dataset (zip, media, captions) cannot be trained on as it is."""


class StageFailed(Exception):
    """A pipeline stage failed after it started (a musubi process exited non-zero, or an output check failed).

    Exit code 1. `command` is the argv that ran (None for in-process stages), `log_path` the stage's log.
    """

    exit_code = 1

    def __init__(
        self, stage: str, message: str, command: list[str] | None = None, log_path=None, returncode: int | None = None
    ):
        super().__init__(message)
        self.stage = stage
        self.command = command
        self.log_path = log_path
        self.returncode = returncode


class Interrupted(BaseException):
    """The user pressed Ctrl-C or the process got SIGTERM; the running stage was stopped cleanly.

    Exit code 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells report it. A BaseException, like
    KeyboardInterrupt, so that no `except Exception` (a retry loop, a cleanup) can turn a stop into a failure.
    """

    def __init__(self, signum: int, stage: str | None = None):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
        self.stage = stage
        self.exit_code = 128 + signum


class InternalError(Exception):
    """A bug: an unexpected exception inside the pipeline. Exit code 1. The message is one line (what failed and
    where); the traceback went to `log_path`."""

    exit_code = 1

    def __init__(self, message: str, log_path=None):
        super().__init__(message)
        self.log_path = log_path
