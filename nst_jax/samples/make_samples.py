"""Make the two sample images that ship with nst-jax (run once; the outputs are committed).

    python nst_jax/samples/make_samples.py path/to/skimage/data/chelsea.png

- ``content.jpg``: scikit-image's ``chelsea.png`` ("Chelsea the cat", CC0 by Stefan van der
  Walt, shipped in the scikit-image wheel), resized to 384 px wide.
- ``style.jpg``: a painting-like texture drawn by this script: thousands of short, thick
  brush strokes that follow a swirling flow field, in a night-sky palette. Made by the
  project, under the project's licence.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).parent
PALETTE = np.array([(18, 32, 84), (32, 64, 140), (60, 110, 190), (110, 160, 220),
                    (235, 200, 60), (250, 230, 120), (20, 40, 60), (200, 120, 40)], np.float64)


def flow(x: np.ndarray, y: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Angle of a swirling field: a sum of vortices around ``centres`` plus a drift."""
    angle = np.zeros_like(x) + 0.3 * np.sin(y / 40.0)
    for cx, cy, strength in centres:
        d = np.hypot(x - cx, y - cy) + 20.0
        angle += strength * np.exp(-d / 90.0) * (np.arctan2(y - cy, x - cx) + np.pi / 2)
    return angle


def make_style(size: int = 384, strokes: int = 9000, seed: int = 7) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), tuple(int(c) for c in PALETTE[0]))
    draw = ImageDraw.Draw(img)
    centres = np.array([(0.3 * size, 0.3 * size, 1.0), (0.72 * size, 0.45 * size, -1.0),
                        (0.45 * size, 0.8 * size, 0.8)])
    for _ in range(strokes):
        x, y = rng.uniform(0, size, 2)
        swirl = np.exp(-min(np.hypot(x - c[0], y - c[1]) for c in centres) / 60.0)
        weights = np.array([3, 3, 2, 1, 0.4 + 3 * swirl, 0.3 + 2 * swirl, 1, 0.3])
        colour = PALETTE[rng.choice(len(PALETTE), p=weights / weights.sum())]
        colour = np.clip(colour + rng.normal(0, 12, 3), 0, 255).astype(int)
        points = [(x, y)]
        for _ in range(int(rng.integers(4, 10))):
            a = flow(np.array(x), np.array(y), centres)
            x, y = x + 3.0 * np.cos(a), y + 3.0 * np.sin(a)
            points.append((float(x), float(y)))
        draw.line(points, fill=tuple(colour), width=int(rng.integers(3, 7)), joint="curve")
    return img.filter(ImageFilter.SMOOTH)


def main(chelsea: str) -> None:
    cat = Image.open(chelsea).convert("RGB")
    cat = cat.resize((384, round(384 * cat.height / cat.width)), Image.Resampling.LANCZOS)
    cat.save(HERE / "content.jpg", quality=92)
    make_style().save(HERE / "style.jpg", quality=92)


if __name__ == "__main__":
    main(sys.argv[1])
