"""Build real audit logs and tamper with them the way an attacker with sqlite3 would."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from igikit.supervise import AuditLog, DecisionRecord, HumanAction


def decision(i: int, *, writer: str = "main") -> DecisionRecord:
    """A gating decision for frame ``i`` whose numbers vary with ``i``."""
    outside_mm = round(0.37 * (i % 13), 2)
    hold = outside_mm > 3.0
    return DecisionRecord(
        decision="beam",
        value="hold" if hold else "on",
        explanation=f"beam {'hold' if hold else 'on'}: target {outside_mm} mm outside the boundary (limit 3.0 mm)",
        confidence=0.5 + 0.04 * (i % 12),
        component="mrgrt.gating",
        component_version="0.1.0",
        frame_time_s=0.125 * i,
        input_frame_ids=(i,),
        workflow="mrgrt",
        session_id="S001",
        safety=hold,
        data={"outside_mm": outside_mm, "writer": writer, "i": i},
    )


def make_log(path: Path, n: int = 10) -> list[str]:
    """A log of ``n`` rows (a human approval every fifth row); returns the row hashes."""
    with AuditLog(path) as audit:
        for i in range(1, n + 1):
            if i % 5 == 0:
                audit.append(HumanAction(action="approve", operator="alice", role="operator", responds_to_seq=i - 1))
            else:
                audit.append(decision(i))
        return [e.hash for e in audit.records()]


def tamper(path: Path, *statements: str) -> None:
    """Drop the append-only triggers and run ``statements`` with plain sqlite3."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("DROP TRIGGER IF EXISTS records_no_update")
        conn.execute("DROP TRIGGER IF EXISTS records_no_delete")
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()
