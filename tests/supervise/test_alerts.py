"""The alert board: open until acknowledged, one open alert per kind, closed ones kept for display."""

from __future__ import annotations

import threading

import pytest

from igikit.supervise import AlertBoard


def test_an_alert_stays_open_until_acknowledged() -> None:
    board = AlertBoard()
    alert = board.add("low_confidence", "confidence 0.31 below 0.50", seq=7, wall_s=100.0, frame_id=12, confidence=0.31)
    assert alert.alert_id == 1 and alert.is_open and board.any_open
    assert board.open_of_kind("low_confidence") == alert
    closed = board.acknowledge(1, by="alice", role="operator", wall_s=101.5, ack_seq=9)
    assert not closed.is_open and closed.acknowledged_by == "alice" and closed.ack_seq == 9
    assert not board.any_open and board.open_alerts() == []
    assert board.get(1) == closed and board.closed_alerts() == [closed]
    d = closed.to_dict()
    assert d["open"] is False and d["acknowledged_role"] == "operator" and d["frame_id"] == 12


def test_repeats_count_on_the_open_alert_and_unknown_ids_raise() -> None:
    board = AlertBoard()
    a = board.add("near_limit", "4.8 of 5.0 mm", seq=1, wall_s=1.0)
    again = board.repeat(a.alert_id, wall_s=2.0)
    assert again.occurrences == 2 and again.last_wall_s == 2.0 and again.raised_wall_s == 1.0
    board.acknowledge(a.alert_id, by="bob", role="physicist", wall_s=3.0, ack_seq=2)
    with pytest.raises(KeyError):
        board.acknowledge(a.alert_id, by="bob", role="physicist", wall_s=3.0, ack_seq=3)
    with pytest.raises(KeyError):
        board.repeat(a.alert_id, wall_s=4.0)
    assert board.get(99) is None
    b = board.add("near_limit", "again", seq=4, wall_s=5.0)
    assert b.alert_id == 2  # a new alert once the first was acknowledged


def test_closed_alerts_are_bounded_and_ids_unique_under_threads() -> None:
    board = AlertBoard(keep_closed=5)

    def work(k: int) -> None:
        for i in range(50):
            a = board.add(f"k{k}", "m", seq=1, wall_s=float(i))
            board.acknowledge(a.alert_id, by="x", role="operator", wall_s=float(i), ack_seq=2)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(board.closed_alerts()) == 5
    assert max(a.alert_id for a in board.closed_alerts()) == 200
