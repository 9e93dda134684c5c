"""Live-video benchmark against loopback RTSP cameras (GStreamer's server, see tests/servers).

1. Latency, capture to sink, of a 30 fps camera through a 50 ms stage: ``drop_oldest`` (the
   default after a live source) against ``block``, run one after the other on one machine.
2. First frame after opening, and reconnect time: from the restarted server listening again
   to the first frame out of the source.
3. Resident memory of ``graphs/cameras.yaml`` with 4 cameras (recording, preview, events),
   sampled for ``--minutes``; the slope in MB/hour (after a warm-up) should be 0 within noise.

    python bench/live.py --seconds 20 --minutes 10 [--json bench/results/live.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core import config  # noqa: E402
from pipeline.core.executor import Executor  # noqa: E402
from pipeline.core.graph import build_graph  # noqa: E402
from pipeline.core.registry import Registry  # noqa: E402
from tests.live_servers import Camera  # noqa: E402


def run_for(graph: dict[str, Any], seconds: float, during: Any = None) -> Executor:
    """Run a graph in this process for ``seconds`` (calling ``during(executor)``), then stop."""
    doc = config.loads(yaml.safe_dump(graph), "bench.yaml")
    executor = Executor(build_graph(doc, Registry.from_entry_points()))
    thread = threading.Thread(target=executor.run, daemon=True)
    thread.start()
    if during is not None:
        during(executor)
    else:
        time.sleep(seconds)
    executor.stop()
    thread.join(30)
    return executor


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(seconds: float) -> dict[str, Any]:
    camera = Camera(fps=30, audio=False).start()
    results: dict[str, Any] = {}
    try:
        for policy in ("drop_oldest", "block"):
            stage: dict[str, Any] = {"plugin": "identity", "input": "cam", "delay_ms": 50}
            if policy == "block":
                stage["policy"] = "block"
            ex = run_for({"nodes": {
                "cam": {"plugin": "video_source", "url": camera.url},
                "slow": stage,
                "out": {"plugin": "null_sink", "input": "slow"}}}, seconds)
            lat = [x * 1000 for x in ex.metrics.nodes["out"].latencies]
            results[policy] = {
                "frames": ex.metrics.nodes["out"].frames_in,
                "dropped": sum(e.dropped for e in ex.metrics.nodes["slow"].edges),
                "latency_ms_p50": round(pct(lat, 0.5), 1),
                "latency_ms_p95": round(pct(lat, 0.95), 1),
                "latency_ms_max": round(max(lat), 1),
            }
    finally:
        camera.stop()
    return results


def reconnects(trials: int) -> dict[str, Any]:
    camera = Camera(fps=30, audio=True).start()
    first: list[float] = []
    back: list[float] = []

    def count(ex: Executor, name: str) -> int:
        return ex.metrics.nodes["cam"].events.get(name, 0)

    def wait(ex: Executor, name: str, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while count(ex, name) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no '{name}' event")
            time.sleep(0.005)

    def during(ex: Executor) -> None:
        wait(ex, "connected", 1)
        for i in range(trials):
            time.sleep(1.0)
            camera.kill()
            wait(ex, "disconnected", i + 1)
            time.sleep(2.0)
            camera.start()
            started = time.monotonic()
            wait(ex, "reconnected", i + 1)
            back.append(time.monotonic() - started)

    try:
        run_for({"nodes": {
            "cam": {"plugin": "video_source", "url": camera.url},
            "out": {"plugin": "null_sink", "input": "cam"},
            "log": {"plugin": "jsonl_sink", "events": "cam.events",
                    "path": str(Path(tempfile.mkdtemp()) / "events.jsonl")}}}, 0, during)
    finally:
        camera.stop()
    for _ in range(5):  # open to first frame, fresh connections
        camera = Camera(fps=30, audio=True).start()
        holder: dict[str, float] = {}

        def opened(ex: Executor, holder: dict[str, float] = holder) -> None:
            started = time.monotonic()
            while not ex.metrics.nodes["cam"].frames_out:
                time.sleep(0.002)
            holder["s"] = time.monotonic() - started

        try:
            run_for({"nodes": {"cam": {"plugin": "video_source", "url": camera.url},
                               "out": {"plugin": "null_sink", "input": "cam"}}}, 0, opened)
        finally:
            camera.stop()
        first.append(holder["s"])
    return {"reconnect_s": [round(x, 3) for x in back],
            "reconnect_s_median": round(statistics.median(back), 3),
            "first_frame_s": [round(x, 3) for x in first],
            "first_frame_s_median": round(statistics.median(first), 3)}


def memory(minutes: float, warmup_s: float = 60.0) -> dict[str, Any]:
    cams = [Camera(fps=30, audio=True).start() for _ in range(4)]
    work = Path(tempfile.mkdtemp())
    sources = work / "cams.yaml"
    sources.write_text(yaml.safe_dump([{"stream": f"cam{i}", "url": c.url}
                                       for i, c in enumerate(cams)]))
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "run", "graphs/cameras.yaml", "-q",
         "--sources", str(sources), "--set", f"rec.path={work}/{{stream}}.mp4",
         "--set", "view.port=0", "--set", f"log.path={work}/events.jsonl"], cwd=ROOT)
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < minutes * 60:
            time.sleep(5)
            status = Path(f"/proc/{proc.pid}/status").read_text()
            rss_kb = int(next(line.split()[1] for line in status.splitlines()
                              if line.startswith("VmRSS")))
            samples.append((time.monotonic() - started, rss_kb / 1024))
    finally:
        proc.terminate()
        proc.wait(30)
        for c in cams:
            c.stop()
    steady = [(t, m) for t, m in samples if t >= warmup_s] or samples
    slope = statistics.linear_regression([t for t, _ in steady], [m for _, m in steady]).slope
    return {"minutes": minutes, "warmup_s": warmup_s,
            "samples_s_mb": [(round(t, 1), round(m, 2)) for t, m in samples],
            "rss_mb_first": round(steady[0][1], 1), "rss_mb_last": round(steady[-1][1], 1),
            "rss_mb_max": round(max(m for _, m in steady), 1),
            "slope_mb_per_hour": round(slope * 3600, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="per latency run")
    parser.add_argument("--trials", type=int, default=5, help="server restarts")
    parser.add_argument("--minutes", type=float, default=10, help="memory run (0 skips)")
    parser.add_argument("--only", choices=("latency", "connect", "memory"), action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "live.json"))
    args = parser.parse_args()
    parts = args.only or ["latency", "connect", "memory"]
    report: dict[str, Any] = {}
    if "latency" in parts:
        report["latency"] = latency(args.seconds)
    if "connect" in parts:
        report["connect"] = reconnects(args.trials)
    if "memory" in parts and args.minutes > 0:
        report["memory"] = memory(args.minutes)
    for part, figures in report.items():
        shown = {k: v for k, v in figures.items() if k != "samples_s_mb"}
        print(part, json.dumps(shown, indent=2), flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
