"""``image_source``: still images from a folder or a glob, in sorted order."""

from __future__ import annotations

import glob
import time
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import Field

from pipeline.core.errors import MediaError
from pipeline.core.frame import Frame
from pipeline.core.node import Params, Source

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: the most pixels a picture may have unless max_pixels says otherwise: testsrc's largest
MAX_PIXELS = 8192 * 8192


class ImageSourceParams(Params):
    """Parameters of ``image_source``."""

    path: str = Field(description="a folder (every image in it) or a glob such as photos/*.jpg")
    fps: float = Field(1.0, gt=0, description="rate that sets the frames' pts")
    loop: bool = Field(False, description="start again after the last image")
    max_pixels: int = Field(MAX_PIXELS, ge=1, description="refuse pictures with more pixels "
                            "than this (read from the file's header, before decoding)")


class ImageSource(Source):
    """Reads images (PNG, JPEG, BMP, TIFF, WebP) sorted by name; ``meta['source']`` holds
    each file name, so ``image_sink`` can write ``out/{stem}.png`` beside it. A picture's
    size is read from its header before it is decoded: one over ``max_pixels`` (a
    decompression bomb) is refused. With ``on_error: skip`` an unreadable or refused
    picture is skipped and counted instead of stopping the run.

    ```yaml
    nodes:
      src: {plugin: image_source, path: "tests/data/*.png"}
      out: {plugin: null_sink, input: src}
    ```
    """

    name = "image_source"
    summary = "still images from a folder or glob (sorted); file name in meta"
    Params = ImageSourceParams
    params: ImageSourceParams

    def open(self) -> None:
        path = Path(self.params.path)
        if path.is_dir():
            files = [p for p in path.iterdir() if p.suffix.lower() in EXTENSIONS]
        else:
            files = [Path(p) for p in glob.glob(self.params.path, recursive=True)
                     if Path(p).suffix.lower() in EXTENSIONS]
        if not files:
            raise FileNotFoundError(2, "no images (png, jpg, bmp, tif, webp) match", str(path))
        self.files = sorted(files)

    def expected_frames(self) -> int | None:
        return None if self.params.loop else len(self.files)

    def generate(self) -> Iterator[Frame]:
        time_base = 1 / Fraction(self.params.fps).limit_denominator(1001)
        index = 0
        while True:
            for file in self.files:
                try:
                    rgb = self._read(file)
                except MediaError as exc:
                    if self.context.on_error != "skip":
                        raise
                    self.context.skipped(str(exc))
                    continue
                yield Frame.from_image(rgb, pts=index, time_base=time_base,
                                       stream=self.context.name, index=index,
                                       captured=time.monotonic(),
                                       meta={"source": file.name, "path": str(file)})
                index += 1
                if self.context.stopping():
                    return
            if not self.params.loop:
                return

    def _read(self, file: Path) -> np.ndarray:
        """The picture as RGB, after its header said it is not too big."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(file) as header:  # reads the header only
                    width, height = header.size
        except Image.DecompressionBombError:
            width = height = 2**31  # Pillow's own limit; ours is lower
        except (UnidentifiedImageError, OSError) as exc:
            raise MediaError(f"cannot read image '{file}': {exc}") from None
        if width * height > self.params.max_pixels:
            raise MediaError(f"'{file}' is {width}x{height} ({width * height:,} pixels), over "
                             f"max_pixels ({self.params.max_pixels:,})")
        bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if bgr is None:
            raise MediaError(f"cannot read image '{file}'")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
