"""Helpers for stages that batch frames: a batch may mix sizes (several cameras)."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.frame import Frame


def group_by_size(frames: Sequence[Frame]) -> dict[tuple[int, int], list[int]]:
    """Indices of ``frames`` grouped by (height, width), in order: each group stacks into
    one tensor."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault((frame.height, frame.width), []).append(i)
    return groups
