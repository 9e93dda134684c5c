"""``face_crops`` and ``blur_faces`` on real faces, and the face graphs end to end."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.core.device import tensor_code
from pipeline.core.frame import Frame
from pipeline.kit.testing import run_node
from plugins.mtcnn.face_crops import TEMPLATES, invert_similarity, similarity

from .conftest import ffprobe, stream, vidgraph
from .test_mtcnn_detector import composite, iou

TEMPLATE_112 = TEMPLATES["arcface"]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def detected(image: np.ndarray) -> Frame:
    frame = Frame.from_image(torch.from_numpy(np.ascontiguousarray(image)), pts=0,
                             time_base=Fraction(1, 30), stream="s", index=0)
    return run_node("mtcnn", [frame])[0]


def test_similarity_recovers_a_known_transform() -> None:
    angle, scale, shift = math.radians(12), 1.7, torch.tensor([30.0, -8.0])
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    src = TEMPLATE_112 * 2 + 5
    dst = (scale * src @ rot.T) + shift
    m = similarity(src[None], dst)[0]
    torch.testing.assert_close(src @ m[:, :2].T + m[:, 2], dst, atol=1e-3, rtol=0)


def test_chips_put_the_landmarks_on_the_template_and_are_faces(astronaut) -> None:
    frame = run_node("face_crops", [detected(astronaut)])[0]
    dets = frame.detections
    assert "crops" in dets.extra and dets.extra["crops"].shape == (1, 112, 112, 3)
    m = similarity(dets.landmarks, TEMPLATE_112)[0]
    moved = dets.landmarks[0] @ m[:, :2].T + m[:, 2]
    error = (moved - TEMPLATE_112).norm(dim=1)  # a similarity fits 5 points only roughly
    assert error.mean() < 5 and error.max() < 8  # pixels in a 112 px chip
    again = detected(dets.extra["crops"][0].numpy())  # the chip itself is a face, centred
    assert len(again.detections) == 1
    x1, y1, x2, y2 = again.detections.boxes[0].tolist()
    assert abs((x1 + x2) / 2 - 56) < 10 and abs((y1 + y2) / 2 - 62) < 15


@pytest.mark.parametrize("template", ["arcface", "fer2013"])
def test_faces_found_again_in_the_chips_have_their_landmarks_on_the_template(
        astronaut, template: str) -> None:
    frame = run_node("face_crops", [detected(astronaut)], size=112, template=template)[0]
    chip = np.pad(frame.detections.extra["crops"][0].numpy(), ((24, 24), (24, 24), (0, 0)), "edge")
    again = detected(chip).detections  # padded: a tight chip is too close to its border
    assert len(again) == 1
    error = (again.landmarks[0] - 24 - TEMPLATES[template]).norm(dim=1)
    assert error.mean() < 6, error  # pixels in a 112 px chip


def test_alignment_undoes_a_rotation(astronaut) -> None:
    upright, _ = composite(astronaut, 1.0, 0, (320, 240))
    tilted, _ = composite(astronaut, 1.0, 15, (320, 240))
    chips = [run_node("face_crops", [detected(img)], size=48,
                      gray=True)[0].detections.extra["crops"][0]
             for img in (upright, tilted)]
    assert chips[0].shape == (48, 48, 1)
    difference = (chips[0].float() - chips[1].float()).abs().mean()
    assert difference < 12  # grey levels; an unaligned 15 degree tilt differs far more
    raw = [cv2.resize(img[150:330, 230:410], (48, 48)) for img in (upright, tilted)]
    assert np.abs(raw[0].astype(float) - raw[1].astype(float)).mean() > 2 * difference


@pytest.mark.parametrize("tensor", [False, True], ids=["host loop", "tensor code"])
@pytest.mark.parametrize("method", ["blur", "pixelate"])
def test_blurred_faces_are_no_longer_found(astronaut, method: str, tensor: bool) -> None:
    frame = detected(astronaut)
    with tensor_code() if tensor else nullcontext():
        hidden = run_node("blur_faces", [frame], method=method)[0]
    image = hidden.image.numpy()
    x1, y1, x2, y2 = (round(v) for v in frame.detections.boxes[0].tolist())
    changed = np.abs(image[y1:y2, x1:x2].astype(float) - astronaut[y1:y2, x1:x2]).mean()
    assert changed > 10
    if method == "blur":
        face = cv2.Laplacian(cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_RGB2GRAY), cv2.CV_64F)
        before = cv2.Laplacian(cv2.cvtColor(astronaut[y1:y2, x1:x2], cv2.COLOR_RGB2GRAY),
                               cv2.CV_64F)
        assert face.var() < before.var() / 5  # the detail is gone
    else:
        bx1, by1, bx2, by2 = frame.detections.boxes[0].tolist()
        left = math.floor(bx1 - 0.25 * (bx2 - bx1))  # the default margin
        top = math.floor(by1 - 0.25 * (by2 - by1))
        size = (math.ceil(bx2 + 0.25 * (bx2 - bx1)) - left) / 8  # 8 blocks across
        cx, cy = round(left + 1.5 * size), round(top + 1.5 * size)
        block = image[cy - 2:cy + 3, cx - 2:cx + 3]  # inside one block: one colour
        assert (block == block[0, 0]).all()
    assert (image[400:, :] == astronaut[400:, :]).all()  # outside the face and its margin
    assert len(detected(image).detections) == 0


def test_faces_graph_draws_detections_on_a_clip(tmp_path: Path, person_clip: Path) -> None:
    out, log = tmp_path / "faces.mp4", tmp_path / "faces.jsonl"
    result = vidgraph("run", "graphs/faces.yaml", "-q", "--set", f"src.url={person_clip}",
                      "--set", f"out.path={out}", "--set", f"log.path={log}")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 60 and sum(len(r["detections"]) == 1 for r in records) >= 57
    assert int(stream(ffprobe(out), "video")["nb_read_frames"]) == 60


def test_anonymize_graph_keeps_the_sound_and_hides_the_face(tmp_path: Path, clip: Path,
                                                            person_clip: Path) -> None:
    person = person_clip
    out = tmp_path / "anon.mp4"
    result = vidgraph("run", "graphs/anonymize.yaml", "-q", "--set", f"src.url={person}",
                      "--set", f"out.path={out}")
    assert result.returncode == 0, result.stderr
    info = ffprobe(out)
    assert int(stream(info, "video")["nb_read_frames"]) == 60
    check = tmp_path / "check.jsonl"
    again = vidgraph("run", "graphs/faces.yaml", "-q", "--set", f"src.url={out}",
                     "--set", f"out.path={tmp_path / 'x.mp4'}", "--set", f"log.path={check}")
    assert again.returncode == 0, again.stderr
    before = [json.loads(line)["detections"] for line in
              person.with_suffix(".jsonl").read_text().splitlines()]
    after = [json.loads(line)["detections"] for line in check.read_text().splitlines()]
    assert all(len(d) == 1 for d in before)
    for was, now in zip(before, after, strict=True):  # (a stray false positive may remain)
        assert all(iou(d["box"], was[0]["box"]) < 0.3 for d in now), "a face is still found"
    with_sound = tmp_path / "with_sound.mp4"
    result = vidgraph("run", "graphs/anonymize.yaml", "-q", "--set", f"src.url={clip}",
                      "--set", f"out.path={with_sound}")
    assert result.returncode == 0, result.stderr
    assert stream(ffprobe(with_sound), "audio") is not None


def umeyama(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The textbook similarity fit (Umeyama 1991, by SVD), for one set of points."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sv, vh = torch.linalg.svd(d.T @ s / len(src))
    fix = torch.tensor([1.0, float(torch.sign(torch.linalg.det(u @ vh)))], dtype=src.dtype)
    rot = u @ torch.diag(fix) @ vh
    scale = (sv * fix).sum() / (s.pow(2).sum() / len(src))
    return torch.cat([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]], 1)


def test_closed_form_similarity_is_umeyama_s_and_inverts_exactly() -> None:
    rng = torch.Generator().manual_seed(5)
    src = torch.rand(20, 5, 2, generator=rng, dtype=torch.float64) * 400
    dst = TEMPLATES["arcface"].double()
    fitted = similarity(src, dst)
    for k in range(20):
        torch.testing.assert_close(fitted[k], umeyama(src[k], dst), atol=1e-9, rtol=0)
    rows = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64).expand(20, 1, 3)
    torch.testing.assert_close(invert_similarity(fitted),
                               torch.linalg.inv(torch.cat([fitted, rows], 1))[:, :2],
                               atol=1e-9, rtol=0)
