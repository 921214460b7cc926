"""Do the defaults hold beyond the pairs they were chosen on? The robustness study.

Runs ``stylize`` with the defaults (or a named variant) on photo x painting pairs at
several sizes, scores every result with the AlexNet judge of ``bench/quality.py`` (a
network the optimisation never sees), and writes a table and one contact sheet per size.
Where a published result exists for a pair (jcjohnson/neural-style's for the three
tubingen pairs, anishathalye/neural-style's for the couch), it is resized to each size and
scored the same way; ours passes when both its distances are at most the reference's.

    python bench/robustness.py --sizes 256,512 --out bench/results/robustness
    python bench/robustness.py --sizes 1024 --pairs tubingen_starry,garden_scream,couch_balloon
    python bench/robustness.py --variant paper --sizes 256      # the paper's loss, beta 1000
    python bench/robustness.py --variant gap20 --sizes 512      # the defaults before the layer balance

Every result is appended to ``rows.jsonl`` as it is scored; a second run skips what is
already there, so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import quality  # noqa: E402
from nst_jax.config import StyleConfig  # noqa: E402
from nst_jax.image import load_image, resize_longest, save_image  # noqa: E402
from nst_jax.run import stylize  # noqa: E402
from nst_jax.weights import load_weights  # noqa: E402

# (name, content, style, published result or None), paths under <shared>/images and
# <shared>/reference. Every dev-set photo and style appears at least once.
PAIRS = [
    ("tubingen_starry", "tubingen.jpg", "starry_night.jpg", "reference/tubingen_starry.png"),
    ("tubingen_scream", "tubingen.jpg", "the_scream.jpg", "reference/tubingen_scream.png"),
    ("tubingen_shipwreck", "tubingen.jpg", "shipwreck.jpg", "reference/tubingen_shipwreck.png"),
    ("couch_starry", "devset/couch.jpg", "devset/starry_night_anishathalye.jpg",
     "images/devset/ref_couch_starry_anishathalye.jpg"),
    ("garden_scream", "devset/garden.jpg", "the_scream.jpg", None),
    ("stata_venice", "devset/stata.jpg", "devset/venice_house.jpg", None),
    ("skyline_wheat", "devset/skyline_night.jpg", "devset/wheat_field_cypresses.jpg", None),
    ("garden_rhone", "devset/garden.jpg", "devset/starry_night_rhone.jpg", None),
    ("couch_balloon", "devset/couch.jpg", "devset/balloon.jpg", None),
    ("stata_pencil", "devset/stata.jpg", "devset/pencil_sketch.jpg", None),
    ("skyline_oil", "devset/skyline_night.jpg", "devset/oil_strokes.jpg", None),
    ("tubingen_smoke", "tubingen.jpg", "devset/smoke.jpg", None),
    ("couch_venice", "devset/couch.jpg", "devset/venice_house.jpg", None),
]
# Style images that are one object, not a painting: where the deep Grams can paint the
# object itself (a face, an eye) into the photo. Sample photos of scikit-image (written to
# <out>/stress/ on first use; pip install scikit-image) and matplotlib (a portrait of Grace
# Hopper); `--pairs stress` runs them all.
STRESS = [
    ("tubingen_hopper", "tubingen.jpg", "matplotlib:grace_hopper.jpg", None),
    ("garden_hopper", "devset/garden.jpg", "matplotlib:grace_hopper.jpg", None),
    ("tubingen_cat", "tubingen.jpg", "skimage:chelsea", None),
    ("tubingen_cameraman", "tubingen.jpg", "skimage:camera", None),
    ("tubingen_astronaut", "tubingen.jpg", "skimage:astronaut", None),
    ("tubingen_coffee", "tubingen.jpg", "skimage:coffee", None),
    ("tubingen_rocket", "tubingen.jpg", "skimage:rocket", None),
    ("garden_cat", "devset/garden.jpg", "skimage:chelsea", None),
    ("couch_cameraman", "devset/couch.jpg", "skimage:camera", None),
]
# Named sets of config changes; "defaults" changes nothing.
VARIANTS = {
    "defaults": {},
    # the loss of the defaults before the study: the paper's style term, beta 1000
    "paper": dict(content_norm="mean", style_norm="paper", style_weight=1000.0, pooling="max"),
    # the defaults of 2026-12-05 to 2026-12-07: the whole style gap, beta 20, max pooling
    "gap20": dict(balance="gap", style_weight=20.0, pooling="max"),
}


def parse_set(items: list[str]) -> dict:
    """``key=value`` pairs (values read as JSON when they parse, else as strings)."""
    changes = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value
    return changes


def sample_image(name: str, folder: Path) -> Path:
    """scikit-image's sample photo ``name`` (``skimage.data.<name>()``) as a PNG in ``folder``."""
    path = folder / f"{name}.png"
    if not path.exists():
        try:
            from skimage import data
        except ImportError:
            sys.exit("the stress pairs need scikit-image: pip install scikit-image")
        array = getattr(data, name)()
        save_image((np.repeat(array[..., None], 3, -1) if array.ndim == 2 else array) / 255.0, path)
    return path


def read_rows(log: Path) -> list[dict]:
    """The study's rows on record in ``log`` (rows.jsonl), oldest first; none if it is missing."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def where(image: str, root: Path, out: Path) -> Path:
    """An image of a pair as a path: under <shared>/images, or a stress sample."""
    if image.startswith("matplotlib:"):
        import matplotlib
        return Path(matplotlib.get_data_path()) / "sample_data" / image.split(":", 1)[1]
    if image.startswith("skimage:"):
        return sample_image(image.split(":", 1)[1], out / "stress")
    return root / "images" / image


def reference_scores(root: Path, pairs, sizes, out: Path) -> dict:
    """{(pair, size): scores} of each published result resized to each size."""
    scores = {}
    for name, content, style, ref in pairs:
        if ref is None:
            continue
        for size in sizes:
            image = resize_longest(load_image(root / ref), size)
            scores[name, size] = quality.score(image, where(content, root, out), where(style, root, out))
    return scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--pairs", default=",".join(x[0] for x in PAIRS))
    p.add_argument("--variant", default="defaults", choices=sorted(VARIANTS))
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="more config changes")
    p.add_argument("--name", default=None, help="the rows' name (default: the variant's)")
    p.add_argument("--weights", default="embedded")
    p.add_argument("--shared", default=None, help="folder with images/ and reference/ (default ../shared)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "robustness"))
    p.add_argument("--sheet", default=None, metavar="NAME,...",
                   help="the rows the contact sheets show beside the references (default: this run's)")
    args = p.parse_args()
    asked = args.pairs.split(",")
    chosen = [n for n in asked if n != "stress"] + ([x[0] for x in STRESS] if "stress" in asked else [])
    pairs = [x for x in PAIRS + STRESS if x[0] in chosen]
    if len(pairs) != len(set(chosen)):
        sys.exit(f"--pairs takes 'stress' and {[x[0] for x in PAIRS + STRESS]}")
    sizes = [int(s) for s in args.sizes.split(",")]
    changes = {**VARIANTS[args.variant], **parse_set(args.set)}
    name = args.name or args.variant
    root = quality.locate_shared(args.shared)
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    log = out / "rows.jsonl"
    rows = read_rows(log)
    done = {(r["name"], r["size"], r["pair"]) for r in rows}
    shown = args.sheet.split(",") if args.sheet else [name]
    unknown = set(shown) - {r["name"] for r in rows} - {name}
    if unknown:
        sys.exit(f"--sheet: no rows named {', '.join(sorted(unknown))} in {log}")
    weights = load_weights(args.weights)
    machine = f"{platform.processor() or platform.machine()}, {cpu_name()}"
    for size in sizes:
        for pair, content, style, _ in pairs:
            if (name, size, pair) in done:
                continue
            content, style = where(content, root, out), where(style, root, out)
            config = StyleConfig(size=size).replace(**changes)
            t0 = time.perf_counter()
            result = stylize(content, style, config, weights=weights)
            seconds = time.perf_counter() - t0
            save_image(result.output, out / "images" / f"{name}-{size}-{pair}.png")
            scores = quality.score(result.output, content, style)
            row = {"name": name, "size": size, "pair": pair, "changes": changes, "seconds": round(seconds, 1),
                   "compile_seconds": round(result.compile_seconds, 1), "notes": result.notes,
                   "machine": machine, **scores}
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
            print(f"{name} {size} {pair}: content {scores['content']:.3f} style {scores['style']:.3f} "
                  f"({seconds:.0f} s)", flush=True)
    # the table covers every row on record; the sheets, this run's sizes and the chosen rows
    # (the images of earlier runs may be elsewhere)
    refs = reference_scores(root, PAIRS, sorted({r["size"] for r in rows}), out)
    write_table(rows, refs, PAIRS + STRESS, out / "robustness.md")
    for size in sizes:  # the paintings and the one-object style images on sheets of their own
        for pairs_of_sheet, stem in ((PAIRS, "robustness"), (STRESS, "robustness-stress")):
            write_sheet([r for r in rows if r["name"] in shown], refs, pairs_of_sheet, size, root,
                        out / f"{stem}-{size}.jpg")
    print(f"wrote {out}", flush=True)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def verdict(ours: dict, ref: dict | None) -> str:
    if ref is None:
        return ""
    return "pass" if ours["style"] <= ref["style"] and ours["content"] <= ref["content"] else "fail"


def write_table(rows: list[dict], refs: dict, pairs, path: Path) -> None:
    """One line per (name, size, pair): ours, the reference where there is one, the verdict."""
    lines = ["# Robustness study", "",
             "Content / style distance (AlexNet judge, bench/quality.py; lower is better). Reference: "
             "jcjohnson/neural-style's published result (tubingen pairs) or anishathalye/neural-style's "
             "(couch_starry), resized to the size; pass = both distances at most the reference's.", "",
             "| name | size | pair | ours content | ours style | ref content | ref style | verdict | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = {x[0]: i for i, x in enumerate(pairs)}
    for r in sorted((r for r in rows if r["pair"] in order),
                    key=lambda r: (r["name"], r["size"], order[r["pair"]])):
        ref = refs.get((r["pair"], r["size"]))
        lines.append(f"| {r['name']} | {r['size']} | {r['pair']} | {r['content']:.3f} | {r['style']:.3f} | "
                     + (f"{ref['content']:.3f} | {ref['style']:.3f} | " if ref else "- | - | ")
                     + f"{verdict(r, ref)} | {r['seconds']:.0f} |")
    path.write_text("\n".join(lines) + "\n")


def write_sheet(rows: list[dict], refs: dict, pairs, size: int, root: Path, path: Path) -> None:
    """Per pair of ``pairs`` with a row at ``size``: content | style | reference | each name's
    result, with their scores, as ``path``; none written when no pair has a row."""
    out = path.parent
    names = list(dict.fromkeys(r["name"] for r in rows if r["size"] == size))
    figure_rows = []
    for pair, content, style, ref in pairs:
        if not any(r["size"] == size and r["pair"] == pair for r in rows):
            continue
        cells = [(load_image(where(content, root, out)), "photo"), (load_image(where(style, root, out)), "painting")]
        if ref is not None:
            s = refs[pair, size]
            cells.append((load_image(root / ref), f"reference c {s['content']:.3f} s {s['style']:.3f}"))
        for name in names:
            hit = [r for r in rows if r["name"] == name and r["size"] == size and r["pair"] == pair]
            image = out / "images" / f"{name}-{size}-{pair}.png"
            if hit and image.exists():
                cells.append((load_image(image), f"{name} c {hit[-1]['content']:.3f} s {hit[-1]['style']:.3f}"))
        figure_rows.append((pair, cells))
    if figure_rows:
        save_image(quality.figure(figure_rows, cell=240), path)


if __name__ == "__main__":
    main()
