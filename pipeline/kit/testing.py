"""Helpers for plugin authors' tests: make real clips, run one node, run a YAML graph.

```python
frames = run_node("resize", [frame], width=64)      # a node test in one line
result = run_graph(yaml_text)                         # a whole graph, in this process
```
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import yaml

from ..core import config
from ..core.executor import Executor, RunResult
from ..core.frame import Frame
from ..core.graph import build_graph
from ..core.node import Emit, NodeContext, Sink, Stage
from ..core.registry import Registry


def make_clip(path: str | Path, *, seconds: float = 2.0, width: int = 320, height: int = 240,
              fps: int = 30, audio: bool = True, codec: str = "libx264",
              audio_rate: int = 48000) -> Path:
    """Write a real H.264 (+ AAC) MP4 with a moving pattern and a 440 Hz tone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast"}
        sound = out.add_stream("aac", rate=audio_rate) if audio else None
        if sound is not None:
            assert isinstance(sound, av.AudioStream)
            sound.layout = "stereo"
        yy, xx = np.mgrid[0:height, 0:width]
        frames = round(seconds * fps)
        for i in range(frames):
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = (xx * 255 // max(1, width - 1) + i * 4) % 256
            img[..., 1] = (yy * 255 // max(1, height - 1)) % 256
            img[..., 2] = 128 + 100 * math.sin(i / 5)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            chunk = 1024
            total = round(seconds * audio_rate)
            for start in range(0, total, chunk):
                n = min(chunk, total - start)
                t = (np.arange(start, start + n) / audio_rate).astype(np.float32)
                tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp",
                                                layout="stereo")
                af.sample_rate = audio_rate
                af.pts = start
                af.time_base = Fraction(1, audio_rate)
                out.mux(sound.encode(af))
            out.mux(sound.encode(None))
    return path


def run_graph(graph_yaml: str | dict[str, Any], *, registry: Registry | None = None,
              allow_python: bool = True, overrides: Sequence[str] = ()) -> RunResult:
    """Validate and run a graph given as YAML text or a dict; returns the result."""
    text = graph_yaml if isinstance(graph_yaml, str) else yaml.safe_dump(graph_yaml)
    doc = config.loads(text, "<test>", list(overrides))
    graph = build_graph(doc, registry or Registry.from_entry_points(), allow_python=allow_python)
    return Executor(graph).run()


def run_node(plugin: str | type[Stage] | type[Sink], frames: Sequence[Frame], /,
             registry: Registry | None = None, **params: Any) -> list[Frame]:
    """Open a stage (or sink), feed it ``frames`` in this thread, return what it emitted.

    Emits to ports other than the first are returned too (as the items themselves).
    """
    cls = (registry or Registry.from_entry_points()).get(plugin) if isinstance(plugin, str) \
        else plugin
    context = NodeContext(name=cls.name or "node", device=torch.device("cpu"),
                          connected=frozenset(p.name for p in cls.inputs[:1]))
    node = cls(cls.Params.model_validate(params), context)
    node.open()
    out: list[Any] = []
    try:
        for frame in frames:
            if isinstance(node, Sink):
                node.write(frame)
            elif isinstance(node, Stage):
                _extend(out, node.process(frame))
        _extend(out, list(node.flush()))
    finally:
        node.close()
    return out


def _extend(out: list[Any], result: Any) -> None:
    if result is None:
        return
    if isinstance(result, list | tuple):
        for item in result:
            _extend(out, item)
    else:
        out.append(result.item if isinstance(result, Emit) else result)
