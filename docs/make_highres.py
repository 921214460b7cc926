"""docs/highres.md's figures from one large result: the whole picture scaled
down, and a crop at 100% (one output pixel per screen pixel).

    python docs/make_highres.py OUT_4096.png   # writes docs/highres-full.jpg, docs/highres-crop.jpg

The result itself (4096x3072, ~30 MB as PNG) stays out of the repository.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

DOCS = Path(__file__).resolve().parent
FULL_SIDE = 1024  # the whole picture, longest side
CROP = (768, 512)  # the crop at 100%, width x height
CENTRE = (0.62, 0.38)  # where the crop sits, as fractions of the picture (sky, roofs and tower)


def main(path: str) -> None:
    image = Image.open(path).convert("RGB")
    w, h = image.size
    left = min(max(0, round(CENTRE[0] * w - CROP[0] / 2)), w - CROP[0])
    top = min(max(0, round(CENTRE[1] * h - CROP[1] / 2)), h - CROP[1])
    box = (left, top, left + CROP[0], top + CROP[1])
    image.crop(box).save(DOCS / "highres-crop.jpg", quality=90)
    scale = FULL_SIDE / max(w, h)
    full = image.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
    ImageDraw.Draw(full).rectangle([round(v * scale) for v in box], outline=(255, 255, 255), width=2)
    full.save(DOCS / "highres-full.jpg", quality=90)
    print(f"{w}x{h}: crop {box} at 100%, whole at {full.size[0]}x{full.size[1]}")


if __name__ == "__main__":
    main(sys.argv[1])
