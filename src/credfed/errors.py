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


class TrustError(CredfedError):
    """A partner's data or descriptor is not acceptable."""


class FingerprintMismatchError(TrustError):
    """A descriptor offered for pinning is not the one the operator confirmed."""


class UntrustedSignerError(TrustError):
    """Not validly signed by a key trusted for this origin at the relevant time."""


class DescriptorRollbackError(TrustError):
    """A descriptor update does not raise the version."""


class DescriptorMismatchError(TrustError):
    """A descriptor update changes the country or node id, or claims another
    origin's key."""


class CheckpointRollbackError(TrustError):
    """A checkpoint is older than the one we already hold."""


class EquivocationError(TrustError):
    """An origin signed two inconsistent checkpoints; ``evidence`` proves it."""

    def __init__(self, message: str, evidence: ForkEvidence) -> None:
        super().__init__(message)
        self.evidence = evidence


class ForkedOriginError(TrustError):
    """The origin is proven forked: no new data of it is accepted."""


class FutureCheckpointError(TrustError):
    """A checkpoint dated too far ahead of this node's clock."""


class UnavailableError(CredfedError):
    """A partner node (the origin, or every relay towards it) did not answer."""


# At the end, not the top: the file is append-only for concurrent editors, and
# the import is for annotations only (federation imports this module).
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from credfed.federation.evidence import ForkEvidence
