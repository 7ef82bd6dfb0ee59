import datetime

from credfed.v1 import common_pb2 as _common_pb2
from credfed.v1 import recognition_pb2 as _recognition_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_SOURCE_UNSPECIFIED: _ClassVar[StatusSource]
    STATUS_SOURCE_ORIGIN: _ClassVar[StatusSource]
    STATUS_SOURCE_REPLICA: _ClassVar[StatusSource]
    STATUS_SOURCE_CACHED_RECORD: _ClassVar[StatusSource]
STATUS_SOURCE_UNSPECIFIED: StatusSource
STATUS_SOURCE_ORIGIN: StatusSource
STATUS_SOURCE_REPLICA: StatusSource
STATUS_SOURCE_CACHED_RECORD: StatusSource

class VerifyRequest(_message.Message):
    __slots__ = ("credential_id", "birth_date", "family_name")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    birth_date: str
    family_name: str
    def __init__(self, credential_id: _Optional[str] = ..., birth_date: _Optional[str] = ..., family_name: _Optional[str] = ...) -> None: ...

class Provenance(_message.Message):
    __slots__ = ("origin", "signature_checked", "status_as_of", "source", "data_age_seconds", "origin_unreachable", "record_cached")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_CHECKED_FIELD_NUMBER: _ClassVar[int]
    STATUS_AS_OF_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DATA_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_UNREACHABLE_FIELD_NUMBER: _ClassVar[int]
    RECORD_CACHED_FIELD_NUMBER: _ClassVar[int]
    origin: str
    signature_checked: bool
    status_as_of: _timestamp_pb2.Timestamp
    source: StatusSource
    data_age_seconds: int
    origin_unreachable: bool
    record_cached: bool
    def __init__(self, origin: _Optional[str] = ..., signature_checked: _Optional[bool] = ..., status_as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[_Union[StatusSource, str]] = ..., data_age_seconds: _Optional[int] = ..., origin_unreachable: _Optional[bool] = ..., record_cached: _Optional[bool] = ...) -> None: ...

class VerificationResult(_message.Message):
    __slots__ = ("credential_id", "status", "status_detail", "holder", "qualification", "issuer_id", "issuer_name", "issued_on", "valid_until", "supersedes", "signed_record", "provenance", "status_entry", "inclusion_proof", "checkpoint", "recognition", "labels")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_DETAIL_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    QUALIFICATION_FIELD_NUMBER: _ClassVar[int]
    ISSUER_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUER_NAME_FIELD_NUMBER: _ClassVar[int]
    ISSUED_ON_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDES_FIELD_NUMBER: _ClassVar[int]
    SIGNED_RECORD_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_ENTRY_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_PROOF_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    RECOGNITION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    status: _common_pb2.CredentialStatus
    status_detail: _common_pb2.StatusDetail
    holder: _common_pb2.Holder
    qualification: _common_pb2.Qualification
    issuer_id: str
    issuer_name: str
    issued_on: str
    valid_until: str
    supersedes: str
    signed_record: _common_pb2.Envelope
    provenance: Provenance
    status_entry: _common_pb2.LogEntry
    inclusion_proof: _common_pb2.InclusionProof
    checkpoint: _common_pb2.SignedCheckpoint
    recognition: _recognition_pb2.RecognitionDecision
    labels: _recognition_pb2.QualificationLabels
    def __init__(self, credential_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.CredentialStatus, str]] = ..., status_detail: _Optional[_Union[_common_pb2.StatusDetail, _Mapping]] = ..., holder: _Optional[_Union[_common_pb2.Holder, _Mapping]] = ..., qualification: _Optional[_Union[_common_pb2.Qualification, _Mapping]] = ..., issuer_id: _Optional[str] = ..., issuer_name: _Optional[str] = ..., issued_on: _Optional[str] = ..., valid_until: _Optional[str] = ..., supersedes: _Optional[str] = ..., signed_record: _Optional[_Union[_common_pb2.Envelope, _Mapping]] = ..., provenance: _Optional[_Union[Provenance, _Mapping]] = ..., status_entry: _Optional[_Union[_common_pb2.LogEntry, _Mapping]] = ..., inclusion_proof: _Optional[_Union[_common_pb2.InclusionProof, _Mapping]] = ..., checkpoint: _Optional[_Union[_common_pb2.SignedCheckpoint, _Mapping]] = ..., recognition: _Optional[_Union[_recognition_pb2.RecognitionDecision, _Mapping]] = ..., labels: _Optional[_Union[_recognition_pb2.QualificationLabels, _Mapping]] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: VerificationResult
    def __init__(self, result: _Optional[_Union[VerificationResult, _Mapping]] = ...) -> None: ...

class VerifyBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[VerifyRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[VerifyRequest, _Mapping]]] = ...) -> None: ...

class VerifyBatchItemError(_message.Message):
    __slots__ = ("code", "field", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    field: str
    message: str
    def __init__(self, code: _Optional[str] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class VerifyBatchItem(_message.Message):
    __slots__ = ("result", "error")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    result: VerificationResult
    error: VerifyBatchItemError
    def __init__(self, result: _Optional[_Union[VerificationResult, _Mapping]] = ..., error: _Optional[_Union[VerifyBatchItemError, _Mapping]] = ...) -> None: ...

class VerifyBatchResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[VerifyBatchItem]
    def __init__(self, items: _Optional[_Iterable[_Union[VerifyBatchItem, _Mapping]]] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: _common_pb2.SignedCheckpoint
    def __init__(self, checkpoint: _Optional[_Union[_common_pb2.SignedCheckpoint, _Mapping]] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("old_size", "new_size")
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    old_size: int
    new_size: int
    def __init__(self, old_size: _Optional[int] = ..., new_size: _Optional[int] = ...) -> None: ...

class GetConsistencyProofResponse(_message.Message):
    __slots__ = ("proof", "checkpoint")
    PROOF_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    proof: _common_pb2.ConsistencyProof
    checkpoint: _common_pb2.SignedCheckpoint
    def __init__(self, proof: _Optional[_Union[_common_pb2.ConsistencyProof, _Mapping]] = ..., checkpoint: _Optional[_Union[_common_pb2.SignedCheckpoint, _Mapping]] = ...) -> None: ...

class WhereRecognisedRequest(_message.Message):
    __slots__ = ("credential_id", "birth_date", "family_name")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    birth_date: str
    family_name: str
    def __init__(self, credential_id: _Optional[str] = ..., birth_date: _Optional[str] = ..., family_name: _Optional[str] = ...) -> None: ...

class WhereRecognisedResponse(_message.Message):
    __slots__ = ("credential_id", "decisions")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    decisions: _containers.RepeatedCompositeFieldContainer[_recognition_pb2.RecognitionDecision]
    def __init__(self, credential_id: _Optional[str] = ..., decisions: _Optional[_Iterable[_Union[_recognition_pb2.RecognitionDecision, _Mapping]]] = ...) -> None: ...
