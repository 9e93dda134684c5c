"""Scale-out on Ray, measured on this machine.

    python bench/cluster.py [--streams 4] [--seconds 40] [--out bench/results/cluster.json]

(a) Throughput: one CPU-bound graph (decode 640x360, MTCNN on every frame, no drops) on N
looping file streams, as a plain `vidgraph run`, and with `--cluster ray:local` on 1 and
on 2 workers of one CPU each. Frames per second come from each run's `--stats` (the
graph's own run time, after models load); the plain run is also measured with one torch
thread, as each one-CPU worker has, to give the per-frame cost of running under Ray.
(b) Failover: six RTSP streams over three workers on a real three-node Ray cluster
(`ray.cluster_utils`, one CPU per node); one node is removed, and the time is taken from
the removal to the first frame of the last stream moved (its `connected` event).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plugins.media.clips import make_clip  # noqa: E402
from tests.live_servers import Camera  # noqa: E402

VIDGRAPH = [sys.executable, str(ROOT / "run.py"), "run"]


def graph(folder: Path, clip: Path, streams: int) -> Path:
    listed = "".join(f"      - {{stream: s{i}, url: '{clip}'}}\n" for i in range(streams))
    path = folder / "detect.yaml"
    path.write_text(f"""name: detect
nodes:
  src:
    plugin: video_source
    loop: true
    sources:
{listed}  faces:
    plugin: mtcnn
    input: src
    policy: block      # every frame is detected: throughput, not freshness
  out:
    plugin: null_sink
    input: faces
""")
    return path


def fps_of(stats: dict[str, Any]) -> float:
    """Frames per second of one run's (or one worker's) stats."""
    return float(stats["nodes"]["out"]["frames_in"] / stats["elapsed_s"])


def timed_run(args: list[str], seconds: float, stats: Path,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the command for ``seconds``, Ctrl+C it, and read its stats."""
    proc = subprocess.Popen([*VIDGRAPH, *args, "-q", "--stats", str(stats)], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode not in (0, 130):
        raise SystemExit(f"{' '.join(args)} failed: {err[-2000:]}")
    return dict(json.loads(stats.read_text()))


def throughput(folder: Path, streams: int, seconds: float) -> dict[str, Any]:
    clip = make_clip(folder / "clip.mp4", seconds=10.0, width=640, height=360, fps=25,
                     audio=False)
    path = str(graph(folder, clip, streams))
    plain = fps_of(timed_run([path], seconds, folder / "plain.json"))
    plain1 = fps_of(timed_run([path], seconds, folder / "plain1.json",
                              {"OMP_NUM_THREADS": "1"}))
    result: dict[str, Any] = {"streams": streams, "plain_fps": round(plain, 2),
                              "plain_one_thread_fps": round(plain1, 2)}
    for workers in (1, 2):
        stats = timed_run([path, "--cluster", "ray:local", "--workers", str(workers)],
                          seconds + 10, folder / f"ray{workers}.json")  # + Ray's start
        result[f"ray_{workers}_workers_fps"] = round(
            sum(fps_of(w) for w in stats["workers"].values()), 2)
    result["ratio_2_to_1"] = round(result["ray_2_workers_fps"] / result["ray_1_workers_fps"], 2)
    result["ray_overhead_ms_per_frame"] = round(
        1000 / result["ray_1_workers_fps"] - 1000 / plain1, 2)
    return result


def failover(folder: Path) -> dict[str, Any]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(3)]
    cluster.wait_for_nodes()
    camera = Camera(fps=15, audio=False, size=(160, 120), separate=True).start()
    out = folder / "fleet"
    listed = "".join(f"      - {{stream: cam{i}, url: '{camera.url}'}}\n" for i in range(6))
    path = folder / "fleet.yaml"
    path.write_text(f"""nodes:
  cams:
    plugin: video_source
    sources:
{listed}  rec: {{plugin: video_sink, packets: cams.packets, fragmented: true,
         path: '{out}/{{stream}}.mp4'}}
  log: {{plugin: jsonl_sink, events: cams.events, path: '{out}/events.jsonl'}}
""")
    proc = subprocess.Popen([*VIDGRAPH, str(path), "-q", "--cluster", "ray", "--address",
                             cluster.address, "--workers", "3"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        log = out / "events.jsonl"
        while sum(1 for e in _events(log) if e["event"] == "connected") < 6:
            time.sleep(0.2)
        time.sleep(2)
        removed = time.time()
        cluster.remove_node(nodes[1])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            events = _events(log)
            moved = {e["stream"] for e in events if e["event"] == "reassigned"}
            back = [e["time"] for e in events if e["event"] == "connected"
                    and e["stream"] in moved and e["time"] > removed]
            if moved and len(back) == len(moved):
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the moved streams did not come back within 30 s")
        return {"streams_moved": len(moved),
                "removal_to_last_moved_stream_first_frame_s": round(max(back) - removed, 2)}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(90)
        camera.stop()
        cluster.shutdown()


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--out", default="bench/results/cluster.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, CPU only",
                  "throughput": throughput(folder, args.streams, args.seconds),
                  "failover": failover(folder)}
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
