"""Explanations on request, as evidence linked to the tracker's decision record, off the treatment loop.

A supervisor who doubts the AI tracker on a frame asks *why*: :class:`ExplanationService` takes the
network's view of that frame (:class:`~igikit.ai.tracker.NetworkView`, kept by the tracker for its
last few frames), computes the occlusion-sensitivity map (:func:`~igikit.ai.explain.occlusion_sensitivity`)
on its own worker thread with its own single-threaded ONNX Runtime session, writes the overlay as a
PNG file, and logs the tracker's decision record for that frame — where it put the target, its
confidence, its quality-control numbers and reason — with the PNG as its evidence (file path and
SHA-256). The console shows the PNG next to the frame (``GET /api/evidence/{seq}``).

The tracking thread never waits: a request returns a future at once; the map is computed from
references the tracker already holds. At most ``max_queued`` requests wait at a time; more are
refused with a clear message (a supervisor clicking twice must not queue work behind the beam).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from scipy import ndimage

from igikit.errors import InputError

if TYPE_CHECKING:
    from igikit.ai.tracker import AITracker, NetworkView
    from igikit.supervise.records import DecisionRecord
    from igikit.supervise.session import SupervisedSession

log = logging.getLogger(__name__)

COMPONENT = "igikit.ai.tracker"
#: The saliency share within this distance of the target's outline counts as "on the target".
NEAR_TARGET_MM = 3.0


@dataclass(frozen=True)
class Explanation:
    """One explanation: the logged record, its ``seq``, the PNG and what the map says in numbers."""

    seq: int
    record: DecisionRecord
    path: Path
    frame_index: int
    saliency_near_target: float
    thread_name: str


class FrameIds(Protocol):
    """Stream frame ids of a tracker's frames, for a stream that drops frames (the gating workflow's
    :class:`~igikit.workflows.mrgrt.operators.TrackTarget`)."""

    def frame_id(self, tracker_index: int) -> int | None:
        """The stream frame id of the tracker's frame ``tracker_index``, or None."""
        ...

    def tracker_index(self, frame_id: int) -> int | None:
        """The tracker's count of stream frame ``frame_id``, or None when it was not tracked."""
        ...


def _lower_priority(niceness: int) -> None:
    """Make the calling thread yield the CPU to the treatment loop (Linux schedules threads alone)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + niceness)
    except (AttributeError, OSError):  # not Linux, or not allowed: the worker runs at normal priority
        log.debug("explanation worker runs at normal priority")


def find_ai_tracker(tracker: Any) -> AITracker | None:
    """The :class:`~igikit.ai.tracker.AITracker` in ``tracker`` (itself, or a member of an ensemble)."""
    from igikit.ai.tracker import AITracker

    if isinstance(tracker, AITracker):
        return tracker
    for member in getattr(tracker, "members", ()):
        found = find_ai_tracker(member)
        if found is not None:
            return found
    return None


def saliency_near_target(values: np.ndarray, mask: np.ndarray, spacing_mm: tuple[float, float],
                         near_mm: float = NEAR_TARGET_MM) -> float:
    """Share of the saliency map's mass within ``near_mm`` of the target mask (1: it looked only there)."""
    total = float(values.sum())
    if total <= 0 or not mask.any():
        return 0.0
    dist = ndimage.distance_transform_edt(~(mask > 0), sampling=spacing_mm)
    return float(values[dist <= near_mm].sum() / total)


class ExplanationService:
    """Occlusion-sensitivity explanations of an :class:`~igikit.ai.tracker.AITracker`, on request.

    Parameters
    ----------
    tracker
        The AI tracker (or an ensemble holding one) that runs the treatment loop, or a function
        returning it (for a workflow that builds its tracker at the first frame); it is looked up
        at each request.
    session
        Where the tracker's decision records with their evidence are logged.
    folder
        Where the evidence PNGs go (created if missing).
    frame_offset
        Stream frame id of the tracker's frame 0 (the tracker counts from its first frame).
    frame_ids
        Instead of ``frame_offset``: translates between the tracker's count and the stream's frame
        ids, for a stream that drops frames (a real-time replay while the network trains).
    patch_px, stride_px
        Occlusion patch and step (window pixels).
    max_queued
        Requests computed or waiting at once; more are refused.
    niceness
        Scheduling niceness added to the worker thread (Linux), so the treatment loop wins the CPU.
    """

    def __init__(
        self,
        tracker: Any,
        session: SupervisedSession,
        folder: str | Path,
        *,
        frame_offset: int = 0,
        frame_ids: FrameIds | None = None,
        patch_px: int = 8,
        stride_px: int = 4,
        max_queued: int = 2,
        niceness: int = 10,
    ) -> None:
        from igikit.workflows.mrgrt.tracking import Tracker

        lazy = callable(tracker) and not isinstance(tracker, Tracker)
        self._source: Callable[[], Any] = tracker if lazy else lambda: tracker
        if not lazy:
            _ = self.tracker  # a tracker without an AI member fails here, at once
        self.session = session
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.frame_offset = int(frame_offset)
        self.frame_ids = frame_ids
        self.patch_px = patch_px
        self.stride_px = stride_px
        self.max_queued = max_queued
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="igikit-explain",
                                        initializer=_lower_priority, initargs=(niceness,))
        self._lock = threading.Lock()
        self._queued = 0
        self._model: Any = None
        self._model_of: Any = None

    # ------------------------------------------------------------------------------------ API
    @property
    def tracker(self) -> AITracker:
        """The AI tracker explained now."""
        current = self._source()
        ai = find_ai_tracker(current)
        if ai is None:
            what = "no tracker yet" if current is None else f"{type(current).__name__} has no AI tracker to explain"
            raise InputError(f"nothing to explain: {what}")
        return ai

    def request(self, frame_id: int | None = None, *, requested_by: str = "") -> Future[Explanation]:
        """Explain the tracker's answer on stream frame ``frame_id`` (default: its latest network frame).

        Returns at once; the future gives the :class:`Explanation` once logged.

        Raises
        ------
        InputError
            In the learning phase, for a frame the tracker no longer holds, or when too many
            requests are already waiting.
        """
        tracker = self.tracker
        index = None if frame_id is None else self._tracker_index(int(frame_id))
        view = tracker.view(index)  # checked here, so the caller hears at once
        with self._lock:
            if self._queued >= self.max_queued:
                raise InputError(f"{self._queued} explanations are being computed; ask again when they are shown")
            self._queued += 1
        try:
            return self._pool.submit(self._explain, tracker, view, requested_by)
        except BaseException:
            with self._lock:
                self._queued -= 1
            raise

    def explain_now(self, frame_id: int | None = None, *, requested_by: str = "") -> Explanation:
        """:meth:`request` and wait for it."""
        return self.request(frame_id, requested_by=requested_by).result()

    def close(self) -> None:
        """Finish what is queued and stop the worker."""
        self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------------------ internals
    def _tracker_index(self, frame_id: int) -> int:
        if self.frame_ids is None:
            return frame_id - self.frame_offset
        index = self.frame_ids.tracker_index(frame_id)
        if index is None:
            raise InputError(f"frame {frame_id} was not given to the tracker (dropped, invalid or too old)")
        return index

    def _frame_id(self, tracker_index: int) -> int:
        if self.frame_ids is None:
            return tracker_index + self.frame_offset
        frame_id = self.frame_ids.frame_id(tracker_index)
        if frame_id is None:
            raise InputError(f"the tracker's frame {tracker_index} is no longer known to the stream")
        return frame_id

    def _runtime(self, tracker: AITracker) -> Any:
        """The worker's own ONNX Runtime session (1 thread), so it never shares the loop's thread pool."""
        from igikit.ai.runtime import OnnxModel

        model = tracker.model
        if model is None:
            raise InputError("the personal model is not trained yet (still in the learning phase)")
        if self._model_of is not model:
            self._model = OnnxModel(model.onnx, model.card, threads=1, warmup=1)
            self._model_of = model
        return self._model

    def _explain(self, tracker: AITracker, view: NetworkView, requested_by: str) -> Explanation:
        try:
            return self._compute(tracker, view, requested_by)
        except Exception:
            log.exception("explanation of the tracker's frame %d failed", view.frame_index)
            raise
        finally:
            with self._lock:
                self._queued -= 1

    def _compute(self, tracker: AITracker, view: NetworkView, requested_by: str) -> Explanation:
        from igikit.ai.explain import occlusion_sensitivity
        from igikit.io.atomic import atomic_path
        from igikit.supervise.records import DecisionRecord, Evidence

        frame_id = self._frame_id(view.frame_index)
        extra = view.inputs[1:] if view.inputs.shape[0] > 1 else None
        sal = occlusion_sensitivity(self._runtime(tracker), np.asarray(view.frame, np.float32), view.window,
                                    extra_channels=extra, patch_px=self.patch_px, stride_px=self.stride_px)
        spacing = tracker.spacing
        near = saliency_near_target(sal.values, np.asarray(view.mask) > 0, spacing)
        path = self.folder / f"frame-{frame_id:06d}-occlusion.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(sal.png)
        digest = hashlib.sha256(sal.png).hexdigest()
        d = view.details
        fallback = d.get("fallback", 0.0) >= 0.5
        row, col = view.centroid_mm
        qc = (f"; {d['qc_distance_mm']:.1f} mm from the registration tracker (Dice {d['qc_dice']:.2f})"
              if "qc_distance_mm" in d else "")
        source = "the registration tracker (network fallback)" if fallback else "the patient-specific network"
        explanation = (f"frame {frame_id}: target at ({row:.1f}, {col:.1f}) mm by {source}"
                       f", confidence {view.confidence:.2f}{qc}; {view.reason}; occlusion sensitivity: "
                       f"{near:.0%} of the network's evidence lies within {NEAR_TARGET_MM:g} mm of the target")
        data: dict[str, Any] = {k: round(float(v), 4) for k, v in d.items() if np.isfinite(v)}
        data.update(saliency_near_target=round(near, 4), target_score=round(float(sal.target_score), 4),
                    evidence_sha256=digest, method=sal.method, patch_px=self.patch_px, stride_px=self.stride_px)
        if requested_by:
            data["requested_by"] = requested_by
        card = tracker.model.card if tracker.model is not None else None
        record = DecisionRecord(
            decision="target",
            value="registration fallback" if fallback else "network",
            explanation=explanation,
            confidence=float(np.clip(view.confidence, 0.0, 1.0)),
            component=COMPONENT,
            component_version=f"{card.name} {card.version}" if card is not None else "untrained",
            input_frame_ids=(frame_id,),
            evidence=Evidence.from_path(path, f"frame {frame_id}: occlusion sensitivity of the patient-specific "
                                              "network (red-yellow: the image regions its answer depends on)"),
            data=data,
        )
        seq = self.session.log_evidence(record)
        return Explanation(seq, record, path, frame_id, near, threading.current_thread().name)
