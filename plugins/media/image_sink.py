"""``image_sink``: write each frame as an image file named from a template."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from pydantic import Field

from pipeline.core.errors import MediaError, ParameterError
from pipeline.core.frame import Frame
from pipeline.core.node import Params, Sink
from pipeline.kit.files import prepare_output


class ImageSinkParams(Params):
    """Parameters of ``image_sink``."""

    path: str = Field(description="file name template: {stem}, {name}, {stream}, {index:06d}")
    quality: int = Field(95, ge=1, le=100, description="JPEG/WebP quality")


class ImageSink(Sink):
    """Writes frames as PNG/JPEG/... (by the extension). ``{stem}`` and ``{name}`` come from
    the source file (``meta['source']``); frames without one use ``{stream}_{index:06d}``.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 64, height: 64, duration: 0.1}
      out: {plugin: image_sink, input: src, path: "out/doc_frames/{index:06d}.png"}
    ```
    """

    name = "image_sink"
    summary = "write frames as image files named from a template"
    Params = ImageSinkParams
    params: ImageSinkParams
    writes_to = ("path",)

    def open(self) -> None:
        try:
            self._name_for(Frame.from_image(np.zeros((1, 1, 3), np.uint8)))
        except (KeyError, IndexError, ValueError) as exc:
            raise ParameterError(f"bad path template '{self.params.path}': {exc!r}; use {{stem}}, "
                             "{name}, {stream} or {index:06d}") from None
        ext = Path(self.params.path).suffix.lower()
        self.flags = ([cv2.IMWRITE_JPEG_QUALITY, self.params.quality] if ext in (".jpg", ".jpeg")
                      else [cv2.IMWRITE_WEBP_QUALITY, self.params.quality] if ext == ".webp"
                      else [])

    def _name_for(self, frame: Frame) -> Path:
        source = frame.meta.get("source")
        name = str(source) if source else f"{frame.stream}_{frame.index:06d}.png"
        return Path(self.params.path.format(stem=Path(name).stem, name=name,
                                            stream=frame.stream, index=frame.index))

    def write(self, frame: Frame) -> None:
        path = prepare_output(self._name_for(frame))
        bgr = cv2.cvtColor(frame.image.cpu().numpy(), cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(path), bgr, self.flags):
            raise MediaError(f"cannot write image '{path}'")
