"""User-facing error types.

Everything a user can get wrong (a config key, a data file, a CLI flag) raises a subclass of
:class:`UserError`. The CLIs turn these into a one- or two-line message and exit status 2, so the
user sees *what* and *where* instead of a traceback; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input, reported without a traceback."""

    def __reduce__(self):
        # Ray ships worker exceptions to the driver by pickling; keep the subclass, its message
        # and its attributes although the subclasses' __init__ take keyword-only arguments.
        return (_restore, (type(self), str(self), dict(self.__dict__)))


def _restore(cls: type[UserError], message: str, attributes: dict) -> UserError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(attributes)
    return error


class ConfigError(UserError):
    """A configuration file or override that does not validate.

    ``source`` is where the bad value came from (``file:line`` or ``--set key=value``), ``key`` the
    dotted key, and the message says what was expected and what was found.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        self.detail = message
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class DataError(UserError):
    """A data file that cannot be used as it is: names the file and, where known, the line."""

    def __init__(self, message: str, *, path: object, line: int | None = None):
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
