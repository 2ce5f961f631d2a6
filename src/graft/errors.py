"""Every error graft raises on purpose.

Each class subclasses the builtin a caller would naturally catch (``KeyError`` for an unknown
name, ``ValueError`` for bad input, ``OSError`` for files and the network), so existing
``except`` clauses keep working. Messages say what was wrong, what is accepted, and end with
``Received: x=...``.
"""

from __future__ import annotations


class GraftError(Exception):
    """Base class of every graft error."""

    def __str__(self) -> str:  # KeyError quotes its message; keep ours readable.
        return str(self.args[0]) if self.args else ""


class ModelNotFoundError(GraftError, KeyError):
    """A handle names no zoo entry, module directory or other accepted form."""


class InvalidArgumentError(GraftError, ValueError):
    """An argument has a value graft does not accept."""


class ManifestError(GraftError, ValueError):
    """A module's ``manifest.json`` is missing, unreadable or does not match the schema."""


class ChecksumError(GraftError, OSError):
    """A file's sha256 or size differs from the one recorded for it."""


class WeightsError(GraftError, OSError):
    """Pretrained weights are missing, corrupt or cannot be downloaded."""


class UnsafeModelError(GraftError, PermissionError):
    """A saved model refers to a class outside the allowlist of trusted layers."""


class OfflineError(GraftError, ConnectionError):
    """A network access was needed while ``GRAFT_OFFLINE=1`` is set."""


class ModuleExistsError(GraftError, FileExistsError):
    """A module would be written over an existing directory without ``overwrite=True``."""


class WorkerFailedError(GraftError, ConnectionError):
    """Another worker of a distributed run stopped responding, or a collective operation
    timed out."""


class MissingDependencyError(GraftError, ImportError):
    """An optional package is needed for this feature."""


class UnsafeArchiveError(GraftError, ValueError):
    """A module archive is malformed, too large, or has members that could escape extraction
    (absolute paths, ``..``, links, devices)."""


class HubError(GraftError, ConnectionError):
    """The hub could not be reached or answered with an error (the message carries its own)."""


class AuthError(GraftError, PermissionError):
    """The hub refused a write: the token is missing or wrong."""


class ConflictError(GraftError, FileExistsError):
    """The hub already holds that version; versions are immutable."""


def received(**kwargs: object) -> str:
    """Formats the closing ``Received: name=value`` part of an error message.

    Example:
        >>> received(name="resnet")
        "Received: name='resnet'"
    """
    return "Received: " + ", ".join(f"{key}={value!r}" for key, value in kwargs.items())


class TrackingError(GraftError, ConnectionError):
    """The MLflow tracking server or registry could not be reached, or refused a request."""
