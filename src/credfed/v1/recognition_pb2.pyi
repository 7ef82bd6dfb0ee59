from credfed.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecognitionOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECOGNITION_OUTCOME_UNSPECIFIED: _ClassVar[RecognitionOutcome]
    RECOGNITION_OUTCOME_FULL: _ClassVar[RecognitionOutcome]
    RECOGNITION_OUTCOME_CONDITIONAL: _ClassVar[RecognitionOutcome]
    RECOGNITION_OUTCOME_NOT_RECOGNISED: _ClassVar[RecognitionOutcome]
    RECOGNITION_OUTCOME_NO_RULE: _ClassVar[RecognitionOutcome]
    RECOGNITION_OUTCOME_DOMESTIC: _ClassVar[RecognitionOutcome]
RECOGNITION_OUTCOME_UNSPECIFIED: RecognitionOutcome
RECOGNITION_OUTCOME_FULL: RecognitionOutcome
RECOGNITION_OUTCOME_CONDITIONAL: RecognitionOutcome
RECOGNITION_OUTCOME_NOT_RECOGNISED: RecognitionOutcome
RECOGNITION_OUTCOME_NO_RULE: RecognitionOutcome
RECOGNITION_OUTCOME_DOMESTIC: RecognitionOutcome

class CompensationMeasures(_message.Message):
    __slots__ = ("aptitude_test", "adaptation_period_months", "language_level", "supervised_practice_months")
    APTITUDE_TEST_FIELD_NUMBER: _ClassVar[int]
    ADAPTATION_PERIOD_MONTHS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    SUPERVISED_PRACTICE_MONTHS_FIELD_NUMBER: _ClassVar[int]
    aptitude_test: bool
    adaptation_period_months: int
    language_level: str
    supervised_practice_months: int
    def __init__(self, aptitude_test: _Optional[bool] = ..., adaptation_period_months: _Optional[int] = ..., language_level: _Optional[str] = ..., supervised_practice_months: _Optional[int] = ...) -> None: ...

class RecognitionRule(_message.Message):
    __slots__ = ("rule_id", "version", "country", "origin", "national_code", "eqf_min", "eqf_max", "isco_prefix", "sector", "outcome", "local_occupation", "local_code", "conditions", "legal_basis", "valid_from", "valid_until", "removed")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    NATIONAL_CODE_FIELD_NUMBER: _ClassVar[int]
    EQF_MIN_FIELD_NUMBER: _ClassVar[int]
    EQF_MAX_FIELD_NUMBER: _ClassVar[int]
    ISCO_PREFIX_FIELD_NUMBER: _ClassVar[int]
    SECTOR_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    LOCAL_OCCUPATION_FIELD_NUMBER: _ClassVar[int]
    LOCAL_CODE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    version: int
    country: str
    origin: str
    national_code: str
    eqf_min: int
    eqf_max: int
    isco_prefix: str
    sector: str
    outcome: RecognitionOutcome
    local_occupation: str
    local_code: str
    conditions: CompensationMeasures
    legal_basis: str
    valid_from: str
    valid_until: str
    removed: bool
    def __init__(self, rule_id: _Optional[str] = ..., version: _Optional[int] = ..., country: _Optional[str] = ..., origin: _Optional[str] = ..., national_code: _Optional[str] = ..., eqf_min: _Optional[int] = ..., eqf_max: _Optional[int] = ..., isco_prefix: _Optional[str] = ..., sector: _Optional[str] = ..., outcome: _Optional[_Union[RecognitionOutcome, str]] = ..., local_occupation: _Optional[str] = ..., local_code: _Optional[str] = ..., conditions: _Optional[_Union[CompensationMeasures, _Mapping]] = ..., legal_basis: _Optional[str] = ..., valid_from: _Optional[str] = ..., valid_until: _Optional[str] = ..., removed: _Optional[bool] = ...) -> None: ...

class RecognitionDecision(_message.Message):
    __slots__ = ("country", "outcome", "rule_id", "rule_version", "local_occupation", "local_code", "conditions", "legal_basis", "signed_rule")
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOCAL_OCCUPATION_FIELD_NUMBER: _ClassVar[int]
    LOCAL_CODE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    SIGNED_RULE_FIELD_NUMBER: _ClassVar[int]
    country: str
    outcome: RecognitionOutcome
    rule_id: str
    rule_version: int
    local_occupation: str
    local_code: str
    conditions: CompensationMeasures
    legal_basis: str
    signed_rule: _common_pb2.Envelope
    def __init__(self, country: _Optional[str] = ..., outcome: _Optional[_Union[RecognitionOutcome, str]] = ..., rule_id: _Optional[str] = ..., rule_version: _Optional[int] = ..., local_occupation: _Optional[str] = ..., local_code: _Optional[str] = ..., conditions: _Optional[_Union[CompensationMeasures, _Mapping]] = ..., legal_basis: _Optional[str] = ..., signed_rule: _Optional[_Union[_common_pb2.Envelope, _Mapping]] = ...) -> None: ...

class QualificationLabels(_message.Message):
    __slots__ = ("isco_label", "eqf_level_descriptor", "sector_label")
    ISCO_LABEL_FIELD_NUMBER: _ClassVar[int]
    EQF_LEVEL_DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    SECTOR_LABEL_FIELD_NUMBER: _ClassVar[int]
    isco_label: str
    eqf_level_descriptor: str
    sector_label: str
    def __init__(self, isco_label: _Optional[str] = ..., eqf_level_descriptor: _Optional[str] = ..., sector_label: _Optional[str] = ...) -> None: ...
