"""docs/sweeps.md's size-invariance sheet: the same three style weights at three sizes, each
row one `nst-jax sweep` (one compiled program for its three betas).

    python docs/make_size_sheet.py CONTENT STYLE [WORK_DIR]   # writes docs/sweep-sizes.jpg

Each sweep is the command printed before it runs, skipped when its contact sheet is
already in WORK_DIR (default ./sizes-work). Every cell is shown at the same width, so
what the sheet compares is the look, not the pixel count.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

DOCS = Path(__file__).resolve().parent
SIZES = (128, 256, 512)
BETAS = "10,100,1000"
STEPS = 30  # per scale of the default ladder; enough for the balance to show, cheap on a CPU
# The sheet was made before each scale got the photo's detail back (config.detail), before
# L-BFGS's low-pass curvature (config.precondition) and on the paper's terms with max pooling:
# the flags below remake it.
SHOWN = 256  # display width of every cell


def main(content: str, style: str, work: str = "sizes-work") -> None:
    sys.path.insert(0, str(DOCS.parent))
    from nst_jax.image import contact_sheet

    cells, rows = [], []
    for size in SIZES:
        out = Path(work) / str(size)
        if not (out / "contact_sheet.png").exists():
            cmd = ["nst-jax", "sweep", content, style, "-o", str(out), "--size", str(size),
                   "--style-weight", BETAS, "--steps", str(STEPS), "--detail", "0",
                   "--precondition", "0", "--content-norm", "mean", "--balance", "fixed", "--per-channel", "0",
                   "--pooling", "max"]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
        for col in range(len(BETAS.split(","))):
            image = Image.open(out / f"cell_r0_c{col}.png").convert("RGB")
            shown = image.resize((SHOWN, round(image.height * SHOWN / image.width)), Image.Resampling.LANCZOS)
            cells.append(np.asarray(shown, np.float32) / 255)
        rows.append(f"{size} px")
    sheet = contact_sheet(cells, rows, [f"beta {b}" for b in BETAS.split(",")],
                          title=f"the same weights at three sizes (content_norm mean, {STEPS} steps per scale)")
    Image.fromarray(np.uint8(np.clip(sheet, 0, 1) * 255 + 0.5)).save(DOCS / "sweep-sizes.jpg", quality=90)


if __name__ == "__main__":
    main(*sys.argv[1:])
