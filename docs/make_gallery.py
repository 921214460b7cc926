"""The README's gallery sheet: for each pair with a published result, the painting, the
published result and ours at 512 px, each scored by the AlexNet judge.

    python docs/make_gallery.py [--rows avg20] [--shared ../shared]   # writes docs/gallery-references.jpg

Ours are the robustness study's results of the named rows (bench/results/robustness);
the scores are those rows' and the references' at the same size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import quality  # noqa: E402
from robustness import PAIRS, read_rows, reference_scores  # noqa: E402

from nst_jax.image import load_image, save_image  # noqa: E402

SIZE = 512
STUDY = ROOT / "bench" / "results" / "robustness"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="avg20", help="the robustness rows' name whose results to show")
    p.add_argument("--shared", default=None)
    args = p.parse_args()
    root = quality.locate_shared(args.shared)
    rows = {r["pair"]: r for r in read_rows(STUDY / "rows.jsonl") if r["name"] == args.rows and r["size"] == SIZE}
    pairs = [x for x in PAIRS if x[3] is not None and x[0] in rows]
    if not pairs:
        sys.exit(f"--rows: no {SIZE} px results named {args.rows!r} of a pair with a published result")
    refs = reference_scores(root, pairs, [SIZE], STUDY)
    sheet = []
    for pair, _, style, ref in pairs:
        ours, theirs = rows[pair], refs[pair, SIZE]
        sheet.append((pair.replace("_", " + "), [
            (load_image(root / "images" / style), "painting"),
            (load_image(root / ref), f"published: c {theirs['content']:.3f} s {theirs['style']:.3f}"),
            (load_image(STUDY / "images" / f"{args.rows}-{SIZE}-{pair}.png"),
             f"nst-jax: c {ours['content']:.3f} s {ours['style']:.3f}")]))
    out = DOCS / "gallery-references.jpg"
    save_image(quality.figure(sheet, cell=300), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
