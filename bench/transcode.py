"""Transcode speed: ffmpeg CLI vs a bare PyAV loop vs vidgraph, measured side by side.

    python bench/transcode.py [--seconds 20] [--out bench/results/transcode.json]

(a) ffmpeg, libx264 veryfast, audio copied; (b) a bare PyAV loop with RGB conversion
(decode, to_ndarray('rgb24'), from_ndarray, encode, audio copied); (c) `vidgraph run
graphs/transcode.yaml` with the same settings; (d) (c) plus 10 pass-through stages;
(e) the per-hop cost: 64x64 frames through 10 pass-through stages vs none, to a null sink.
vidgraph rows give the graph's own run time (from --stats) and the whole command's.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plugins.media.clips import make_clip  # noqa: E402

CRF, PRESET = 23, "veryfast"


def ffmpeg_cli(src: Path, dst: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:v", "libx264",
                    "-preset", PRESET, "-crf", str(CRF), "-c:a", "copy", str(dst)], check=True)
    return time.perf_counter() - started


def pyav_loop(src: Path, dst: Path) -> float:
    started = time.perf_counter()
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin, ain = inp.streams.video[0], inp.streams.audio[0]
        vin.thread_type = "AUTO"
        vout = out.add_stream("libx264", rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        vout.options = {"crf": str(CRF), "preset": PRESET}
        aout = out.add_stream_from_template(ain)
        for packet in inp.demux(vin, ain):
            if packet.stream is ain:
                if packet.dts is not None:
                    packet.stream = aout
                    out.mux(packet)
                continue
            for frame in packet.decode():
                rgb = frame.to_ndarray(format="rgb24")
                new = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                new.pts, new.time_base = frame.pts, frame.time_base
                out.mux(vout.encode(new))
        out.mux(vout.encode(None))
    return time.perf_counter() - started


def vidgraph(graph: dict, workdir: Path, name: str) -> tuple[float, float]:
    """(graph run seconds from --stats, whole command seconds)."""
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    stats = workdir / f"{name}.stats.json"
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "run.py"), "run", "--quiet", str(path),
                    "--stats", str(stats)], check=True, cwd=ROOT)
    wall = time.perf_counter() - started
    return json.loads(stats.read_text())["elapsed_s"], wall


def with_passthrough(graph: dict, n: int, before: str) -> dict:
    """``graph`` with ``n`` identity stages inserted in front of node ``before``."""
    nodes = dict(graph["nodes"])
    upstream = nodes[before]["input"]
    for i in range(n):
        nodes[f"hop{i}"] = {"plugin": "identity", "input": upstream}
        upstream = f"hop{i}"
    nodes[before] = {**nodes[before], "input": upstream}
    return {**graph, "nodes": nodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--hop-frames", type=int, default=6000)
    parser.add_argument("--out", default=str(ROOT / "bench/results/transcode.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vidgraph-bench-"))
    try:
        clip = make_clip(work / "clip.mp4", seconds=args.seconds, width=1280, height=720,
                         fps=30, codec="libx264")
        frames = round(args.seconds * 30)
        transcode = yaml.safe_load((ROOT / "graphs/transcode.yaml").read_text())
        transcode["nodes"]["src"]["url"] = str(clip)
        transcode["nodes"]["out"].update(path=str(work / "c.mp4"), crf=CRF, preset=PRESET)
        rows: dict[str, dict] = {}
        t = ffmpeg_cli(clip, work / "a.mp4")
        rows["a_ffmpeg_cli"] = {"seconds": t, "fps": frames / t}
        t = pyav_loop(clip, work / "b.mp4")
        rows["b_pyav_rgb_loop"] = {"seconds": t, "fps": frames / t}
        run_s, wall = vidgraph(transcode, work, "c")
        rows["c_vidgraph"] = {"seconds": run_s, "fps": frames / run_s, "command_s": wall,
                              "command_fps": frames / wall}
        deep = with_passthrough(transcode, 10, "out")
        deep["nodes"]["out"]["path"] = str(work / "d.mp4")
        run_s, wall = vidgraph(deep, work, "d")
        rows["d_vidgraph_10_hops"] = {"seconds": run_s, "fps": frames / run_s,
                                      "command_s": wall, "command_fps": frames / wall}
        tiny = {"name": "hops", "nodes": {
            "src": {"plugin": "testsrc", "width": 64, "height": 64, "fps": 1000,
                    "duration": args.hop_frames / 1000},
            "out": {"plugin": "null_sink", "input": "src"}}}
        base_s, _ = vidgraph(tiny, work, "e0")
        hops_s, _ = vidgraph(with_passthrough(tiny, 10, "out"), work, "e10")
        per_hop_us = (hops_s - base_s) / (10 * args.hop_frames) * 1e6
        rows["e_per_hop"] = {"frames": args.hop_frames, "fps_0_hops": args.hop_frames / base_s,
                             "fps_10_hops": args.hop_frames / hops_s, "per_hop_us": per_hop_us}
        for name in ("a", "b", "c", "d"):
            probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams",
                                    "v:0", "-show_entries", "stream=nb_read_frames", "-of",
                                    "csv=p=0", str(work / f"{name}.mp4")],
                                   capture_output=True, text=True, check=True)
            key = next(k for k in rows if k.startswith(name + "_"))
            rows[key]["frames_out"] = int(probe.stdout.strip())
        ratios = {
            "c_over_b": rows["c_vidgraph"]["fps"] / rows["b_pyav_rgb_loop"]["fps"],
            "d_over_c": rows["d_vidgraph_10_hops"]["fps"] / rows["c_vidgraph"]["fps"],
            "c_over_a": rows["c_vidgraph"]["fps"] / rows["a_ffmpeg_cli"]["fps"],
            "c_command_over_a": rows["c_vidgraph"]["command_fps"] / rows["a_ffmpeg_cli"]["fps"],
        }
        targets = {"c_over_b >= 0.9": ratios["c_over_b"] >= 0.9,
                   "d_over_c >= 0.85": ratios["d_over_c"] >= 0.85,
                   "per_hop_us < 50": per_hop_us < 50}
        report = {"clip": f"{args.seconds:g} s 1280x720 30 fps H.264+AAC ({frames} frames)",
                  "settings": f"libx264 preset={PRESET} crf={CRF}, audio copied",
                  "machine": f"{platform.processor() or platform.machine()}, "
                             f"{torch.get_num_threads()} torch threads, CPU",
                  "rows": rows, "ratios": ratios, "targets_met": targets}
        print(f"{'case':<22}{'seconds':>9}{'fps':>9}{'frames':>8}")
        for key, row in rows.items():
            if "fps" in row:
                print(f"{key:<22}{row['seconds']:>9.2f}{row['fps']:>9.1f}"
                      f"{row.get('frames_out', ''):>8}")
        e = rows["e_per_hop"]
        print(f"per hop: {e['per_hop_us']:.1f} us  (64x64: {e['fps_0_hops']:.0f} fps with no hop,"
              f" {e['fps_10_hops']:.0f} fps with 10)")
        for key, value in ratios.items():
            print(f"{key:<22}{value:>9.2f}")
        for key, ok in targets.items():
            print(f"target {key}: {'met' if ok else 'NOT met'}")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
