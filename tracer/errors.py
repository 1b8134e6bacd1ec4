"""The one error type for bad input: it prints as a single line naming file, object and problem."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input. The CLI prints ``str(err)`` and exits with status 2."""

    def __init__(self, problem: str, *, file: str | None = None, obj: str | None = None):
        self.problem = problem
        self.file = file
        self.obj = obj
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.file, self.obj) if part)
        return f"{where}: {self.problem}" if where else self.problem
