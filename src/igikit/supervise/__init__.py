"""Supervision: decision records, human actions and the hash-chained audit log."""

from igikit.supervise.audit import AuditEntry, AuditLog, AuditLogBusyError, VerifyResult, chain_hash
from igikit.supervise.records import (
    AUTONOMY_LEVELS,
    HUMAN_ACTIONS,
    DecisionRecord,
    Evidence,
    HumanAction,
    Record,
    canonical_json,
    record_from_json,
)

__all__ = [
    "AUTONOMY_LEVELS",
    "HUMAN_ACTIONS",
    "AuditEntry",
    "AuditLog",
    "AuditLogBusyError",
    "DecisionRecord",
    "Evidence",
    "HumanAction",
    "Record",
    "VerifyResult",
    "canonical_json",
    "chain_hash",
    "record_from_json",
]
