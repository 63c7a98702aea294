"""Errors that hasim reports to users: each names the input, where in it, and what was expected."""

from __future__ import annotations

from pathlib import Path


class HasimError(Exception):
    """Base class of every error hasim raises on purpose."""


class InputError(HasimError, ValueError):
    """Bad user input: a file, a config value or an argument.

    The message reads ``<file>:<line>:<column>: <problem> (expected <what>)`` with the
    parts that are known; ``line`` and ``column`` are 1-based, ``column`` may be a
    column name.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: int | str | None = None,
        expected: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        self.expected = expected
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path
            if self.line is not None:
                where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}" if self.line is not None else f" column {self.column}"
            where += ": "
        text = where + self.problem
        if self.expected:
            text += f" (expected {self.expected})"
        return text


class MissingDataError(HasimError, FileNotFoundError):
    """A data file is not on disk; the message names the command that fetches it."""

    def __init__(self, path: str | Path, fix: str) -> None:
        self.path = str(path)
        self.fix = fix
        super().__init__(f"missing data file {self.path}\n  fix: {fix}")
