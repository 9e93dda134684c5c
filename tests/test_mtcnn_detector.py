"""The MTCNN cascade on real faces: scikit-image's astronaut, and composites of her at other
sizes, positions and small rotations; pictures without faces; batches against single frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.core.device import tensor_code
from plugins.mtcnn import area as area_module
from plugins.mtcnn.area import (
    NET_OFFSET,
    AreaResize,
    crop_bins,
    crops,
    gathered_bin_means,
    summed_area,
    summed_area_torch,
)
from plugins.mtcnn.detector import Detector
from plugins.mtcnn.nms import batched_nms, box_iou, cluster_nms

from .pictures import crowd

#: her face in skimage's 512x512 astronaut, labelled by hand (brows to chin, ear to ear)
FACE = (182.0, 62.0, 268.0, 174.0)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(torch.device("cpu"))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def iou(a, b) -> float:
    return float(box_iou(torch.tensor([a], dtype=torch.float32),
                         torch.tensor([b], dtype=torch.float32))[0, 0])


def composite(photo: np.ndarray, scale: float, angle: float, centre: tuple[float, float],
              size: tuple[int, int] = (480, 640)) -> tuple[np.ndarray, tuple[float, ...]]:
    """The photo scaled, rotated about her face and placed with the face at ``centre`` on
    a plain grey canvas; returns the picture and where the face box went."""
    fx, fy = (FACE[0] + FACE[2]) / 2, (FACE[1] + FACE[3]) / 2
    m = cv2.getRotationMatrix2D((fx, fy), angle, scale)
    m[:, 2] += np.array(centre) - np.array([fx, fy])
    canvas = cv2.warpAffine(photo, m, (size[1], size[0]), borderValue=(128, 128, 128))
    half_w, half_h = (FACE[2] - FACE[0]) / 2 * scale, (FACE[3] - FACE[1]) / 2 * scale
    return canvas, (centre[0] - half_w, centre[1] - half_h, centre[0] + half_w,
                    centre[1] + half_h)


def detect(detector: Detector, *images: np.ndarray):
    return detector.detect(torch.from_numpy(np.stack(images)))


def test_finds_her_face_and_landmarks_in_order(detector, astronaut) -> None:
    (dets,) = detect(detector, astronaut)
    assert len(dets) == 1
    assert iou(dets.boxes[0].tolist(), FACE) > 0.7
    assert dets.scores[0] > 0.99
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = dets.landmarks[0].tolist()
    x1, y1, x2, y2 = dets.boxes[0].tolist()
    assert all(x1 < x < x2 and y1 < y < y2 for x, y in dets.landmarks[0].tolist())
    assert lx < nx < rx and mlx < nx < mrx  # left and right as seen in the picture
    assert max(ly, ry) < ny < min(mly, mry)  # eyes above nose above mouth


@pytest.mark.parametrize(("scale", "angle", "centre"), [
    (1.0, 0, (320, 240)), (0.5, 8, (100, 90)), (2.0, -10, (400, 260)), (0.3, 0, (560, 400)),
])
def test_composites_at_other_sizes_positions_and_angles(detector, astronaut, scale, angle,
                                                        centre) -> None:
    picture, face = composite(astronaut, scale, angle, centre)
    (dets,) = detect(detector, picture)
    best = max((iou(b, face) for b in dets.boxes.tolist()), default=0.0)
    assert best > 0.6 if angle else best > 0.7
    assert len(dets) == 1


def test_faces_as_small_as_min_face(detector, astronaut) -> None:
    scale = 22 / (FACE[2] - FACE[0])  # a 22 px wide face
    picture, face = composite(astronaut, scale, 0, (200, 200))
    (dets,) = detect(detector, picture)
    assert any(iou(b, face) > 0.5 for b in dets.boxes.tolist())


def test_pictures_without_faces(detector) -> None:
    from skimage import data

    coffee = data.coffee()
    yy, xx = np.mgrid[0:360, 0:640]
    bars = np.stack([(xx * 3) % 256, (yy * 2) % 256, (xx + yy) % 256], -1).astype(np.uint8)
    assert len(detect(detector, coffee)[0]) == 0
    assert len(detect(detector, bars)[0]) == 0


def test_a_batch_gives_what_single_frames_give(detector, astronaut) -> None:
    pictures = [composite(astronaut, s, a, c)[0] for s, a, c in
                ((1.0, 0, (320, 240)), (0.5, 5, (150, 120)), (0.7, 0, (480, 300)))]
    pictures.append(np.full_like(pictures[0], 90))
    together = detect(detector, *pictures)
    in_chunks = detect(Detector(torch.device("cpu"), chunk=3), *pictures)  # 3 frames, then 1
    for picture, batched, chunked in zip(pictures, together, in_chunks, strict=True):
        (alone,) = detect(detector, picture)
        assert len(alone) == len(batched) == len(chunked)
        for found in (batched, chunked):
            torch.testing.assert_close(alone.boxes, found.boxes, atol=1e-3, rtol=0)
            torch.testing.assert_close(alone.landmarks, found.landmarks, atol=1e-3, rtol=0)
    assert [len(found) for found in together] == [1, 1, 1, 0]


def greedy_nms(boxes: list, scores: list, threshold: float, by_min: bool) -> list[int]:
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept: list[int] = []
    for i in order:
        overlaps = [float(box_iou(torch.tensor([boxes[i]]), torch.tensor([boxes[j]]),
                                  by_min=by_min)[0, 0]) for j in kept]
        if all(overlap <= threshold for overlap in overlaps):
            kept.append(i)
    return kept


@pytest.mark.parametrize("by_min", [False, True])
def test_batched_nms_is_greedy_nms_within_each_group(by_min) -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (200, 2))
    wh = rng.uniform(5, 40, (200, 2))
    boxes = torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32)
    scores = torch.tensor(rng.uniform(0, 1, 200), dtype=torch.float32)
    groups = torch.tensor(rng.integers(0, 3, 200))
    kept = batched_nms(boxes, scores, groups, 0.4, by_min=by_min)  # the compiled loop
    expected: set[int] = set()
    for g in range(3):
        members = [i for i in range(200) if groups[i] == g]
        picked = greedy_nms([boxes[i].tolist() for i in members],
                            [float(scores[i]) for i in members], 0.4, by_min)
        expected |= {members[i] for i in picked}
    assert 20 < len(kept) < 180 and set(kept.tolist()) == expected
    assert scores[kept].diff().le(0).all()  # best first
    # what other devices run: the matrix fixed point
    order = scores.argsort(descending=True)
    assert torch.equal(order[cluster_nms(boxes[order], groups[order], 0.4, by_min=by_min)],
                       kept)


def reference_crop(image: np.ndarray, box: list[float], size: int) -> torch.Tensor:
    """The crop of the reference implementations, box by box: whole pixels from
    trunc(x1) - 1 to trunc(x2) on a black canvas, area-resized (adaptive average pooling)."""
    x0, y0 = int(box[0]) - 1, int(box[1]) - 1
    x1, y1 = int(box[2]), int(box[3])
    canvas = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
    h, w = image.shape[:2]
    sx, sy, ex, ey = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    canvas[sy - y0:ey - y0, sx - x0:ex - x0] = image[sy:ey, sx:ex]
    patch = torch.from_numpy(canvas).permute(2, 0, 1)[None]
    return (F.adaptive_avg_pool2d(patch, size)[0] - 127.5) / 128


@pytest.mark.parametrize("size", [24, 48])
def test_crops_are_the_reference_crops_for_all_boxes_of_all_frames(size) -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (3, 120, 160, 3), dtype=np.uint8)
    boxes, owner = [], []
    for k in range(40):  # inside, across the edges, much smaller and bigger than the crop
        side = rng.uniform(8, 5 * size)
        x, y = rng.uniform(-side / 2, 160 - side / 2), rng.uniform(-side / 2, 120 - side / 2)
        boxes.append([x, y, x + side, y + side * rng.uniform(0.8, 1.2)])
        owner.append(k % 3)
    table, boxes_, owner_ = (summed_area(torch.from_numpy(frames)),
                             torch.tensor(boxes, dtype=torch.float32), torch.tensor(owner))
    cut = crops(table, boxes_, owner_, size)  # the compiled loop, on the CPU
    assert cut.shape == (40, 3, size, size)
    assert cut.is_contiguous(memory_format=torch.channels_last)
    for k, (box, frame) in enumerate(zip(boxes, owner, strict=True)):
        torch.testing.assert_close(cut[k], reference_crop(frames[frame], box, size),
                                   atol=1e-5, rtol=0)
    # what other devices run: four gathers
    gathered = gathered_bin_means(table, owner_, *crop_bins(table, boxes_, size), NET_OFFSET)
    assert torch.equal(cut, gathered)


@pytest.mark.gpu
def test_cpu_and_gpu_agree(detector, astronaut) -> None:
    pictures = [composite(astronaut, s, a, c)[0] for s, a, c in
                ((1.0, 0, (320, 240)), (0.35, 0, (100, 100)), (0.7, 8, (480, 300)))]
    gpu = Detector(torch.device("cuda"))
    half = Detector(torch.device("cuda"), half=True)
    images = torch.from_numpy(np.stack(pictures))
    on_gpu, in_half = gpu.detect(images.cuda()), half.detect(images.cuda())
    for on_cpu, full, fp16 in zip(detector.detect(images), on_gpu, in_half, strict=True):
        assert len(on_cpu) == len(full) == len(fp16)
        torch.testing.assert_close(full.boxes.cpu(), on_cpu.boxes, atol=0.5, rtol=0)
        torch.testing.assert_close(full.landmarks.cpu(), on_cpu.landmarks, atol=0.5, rtol=0)
        for a, b in zip(fp16.boxes.cpu().tolist(), on_cpu.boxes.tolist(), strict=True):
            assert iou(a, b) > 0.9  # fp16 moves boxes by a pixel or so, no more


def test_frames_too_big_for_int32_sums_get_64_bit_tables(monkeypatch, astronaut) -> None:
    frames = torch.from_numpy(astronaut[None])
    small = summed_area(frames)
    monkeypatch.setattr(area_module, "INT32_SUMS", 1000)
    wide = summed_area(frames)
    assert small.dtype == torch.int32 and wide.dtype == torch.float64
    assert torch.equal(wide, small.double())
    assert summed_area_torch(frames, torch.int64).equal(small.long())
    boxes = torch.tensor([[100.0, 50.0, 300.0, 260.0]])
    first = torch.zeros(1, dtype=torch.long)
    torch.testing.assert_close(crops(wide, boxes, first, 48), crops(small, boxes, first, 48))
    torch.testing.assert_close(
        gathered_bin_means(wide, first, *crop_bins(wide, boxes, 48), NET_OFFSET),
        crops(small, boxes, first, 48))


@pytest.mark.parametrize("height, width", [(480, 640), (1080, 1920), (37, 53)])
def test_pyramid_levels_are_torchs_area_resizing(height, width) -> None:
    frames = torch.from_numpy(np.random.default_rng(5).integers(
        0, 256, (2, height, width, 3), dtype=np.uint8))
    table = summed_area(frames)
    assert table.dtype == torch.int32 and table.shape == (2, height + 1, width + 1, 3)
    assert torch.equal(summed_area_torch(frames, torch.int32), table)  # the GPU's way
    as_float = frames.permute(0, 3, 1, 2).float()
    for out in [(height * 3 // 5 + 1, width * 3 // 5 + 1), (15, 21), (height, width)]:
        resize = AreaResize.between((height, width), out, frames.device)
        level = resize(table)  # the compiled loop, on the CPU
        assert level.shape == (2, 3, *out)
        assert level.is_contiguous(memory_format=torch.channels_last)
        expected = F.interpolate(as_float, size=out, mode="area")
        torch.testing.assert_close(level, expected, atol=2e-5, rtol=1e-6)
        assert torch.equal(level, resize.gathered(table))  # what other devices run
        assert torch.equal(level, resize(table.double()))  # 64-bit tables, 4K and up
        normalise = AreaResize.between((height, width), out, frames.device,
                                       scale=1 / 128, offset=-127.5 / 128)
        normalised = normalise(table)
        torch.testing.assert_close(normalised, (expected - 127.5) / 128, atol=1e-6, rtol=0)
        assert torch.equal(normalised, normalise.gathered(table))


def test_crops_of_big_boxes_are_exact_too(astronaut) -> None:
    boxes = [[0.0, 0.0, 512.0, 512.0], [150.0, 40.0, 300.0, 200.0],
             [-60.0, 300.0, 200.0, 560.0]]
    cut = crops(summed_area(torch.from_numpy(astronaut[None])), torch.tensor(boxes),
                torch.zeros(3, dtype=torch.long), 24)
    for k, box in enumerate(boxes):  # bins of 6 to 22 pixels
        torch.testing.assert_close(cut[k], reference_crop(astronaut, box, 24),
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_the_gpu_s_tensor_code_run_on_the_cpu_finds_the_same_faces(detector, astronaut,
                                                                     dtype) -> None:
    pictures = [composite(astronaut, s, a, c)[0] for s, a, c in
                ((1.0, 0, (320, 240)), (0.35, 0, (100, 100)), (0.7, 8, (480, 300)))]
    batches = [np.stack(pictures), crowd()[0][None]]
    with tensor_code():
        tensor = Detector(torch.device("cpu"), dtype=dtype)
        found = [tensor.detect(torch.from_numpy(b)) for b in batches]
    expected = [detector.detect(torch.from_numpy(b)) for b in batches]
    assert len(expected[1][0]) == 12
    for got_batch, want_batch in zip(found, expected, strict=True):
        for got, want in zip(got_batch, want_batch, strict=True):
            assert len(got) == len(want)
            if dtype == torch.float32:  # the same arithmetic, another order of operations
                torch.testing.assert_close(got.boxes, want.boxes, atol=0.05, rtol=0)
                continue
            for box in want.boxes.tolist():  # float16 nets: each face found within IoU 0.9
                assert max(iou(box, other) for other in got.boxes.tolist()) > 0.9
            assert got.boxes.dtype == torch.float32 and torch.isfinite(got.boxes).all()


def test_nms_keeps_frames_apart_even_for_boxes_outside_their_frame() -> None:
    # shifting each frame's boxes by (largest coordinate + 1) * frame, as batched NMS once
    # did, lays the second box exactly on the first: a mask keeps them apart
    boxes = torch.tensor([[0.0, 0, 10, 10], [-11, -11, -1, -1]])
    scores, groups = torch.tensor([0.9, 0.8]), torch.tensor([0, 1])
    assert cluster_nms(boxes, groups, 0.5).tolist() == [True, True]
    assert sorted(batched_nms(boxes, scores, groups, 0.5).tolist()) == [0, 1]


@pytest.mark.parametrize("by_min", [False, True])
def test_tensor_nms_is_the_compiled_nms_for_thousands_of_boxes_in_64_groups(by_min) -> None:
    rng = np.random.default_rng(7)
    xy = rng.uniform(-300, 600, (3000, 2))  # reaching out of the frames
    wh = rng.uniform(20, 400, (3000, 2))
    boxes = torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32)
    scores = torch.tensor(rng.uniform(0, 1, 3000), dtype=torch.float32)
    groups = torch.tensor(rng.integers(0, 64, 3000))
    compiled = batched_nms(boxes, scores, groups, 0.5, by_min=by_min)
    with tensor_code():
        tensor = batched_nms(boxes, scores, groups, 0.5, by_min=by_min)
    assert 300 < len(compiled) < 2900 and torch.equal(tensor, compiled)
