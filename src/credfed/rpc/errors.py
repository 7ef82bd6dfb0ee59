"""The one table mapping domain errors to gRPC status codes."""

from __future__ import annotations

import grpc

from credfed import errors

#: Most specific class first; the first isinstance match wins.
STATUS_FOR: tuple[tuple[type[errors.CredfedError], grpc.StatusCode], ...] = (
    (errors.ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.CheckpointFormatError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.SignatureError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ProofError, grpc.StatusCode.DATA_LOSS),
    (errors.StorageError, grpc.StatusCode.UNAVAILABLE),
    (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
    # A partner's data failed a trust check (signature, proof, rollback, fork).
    (errors.TrustError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.CredfedError, grpc.StatusCode.INTERNAL),
)


def status_for(exc: errors.CredfedError) -> grpc.StatusCode:
    for cls, code in STATUS_FOR:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL  # pragma: no cover - CredfedError is last above
