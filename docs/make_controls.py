"""Make the pictures of the perceptual controls in docs/controls.md (docs/controls-*.png).

    python docs/make_controls.py IMAGES_DIR [WORK_DIR]

IMAGES_DIR holds tubingen.jpg, starry_night.jpg and the_scream.jpg; each run is the
nst-jax command printed before it runs (niced), skipped when its output is already in
WORK_DIR (default ./controls-work). docs/tubingen-sky.png, the sky mask, is drawn by
:func:`draw_sky` when it is missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
SETTINGS = ("--size 192 --content-norm mean --style-weight 100 --scales auto --detail 0 --precondition 0 "
            "--steps 100 --average 0.99")


def draw_sky(content: Path, path: Path) -> None:
    """The sky of ``content``: per column, the blue pixels connected to the top edge (gaps of
    up to 6 px bridged, for the bare tree's branches), median-filtered; white = sky."""
    from PIL import ImageFilter

    rgb = np.asarray(Image.open(content).convert("RGB"), np.float32) / 255
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    blue = (b > 0.45) & (b - r > 0.2) & (b > g)
    mask = np.zeros(blue.shape, bool)
    for x in range(blue.shape[1]):
        last, gap = -1, 0
        for y in range(blue.shape[0]):
            last, gap = (y, 0) if blue[y, x] else (last, gap + 1)
            if gap > 6:
                break
        mask[: last + 1, x] = True
    Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MedianFilter(5)).save(path, optimize=True)


def run(args: str, output: Path) -> Path:
    if not output.exists():
        command = f"nice -n 19 {sys.executable} {ROOT / 'cli.py'} {args} {SETTINGS}"
        print(command, flush=True)
        subprocess.run(command.split(), check=True, cwd=ROOT)
    return output


def tile(path: Path, height: int = 144, width: int = 192) -> Image.Image:
    """The picture scaled to ``height`` and centre-cropped to ``width`` (styles), or as it is."""
    image = Image.open(path).convert("RGB")
    if image.size == (width, height):
        return image
    scaled = image.resize((max(width, round(image.width * height / image.height)), height), Image.LANCZOS)
    left = (scaled.width - width) // 2
    return scaled.crop((left, 0, left + width, height))


def strip(tiles: list[Image.Image], labels: list[str], path: Path, width: int = 176) -> None:
    """The tiles in a row under their labels, each scaled to ``width`` (the PNG stays < 300 KB)."""
    tiles = [t.resize((width, round(t.height * width / t.width)), Image.LANCZOS) for t in tiles]
    pad, top = 4, 20
    w, h = tiles[0].size
    sheet = Image.new("RGB", (len(tiles) * (w + pad) - pad, top + h), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=13)
    for i, (t, label) in enumerate(zip(tiles, labels)):
        sheet.paste(t, (i * (w + pad), top))
        draw.text((i * (w + pad) + w // 2, top - 5), label, fill="black", font=font, anchor="ms")
    sheet.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main(images: Path, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    content, starry, scream = images / "tubingen.jpg", images / "starry_night.jpg", images / "the_scream.jpg"
    sky = DOCS / "tubingen-sky.png"
    if not sky.exists():
        draw_sky(content, sky)
    plain = run(f"stylize {content} {starry} -o {work / 'plain.png'}", work / "plain.png")
    colours = [run(f"stylize {content} {starry} -o {work / f'{c}.png'} --colour {c}", work / f"{c}.png")
               for c in ("original", "luminance", "histogram")]
    masked = run(f"stylize {content} {starry} -o {work / 'mask.png'} --mask {sky}", work / "mask.png")
    free = run(f"stylize {content} {starry} -o {work / 'mask-free.png'} --mask {sky} --free-unmasked",
               work / "mask-free.png")
    grid = work / "blend"
    run(f"sweep {content} {starry} {scream} -o {grid} --blend-grid 0,0.5,1", grid / "cell_r2_c0.png")
    cells = [grid / f"cell_r{r}_c0.png" for r in range(3)]

    strip([tile(content), tile(plain), *map(tile, colours)],
          ["content", "no colour control", "--colour original", "--colour luminance", "--colour histogram"],
          DOCS / "controls-colour.png")
    mask = np.asarray(tile(sky).convert("L")) > 127
    shown = np.asarray(tile(content)).copy()
    shown[~mask] = shown[~mask] // 3  # the part the style leaves alone, darkened
    strip([Image.fromarray(shown), tile(plain), tile(masked), tile(free)],
          ["content, sky mask lit", "no mask", "--mask tubingen-sky.png", "... --free-unmasked"],
          DOCS / "controls-mask.png")
    strip([tile(starry), *map(tile, cells), tile(scream)],
          ["style A", "blend 0 (all A)", "blend 0.5", "blend 1 (all B)", "style B"], DOCS / "controls-blend.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path("controls-work"))
