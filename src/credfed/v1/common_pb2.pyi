import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CredentialStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREDENTIAL_STATUS_UNSPECIFIED: _ClassVar[CredentialStatus]
    CREDENTIAL_STATUS_ACTIVE: _ClassVar[CredentialStatus]
    CREDENTIAL_STATUS_SUSPENDED: _ClassVar[CredentialStatus]
    CREDENTIAL_STATUS_REVOKED: _ClassVar[CredentialStatus]
    CREDENTIAL_STATUS_REINSTATED: _ClassVar[CredentialStatus]
    CREDENTIAL_STATUS_SUPERSEDED: _ClassVar[CredentialStatus]
    CREDENTIAL_STATUS_EXPIRED: _ClassVar[CredentialStatus]
    CREDENTIAL_STATUS_UNKNOWN: _ClassVar[CredentialStatus]
CREDENTIAL_STATUS_UNSPECIFIED: CredentialStatus
CREDENTIAL_STATUS_ACTIVE: CredentialStatus
CREDENTIAL_STATUS_SUSPENDED: CredentialStatus
CREDENTIAL_STATUS_REVOKED: CredentialStatus
CREDENTIAL_STATUS_REINSTATED: CredentialStatus
CREDENTIAL_STATUS_SUPERSEDED: CredentialStatus
CREDENTIAL_STATUS_EXPIRED: CredentialStatus
CREDENTIAL_STATUS_UNKNOWN: CredentialStatus

class Envelope(_message.Message):
    __slots__ = ("payload", "payload_type", "key_id", "signature")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    payload_type: str
    key_id: str
    signature: bytes
    def __init__(self, payload: _Optional[bytes] = ..., payload_type: _Optional[str] = ..., key_id: _Optional[str] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Holder(_message.Message):
    __slots__ = ("given_names", "family_name", "birth_date")
    GIVEN_NAMES_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    given_names: str
    family_name: str
    birth_date: str
    def __init__(self, given_names: _Optional[str] = ..., family_name: _Optional[str] = ..., birth_date: _Optional[str] = ...) -> None: ...

class Qualification(_message.Message):
    __slots__ = ("national_code", "title", "eqf_level", "isco_code", "sector")
    NATIONAL_CODE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    EQF_LEVEL_FIELD_NUMBER: _ClassVar[int]
    ISCO_CODE_FIELD_NUMBER: _ClassVar[int]
    SECTOR_FIELD_NUMBER: _ClassVar[int]
    national_code: str
    title: str
    eqf_level: int
    isco_code: str
    sector: str
    def __init__(self, national_code: _Optional[str] = ..., title: _Optional[str] = ..., eqf_level: _Optional[int] = ..., isco_code: _Optional[str] = ..., sector: _Optional[str] = ...) -> None: ...

class CredentialDraft(_message.Message):
    __slots__ = ("issuer_id", "holder", "qualification", "issued_on", "valid_until")
    ISSUER_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    QUALIFICATION_FIELD_NUMBER: _ClassVar[int]
    ISSUED_ON_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    issuer_id: str
    holder: Holder
    qualification: Qualification
    issued_on: str
    valid_until: str
    def __init__(self, issuer_id: _Optional[str] = ..., holder: _Optional[_Union[Holder, _Mapping]] = ..., qualification: _Optional[_Union[Qualification, _Mapping]] = ..., issued_on: _Optional[str] = ..., valid_until: _Optional[str] = ...) -> None: ...

class StatusDetail(_message.Message):
    __slots__ = ("status", "reason", "effective_at", "suspended_until", "appeal_case_ref", "superseded_by")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    SUSPENDED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    APPEAL_CASE_REF_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_BY_FIELD_NUMBER: _ClassVar[int]
    status: CredentialStatus
    reason: str
    effective_at: _timestamp_pb2.Timestamp
    suspended_until: str
    appeal_case_ref: str
    superseded_by: str
    def __init__(self, status: _Optional[_Union[CredentialStatus, str]] = ..., reason: _Optional[str] = ..., effective_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., suspended_until: _Optional[str] = ..., appeal_case_ref: _Optional[str] = ..., superseded_by: _Optional[str] = ...) -> None: ...

class Credential(_message.Message):
    __slots__ = ("credential_id", "origin", "issuer_id", "holder", "qualification", "issued_on", "valid_until", "supersedes", "status", "signed_record")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    ISSUER_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    QUALIFICATION_FIELD_NUMBER: _ClassVar[int]
    ISSUED_ON_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SIGNED_RECORD_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    origin: str
    issuer_id: str
    holder: Holder
    qualification: Qualification
    issued_on: str
    valid_until: str
    supersedes: str
    status: StatusDetail
    signed_record: Envelope
    def __init__(self, credential_id: _Optional[str] = ..., origin: _Optional[str] = ..., issuer_id: _Optional[str] = ..., holder: _Optional[_Union[Holder, _Mapping]] = ..., qualification: _Optional[_Union[Qualification, _Mapping]] = ..., issued_on: _Optional[str] = ..., valid_until: _Optional[str] = ..., supersedes: _Optional[str] = ..., status: _Optional[_Union[StatusDetail, _Mapping]] = ..., signed_record: _Optional[_Union[Envelope, _Mapping]] = ...) -> None: ...

class SignedCheckpoint(_message.Message):
    __slots__ = ("envelope", "origin", "tree_size", "root_hash", "timestamp")
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    envelope: Envelope
    origin: str
    tree_size: int
    root_hash: bytes
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, envelope: _Optional[_Union[Envelope, _Mapping]] = ..., origin: _Optional[str] = ..., tree_size: _Optional[int] = ..., root_hash: _Optional[bytes] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("index", "leaf")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LEAF_FIELD_NUMBER: _ClassVar[int]
    index: int
    leaf: bytes
    def __init__(self, index: _Optional[int] = ..., leaf: _Optional[bytes] = ...) -> None: ...

class InclusionProof(_message.Message):
    __slots__ = ("leaf_index", "tree_size", "hashes")
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    leaf_index: int
    tree_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, leaf_index: _Optional[int] = ..., tree_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ConsistencyProof(_message.Message):
    __slots__ = ("old_size", "new_size", "hashes")
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    old_size: int
    new_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, old_size: _Optional[int] = ..., new_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...
