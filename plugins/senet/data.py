"""Labelled image sets for ``vidgraph train classify``: a folder tree or an ``.npz``.

A folder tree is ``root/<class>/*.png|jpg|jpeg|bmp``; an ``.npz`` holds ``images`` (uint8
[N, H, W] or [N, H, W, C]), ``labels`` (int [N]), optionally ``class_names`` and a split
array (``split`` or ``usage``: names, or integers with ``<key>_names`` beside them, as in
FER2013's ``usage`` / ``usage_names``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.core.errors import VidgraphError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
SPLIT_KEYS = ("split", "usage")


@dataclass
class LabelledImages:
    """Pictures (uint8 [N, S, S, C]), their class indices, class names, and the split each
    picture belongs to (None when the data has no splits)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    split: np.ndarray | None

    def subset(self, mask: np.ndarray) -> LabelledImages:
        """The pictures where ``mask`` is true."""
        index = torch.from_numpy(np.flatnonzero(mask))
        split = None if self.split is None else self.split[mask]
        return LabelledImages(self.images[index], self.labels[index], self.classes, split)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def read(path: str | Path, size: int | None = None, gray: bool | None = None) -> LabelledImages:
    """The image set at ``path`` (folder or ``.npz``), resized to ``size`` x ``size`` when
    given, gray when ``gray`` (None: gray if every picture is)."""
    path = Path(path)
    if path.is_dir():
        images, labels, classes, split = _read_folder(path)
    elif path.suffix == ".npz" and path.is_file():
        images, labels, classes, split = _read_npz(path)
    else:
        raise VidgraphError(f"data '{path}' is neither a folder of class folders nor an .npz")
    is_gray = all(im.ndim == 2 or im.shape[2] == 1 or _equal_channels(im) for im in images)
    want_gray = is_gray if gray is None else gray
    out = []
    for im in images:
        if size is not None and im.shape[:2] != (size, size):
            im = cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
        if im.ndim == 2:
            im = im[:, :, None]
        if want_gray and im.shape[2] == 3:
            im = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[:, :, None]
        elif not want_gray and im.shape[2] == 1:
            im = np.repeat(im, 3, 2)
        out.append(im)
    shapes = {im.shape for im in out}
    if len(shapes) != 1:
        raise VidgraphError(f"data '{path}': pictures differ in size; pass --size")
    return LabelledImages(torch.from_numpy(np.stack(out)), torch.as_tensor(labels).long(),
                          classes, split)


def _equal_channels(im: np.ndarray) -> bool:
    return bool((im[:, :, 0] == im[:, :, 1]).all() and (im[:, :, 1] == im[:, :, 2]).all())


def _read_folder(root: Path) -> tuple[list[np.ndarray], list[int], list[str], None]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if len(classes) < 2:
        raise VidgraphError(f"data '{root}': needs at least two class folders")
    images: list[np.ndarray] = []
    labels: list[int] = []
    for i, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if bgr is None:
                raise VidgraphError(f"data: cannot read picture '{file}'")
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            labels.append(i)
    if not images:
        raise VidgraphError(f"data '{root}': no pictures in its class folders")
    return images, labels, classes, None


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None]:
    with np.load(path, allow_pickle=False) as data:
        for key in ("images", "labels"):
            if key not in data.files:
                raise VidgraphError(f"data '{path}': no '{key}' array")
        images, labels = data["images"], data["labels"]
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
            raise VidgraphError(f"data '{path}': 'images' must be uint8 [N, H, W(, C)] "
                                "with one label each")
        count = int(labels.max()) + 1
        classes = ([str(c) for c in data["class_names"]] if "class_names" in data.files
                   else [str(i) for i in range(count)])
        split = None
        for key in SPLIT_KEYS:
            if key in data.files:
                split = data[key]
                if split.dtype.kind in "iu" and f"{key}_names" in data.files:
                    split = data[f"{key}_names"][split]
                split = split.astype(str)
                break
    return images, labels, classes, split
