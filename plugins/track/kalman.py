"""A constant-velocity Kalman filter on boxes, for many tracks at once (numpy, float64).

The state of a box is its centre, aspect ratio (width / height) and height, and their
velocities per second: ``[cx, cy, a, h, vcx, vcy, va, vh]``. Time steps are in seconds
and may vary from frame to frame, so a 5 fps and a 60 fps stream of the same motion are
filtered alike; the noise of the motion grows with the time step and with the box's
height (a near face moves more pixels than a far one).
"""

from __future__ import annotations

import numpy as np

#: motion noise, in box heights per sqrt(second): of the position, and of the velocity
_POSITION_NOISE = 0.27
_VELOCITY_NOISE = 1.0
_ASPECT_NOISE = (0.05, 0.001)  # of the aspect ratio and its velocity, per sqrt(second)
#: measurement noise, in box heights (the aspect ratio: absolute)
_MEASURED = 0.05
_MEASURED_ASPECT = 0.1


def to_state(boxes: np.ndarray) -> np.ndarray:
    """``[K, 4]`` boxes (x1, y1, x2, y2) as ``[K, 4]`` measurements (cx, cy, a, h)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-3)
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / h, h], axis=1)


def to_boxes(state: np.ndarray) -> np.ndarray:
    """``[K, >=4]`` states (cx, cy, a, h, ...) as ``[K, 4]`` boxes (x1, y1, x2, y2)."""
    h = np.maximum(state[:, 3], 1e-3)
    w = state[:, 2] * h
    return np.stack([state[:, 0] - w / 2, state[:, 1] - h / 2,
                     state[:, 0] + w / 2, state[:, 1] + h / 2], axis=1)


def start(measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means ``[K, 8]`` and covariances ``[K, 8, 8]`` of new tracks at ``measured``
    (``[K, 4]``), their velocities unknown."""
    k = len(measured)
    mean = np.zeros((k, 8))
    mean[:, :4] = measured
    h = measured[:, 3]
    std = np.stack([2 * _MEASURED * h, 2 * _MEASURED * h, np.full(k, 0.2), 2 * _MEASURED * h,
                    2 * _VELOCITY_NOISE * h, 2 * _VELOCITY_NOISE * h, np.full(k, 0.01),
                    2 * _VELOCITY_NOISE * h], axis=1)
    cov = np.zeros((k, 8, 8))
    idx = np.arange(8)
    cov[:, idx, idx] = std**2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and covariances ``dt`` seconds (``[K]``, one per track) later."""
    k = len(mean)
    motion = np.broadcast_to(np.eye(8), (k, 8, 8)).copy()
    motion[:, np.arange(4), np.arange(4) + 4] = dt[:, None]
    mean = mean.copy()
    mean[:, :4] += dt[:, None] * mean[:, 4:]
    h = np.maximum(mean[:, 3], 1e-3)
    step = np.maximum(dt, 0.0)
    var = np.stack([(_POSITION_NOISE * h) ** 2, (_POSITION_NOISE * h) ** 2,
                    np.full(k, _ASPECT_NOISE[0] ** 2), (_POSITION_NOISE * h) ** 2,
                    (_VELOCITY_NOISE * h) ** 2, (_VELOCITY_NOISE * h) ** 2,
                    np.full(k, _ASPECT_NOISE[1] ** 2), (_VELOCITY_NOISE * h) ** 2],
                   axis=1) * step[:, None]
    cov = motion @ cov @ motion.transpose(0, 2, 1)
    idx = np.arange(8)
    cov[:, idx, idx] += var
    return mean, cov


def update(mean: np.ndarray, cov: np.ndarray,
           measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means and covariances corrected by ``measured`` (``[K, 4]``, one per track)."""
    h = np.maximum(mean[:, 3], 1e-3)
    noise = np.stack([_MEASURED * h, _MEASURED * h, np.full(len(h), _MEASURED_ASPECT),
                      _MEASURED * h], axis=1) ** 2
    innovation_cov = cov[:, :4, :4].copy()
    idx = np.arange(4)
    innovation_cov[:, idx, idx] += noise
    # gain K = P H^T S^-1, solved rather than inverted
    gain = np.linalg.solve(innovation_cov, cov[:, :4, :]).transpose(0, 2, 1)
    mean = mean + (gain @ (measured - mean[:, :4])[:, :, None])[:, :, 0]
    cov = cov - gain @ innovation_cov @ gain.transpose(0, 2, 1)
    return mean, cov


def position_sigma(cov: np.ndarray) -> np.ndarray:
    """How uncertain each track's centre is: ``[K]`` standard deviations, in pixels."""
    return np.sqrt(np.maximum(cov[:, 0, 0], cov[:, 1, 1]))
