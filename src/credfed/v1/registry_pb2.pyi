from credfed.v1 import common_pb2 as _common_pb2
from credfed.v1 import recognition_pb2 as _recognition_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IssuerStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ISSUER_STATUS_UNSPECIFIED: _ClassVar[IssuerStatus]
    ISSUER_STATUS_ACTIVE: _ClassVar[IssuerStatus]
    ISSUER_STATUS_SUSPENDED: _ClassVar[IssuerStatus]
ISSUER_STATUS_UNSPECIFIED: IssuerStatus
ISSUER_STATUS_ACTIVE: IssuerStatus
ISSUER_STATUS_SUSPENDED: IssuerStatus

class Issuer(_message.Message):
    __slots__ = ("issuer_id", "name", "sectors", "status")
    ISSUER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECTORS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    issuer_id: str
    name: str
    sectors: _containers.RepeatedScalarFieldContainer[str]
    status: IssuerStatus
    def __init__(self, issuer_id: _Optional[str] = ..., name: _Optional[str] = ..., sectors: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[IssuerStatus, str]] = ...) -> None: ...

class RegisterIssuerRequest(_message.Message):
    __slots__ = ("issuer_id", "name", "sectors")
    ISSUER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SECTORS_FIELD_NUMBER: _ClassVar[int]
    issuer_id: str
    name: str
    sectors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, issuer_id: _Optional[str] = ..., name: _Optional[str] = ..., sectors: _Optional[_Iterable[str]] = ...) -> None: ...

class RegisterIssuerResponse(_message.Message):
    __slots__ = ("issuer",)
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    issuer: Issuer
    def __init__(self, issuer: _Optional[_Union[Issuer, _Mapping]] = ...) -> None: ...

class ListIssuersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListIssuersResponse(_message.Message):
    __slots__ = ("issuers",)
    ISSUERS_FIELD_NUMBER: _ClassVar[int]
    issuers: _containers.RepeatedCompositeFieldContainer[Issuer]
    def __init__(self, issuers: _Optional[_Iterable[_Union[Issuer, _Mapping]]] = ...) -> None: ...

class SuspendIssuerRequest(_message.Message):
    __slots__ = ("issuer_id",)
    ISSUER_ID_FIELD_NUMBER: _ClassVar[int]
    issuer_id: str
    def __init__(self, issuer_id: _Optional[str] = ...) -> None: ...

class SuspendIssuerResponse(_message.Message):
    __slots__ = ("issuer",)
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    issuer: Issuer
    def __init__(self, issuer: _Optional[_Union[Issuer, _Mapping]] = ...) -> None: ...

class ChangeReceipt(_message.Message):
    __slots__ = ("credential", "entry", "checkpoint")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    credential: _common_pb2.Credential
    entry: _common_pb2.LogEntry
    checkpoint: _common_pb2.SignedCheckpoint
    def __init__(self, credential: _Optional[_Union[_common_pb2.Credential, _Mapping]] = ..., entry: _Optional[_Union[_common_pb2.LogEntry, _Mapping]] = ..., checkpoint: _Optional[_Union[_common_pb2.SignedCheckpoint, _Mapping]] = ...) -> None: ...

class IssueCredentialRequest(_message.Message):
    __slots__ = ("draft",)
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    draft: _common_pb2.CredentialDraft
    def __init__(self, draft: _Optional[_Union[_common_pb2.CredentialDraft, _Mapping]] = ...) -> None: ...

class IssueCredentialResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: ChangeReceipt
    def __init__(self, receipt: _Optional[_Union[ChangeReceipt, _Mapping]] = ...) -> None: ...

class BulkIssueCredentialsRequest(_message.Message):
    __slots__ = ("drafts",)
    DRAFTS_FIELD_NUMBER: _ClassVar[int]
    drafts: _containers.RepeatedCompositeFieldContainer[_common_pb2.CredentialDraft]
    def __init__(self, drafts: _Optional[_Iterable[_Union[_common_pb2.CredentialDraft, _Mapping]]] = ...) -> None: ...

class BulkIssueCredentialsResponse(_message.Message):
    __slots__ = ("credential_ids", "checkpoint")
    CREDENTIAL_IDS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    credential_ids: _containers.RepeatedScalarFieldContainer[str]
    checkpoint: _common_pb2.SignedCheckpoint
    def __init__(self, credential_ids: _Optional[_Iterable[str]] = ..., checkpoint: _Optional[_Union[_common_pb2.SignedCheckpoint, _Mapping]] = ...) -> None: ...

class GetCredentialRequest(_message.Message):
    __slots__ = ("credential_id",)
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    def __init__(self, credential_id: _Optional[str] = ...) -> None: ...

class GetCredentialResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: _common_pb2.Credential
    def __init__(self, credential: _Optional[_Union[_common_pb2.Credential, _Mapping]] = ...) -> None: ...

class SuspendCredentialRequest(_message.Message):
    __slots__ = ("credential_id", "reason", "until", "appeal_case_ref")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    APPEAL_CASE_REF_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    reason: str
    until: str
    appeal_case_ref: str
    def __init__(self, credential_id: _Optional[str] = ..., reason: _Optional[str] = ..., until: _Optional[str] = ..., appeal_case_ref: _Optional[str] = ...) -> None: ...

class SuspendCredentialResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: ChangeReceipt
    def __init__(self, receipt: _Optional[_Union[ChangeReceipt, _Mapping]] = ...) -> None: ...

class ReinstateCredentialRequest(_message.Message):
    __slots__ = ("credential_id", "reason", "appeal_case_ref")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    APPEAL_CASE_REF_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    reason: str
    appeal_case_ref: str
    def __init__(self, credential_id: _Optional[str] = ..., reason: _Optional[str] = ..., appeal_case_ref: _Optional[str] = ...) -> None: ...

class ReinstateCredentialResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: ChangeReceipt
    def __init__(self, receipt: _Optional[_Union[ChangeReceipt, _Mapping]] = ...) -> None: ...

class RevokeCredentialRequest(_message.Message):
    __slots__ = ("credential_id", "reason")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    reason: str
    def __init__(self, credential_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeCredentialResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: ChangeReceipt
    def __init__(self, receipt: _Optional[_Union[ChangeReceipt, _Mapping]] = ...) -> None: ...

class SupersedeCredentialRequest(_message.Message):
    __slots__ = ("credential_id", "reason", "replacement")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    reason: str
    replacement: _common_pb2.CredentialDraft
    def __init__(self, credential_id: _Optional[str] = ..., reason: _Optional[str] = ..., replacement: _Optional[_Union[_common_pb2.CredentialDraft, _Mapping]] = ...) -> None: ...

class SupersedeCredentialResponse(_message.Message):
    __slots__ = ("superseded", "replacement")
    SUPERSEDED_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_FIELD_NUMBER: _ClassVar[int]
    superseded: ChangeReceipt
    replacement: _common_pb2.Credential
    def __init__(self, superseded: _Optional[_Union[ChangeReceipt, _Mapping]] = ..., replacement: _Optional[_Union[_common_pb2.Credential, _Mapping]] = ...) -> None: ...

class AddRecognitionRuleRequest(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: _recognition_pb2.RecognitionRule
    def __init__(self, rule: _Optional[_Union[_recognition_pb2.RecognitionRule, _Mapping]] = ...) -> None: ...

class AddRecognitionRuleResponse(_message.Message):
    __slots__ = ("rule", "signed_rule")
    RULE_FIELD_NUMBER: _ClassVar[int]
    SIGNED_RULE_FIELD_NUMBER: _ClassVar[int]
    rule: _recognition_pb2.RecognitionRule
    signed_rule: _common_pb2.Envelope
    def __init__(self, rule: _Optional[_Union[_recognition_pb2.RecognitionRule, _Mapping]] = ..., signed_rule: _Optional[_Union[_common_pb2.Envelope, _Mapping]] = ...) -> None: ...

class ImportRecognitionRulesRequest(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[_recognition_pb2.RecognitionRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[_recognition_pb2.RecognitionRule, _Mapping]]] = ...) -> None: ...

class ImportRecognitionRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[_recognition_pb2.RecognitionRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[_recognition_pb2.RecognitionRule, _Mapping]]] = ...) -> None: ...

class ListRecognitionRulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRecognitionRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[_recognition_pb2.RecognitionRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[_recognition_pb2.RecognitionRule, _Mapping]]] = ...) -> None: ...

class RemoveRecognitionRuleRequest(_message.Message):
    __slots__ = ("rule_id",)
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    def __init__(self, rule_id: _Optional[str] = ...) -> None: ...

class RemoveRecognitionRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: _recognition_pb2.RecognitionRule
    def __init__(self, rule: _Optional[_Union[_recognition_pb2.RecognitionRule, _Mapping]] = ...) -> None: ...

class PurgeCachedRecordsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PurgeCachedRecordsResponse(_message.Message):
    __slots__ = ("purged",)
    PURGED_FIELD_NUMBER: _ClassVar[int]
    purged: int
    def __init__(self, purged: _Optional[int] = ...) -> None: ...
