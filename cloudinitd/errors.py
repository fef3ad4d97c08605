"""Exceptions shared across cloudinitd, mapped to exit codes by the CLI."""

from __future__ import annotations

MAX_MESSAGE = 1000  # characters; a huge value echoed into a message is cut in the middle


def one_line(text: str) -> str:
    """`text` safe to print as one line: line breaks and control characters escaped.

    Messages echo values from plans and command lines; a newline (or U+2028,
    NUL, ESC) in such a value must not start a second `error:` line or drive
    the terminal.
    """
    if len(text) > MAX_MESSAGE:
        half = MAX_MESSAGE // 2
        text = f"{text[:half]}...{text[-half:]}"
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )



class CloudinitdError(Exception):
    """Base class. `exit_code` is what the CLI exits with (see DESIGN.md)."""

    exit_code = 1


class UsageError(CloudinitdError):
    """Bad command-line usage or bad input: exit 2."""

    exit_code = 2


class PlanError(UsageError):
    """A problem in a plan file, reported as FILE:LINE: message."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.message = message
        self.file = file
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.file and self.line:
            return one_line(f"{self.file}:{self.line}: {self.message}")
        if self.file:
            return one_line(f"{self.file}: {self.message}")
        return one_line(self.message)


class PlanErrors(UsageError):
    """Several plan problems found at once; each printed on its own line."""

    def __init__(self, errors: list[PlanError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class RunNotFound(UsageError):
    def __init__(self, run: str):
        super().__init__(f"no run named {run!r} (see `cloudinitd list`)")


class ProviderError(CloudinitdError):
    """A cloud or host provider failed."""


class CapacityError(ProviderError):
    """The cloud is full (quota, instance limit, insufficient capacity).

    `launched` lists instances the call did start before failing, if any:
    the overflow policy counts them and sends the rest to the next cloud.
    """

    def __init__(self, message: str, launched: list | None = None):
        super().__init__(message)
        self.launched = launched or []


class RemoteError(CloudinitdError):
    """A step on a remote host failed; carries the tail of its log."""

    def __init__(self, service: str, step: str, message: str, log_tail: str = "",
                 log_path: str | None = None):
        self.service = service
        self.step = step
        self.log_tail = log_tail
        self.log_path = log_path
        super().__init__(f"{service}: {step} failed: {message}")
