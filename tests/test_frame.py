"""Frame and Detections: immutability, lazy conversion of decoded pictures, validation,
pickling and equality."""

from __future__ import annotations

import dataclasses
import pickle
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from pipeline.core.frame import Detections, Frame, FrozenDict
from plugins.media.picture import DecodedPicture


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
        frame = Frame(pts=native.pts, time_base=native.time_base, native=DecodedPicture(native))
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


def test_extra_fields_are_per_box_and_plain_ones_are_serialised() -> None:
    dets = Detections(boxes=torch.zeros(2, 4), scores=torch.ones(2))
    tagged = dets.with_extra(topk=({"a": 0.9}, {"b": 0.8}), crops=torch.zeros(2, 8, 8, 3),
                             track_id=torch.tensor([3, 4]))
    assert "topk" not in dets.extra and set(tagged.extra) == {"topk", "crops", "track_id"}
    records = tagged.to_json()
    assert records[1]["topk"] == {"b": 0.8} and records[1]["track_id"] == 4
    assert "crops" not in records[0]  # pictures are not JSON
    with pytest.raises(ValueError, match="extra field 'crops' has 1 rows for 2 boxes"):
        dets.with_extra(crops=torch.zeros(1, 8, 8, 3))


def test_meta_is_read_only_and_pickles() -> None:
    meta = FrozenDict({"a": 1, "scores": {"x": 0.5}})
    with pytest.raises(TypeError):
        meta["b"] = 2  # type: ignore[index]
    assert pickle.loads(pickle.dumps(meta)) == meta == {"a": 1, "scores": {"x": 0.5}}
    assert meta != {"a": 2, "scores": {"x": 0.5}}


def test_frames_with_detections_survive_pickling_and_compare_equal(clip: Path) -> None:
    with av.open(str(clip)) as container:
        decoded = [next(container.decode(video=0)) for _ in range(3)]
    dets = Detections(boxes=torch.tensor([[1.0, 2.0, 30.0, 40.0]]), scores=torch.tensor([0.9]),
                      landmarks=torch.rand(1, 5, 2), labels=("Happy",),
                      label_scores=torch.tensor([0.7])).with_extra(
        topk=({"Happy": 0.7, "Sad": 0.2},), crops=torch.randint(0, 255, (1, 8, 8, 1),
                                                                dtype=torch.uint8))
    frames = [Frame(pts=vf.pts, time_base=vf.time_base, stream="cam", index=i, captured=1.5,
                    meta={"detections": dets, "label": "x"}, native=DecodedPicture(vf))
              for i, vf in enumerate(decoded)]
    copies = pickle.loads(pickle.dumps(frames))
    for frame, copy in zip(frames, copies, strict=True):
        assert copy.native is None and copy.has_pixels  # the decoder's picture became pixels
        assert copy == frame
        assert copy.detections == dets
        assert torch.equal(copy.image, torch.from_numpy(
            frame.native.frame.to_ndarray(format="rgb24")))  # type: ignore[union-attr]
    assert copies[0] != copies[1]  # different pictures, different index
    assert copies[0] != copies[0].replace(pts=copies[0].pts + 1)
    assert copies[0] != copies[0].with_meta(label="y")
