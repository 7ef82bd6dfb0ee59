"""One exception family per failure kind.

Every error the domain raises derives from :class:`CredfedError`. The rpc
layer maps each class to one gRPC status code in a single table
(``credfed.rpc.errors``); the CLI prints ``str(error)`` as one line.
"""

from __future__ import annotations


class CredfedError(Exception):
    """Base of every credfed error."""


class ValidationError(CredfedError):
    """Input is malformed. ``field`` names the offending field (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFoundError(CredfedError):
    """The thing asked for does not exist (or the caller may not know it does)."""


class AlreadyExistsError(CredfedError):
    """A create would overwrite something that exists."""


class PreconditionError(CredfedError):
    """The request is well-formed but the current state forbids it
    (an illegal status transition, a suspended issuer, a wrong sector)."""


class UnauthenticatedError(CredfedError):
    """No credential, or an unknown one."""


class PermissionDeniedError(CredfedError):
    """The caller is known but its role does not allow this."""


class CryptoError(CredfedError):
    """Base of signature and key failures."""


class SignatureError(CryptoError):
    """A signature does not verify, or names an unknown key."""


class KeyFileError(CryptoError):
    """A key file is missing, malformed or has unsafe permissions."""


class LogError(CredfedError):
    """Base of status-log failures."""


class ProofError(LogError):
    """An inclusion or consistency proof does not verify, or cannot be built."""


class CheckpointFormatError(LogError):
    """A checkpoint body does not parse."""


class StorageError(CredfedError):
    """The store failed (I/O, corruption, unexpected schema)."""


class ConfigError(CredfedError):
    """A configuration file or setting is invalid; the message names the setting."""
