"""Shared pieces for live inputs and outputs: URL kinds, credential redaction, backoff.

Cameras and publishing targets come and go; sources and sinks that talk to them retry with
the same :class:`Backoff`, and every URL that reaches a log line, an event or an error goes
through :func:`redact` first, so passwords in ``rtsp://user:pass@host`` never get printed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from urllib.parse import unquote

#: URL schemes FFmpeg reads over the network; ``live: auto`` treats these as live.
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://",
                   "srt://")
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s'\"]*@")


def is_network_url(url: str) -> bool:
    """Whether ``url`` is read over the network (as opposed to a file or a device)."""
    return url.lower().startswith(NETWORK_SCHEMES)


def is_capture_device(url: str) -> bool:
    """Whether ``url`` names a V4L2 capture device such as ``/dev/video0``."""
    return re.fullmatch(r"/dev/video\d+", url) is not None


def is_live_url(url: str) -> bool:
    """What ``live: auto`` means: cameras and network streams are live, files are not."""
    return is_network_url(url) or is_capture_device(url)


def userinfo(url: str) -> str | None:
    """What ``url`` holds before its host (user and password), or None.

    A password may hold a space or a raw ``/`` (cameras take them): the standard
    library's ``urlsplit`` ends the authority at the first ``/``, so this takes everything
    between ``://`` and the URL's last ``@`` instead.
    """
    _, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return None
    return rest.rpartition("@")[0] or None


def redact(text: str, *urls: str) -> str:
    """``text`` with the user information of ``urls`` (as written, and percent-decoded)
    and of any other URL in it replaced by ``***``, so no password reaches a log line, an
    event or an error."""
    for url in urls:
        info = userinfo(url)
        if info:
            for secret in sorted({info, unquote(info)}, key=len, reverse=True):
                text = text.replace(secret, "***")
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


def shown(url: str) -> str:
    """``url`` as it may be shown: without its user information."""
    return redact(url, url)


@dataclass
class Backoff:
    """Exponential backoff: ``initial`` seconds, doubling up to ``maximum``.

    ``max_retries`` None retries forever. :meth:`wait` sleeps for the next delay and returns
    False when retries are used up or ``stop`` was set (it wakes at once when it is).
    """

    initial: float = 0.5
    maximum: float = 10.0
    max_retries: int | None = None
    attempts: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt."""
        return min(self.maximum, self.initial * 2 ** max(0, self.attempts - 1))

    def exhausted(self) -> bool:
        """Whether no retry is left."""
        return self.max_retries is not None and self.attempts > self.max_retries

    def wait(self, stop: threading.Event) -> bool:
        """Count a failed attempt and sleep before the next; False to give up."""
        self.attempts += 1
        if self.exhausted():
            return False
        return not stop.wait(self.next_delay())

    def reset(self) -> None:
        """A connection worked: the next failure starts again from ``initial``."""
        self.attempts = 0
