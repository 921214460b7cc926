"""Temporal error of stylized video on clips whose true flow is known.

The bench makes three clips from the bundled photo, each with its exact backward flow and
the pixels that flow is valid at:

* pan: a window sliding over the photo (3 px right, 1 px down a frame; the strip it
  brings into view has no earlier frame),
* zoom: the photo magnified 3% a frame about its centre (every pixel seen before),
* layer: a square cut from the photo moving (4, 2) px a frame over a still background:
  real occlusions, the background it uncovers has no earlier frame.

Each clip is stylized frame by frame on its own (the flickering baseline: the config's
init, ``first_steps`` steps, the same seed for every frame) and with temporal consistency
(``nst_jax.video``, its flows estimated by DIS on the content frames, never the true ones),
and scored with

    E = mean over t >= 1 and the valid pixels p of (o_t(p) - w(o_{t-1})(p))^2

(w: the warp along the true flow; values in [0, 1], averaged over the three channels)
and the AlexNet judge's style distance (bench/quality.py), averaged over the frames.

    python bench/video.py --size 128 --frames 8 --out bench/results           # the table, strips
    python bench/video.py --size 128 --frames 8 --sweep --out bench/results   # the defaults' sweep
    python bench/video.py --clips zoom --variants 3e3:10,1e5:10 --name zoom    # chosen rows
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nst_jax.config import StyleConfig  # noqa: E402
from nst_jax.flow import warp  # noqa: E402
from nst_jax.image import contact_sheet, load_image, resize, save_image  # noqa: E402
from nst_jax.video import VideoConfig, stylize_video  # noqa: E402
from quality import load_judge, style_distance  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "nst_jax" / "samples"


@dataclass
class SyntheticClip:
    name: str
    frames: list[np.ndarray]  # (H, W, 3) in [0, 1]
    flows: list[np.ndarray]  # flows[t - 1]: the true backward flow t -> t-1, (H, W, 2)
    valid: list[np.ndarray]  # valid[t - 1]: (H, W) bool, pixels frame t-1 saw


def _sample(photo: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    coords = [jnp.asarray(rows), jnp.asarray(cols)]
    return np.stack([np.asarray(jax.scipy.ndimage.map_coordinates(jnp.asarray(photo[..., c]), coords, order=1,
                                                                  mode="nearest")) for c in range(3)], -1)


def pan(photo: np.ndarray, h: int, w: int, n: int, step=(3, 1)) -> SyntheticClip:
    dx, dy = step
    scale = max((h + dy * n) / photo.shape[0], (w + dx * n) / photo.shape[1])
    big = resize(photo, round(photo.shape[0] * scale + 0.5), round(photo.shape[1] * scale + 0.5))
    frames = [big[dy * t:dy * t + h, dx * t:dx * t + w] for t in range(n)]
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy  # p in frame t is p + (dx, dy) in frame t-1
    valid = np.zeros((h, w), bool)
    valid[:h - dy, :w - dx] = True
    return SyntheticClip("pan", frames, [flow] * (n - 1), [valid] * (n - 1))


def zoom(photo: np.ndarray, h: int, w: int, n: int, rate: float = 1.03) -> SyntheticClip:
    big = resize(photo, 2 * h, round(2 * h * photo.shape[1] / photo.shape[0]))
    cy, cx = (h - 1) / 2, (w - 1) / 2
    by, bx = (big.shape[0] - 1) / 2, (big.shape[1] - 1) / 2
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    frames = []
    for t in range(n):  # frame t shows the big photo magnified rate^t (2 big px per frame px at t = 0)
        scale = 2.0 / rate**t
        frames.append(_sample(big, by + (rows - cy) * scale, bx + (cols - cx) * scale))
    # p in frame t is at c + (p - c) / rate in frame t-1
    flow = np.stack([(cols - cx) * (1 / rate - 1), (rows - cy) * (1 / rate - 1)], -1).astype(np.float32)
    return SyntheticClip("zoom", frames, [flow] * (n - 1), [np.ones((h, w), bool)] * (n - 1))


def layer(photo: np.ndarray, h: int, w: int, n: int, step=(4, 2)) -> SyntheticClip:
    big = resize(photo, 2 * h, round(2 * h * photo.shape[1] / photo.shape[0]))
    background = big[h // 2:h // 2 + h, :w]
    side = h // 3
    patch = big[:side, -side:][:, ::-1]  # a corner of the photo, mirrored: other content
    dx, dy = step
    frames, flows, valid, covered = [], [], [], None
    for t in range(n):
        frame, mask = background.copy(), np.zeros((h, w), bool)
        y, x = h // 6 + dy * t, w // 8 + dx * t
        frame[y:y + side, x:x + side], mask[y:y + side, x:x + side] = patch, True
        frames.append(frame)
        if t:
            flow = np.zeros((h, w, 2), np.float32)
            flow[mask] = (-dx, -dy)
            flows.append(flow)
            valid.append(mask | ~covered)  # the background the square left is new
        covered = mask
    return SyntheticClip("layer", frames, flows, valid)


def temporal_error(outputs: list[np.ndarray], clip: SyntheticClip) -> float:
    """E: mean over t >= 1 and the valid pixels of (o_t - w(o_{t-1}))^2, w along the true flow."""
    errors = []
    for t in range(1, len(outputs)):
        warped = np.asarray(warp(outputs[t - 1], clip.flows[t - 1]))
        errors.append(np.square(outputs[t] - warped).mean(axis=-1)[clip.valid[t - 1]])
    return float(np.mean(np.concatenate(errors)))


def stylize_clip(clip: SyntheticClip, style: np.ndarray, config: StyleConfig, settings: VideoConfig,
                 work: Path) -> tuple[list[np.ndarray], list[float]]:
    source = work / f"{clip.name}-in"
    if not source.exists():
        for i, f in enumerate(clip.frames):
            save_image(f, source / f"{i:03d}.png")
    out = Path(tempfile.mkdtemp(dir=work))
    result = stylize_video(source, style, out, config, settings)
    assert result.stopped == "done", result.stopped
    return [load_image(out / f"{i:06d}.png") for i in range(len(clip.frames))], result.frame_seconds


def strip(clip: SyntheticClip, runs: dict[str, list[np.ndarray]], columns: int = 6) -> np.ndarray:
    """Rows: the content, then per method its frames and |o_t - o_{t-1}| (x4, so that small
    differences show), columns the first frames."""
    shown = range(min(columns, len(clip.frames)))
    rows, labels = [clip.frames[t] for t in shown], ["content"]
    for name, frames in runs.items():
        rows += [frames[t] for t in shown]
        rows += [np.clip(4 * np.abs(frames[t] - frames[t - 1]), 0, 1) if t else np.zeros_like(frames[0])
                 for t in shown]
        labels += [name, f"{name} |diff| x4"]
    return contact_sheet(rows, labels, [f"t={t}" for t in shown], title=f"{clip.name}")


def warp_blur(style: np.ndarray, h: int, w: int, n: int, judge, rate: float = 1.03) -> list[str]:
    """The style image (at the frames' size) warped along the zoom's flow again and again,
    bilinear and by nst_jax.flow.warp, against one warp of the whole zoom so far (the
    magnification alone): the judge's style distance after each."""
    photo = load_image(SAMPLES / "content.jpg")
    flow = zoom(photo, h, w, 2, rate).flows[0]
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    start = bilinear = ours = resize(style, h, w)
    distance = lambda x: f"{style_distance(np.clip(x, 0.0, 1.0), style, judge):.3f}"  # noqa: E731
    lines = ["| warps | bilinear | nst_jax.flow.warp | one warp of the whole zoom |", "|---|---|---|---|",
             f"| 0 | {distance(start)} | {distance(start)} | {distance(start)} |"]
    for t in range(1, n):
        bilinear = np.clip(_sample(bilinear, rows + flow[..., 1], cols + flow[..., 0]), 0.0, 1.0)
        ours = np.clip(np.asarray(warp(ours, flow)), 0.0, 1.0)
        once = np.asarray(warp(start, flow * ((rate**-t - 1) / (1 / rate - 1))))  # p -> c + (p - c) / rate^t
        lines.append(f"| {t} | {distance(bilinear)} | {distance(ours)} | {distance(once)} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128, help="longest side of the frames")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--style", default=str(SAMPLES / "style.jpg"))
    p.add_argument("--style-weight", type=float, default=10.0, help="beta (10: the bundled texture, as README)")
    p.add_argument("--clips", default="pan,zoom,layer")
    p.add_argument("--sweep", action="store_true", help="vary gamma, the later frames' steps and long-term")
    p.add_argument("--variants", default="", help="more rows, gamma:later-steps,... e.g. 3e3:10,1e4:20")
    p.add_argument("--warp-blur", action="store_true", help="only: the style image warped along the zoom, "
                   "bilinear against the warp")
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    p.add_argument("--name", default="video-cpu")
    args = p.parse_args(argv)
    h, w = round(args.size * 3 / 4), args.size
    photo = load_image(SAMPLES / "content.jpg")
    makers = {"pan": pan, "zoom": zoom, "layer": layer}
    clips = [makers[c](photo, h, w, args.frames) for c in args.clips.split(",")]
    style = load_image(args.style)
    config = StyleConfig(size=args.size, style_weight=args.style_weight, scales=())
    base = VideoConfig()
    variants = {"per-frame": replace(base, previous=()), "consistent": base}
    if args.sweep:
        variants.update({f"gamma {g:g}": replace(base, temporal_weight=g) for g in (1e2, 1e3, 1e5)})
        variants.update({f"later steps {s}": replace(base, steps=s) for s in (10, 60)})
        variants["long-term"] = replace(base, previous=(1, 2, 4))
        variants["warm start only"] = replace(base, temporal_weight=0.0)
    for spec in filter(None, args.variants.split(",")):
        gamma, steps = spec.split(":")
        variants[f"gamma {float(gamma):g}, {int(steps)} steps"] = replace(base, temporal_weight=float(gamma),
                                                                        steps=int(steps))
    judge = load_judge()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.warp_blur:
        table = warp_blur(style, h, w, args.frames, judge)
        (out / f"{args.name}-warp-blur.md").write_text(
            f"# The style image warped along the zoom ({w}x{h} px, 3% a frame): style distance\n\n"
            f"`python bench/video.py --warp-blur --size {args.size} --frames {args.frames}`; part of the rise "
            "is the magnification itself (strokes 3% larger a frame), the rest the interpolation's blur.\n\n"
            + "\n".join(table) + "\n")
        print("\n".join(table))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            runs = {}
            # the content frames' own E against the true flow: 0 for shifts, resampling for the zoom
            rows.append(dict(clip=clip.name, method="content frames", E=temporal_error(clip.frames, clip),
                             style=float("nan"), first=float("nan"), later=float("nan"), gamma=0, steps="-"))
            for name, settings in variants.items():
                t0 = time.perf_counter()
                frames, seconds = stylize_clip(clip, style, config, settings, Path(tmp))
                runs[name] = frames
                rows.append(dict(clip=clip.name, method=name, E=temporal_error(frames, clip),
                                 style=float(np.mean([style_distance(f, style, judge) for f in frames])),
                                 first=seconds[0], later=float(np.mean(seconds[1:])), total=time.perf_counter() - t0,
                                 gamma=settings.temporal_weight,
                                 steps=f"{settings.first_steps}/"
                                       f"{settings.steps if settings.previous else settings.first_steps}"))
                r = rows[-1]
                print(f"{clip.name:6s} {name:18s} E {r['E']:.2e}  style {r['style']:.3f}  "
                      f"{r['first']:.1f} s first, {r['later']:.1f} s/frame later", flush=True)
            keep = {k: v for k, v in runs.items() if k in ("per-frame", "consistent")}
            save_image(strip(clip, keep), out / f"{args.name}-strip-{clip.name}.png")
    write_table(rows, out / f"{args.name}.md", args, h, w)


def write_table(rows: list[dict], path: Path, args, h: int, w: int) -> None:
    per_frame = {r["clip"]: r for r in rows if r["method"] == "per-frame"}
    lines = [f"# Temporal error, {w}x{h} px, {args.frames} frames", "",
             f"`python bench/video.py --size {args.size} --frames {args.frames}"
             f"{' --sweep' if args.sweep else ''} --style-weight {args.style_weight:g}` "
             f"(style {Path(args.style).name}, embedded VGG16, every other setting the default; "
             f"{jax.devices()[0].device_kind}).", "",
             "E: mean squared difference between o_t and o_(t-1) warped by the true flow, over the pixels "
             "frame t-1 saw. Style: the AlexNet judge's style distance, mean over frames (lower is closer). "
             "Ratios against the per-frame run of the same clip.", "",
             "| clip | method | steps first/later | E | per-frame E / E | style | style / per-frame | "
             "s first frame | s per later frame |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:  # (an E under 1e-9 is the warp's float32 rounding of an exact shift: no ratio)
        base = per_frame[r["clip"]]
        cells = [r["clip"], r["method"], r["steps"], f"{r['E']:.2e}",
                 f"{base['E'] / r['E']:.1f}x" if r["E"] > 1e-9 else "-", f"{r['style']:.3f}",
                 f"{r['style'] / base['style']:.3f}", f"{r['first']:.1f}", f"{r['later']:.1f}"]
        lines.append("| " + " | ".join(c.replace("nan", "-") for c in cells) + " |")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
