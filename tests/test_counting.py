"""The operation and sync counter (pipeline.kit.counting), and the budgets of the model
nodes' tensor code (the branch a GPU runs, taken here on the CPU) that keep it lean."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.core.device import tensor_code
from pipeline.core.frame import Frame
from pipeline.core.registry import Registry
from pipeline.kit.counting import count_node, counting
from plugins.mtcnn.detector import Detector

from .pictures import crowd


def test_counts_launching_operations_apart_from_views_and_each_kind_of_sync() -> None:
    x = torch.arange(12.0).view(3, 4)
    with counting() as counts:
        y = (x + 1) * 2  # two operations
        y.t()  # a view
        y[y > 5]  # a comparison, then indexing by a mask: a sync
        y.nonzero()
        float(y.sum())  # .item(): a sync
        y.tolist()
        y.cpu().numpy()  # one wait: the copy .cpu() made is read at once
    assert counts.by_sync == {"index (boolean mask)": 1, "nonzero": 1,
                              "_local_scalar_dense": 1, "tolist": 1, "cpu": 1}
    assert counts.syncs == 5 and counts.views >= 1
    assert counts.by_op["add"] == 1 and counts.by_op["mul"] == 1
    assert torch.Tensor.tolist is not None and "counted" not in repr(torch.Tensor.tolist)


def test_mtcnn_on_a_batch_of_8_1080p_frames_keeps_its_launch_and_sync_budget() -> None:
    from skimage import data

    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[300:812, 700:1212] = data.astronaut()
    images = torch.from_numpy(np.stack([frame] * 8))
    with tensor_code():
        detector = Detector(torch.device("cpu"))
        detector.detect(images[:1])
        with counting() as counts:
            found = detector.detect(images)
    assert all(len(faces) == 1 for faces in found)
    # the target, from about 1,600 operations and 79 syncs a frame (frame by frame)
    assert counts.ops / 8 < 300, counts.by_op.most_common(8)
    assert counts.syncs / 8 < 10, counts.by_sync


@pytest.mark.parametrize(("plugin", "ops", "syncs"), [("blur_faces", 130, 0),
                                                       ("draw", 30, 1),
                                                       ("face_crops", 60, 1)])
def test_face_nodes_keep_their_budget(plugin: str, ops: int, syncs: int) -> None:
    picture, faces = crowd()
    frames = [Frame.from_image(torch.from_numpy(picture.copy()), index=i, stream="cam",
                               meta={"detections": faces}) for i in range(4)]
    row = count_node(plugin, frames, Registry.from_entry_points())
    assert row["ops"] < ops and row["syncs"] <= syncs, row
