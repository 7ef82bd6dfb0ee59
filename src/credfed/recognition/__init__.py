"""Recognition rules: a node's signed decisions that qualifications of another
country count as a local occupation or licence (docs/recognition.md).

Pure domain code: no grpc, no storage. :mod:`~credfed.recognition.rules` holds
the rule model and its signed wire form, :mod:`~credfed.recognition.matching`
which rule decides for a given credential.
"""

from __future__ import annotations

from credfed.recognition.matching import (
    check_conflicts,
    could_overlap,
    current,
    decide,
    matches,
    specificity,
)
from credfed.recognition.rules import (
    CEFR_LEVELS,
    RULE_TYPE,
    Conditions,
    Outcome,
    Rule,
    RuleMatch,
    decode_rule,
    encode_rule,
    sign_rule,
    tombstone,
    validate_rule,
    verify_rule,
)

__all__ = [
    "CEFR_LEVELS",
    "RULE_TYPE",
    "Conditions",
    "Outcome",
    "Rule",
    "RuleMatch",
    "check_conflicts",
    "could_overlap",
    "current",
    "decide",
    "decode_rule",
    "encode_rule",
    "matches",
    "sign_rule",
    "specificity",
    "tombstone",
    "validate_rule",
    "verify_rule",
]
