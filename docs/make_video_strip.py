"""The video strip in README and docs/video.md: a camera pan across the bundled photo, made
into a folder of frames and stylized two ways, each frame alone (``nst-jax stylize`` on the
folder) and by the command they show (``nst-jax video``); the strip shows the frames and how
each differs from the one before it once the pan is undone.

    python docs/make_video_strip.py   # writes docs/video-strip.png

The commands it runs are printed first; the clip and its frames go to a temporary folder.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

from nst_jax.image import contact_sheet, load_image, resize, save_image  # noqa: E402

SAMPLES = DOCS.parent / "nst_jax" / "samples"
FRAMES, STEP, H, W = 6, 4, 192, 256  # six frames, the camera 4 px to the right a frame


def change(frames: list[np.ndarray]) -> list[np.ndarray]:
    """|o_t - o_(t-1) moved with the camera| x4 where both frames see the scene; black elsewhere."""
    out = [np.zeros_like(frames[0])]
    for t in range(1, len(frames)):
        d = np.zeros_like(frames[t])
        d[:, :W - STEP] = np.clip(4 * np.abs(frames[t][:, :W - STEP] - frames[t - 1][:, STEP:]), 0, 1)
        out.append(d)
    return out


def main() -> None:
    photo = load_image(SAMPLES / "content.jpg")
    big = resize(photo, H, round(H * photo.shape[1] / photo.shape[0]))
    assert big.shape[1] >= W + STEP * FRAMES
    with tempfile.TemporaryDirectory() as work:
        clip, out = Path(work) / "clip", Path(work) / "styled"
        for t in range(FRAMES):
            save_image(big[:, STEP * t:STEP * t + W], clip / f"{t:03d}.png")
        style = str(SAMPLES / "style.jpg")
        # each frame on its own (one scale of 100 steps, as the video's first frame), then the video
        alone = ["nst-jax", "stylize", "clip/", style, "-o", "alone/", "--size", str(W), "--scales", "none",
                 "--steps", "100"]
        video = ["nst-jax", "video", "clip/", style, "-o", "styled/", "--size", str(W)]
        for cmd in (alone, video):
            print(" ".join(cmd).replace(str(DOCS.parent) + "/", ""), flush=True)  # as run from the checkout
            subprocess.run(cmd, cwd=work, check=True)
        content = [load_image(clip / f"{t:03d}.png") for t in range(FRAMES)]
        each = [load_image(Path(work) / "alone" / f"{t:03d}.png") for t in range(FRAMES)]
        styled = [load_image(out / f"{t:06d}.png") for t in range(FRAMES)]
    rows = content + each + change(each) + styled + change(styled)
    sheet = contact_sheet(rows, ["content", "each frame alone", "|change| x4", "nst-jax video", "|change| x4"],
                          [f"frame {t}" for t in range(FRAMES)])
    save_image(sheet, DOCS / "video-strip.png")
    print(f"wrote {DOCS / 'video-strip.png'}")


if __name__ == "__main__":
    main()
