"""Output files: a destination checked (and its folder made) before anything is written,
so a sink or option that cannot write says so in one line naming the path."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import MediaError


def prepare_output(path: str | Path) -> Path:
    """``path`` with its folder created; raises :class:`MediaError` naming the path when it
    cannot be written there (a file where a folder should be, no permission)."""
    target = Path(path)
    for folder in (target.parent, *target.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise MediaError(f"cannot write '{path}': '{folder}' is a file, not a folder")
            break
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MediaError(f"cannot write '{path}': cannot create its folder "
                         f"({exc.strerror})") from None
    if target.is_dir():
        raise MediaError(f"cannot write '{path}': it is a folder")
    return target
