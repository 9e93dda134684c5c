"""One stream's tracks: ByteTrack's two-stage association on a Kalman prediction, with
gates, confirmation and ageing in seconds.

Per frame with detections: every track is predicted to the frame's time; high-score
detections are matched to all tracks (Hungarian method on 1 - IoU, SciPy), then the
low-score ones to the confirmed tracks still unmatched (so a face whose score dips is not
lost); a match must pass the gates (enough overlap, a plausible change of size, a plausible
speed), so one false positive beside a real face cannot take its track. High-score
detections left over start tentative tracks; a tentative track is confirmed (and gets its
id) after ``min_hits`` matches spanning ``confirm`` seconds, and dies at its first miss; a
confirmed track that is not seen for ``max_age`` seconds ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from . import kalman

_INFEASIBLE = 1e6


@dataclass(frozen=True)
class TrackerSettings:
    """The tracker's thresholds (see the ``track`` node's parameters)."""

    high: float = 0.9
    low: float = 0.7
    min_iou: float = 0.2
    low_iou: float = 0.5
    max_size_change: float = 1.5
    max_speed: float = 6.0
    min_hits: int = 2
    confirm: float = 0.1
    max_age: float = 1.0


@dataclass
class Track:
    """One object followed across frames."""

    mean: np.ndarray  # [8] Kalman state at ``at``
    cov: np.ndarray  # [8, 8]
    at: float  # stream time of the state
    first: float  # time of the first detection
    last: float  # time of the latest matched detection
    first_index: int
    last_box: np.ndarray  # the latest matched detection's box
    score: float
    best_score: float
    best_index: int
    hits: int = 1
    id: int | None = None  # given at confirmation
    landmarks: np.ndarray | None = None  # of the latest detection, [5, 2]
    label: str | None = None
    label_score: float | None = None


@dataclass
class Box:
    """One box the tracker hands on: a detection (``det`` its index in the input) or a
    prediction for a confirmed track not seen in this frame."""

    box: np.ndarray
    score: float
    track_id: int | None
    predicted: bool
    age: float  # seconds since the track's first detection (0 without a track)
    hits: int
    lost: float  # seconds since the track's latest detection
    sigma: float  # uncertainty of the box's centre, pixels
    det: int | None = None
    track: Track | None = None


@dataclass
class Tracker:
    """The tracks of one stream; picklable (a stream's state may move between machines)."""

    settings: TrackerSettings
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1

    def step(self, t: float, index: int, boxes: np.ndarray | None, scores: np.ndarray | None,
             extra: dict[str, Any] | None = None) -> tuple[list[Box], list[dict[str, Any]]]:
        """Advance to the frame at ``t`` s; ``boxes``/``scores`` are its detections, or None
        when detection did not run on it. Returns what to put on the frame and the events
        (``track_start``, ``track_end``)."""
        self._predict(t)
        events: list[dict[str, Any]] = []
        matched: dict[int, Track] = {}
        if boxes is not None and scores is not None:
            matched = self._associate(boxes, scores, t, index, extra or {}, events)
        sigma = self._sigmas()
        out: list[Box] = []
        if boxes is not None and scores is not None:
            for i in range(len(boxes)):
                track = matched.get(i)
                if track is None:
                    out.append(Box(boxes[i], float(scores[i]), None, False, 0.0, 0, 0.0, 0.0, i))
                else:
                    out.append(Box(boxes[i], float(scores[i]), track.id, False, t - track.first,
                                   track.hits, 0.0, sigma[id(track)], i, track))
        seen = {id(tr) for tr in matched.values()}
        for track in self.tracks:
            # where detection did not run, tentative tracks are predicted too: a face that
            # has just appeared must not vanish from the frames between detections
            if (track.id is not None or boxes is None) and id(track) not in seen:
                out.append(Box(kalman.to_boxes(track.mean[None])[0], track.score, track.id,
                               True, t - track.first, track.hits, t - track.last,
                               sigma[id(track)], None, track))
        events += self._expire(t)
        return out, events

    def _sigmas(self) -> dict[int, float]:
        """How uncertain each track's centre is (px), by ``id(track)``."""
        if not self.tracks:
            return {}
        values = kalman.position_sigma(np.stack([tr.cov for tr in self.tracks]))
        return {id(tr): float(v) for tr, v in zip(self.tracks, values, strict=True)}

    def end(self) -> list[dict[str, Any]]:
        """The stream ended: every confirmed track ends now."""
        done = [_ended(track) for track in self.tracks if track.id is not None]
        self.tracks = []
        return done

    def _predict(self, t: float) -> None:
        if not self.tracks:
            return
        mean = np.stack([tr.mean for tr in self.tracks])
        cov = np.stack([tr.cov for tr in self.tracks])
        dt = np.array([t - tr.at for tr in self.tracks])
        mean, cov = kalman.predict(mean, cov, dt)
        for k, track in enumerate(self.tracks):
            track.mean, track.cov, track.at = mean[k], cov[k], t

    def _associate(self, boxes: np.ndarray, scores: np.ndarray, t: float, index: int,
                   extra: dict[str, Any], events: list[dict[str, Any]]) -> dict[int, Track]:
        s = self.settings
        high = [i for i in range(len(boxes)) if scores[i] >= s.high]
        low = [i for i in range(len(boxes)) if s.low <= scores[i] < s.high]
        matched: dict[int, Track] = {}
        pairs = self._match(self.tracks, high, boxes, t, s.min_iou)
        matched.update(pairs)
        taken = {id(tr) for tr in pairs.values()}
        waiting = [tr for tr in self.tracks if tr.id is not None and id(tr) not in taken]
        matched.update(self._match(waiting, low, boxes, t, s.low_iou))
        self._hit(matched, boxes, scores, t, index, extra, events)
        taken = {id(tr) for tr in matched.values()}
        # a tentative track dies at its first miss: one false positive never lingers
        self.tracks = [tr for tr in self.tracks if tr.id is not None or id(tr) in taken]
        fresh = [i for i in high if i not in matched]
        if fresh:
            mean, cov = kalman.start(kalman.to_state(boxes[fresh]))
            for k, i in enumerate(fresh):
                track = Track(mean[k], cov[k], t, t, t, index, boxes[i].copy(),
                              float(scores[i]), float(scores[i]), index)
                _describe(track, extra, i)
                self.tracks.append(track)
                self._maybe_confirm(track, t, events)
                matched[i] = track
        return matched

    def _match(self, tracks: list[Track], dets: list[int], boxes: np.ndarray, t: float,
               min_iou: float) -> dict[int, Track]:
        """Hungarian assignment of ``dets`` to ``tracks`` on 1 - IoU, within the gates."""
        if not tracks or not dets:
            return {}
        s = self.settings
        predicted = kalman.to_boxes(np.stack([tr.mean for tr in tracks]))
        found = boxes[dets]
        cost = 1.0 - iou(predicted, found)
        # gates: overlap, change of size, and speed from the track's latest sighting
        cost[cost > 1.0 - min_iou] = _INFEASIBLE
        ratio = _heights(found)[None, :] / _heights(predicted)[:, None]
        cost[(ratio > s.max_size_change) | (ratio < 1 / s.max_size_change)] = _INFEASIBLE
        last = np.stack([tr.last_box for tr in tracks])
        elapsed = np.array([max(t - tr.last, 1e-3) for tr in tracks])
        moved = np.hypot(*(_centres(found)[None, :, :] - _centres(last)[:, None, :])
                         .transpose(2, 0, 1))
        speed = moved / (_heights(last)[:, None] * elapsed[:, None])
        cost[speed > s.max_speed] = _INFEASIBLE
        rows, cols = linear_sum_assignment(cost)
        return {dets[c]: tracks[r] for r, c in zip(rows, cols, strict=True)
                if cost[r, c] < _INFEASIBLE}

    def _hit(self, matched: dict[int, Track], boxes: np.ndarray, scores: np.ndarray, t: float,
             index: int, extra: dict[str, Any], events: list[dict[str, Any]]) -> None:
        """Correct the matched tracks with their detections, all in one filter update."""
        if not matched:
            return
        dets = list(matched)
        tracks = [matched[i] for i in dets]
        mean, cov = kalman.update(np.stack([tr.mean for tr in tracks]),
                                  np.stack([tr.cov for tr in tracks]),
                                  kalman.to_state(boxes[dets]))
        for k, (i, track) in enumerate(zip(dets, tracks, strict=True)):
            score = float(scores[i])
            track.mean, track.cov = mean[k], cov[k]
            track.last, track.last_box, track.score = t, boxes[i].copy(), score
            track.hits += 1
            if score > track.best_score:
                track.best_score, track.best_index = score, index
            _describe(track, extra, i)
            self._maybe_confirm(track, t, events)

    def _maybe_confirm(self, track: Track, t: float, events: list[dict[str, Any]]) -> None:
        s = self.settings
        if track.id is None and track.hits >= s.min_hits and t - track.first >= s.confirm - 1e-9:
            track.id = self.next_id
            self.next_id += 1
            events.append({"event": "track_start", "track_id": track.id,
                           "time": round(track.first, 3), "index": track.first_index})

    def _expire(self, t: float) -> list[dict[str, Any]]:
        gone = [tr for tr in self.tracks if t - tr.last > self.settings.max_age]
        if gone:
            self.tracks = [tr for tr in self.tracks if t - tr.last <= self.settings.max_age]
        return [_ended(tr) for tr in gone if tr.id is not None]


def _describe(track: Track, extra: dict[str, Any], i: int) -> None:
    """Keep what the latest detection says beside its box (landmarks, label)."""
    if extra.get("landmarks") is not None:
        track.landmarks = extra["landmarks"][i].copy()
    if extra.get("labels") is not None:
        track.label = extra["labels"][i]
    if extra.get("label_scores") is not None:
        track.label_score = float(extra["label_scores"][i])


def _ended(track: Track) -> dict[str, Any]:
    return {"event": "track_end", "track_id": track.id, "first_time": round(track.first, 3),
            "last_time": round(track.last, 3), "duration": round(track.last - track.first, 3),
            "hits": track.hits, "best_score": round(track.best_score, 4),
            "best_index": track.best_index}


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[A, B]`` intersection over union of boxes ``a`` ``[A, 4]`` and ``b`` ``[B, 4]``."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _heights(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[:, 3] - boxes[:, 1], 1e-3)


def _centres(boxes: np.ndarray) -> np.ndarray:
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
