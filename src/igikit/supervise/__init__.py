"""Supervision: decision records, human actions, the hash-chained audit log, autonomy levels, alerts
and the supervised session a workflow and the console share."""

from igikit.supervise.alerts import Alert, AlertBoard
from igikit.supervise.audit import AuditEntry, AuditLog, AuditLogBusyError, VerifyResult, chain_hash
from igikit.supervise.autonomy import AutonomyLevel, AutonomyPolicy, route_decision
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
from igikit.supervise.session import (
    ROLES,
    ActionRefused,
    Actor,
    Disposition,
    FrameState,
    Overlay,
    PendingDecision,
    SessionEvent,
    SupervisedSession,
    is_allowed,
)

__all__ = [
    "AUTONOMY_LEVELS",
    "HUMAN_ACTIONS",
    "ROLES",
    "ActionRefused",
    "Actor",
    "Alert",
    "AlertBoard",
    "AuditEntry",
    "AuditLog",
    "AuditLogBusyError",
    "AutonomyLevel",
    "AutonomyPolicy",
    "DecisionRecord",
    "Disposition",
    "Evidence",
    "FrameState",
    "HumanAction",
    "Overlay",
    "PendingDecision",
    "Record",
    "SessionEvent",
    "SupervisedSession",
    "VerifyResult",
    "canonical_json",
    "chain_hash",
    "is_allowed",
    "record_from_json",
    "route_decision",
]
