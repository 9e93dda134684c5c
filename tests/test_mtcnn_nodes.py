"""The ``mtcnn`` and ``draw`` nodes on real faces."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch

from pipeline.core.device import tensor_code
from pipeline.core.frame import Detections, Frame
from pipeline.kit.testing import run_node

from .pictures import crowd
from .test_mtcnn_detector import FACE, composite, iou


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def frame(image: np.ndarray, index: int = 0, stream_name: str = "cam") -> Frame:
    return Frame.from_image(torch.from_numpy(np.ascontiguousarray(image)), pts=index,
                            time_base=Fraction(1, 30), stream=stream_name, index=index)


def test_mtcnn_node_puts_detections_on_frames(astronaut) -> None:
    (out,) = run_node("mtcnn", [frame(astronaut)])
    dets = out.detections
    assert dets is not None and len(dets) == 1
    assert iou(dets.boxes[0].tolist(), FACE) > 0.7
    assert dets.landmarks is not None and dets.landmarks.shape == (1, 5, 2)


def test_every_n_frames_reuses_the_last_result_per_stream(astronaut) -> None:
    frames = [frame(astronaut, i, "a") for i in range(4)] + [frame(astronaut, 0, "b")]
    out = run_node("mtcnn", frames, every=3)
    a0, a1, a2, a3, b0 = (f.detections for f in out)
    assert a1 is a0 and a2 is a0  # held between detections
    assert a3 is not a0 and b0 is not a0  # detected again; another stream has its own
    assert all(d is not None and len(d) == 1 for d in (a3, b0))


def test_every_n_frames_holds_within_a_batch(astronaut) -> None:
    """Batched (mtcnn's default is 8): in a batch of two streams, each stream's frames
    between detections take the detections of its last detected frame, in this batch or
    in the one before."""
    from pipeline.kit.testing import opened_node

    with opened_node("mtcnn", every=3) as node, torch.inference_mode():
        first = node.run([frame(astronaut, i, s) for i in range(5) for s in "ab"])
        second = node.run([frame(astronaut, i, "a") for i in (5, 6)])
    ran = [f.meta["detected"] for f in first]
    assert ran == [True, True, False, False, False, False, True, True, False, False]
    assert first[2].detections is first[0].detections
    assert first[8].detections is first[6].detections
    assert first[9].detections is first[7].detections
    assert [f.meta["detected"] for f in second] == [False, True]
    assert second[0].detections is first[6].detections


def test_max_side_maps_boxes_back_to_the_full_picture(astronaut) -> None:
    big, face = composite(astronaut, 2.0, 0, (700, 500), size=(1080, 1440))
    (out,) = run_node("mtcnn", [frame(big)], max_side=480)
    dets = out.detections
    assert dets is not None and len(dets) == 1
    assert iou(dets.boxes[0].tolist(), face) > 0.7


def test_a_batch_of_two_sizes_from_two_streams(astronaut) -> None:
    small, face_small = composite(astronaut, 0.6, 0, (200, 150), size=(360, 640))
    large, face_large = composite(astronaut, 1.2, 0, (500, 400), size=(720, 1280))
    from pipeline.core.registry import Registry

    cls = Registry.from_entry_points().get("mtcnn")
    node = cls(cls.Params(), _context())
    node.open()
    out = node.process_batch([frame(small, 0, "s"), frame(large, 0, "l"),
                              frame(small, 1, "s")])
    for f, face in zip(out, (face_small, face_large, face_small), strict=True):
        assert f.detections is not None and iou(f.detections.boxes[0].tolist(), face) > 0.7


def _context():
    from pipeline.core.node import NodeContext

    return NodeContext("faces", torch.device("cpu"))


def test_draw_marks_the_box_and_leaves_frames_without_detections_alone(astronaut) -> None:
    (found,) = run_node("mtcnn", [frame(astronaut)])
    (drawn,) = run_node("draw", [found], color=(255, 0, 255))
    image = drawn.image.numpy()
    x1, y1, _, y2 = (round(v) for v in found.detections.boxes[0].tolist())
    edge = image[(y1 + y2) // 2, x1 - 1:x1 + 2]  # the left side of the box
    assert any((px == [255, 0, 255]).all() for px in edge)
    assert (image[400:500, 400:500] == astronaut[400:500, 400:500]).all()  # far from it
    plain = frame(np.zeros((64, 64, 3), np.uint8))
    assert run_node("draw", [plain])[0] is plain


def test_draw_scales_with_the_picture(astronaut) -> None:
    big = cv2.resize(astronaut, (2048, 2048))
    (found,) = run_node("mtcnn", [frame(big)], max_side=512)
    (drawn,) = run_node("draw", [found], color=(255, 0, 255), scores=False)
    box = found.detections.boxes[0]
    row = drawn.image.numpy()[round(float(box[1] + box[3]) / 2)]
    magenta = (row == [255, 0, 255]).all(-1).nonzero()[0]
    assert len(magenta) >= 8  # two sides, several pixels thick at 2K


def edge_faces() -> tuple[np.ndarray, Detections]:
    """Three faces on a 720p picture, no frame label (the overlay covers only part of the
    picture): one at the right edge (its score clamped inside), one across the bottom
    edge, one wholly outside."""
    picture = np.random.default_rng(4).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    boxes = torch.tensor([[1200.0, 300, 1275, 380], [500, 680, 580, 790],
                          [1400, 100, 1500, 200]])
    marks = boxes[:, None, :2] + torch.tensor([[20.0, 30], [50, 30], [35, 45], [25, 60],
                                               [50, 60]])
    return picture, Detections(boxes, torch.tensor([0.99, 0.91, 0.8]), marks)


@pytest.mark.parametrize("scene", ["crowd with a label", "faces at the edges"])
def test_draw_on_the_device_paints_what_the_host_paints(scene: str) -> None:
    """The tensor branch (OpenCV paints a colour and a coverage layer the size of the part
    the marks cover, only the painted pixels travel and are blended) gives the host's
    picture: twelve boxes with scores and landmarks on a 1080p crowd, a label, and a thin
    predicted box; and faces at and beyond the edges of a 720p picture."""
    if scene == "crowd with a label":
        picture, faces = crowd()
        flags = torch.zeros(len(faces), dtype=torch.bool)
        flags[3] = True
        faces = Detections(faces.boxes, faces.scores, faces.landmarks,
                           extra={"predicted": flags})
        meta = {"detections": faces, "label": "crowd"}
    else:
        picture, faces = edge_faces()
        meta = {"detections": faces}
    found = Frame.from_image(torch.from_numpy(picture.copy()), meta=meta)
    host = run_node("draw", [found])[0].image.numpy().astype(int)
    assert (found.image.numpy() == picture).all()  # the input frame is left as it was
    with tensor_code():
        device = run_node("draw", [found])[0].image.numpy().astype(int)
    assert (found.image.numpy() == picture).all()
    drawn = (host != picture).any(-1)
    assert drawn.mean() > 0.002  # boxes, text, points: something was drawn
    difference = np.abs(host - device)
    assert difference.max() <= 3 and (difference > 0).mean() < 0.001  # rounding of edges
