"""A folder of photos: batched (``batch.stylize_many``, what ``nst-jax stylize FOLDER`` runs)
against one run per photo (``run.stylize`` in a loop), in the same process, with the
defaults and the embedded VGG16.

The photos are 4:3 crops of the shared photos (a camera's folder: one shape), so the batch
is one group. Each side's time is the wall time of the whole folder, compiles and input
preparation included, with the persistent compilation cache on (as the command has it) in
a fresh folder of its own, so neither side reuses the other's programs. The batched side
runs first (the second side gets a warm process). A control tells rounding from error: the first
photo run alone again with its pixels nudged by 1e-6 noise; the optimisation's own
sensitivity to so small a change is the yardstick for the two sides' difference. The outputs of both sides are compared.

    python bench/folder.py --size 256 --photos 8 --name cpu-folder-256
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jax  # noqa: E402

from nst_jax.batch import stylize_many  # noqa: E402
from nst_jax.cache import enable_cache  # noqa: E402
from nst_jax.config import StyleConfig  # noqa: E402
from nst_jax.image import load_image  # noqa: E402
from nst_jax.run import stylize  # noqa: E402
from nst_jax.weights import load_weights  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from quality import locate_shared  # noqa: E402
from robustness import cpu_name  # noqa: E402

PHOTOS = ["tubingen.jpg", "devset/garden.jpg", "devset/skyline_night.jpg", "devset/couch.jpg", "devset/stata.jpg"]


def crops(root: Path, n: int, folder: Path) -> list[Path]:
    """``n`` 4:3 crops of the shared photos (centre, then left and right ones), as PNGs."""
    paths = []
    for where in (0.5, 0.0, 1.0):
        for name in PHOTOS:
            if len(paths) == n:
                return paths
            im = Image.open(root / "images" / name).convert("RGB")
            w, h = im.size
            cw, ch = min(w, h * 4 // 3), min(h, w * 3 // 4)
            x, y = round((w - cw) * where), (h - ch) // 2
            path = folder / f"{len(paths):02d}-{Path(name).stem}.png"
            im.crop((x, y, x + cw, y + ch)).resize((1024, 768), Image.LANCZOS).save(path)
            paths.append(path)
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--photos", type=int, default=8)
    p.add_argument("--style", default="starry_night.jpg")
    p.add_argument("--name", default="cpu-folder-256")
    p.add_argument("--shared", default=None)
    p.add_argument("--weights", default="embedded", help="config.weights: 'embedded', or a weights file")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    root = locate_shared(args.shared)
    config = StyleConfig(size=args.size, weights=args.weights)
    weights = load_weights(config.weights)
    style = root / "images" / args.style
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = crops(root, args.photos, tmp)
        timings = {}

        enable_cache(tmp / "cache", notify=print)
        t0 = time.perf_counter()
        batched = stylize_many(photos, style, config, weights=weights)
        timings["batched"] = time.perf_counter() - t0
        print(f"batched: {timings['batched']:.1f} s", flush=True)

        t0 = time.perf_counter()
        single = [stylize(photo, style, config, weights=weights) for photo in photos]
        timings["one by one"] = time.perf_counter() - t0
        print(f"one by one: {timings['one by one']:.1f} s", flush=True)
        photo = load_image(photos[0])
        nudged = np.clip(photo + np.random.default_rng(0).normal(0, 1e-6, photo.shape).astype(np.float32), 0, 1)
        control = stylize(nudged, style, config, weights=weights)

    diff = np.concatenate([np.abs(a.output - b.output).ravel() for a, b in zip(batched, single)])
    loss_ratio = float(np.mean([a.best_loss / b.best_loss for a, b in zip(batched, single)]))
    nudge = np.abs(control.output - single[0].output)
    machine = f"{platform.machine()}, {cpu_name()}, {jax.devices()[0].device_kind}"
    row = {"size": args.size, "photos": len(photos), "style": args.style, "machine": machine,
           "seconds": {k: round(v, 1) for k, v in timings.items()},
           "photos_per_minute": {k: round(60 * len(photos) / v, 2) for k, v in timings.items()},
           "speedup": round(timings["one by one"] / timings["batched"], 3),
           "compile_seconds": {"batched": round(sum(r.compile_seconds for r in batched), 1),
                               "one by one": round(sum(r.compile_seconds for r in single), 1)},
           "output_difference": {"mean": float(diff.mean()), "max": float(diff.max())},
           "control_difference": {"mean": float(nudge.mean()), "max": float(nudge.max())},
           "best_loss_batched_over_single": loss_ratio}
    out = Path(args.out)
    (out / f"{args.name}.json").write_text(json.dumps(row, indent=1) + "\n")
    (out / f"{args.name}.md").write_text(
        f"# A folder of {len(photos)} photos at {args.size} px, batched against one run per photo\n\n"
        f"Machine: {machine}. Defaults, embedded VGG16, style {args.style}; `python bench/folder.py "
        f"--size {args.size} --photos {len(photos)} --name {args.name}`.\n\n"
        "| | wall time (s) | photos / minute | compile (s) |\n|---|---|---|---|\n"
        + "".join(f"| {k} | {timings[k]:.1f} | {row['photos_per_minute'][k]:.2f} | {row['compile_seconds'][k]} |\n"
                  for k in ("batched", "one by one"))
        + f"\nBatched is {row['speedup']:.2f}x the throughput of one run per photo. The two sides' pictures "
        f"differ by {diff.mean():.3g} per pixel on average ({diff.max():.2g} at most), as much as one photo "
        f"run alone twice, its pixels nudged by 1e-6 the second time ({nudge.mean():.3g}, {nudge.max():.2g} "
        "at most): the batched convolutions round differently from the first step on, and the "
        "optimisation takes trajectories that differ by a rounding apart. The batched final losses are "
        f"{loss_ratio:.4f}x the single runs' on average.\n")
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
