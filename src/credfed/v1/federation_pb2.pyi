from credfed.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetNodeDescriptorRequest(_message.Message):
    __slots__ = ("origin",)
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    origin: str
    def __init__(self, origin: _Optional[str] = ...) -> None: ...

class GetNodeDescriptorResponse(_message.Message):
    __slots__ = ("descriptor",)
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    descriptor: _common_pb2.Envelope
    def __init__(self, descriptor: _Optional[_Union[_common_pb2.Envelope, _Mapping]] = ...) -> None: ...

class LookupCredentialRequest(_message.Message):
    __slots__ = ("credential_id", "birth_date", "family_name")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    birth_date: str
    family_name: str
    def __init__(self, credential_id: _Optional[str] = ..., birth_date: _Optional[str] = ..., family_name: _Optional[str] = ...) -> None: ...

class LookupCredentialResponse(_message.Message):
    __slots__ = ("signed_record", "status", "status_entry", "inclusion_proof", "checkpoint")
    SIGNED_RECORD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_ENTRY_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_PROOF_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    signed_record: _common_pb2.Envelope
    status: _common_pb2.StatusDetail
    status_entry: _common_pb2.LogEntry
    inclusion_proof: _common_pb2.InclusionProof
    checkpoint: _common_pb2.SignedCheckpoint
    def __init__(self, signed_record: _Optional[_Union[_common_pb2.Envelope, _Mapping]] = ..., status: _Optional[_Union[_common_pb2.StatusDetail, _Mapping]] = ..., status_entry: _Optional[_Union[_common_pb2.LogEntry, _Mapping]] = ..., inclusion_proof: _Optional[_Union[_common_pb2.InclusionProof, _Mapping]] = ..., checkpoint: _Optional[_Union[_common_pb2.SignedCheckpoint, _Mapping]] = ...) -> None: ...

class GetLogCheckpointRequest(_message.Message):
    __slots__ = ("origin",)
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    origin: str
    def __init__(self, origin: _Optional[str] = ...) -> None: ...

class GetLogCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: _common_pb2.SignedCheckpoint
    def __init__(self, checkpoint: _Optional[_Union[_common_pb2.SignedCheckpoint, _Mapping]] = ...) -> None: ...

class GetLogEntriesRequest(_message.Message):
    __slots__ = ("origin", "start", "end")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    origin: str
    start: int
    end: int
    def __init__(self, origin: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class GetLogEntriesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.LogEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[_common_pb2.LogEntry, _Mapping]]] = ...) -> None: ...

class GetLogConsistencyProofRequest(_message.Message):
    __slots__ = ("origin", "old_size", "new_size")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    origin: str
    old_size: int
    new_size: int
    def __init__(self, origin: _Optional[str] = ..., old_size: _Optional[int] = ..., new_size: _Optional[int] = ...) -> None: ...

class GetLogConsistencyProofResponse(_message.Message):
    __slots__ = ("proof",)
    PROOF_FIELD_NUMBER: _ClassVar[int]
    proof: _common_pb2.ConsistencyProof
    def __init__(self, proof: _Optional[_Union[_common_pb2.ConsistencyProof, _Mapping]] = ...) -> None: ...

class SubscribeLogRequest(_message.Message):
    __slots__ = ("origin", "from_index")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    origin: str
    from_index: int
    def __init__(self, origin: _Optional[str] = ..., from_index: _Optional[int] = ...) -> None: ...

class SubscribeLogResponse(_message.Message):
    __slots__ = ("checkpoint", "entries")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    checkpoint: _common_pb2.SignedCheckpoint
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.LogEntry]
    def __init__(self, checkpoint: _Optional[_Union[_common_pb2.SignedCheckpoint, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[_common_pb2.LogEntry, _Mapping]]] = ...) -> None: ...

class ReportForkRequest(_message.Message):
    __slots__ = ("evidence",)
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    evidence: bytes
    def __init__(self, evidence: _Optional[bytes] = ...) -> None: ...

class ReportForkResponse(_message.Message):
    __slots__ = ("newly_recorded",)
    NEWLY_RECORDED_FIELD_NUMBER: _ClassVar[int]
    newly_recorded: bool
    def __init__(self, newly_recorded: _Optional[bool] = ...) -> None: ...

class GetRecognitionRulesRequest(_message.Message):
    __slots__ = ("country",)
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    country: str
    def __init__(self, country: _Optional[str] = ...) -> None: ...

class GetRecognitionRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[_common_pb2.Envelope]
    def __init__(self, rules: _Optional[_Iterable[_Union[_common_pb2.Envelope, _Mapping]]] = ...) -> None: ...
