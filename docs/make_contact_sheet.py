"""Render the contact sheet of the synthetic scenes: a few frames of three rooms (240 x 320) and
of three streets (192 x 640), each beside its depth (turbo colour map on inverse depth, near = red,
far = blue, black = no depth).

Run from the repository root: ``.venv/bin/python docs/make_contact_sheet.py``; writes
``docs/synthetic_contact_sheet.png``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from slam.synthetic import SyntheticSequence
from viewer.depth_colors import colorize_depth

OUTPUT = Path(__file__).resolve().parent / "synthetic_contact_sheet.png"
#: (kind, seed, frames shown side by side in one row)
ROWS = [
    ("room", 0, (0, 150)),
    ("room", 1, (40, 220)),
    ("room", 2, (90, 260)),
    ("road", 0, (0,)),
    ("road", 1, (120,)),
    ("road", 2, (60,)),
]


def label(picture: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` in the top-left corner (white on a dark band)."""
    picture = picture.copy()
    cv2.rectangle(picture, (0, 0), (8 * len(text) + 8, 18), (0, 0, 0), -1)
    cv2.putText(picture, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return picture


def main() -> None:
    rows = []
    for kind, seed, frames in ROWS:
        sequence = SyntheticSequence(kind, seed=seed, num_frames=max(frames) + 1)
        cells = []
        for index in frames:
            image, depth = sequence.render(index)
            cells.append(label(image, f"{kind} seed {seed} frame {index}"))
            valid = depth > 0
            near, far = np.percentile(depth[valid], [2, 98])
            cells.append(label(colorize_depth(depth, near, far), f"depth {near:.1f}-{far:.0f} m"))
        rows.append(np.hstack(cells))
    width = max(row.shape[1] for row in rows)
    sheet = np.vstack([np.pad(row, ((0, 4), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows])
    cv2.imwrite(str(OUTPUT), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {OUTPUT} ({sheet.shape[1]} x {sheet.shape[0]})")


if __name__ == "__main__":
    main()
