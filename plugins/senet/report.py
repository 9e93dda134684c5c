"""Confusion matrices: counted, printed as a table, drawn as a PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch


def confusion_matrix(truth: torch.Tensor, predicted: torch.Tensor, classes: int) -> np.ndarray:
    """Counts (classes x classes): row = true class, column = predicted class."""
    flat = truth.long() * classes + predicted.long()
    return torch.bincount(flat, minlength=classes * classes).reshape(classes, classes).numpy()


def format_confusion(matrix: np.ndarray, names: list[str]) -> str:
    """The matrix as a text table with per-class recall and the overall accuracy."""
    width = max(7, *(len(n) for n in names))
    lines = ["true \\ predicted".ljust(width + 2) + "".join(n[:width].rjust(width + 1)
                                                            for n in names) + "  recall"]
    for i, name in enumerate(names):
        recall = matrix[i, i] / max(1, matrix[i].sum())
        lines.append(name.ljust(width + 2) + "".join(str(v).rjust(width + 1)
                                                     for v in matrix[i]) + f"  {recall:.3f}")
    lines.append(f"accuracy {np.trace(matrix) / max(1, matrix.sum()):.4f} "
                 f"on {int(matrix.sum())} pictures")
    return "\n".join(lines)


def confusion_png(matrix: np.ndarray, names: list[str], path: str | Path,
                  cell: int = 72) -> None:
    """Writes the matrix as a picture: cells shaded by the share of their row, with counts."""
    n = len(names)
    margin = 12 + 9 * max(len(name) for name in names)
    top = 60
    image = np.full((top + n * cell + 30, margin + n * cell + 10, 3), 255, np.uint8)
    share = matrix / np.maximum(1, matrix.sum(1, keepdims=True))
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(n):
        for j in range(n):
            y, x = top + i * cell, margin + j * cell
            shade = int(255 - 200 * share[i, j])
            cv2.rectangle(image, (x, y), (x + cell - 2, y + cell - 2), (shade, shade, 255), -1)
            colour = (255, 255, 255) if share[i, j] > 0.5 else (0, 0, 0)
            cv2.putText(image, str(matrix[i, j]), (x + 6, y + cell // 2 + 5), font, 0.5,
                        colour, 1, cv2.LINE_AA)
        cv2.putText(image, names[i], (6, top + i * cell + cell // 2 + 5), font, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(image, names[i][:8], (margin + i * cell + 4, top - 10), font, 0.42,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, "rows: true class, columns: predicted", (6, 20), font, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    cv2.putText(image, f"accuracy {accuracy:.4f}", (6, image.shape[0] - 10), font, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write '{path}'")
