"""``blur_faces`` does not leak a face the detector misses for a moment: ``hold`` blurs a
tracked face's predicted box, ``lookahead`` uses the boxes of the next frames, and
``fail_closed`` blurs a frame no detection ran on. Each test also shows the leak without
the option, so it can fail. Each runs on the host's loop over regions and on the tensor
code a GPU runs (all regions at once)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import nullcontext
from fractions import Fraction

import numpy as np
import pytest
import torch
from skimage import data

from pipeline.core.device import tensor_code
from pipeline.core.frame import Detections, Frame
from pipeline.kit.testing import run_node

from .pictures import crowd

FPS = 30


@pytest.fixture(autouse=True, params=["host loop", "tensor code"])
def branch(request: pytest.FixtureRequest) -> Iterator[str]:
    with tensor_code() if request.param == "tensor code" else nullcontext():
        yield request.param


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, list[float]]:
    """The astronaut photo and the box MTCNN finds on her face."""
    picture = np.ascontiguousarray(data.astronaut())
    frame = Frame.from_image(torch.from_numpy(picture), pts=0, time_base=Fraction(1, FPS))
    found = run_node("mtcnn", [frame])[0].detections
    assert len(found) == 1
    return picture, found.boxes[0].tolist()


def clip(face: tuple[np.ndarray, list[float]], seen: list[bool],
         detected: list[bool] | None = None) -> list[Frame]:
    """One frame per entry of ``seen``, the face still; the detector's box is on the frames
    where ``seen`` says so (empty detections elsewhere); ``detected`` says where detection
    ran at all (default: everywhere)."""
    picture, box = face
    frames = []
    for i, there in enumerate(seen):
        k = int(there)
        dets = Detections(torch.tensor([box] * k, dtype=torch.float32).reshape(k, 4),
                          torch.full((k,), 0.99))
        frames.append(Frame.from_image(torch.from_numpy(picture), pts=i,
                                       time_base=Fraction(1, FPS), index=i, stream="cam",
                                       meta={"detections": dets,
                                             "detected": True if detected is None
                                             else detected[i]}))
    return frames


def hidden(frame: Frame, original: np.ndarray, box: list[float]) -> bool:
    """Whether the face in ``frame`` no longer looks like the original."""
    x1, y1, x2, y2 = (round(v) for v in box)
    now = frame.image.numpy()[y1:y2, x1:x2].astype(float)
    return bool(np.abs(now - original[y1:y2, x1:x2]).mean() > 10)


def tracked(frames: list[Frame]) -> list[Frame]:
    return [f for f in run_node("track", frames) if isinstance(f, Frame)]


def test_hold_blurs_a_tracked_face_missed_for_three_frames(face) -> None:
    picture, box = face
    seen = [True] * 6 + [False] * 3 + [True] * 3
    for hold, leaks in ((0.5, False), (0.0, True)):
        out = run_node("blur_faces", tracked(clip(face, seen)), hold=hold)
        assert [f.index for f in out] == list(range(12))
        shown = [i for i, f in enumerate(out) if not hidden(f, picture, box)]
        assert shown == ([6, 7, 8] if leaks else []), hold


def test_lookahead_blurs_a_face_found_only_in_the_next_frame(face) -> None:
    picture, box = face
    seen = [True, True, False, True, True]  # frame 2: missed, its neighbours find it
    plain = run_node("blur_faces", clip(face, seen))
    assert [i for i, f in enumerate(plain) if not hidden(f, picture, box)] == [2]
    ahead = run_node("blur_faces", clip(face, seen), lookahead=1)
    assert [f.index for f in ahead] == [0, 1, 2, 3, 4]  # all of them, in order
    assert [f.pts for f in ahead] == [0, 1, 2, 3, 4]
    assert all(hidden(f, picture, box) for f in ahead)


def test_fail_closed_blurs_a_frame_whose_detection_was_skipped(face) -> None:
    picture, box = face
    seen, ran = [True, True, True], [True, False, True]  # every: 2 without a tracker
    opened = run_node("blur_faces", clip(face, seen, ran), fail_closed=False)
    assert hidden(opened[1], picture, box)  # the stale box happens to be right here ...
    moved = clip(face, [True, True, True], ran)
    # ... but on a skipped frame the boxes are last frame's: here the face has moved away
    shifted = np.roll(picture, 150, axis=1)
    moved[1] = moved[1].replace(image=torch.from_numpy(np.ascontiguousarray(shifted)))
    leaking = run_node("blur_faces", moved, fail_closed=False)[1]
    shifted_box = [box[0] + 150, box[1], box[2] + 150, box[3]]
    assert not hidden(leaking, shifted, shifted_box)
    closed = run_node("blur_faces", moved)[1]
    assert hidden(closed, shifted, shifted_box)
    whole = np.abs(closed.image.numpy().astype(float) - shifted).mean(axis=2)
    assert (whole > 2).mean() > 0.5  # the whole frame, not a box
    near = run_node("blur_faces", moved, fail_margin=1.0)[1]  # where the face was, grown
    changed = np.abs(near.image.numpy().astype(float) - shifted).mean(axis=2) > 2
    assert 0.05 < changed.mean() < 0.5
    assert not changed[:, -40:].any()  # far from the last face: untouched


@pytest.mark.parametrize(("method", "mean", "far"), [("blur", 2.5, 0.001),
                                                     ("pixelate", 6.0, 0.1)])
def test_both_branches_hide_the_same_pixels_alike(branch: str, method: str, mean: float,
                                                  far: float) -> None:
    """Twelve faces of a 1080p crowd: the tensor code (crops averaged from an integral
    image, blurred, sampled back) changes the faces with their margins and nothing else,
    as the host's loop does, and to nearly the same pictures (pixelate: its rows of blocks
    may fall a little differently)."""
    if branch == "tensor code":
        pytest.skip("compares the two branches itself")
    picture, faces = crowd()
    frame = Frame.from_image(torch.from_numpy(picture.copy()), meta={"detections": faces})
    host = run_node("blur_faces", [frame], method=method)[0].image.numpy().astype(int)
    with tensor_code():
        device = run_node("blur_faces", [frame], method=method)[0].image.numpy().astype(int)
    covered = np.zeros(picture.shape[:2], bool)
    for x1, y1, x2, y2 in faces.boxes.tolist():  # with the default margin of 0.25
        dx, dy = 0.25 * (x2 - x1), 0.25 * (y2 - y1)
        covered[max(0, math.floor(y1 - dy)):math.ceil(y2 + dy),
                max(0, math.floor(x1 - dx)):math.ceil(x2 + dx)] = True
    for out in (host, device):
        changed = (out != picture).any(-1)
        assert not changed[~covered].any() and changed[covered].mean() > 0.9
    difference = np.abs(host - device)
    assert difference.mean() < mean and (difference > 40).mean() < far
