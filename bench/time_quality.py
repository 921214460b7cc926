"""When does the default picture stop changing? Quality against seconds.

Runs ``stylize`` with the defaults (or ``--set`` changes) on a few pairs and keeps the
picture the run would save (its best iterate) every ``--every`` steps, with the seconds
since the command started; afterwards every snapshot is scored with the AlexNet judge
(bench/quality.py). Writes a JSON of the curves and a plot of content and style distance
against seconds, one line per pair, the scale changes marked.

    python bench/time_quality.py --size 512 --pairs tubingen_scream,garden_rhone --every 10
    python bench/time_quality.py --versus steps=50     # the defaults and a variant, same run

Curves of one setting are solid, the ``--versus`` setting's dashed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402
from robustness import PAIRS, cpu_name, parse_set  # noqa: E402

from nst_jax.colour import as_rgb  # noqa: E402
from nst_jax.config import StyleConfig  # noqa: E402
from nst_jax.run import stylize  # noqa: E402
from nst_jax.weights import load_weights  # noqa: E402


def curve(content: Path, style: Path, config: StyleConfig, every: int, weights) -> dict:
    """Snapshots of the best iterate every ``every`` steps (and the final output), scored."""
    snaps, t0 = [], time.perf_counter()

    def keep(progress) -> None:
        if progress.step % every == 0 or progress.step == progress.total:
            snaps.append((progress.step, time.perf_counter() - t0, as_rgb(np.asarray(progress.state.best_image))))

    result = stylize(content, style, config, weights=weights, callback=keep)
    total = time.perf_counter() - t0
    points = []
    for step, seconds, image in snaps + [(result.steps, total, result.output)]:
        if min(image.shape[:2]) < quality.MIN_SIDE:
            continue
        points.append({"step": step, "seconds": round(seconds, 2), **quality.score(image, content, style)})
    return {"points": points, "scale_steps": config.steps, "sizes": list(config.sizes), "seconds": total,
            "compile_seconds": result.compile_seconds}


def plot(curves: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = {}
    for label, c in curves.items():
        pair = label.split(" ")[0]
        colour = colours.setdefault(pair, f"C{len(colours)}")
        s = [p["seconds"] for p in c["points"]]
        for ax, key in zip(axes, ("content", "style")):
            ax.plot(s, [p[key] for p in c["points"]], marker=".", label=label, color=colour,
                    linestyle="--" if c.get("versus") else "-")
    for ax, key in zip(axes, ("content", "style")):
        ax.set_xlabel("seconds since the start (compiles included)")
        ax.set_ylabel(f"{key} distance (AlexNet judge; lower is closer)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--pairs", default="tubingen_scream,garden_rhone")
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    p.add_argument("--versus", nargs="*", default=None, metavar="FIELD=VALUE",
                   help="also run each pair with these changes (on top of --set)")
    p.add_argument("--name", default="time-quality")
    p.add_argument("--shared", default=None)
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    root = quality.locate_shared(args.shared)
    pairs = {x[0]: x for x in PAIRS}
    config = StyleConfig(size=args.size).replace(**parse_set(args.set))
    weights = load_weights(config.weights)
    settings = [("", config, False)]
    if args.versus is not None:
        changes = parse_set(args.versus)
        settings.append((" " + ",".join(f"{k}={v}" for k, v in changes.items()), config.replace(**changes), True))
    curves = {}
    for name in args.pairs.split(","):
        _, content, style, _ = pairs[name]
        for suffix, setting, versus in settings:
            label = name + suffix
            curves[label] = curve(root / "images" / content, root / "images" / style, setting, args.every, weights)
            curves[label]["versus"] = versus
            last = curves[label]["points"][-1]
            print(f"{label}: {curves[label]['seconds']:.0f} s, final content {last['content']:.3f} "
                  f"style {last['style']:.3f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(
        {"machine": cpu_name(), "size": args.size, "changes": parse_set(args.set),
         "versus": parse_set(args.versus or []), "curves": curves}, indent=1))
    plot(curves, out / f"{args.name}.png", f"{args.size} px, {cpu_name()}")
    print(f"wrote {out / args.name}.json and .png", flush=True)


if __name__ == "__main__":
    main()
