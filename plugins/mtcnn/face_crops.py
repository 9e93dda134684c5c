"""``face_crops``: aligned face chips from the five landmarks, for a later classifier."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.core.frame import Frame
from pipeline.core.node import Params, Stage
from pipeline.kit.images import LUMA, to_float, to_uint8

#: where the five landmarks sit in a 112x112 chip: ``arcface`` is the ArcFace/InsightFace
#: template; ``fer2013`` is where they sit in FER2013's faces (the median of this MTCNN's
#: landmarks on 2,555 of its first 3,000 training faces, 48x48 scaled to 112), a tighter
#: crop that the expression model was trained on
TEMPLATES = {
    "arcface": torch.tensor([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]]),
    "fer2013": torch.tensor([[15.67, 19.21], [33.55, 18.88], [24.50, 29.24],
                             [17.34, 38.10], [32.09, 37.98]]) * (112 / 48),
}


def similarity(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity transforms (rotation, scale, shift; Umeyama 1991) mapping
    ``src`` points onto ``dst``: (K, 5, 2) and (5, 2) -> (K, 2, 3) matrices, all faces at
    once. In the plane the best rotation and scale have a closed form (as complex numbers,
    w = sum(conj(s) d) / sum(|s|^2) over the centred points): no SVD, no host sync."""
    mu_s, mu_d = src.mean(1, keepdim=True), dst.mean(0, keepdim=True)
    s, d = src - mu_s, (dst - mu_d).expand_as(src)
    norm = s.pow(2).sum((1, 2)).clamp(min=1e-12)
    a = (s * d).sum((1, 2)) / norm
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(1) / norm
    linear = torch.stack([torch.stack([a, -b], 1), torch.stack([b, a], 1)], 1)  # (K, 2, 2)
    shift = mu_d.transpose(0, 1) - linear @ mu_s.transpose(1, 2)
    return torch.cat([linear, shift], 2)


def invert_similarity(matrix: torch.Tensor) -> torch.Tensor:
    """The inverse of each similarity (K, 2, 3), in closed form: [[a, -b], [b, a]] over
    a^2 + b^2, transposed."""
    a, b = matrix[:, 0, 0], matrix[:, 1, 0]
    norm = (a * a + b * b).clamp(min=1e-12)[:, None, None]
    linear = torch.stack([torch.stack([a, b], 1), torch.stack([-b, a], 1)], 1) / norm
    return torch.cat([linear, -linear @ matrix[:, :, 2:]], 2)


class FaceCropsParams(Params):
    """Parameters of ``face_crops``."""

    size: int = Field(112, ge=16, le=512, description="chip side in pixels")
    gray: bool = Field(False, description="one gray channel instead of RGB")
    template: Literal["arcface", "fer2013"] = Field(
        "arcface", description="where the landmarks go: arcface (face recognition) or "
        "fer2013 (tighter, as the expression model expects)")


class FaceCrops(Stage):
    """Cuts a ``size`` x ``size`` chip per detected face, rotated and scaled so the eyes,
    nose and mouth corners land on a template (ArcFace's, or FER2013's), and attaches them
    to the frame's ``Detections`` as the extra field ``crops`` (uint8 [K, size, size, 3 or
    1]). All faces of a frame are warped in one resampling call. Needs landmarks
    (``mtcnn``).

    ```yaml
    nodes:
      src: {plugin: testsrc, pattern: person, width: 320, height: 180, duration: 0.2}
      faces: {plugin: mtcnn, input: src}
      chips: {plugin: face_crops, input: faces, size: 48, gray: true}
      out: {plugin: null_sink, input: chips}
    ```
    """

    name = "face_crops"
    summary = "aligned face chips (5-point similarity) attached to the detections"
    Params = FaceCropsParams
    params: FaceCropsParams

    def process(self, frame: Frame) -> Frame:
        dets = frame.detections
        if dets is None or dets.landmarks is None:
            return frame
        size = self.params.size
        channels = 1 if self.params.gray else 3
        if len(dets) == 0:
            chips = torch.zeros((0, size, size, channels), dtype=torch.uint8, device=self.device)
        else:
            chips = self._chips(frame.image, dets.landmarks.to(self.device).float(), size)
        return frame.with_meta(detections=dets.with_extra(crops=chips))

    def _chips(self, image: torch.Tensor, marks: torch.Tensor, size: int) -> torch.Tensor:
        height, width = image.shape[:2]
        template = TEMPLATES[self.params.template].to(marks.device) * (size / 112)
        # The inverse map (chip pixel -> picture pixel) is what sampling needs.
        inverse = invert_similarity(similarity(marks, template))
        rows = torch.tensor([[0.0, 0.0, 1.0]], device=marks.device).expand(len(marks), 1, 3)
        # Chip pixel centres in [-1, 1] -> chip pixels -> picture pixels -> picture [-1, 1].
        to_pixels = torch.tensor([[size / 2, 0, size / 2 - 0.5], [0, size / 2, size / 2 - 0.5],
                                  [0, 0, 1]], device=marks.device)
        to_unit = torch.tensor([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1]],
                               device=marks.device)
        theta = to_unit @ torch.cat([inverse, rows], 1) @ to_pixels
        grid = F.affine_grid(theta, [len(marks), 3, size, size], align_corners=False)
        source = to_float(image, 1).expand(len(marks), -1, -1, -1)
        chips = F.grid_sample(source, grid, mode="bilinear", padding_mode="border",
                              align_corners=False)
        if self.params.gray:
            weights = torch.tensor(LUMA, device=chips.device)
            chips = (chips * weights[None, :, None, None]).sum(1, keepdim=True)
        return to_uint8(chips, 1)
