"""Exceptions and warnings that parafit raises on purpose.

Every error that comes from bad user input is an :class:`InputError` (also a
``ValueError``) and carries where it happened in ``.path``, ``.line`` and ``.key``
so that tests and tools can read the location as data. The CLI prints such errors
as one line and exits with code 2.

Message form: ``<where>: <what is wrong>; got <value!r>. <what to do>.``
"""

from pathlib import Path

__all__ = [
    "ConfigError",
    "EngineError",
    "ExpressionError",
    "FormatError",
    "InputError",
    "ParafitError",
    "ParafitWarning",
    "ResultsError",
    "UnknownNameError",
]


class ParafitError(Exception):
    """Base of every exception parafit raises on purpose."""


class InputError(ParafitError, ValueError):
    """Raised for bad user input, before any work starts.

    Attributes:
        path: the file the problem is in, if any.
        line: 1-based line number in that file, if known.
        key: the key, entry or parameter the problem concerns, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.key = key
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
        if where and not self.message.startswith(where):
            return f"{where}: {self.message}"
        return self.message


class ConfigError(InputError):
    """Raised when ``parafit.yaml`` has an unknown key, a wrong type or a missing file."""


class FormatError(InputError):
    """Raised when a model, job-collection, data-set or geometry file cannot be parsed."""


class ExpressionError(InputError):
    """Raised when a data-set expression is not allowed or refers to unknown names.

    Attributes:
        entry: the expression text.
    """

    def __init__(
        self, message: str, *, entry: str | None = None, **kwargs: object
    ) -> None:
        self.entry = entry
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class UnknownNameError(ParafitError, LookupError):
    """Raised when a registry (engines, extractors, optimizers, ...) has no such name."""

    def __str__(self) -> str:  # LookupError/KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class EngineError(ParafitError, RuntimeError):
    """Raised before any evaluation, when an engine cannot be set up."""


class ResultsError(ParafitError, OSError):
    """Raised when a results directory exists, is locked, or cannot be read."""


class ParafitWarning(UserWarning):
    """Something the caller should change (deprecated key, ignored option)."""
