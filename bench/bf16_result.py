"""Is a bfloat16 result the same picture as the float32 one? Measured, not assumed.

Runs ``stylize`` with the CLI's defaults at ``--size`` twice, ``dtype="float32"`` and
``dtype="bfloat16"`` (convolutions and activations in bf16; Gram matrices, losses and the
image in float32), then reports LPIPS(bf16 result, f32 result) with the AlexNet judge of
``bench/quality.py`` (a network the optimisation never sees), each run's seconds and each
result's distances to the content and the style. The bar: LPIPS < 0.05.

The optimisation is chaotic: two float32 runs whose start images differ by one more 8-bit
rounding (at most 0.5/255 a pixel) also end with their brush strokes in different places.
``--floor`` runs that too, so the bf16 figure can be read against what rounding alone does.

    python bench/bf16_result.py --size 512 --name bf16-cpu
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402
from nst_jax.config import StyleConfig  # noqa: E402
from nst_jax.image import save_image  # noqa: E402
from nst_jax.inputs import prepare  # noqa: E402
from nst_jax.run import stylize  # noqa: E402
from nst_jax.weights import load_weights  # noqa: E402

BAR = 0.05


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--pair", default="tubingen_starry", choices=[x[0] for x in quality.PAIRS])
    p.add_argument("--shared", default=None, help="folder with images/ (default ../shared)")
    p.add_argument("--name", default="bf16-result")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    p.add_argument("--dtypes", default="float32,bfloat16", help="the runs to make (float32 first)")
    p.add_argument("--floor", action="store_true", help="also float32 from the start rounded to 8 bits")
    args = p.parse_args()
    root = quality.locate_shared(args.shared)
    _, c, s, _ = next(x for x in quality.PAIRS if x[0] == args.pair)
    content, style = root / "images" / c, root / "images" / s
    weights = load_weights("embedded")
    out = Path(args.out)
    rows = {}
    for dtype in args.dtypes.split(","):
        t0 = time.perf_counter()
        r = stylize(content, style, StyleConfig(size=args.size, dtype=dtype), weights=weights)
        rows[dtype] = {"image": r.output, "seconds": time.perf_counter() - t0, **quality.score(r.output, content, style)}
        save_image(r.output, out / f"{args.name}-{dtype}.jpg")
        print(f"{dtype}: {rows[dtype]['seconds']:.0f} s", flush=True)
    floor = None
    if args.floor:  # the same start, rounded to 8 bits once more
        config = StyleConfig(size=args.size)
        path = save_image(prepare(content, style, config, weights).start, out / f"{args.name}-start.png")  # 8 bits
        t0 = time.perf_counter()
        r = stylize(content, style, config.replace(init="image", init_image=str(path)), weights=weights)
        path.unlink()
        rows["float32, start rounded"] = {"image": r.output, "seconds": time.perf_counter() - t0,
                                          **quality.score(r.output, content, style)}
        floor = quality.content_distance(r.output, rows["float32"]["image"])
    lpips = (quality.content_distance(rows["bfloat16"]["image"], rows["float32"]["image"])
             if "bfloat16" in rows else None)
    device = jax.devices()[0].device_kind
    lines = [f"# bfloat16 against float32: the whole default run at {args.size} px", "",
             f"`python bench/bf16_result.py --size {args.size} --pair {args.pair} --name {args.name}` on {device}, "
             "embedded VGG16, every other setting the CLI's default. Distances by the AlexNet judge "
             "(bench/quality.py), lower is better.", "",
             "| dtype | seconds | content distance | style distance |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['seconds']:.0f} | {v['content']:.3f} | {v['style']:.3f} |" for k, v in rows.items()]
    if lpips is not None:
        verdict = "the same picture" if lpips < BAR else "a different picture"
        lines += ["", f"LPIPS(bfloat16 result, float32 result) = {lpips:.4f}: {verdict} by the bar of {BAR} "
                  f"({args.name}-float32.jpg and {args.name}-bfloat16.jpg beside this file)."]
    if floor is not None:
        lines += ["", f"LPIPS(float32 from the start rounded to 8 bits once more, float32) = {floor:.4f}: "
                  "what a difference of at most 0.5/255 in the start does to the same float32 run."]
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
