"""A synthetic IP camera: GStreamer's RTSP server streaming H.264 (+ AAC) on 127.0.0.1.

Run with Debian's own interpreter (``/usr/bin/python3``), which can import ``gi``; the
project's virtual environment cannot. Prints ``PORT <n>`` once it accepts clients, and exits
on SIGTERM or SIGINT (through GLib's own signal source: a Python handler would not run until
the main loop wakes up).

    /usr/bin/python3 tests/servers/rtsp_camera.py --port 0 --path /cam --fps 30
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(args: argparse.Namespace) -> str:
    """The gst-launch description of the served media: a test pattern, or an MP4 film
    (H.264 + AAC) played at its own pace from its start, for each new session."""
    if args.file:
        audio = "d.audio_0 ! queue ! aacparse ! rtpmp4apay name=pay1 pt=97" if args.audio else ""
        return (f"( filesrc location={args.file} ! qtdemux name=d d.video_0 ! queue "
                f"! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 {audio} )")
    video = (f"videotestsrc is-live=true pattern={args.pattern} "
             f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 "
             f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.gop} "
             "! rtph264pay name=pay0 pt=96 config-interval=1")
    audio = ("audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample "
             "! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! rtpmp4apay name=pay1 pt=97")
    return f"( {video} {audio if args.audio else ''} )"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--gop", type=int, default=15, help="frames between keyframes")
    parser.add_argument("--pattern", default="ball")
    parser.add_argument("--no-audio", dest="audio", action="store_false")
    parser.add_argument("--file", help="serve this MP4 (H.264 + AAC) instead of a pattern")
    parser.add_argument("--separate", action="store_true",
                        help="one pipeline per client (the shared one has crashed when "
                             "several processes connected at the same moment)")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    # a film starts from its beginning for every client
    factory.set_shared(not (args.file or args.separate))
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, loop.quit)
    print(f"PORT {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
