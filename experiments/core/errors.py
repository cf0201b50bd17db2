"""The one error type a user reads as a sentence: a configuration or data set that cannot work."""

from __future__ import annotations

__all__ = ["ConfigError", "MissingDataError"]


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the key, its value and what is allowed.

    The runner prints it as one line without a traceback; any other exception keeps its traceback.
    """


class MissingDataError(ConfigError, FileNotFoundError):
    """A data set's files are not where the config says; the message says how to get them."""
