"""Frame and Detections: immutability, lazy conversion of decoded pictures, validation."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from pipeline.core.frame import Detections, Frame


def test_frame_is_immutable_and_replace_returns_a_new_one() -> None:
    frame = Frame.from_image(torch.zeros(4, 6, 3, dtype=torch.uint8), pts=3,
                             time_base=Fraction(1, 30), meta={"a": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.pts = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        frame.meta["b"] = 2  # type: ignore[index]
    brighter = frame.replace(image=frame.image + 10)
    assert frame.image.max() == 0 and brighter.image.max() == 10
    assert brighter.pts == 3 and brighter.meta["a"] == 1
    assert frame.with_meta(b=2).meta == {"a": 1, "b": 2} and "b" not in frame.meta
    assert frame.time == pytest.approx(0.1)
    assert (frame.width, frame.height) == (6, 4)


def test_bad_images_are_rejected() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Frame.from_image(torch.zeros(4, 4, 3))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        Frame.from_image(np.zeros((4, 4), np.uint8))


def test_decoded_picture_converts_to_rgb_only_when_read(clip: Path) -> None:
    with av.open(str(clip)) as container:
        native = next(container.decode(video=0))
        frame = Frame(pts=native.pts, time_base=native.time_base, native=native)
        assert not frame.has_pixels
        assert (frame.width, frame.height) == (320, 240)
        assert frame.to(torch.device("cpu")) is frame  # nothing to move, nothing converted
        image = frame.image
        assert frame.has_pixels and image.shape == (240, 320, 3) and image.dtype == torch.uint8
        assert np.array_equal(image.numpy(), native.to_ndarray(format="rgb24"))
        assert frame.replace(image=image.clone()).native is None


def test_detections_check_shapes_and_serialise() -> None:
    dets = Detections(boxes=torch.tensor([[0.0, 0.0, 10.0, 10.0], [5, 5, 8, 9]]),
                      scores=torch.tensor([0.5, 0.25]))
    assert len(dets) == 2
    assert dets.to_json()[1] == {"box": [5.0, 5.0, 8.0, 9.0], "score": 0.25, "landmarks": None,
                                 "label": None, "label_score": None}
    with pytest.raises(ValueError, match="labels"):
        Detections(boxes=torch.zeros(2, 4), scores=torch.zeros(2), labels=("a",))
    with pytest.raises(ValueError, match="landmarks"):
        Detections(boxes=torch.zeros(1, 4), scores=torch.zeros(1), landmarks=torch.zeros(1, 4, 2))
