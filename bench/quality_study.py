"""Which settings give results that look like the painting? A measured study.

For each variant (a set of config changes) and each content/style pair, one vmapped
``sweep`` over the style weight beta optimises every cell; every output is scored with the
AlexNet judge of ``bench/quality.py`` (a network the optimisation never sees). Writes a
JSON of all scores, a markdown table (per variant and beta: mean distances and how many
pairs beat jcjohnson/neural-style's published outputs) and one contact sheet per variant.

    python bench/quality_study.py --size 512 --variants baseline,scales,scales-avg --out DIR
    python bench/quality_study.py --defaults --name quality-cpu   # the CLI's defaults vs jcjohnson

Fast on a GPU (bench/gpu.sh runs it); on a 2-core CPU use --size 128 to try it out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402
from nst_jax.config import ADAM_ON_SUMMED_LOSS, StyleConfig  # noqa: E402
from nst_jax.image import contact_sheet, resize_longest, save_image  # noqa: E402
from nst_jax.config import scale_ladder  # noqa: E402
from nst_jax.sweeps import sweep  # noqa: E402
from nst_jax.weights import load_weights  # noqa: E402

# Each variant: changes to StyleConfig(size=SIZE, content_norm="mean"); "ladder": the
# sqrt(2) scales up to SIZE; steps are per scale.
VARIANTS = {
    "baseline": dict(steps=300),  # today's optimiser: Adam, lr 0.02, from the content, one scale
    "lr05": dict(steps=300, learning_rate=0.05),
    "scales": dict(steps=150, scales="ladder"),
    "scales-avg": dict(steps=150, scales="ladder", average=0.99),
    "scales-lr05-avg": dict(steps=150, scales="ladder", learning_rate=0.05, average=0.99),
    "scales-noise": dict(steps=150, scales="ladder", init="noise"),
    "scales-avgpool": dict(steps=150, scales="ladder", pooling="avg"),
    "scales-tv": dict(steps=150, scales="ladder", tv_weight=1e-4),
    "scales-lbfgs": dict(steps=100, scales="ladder", optimizer="lbfgs-fixed"),
    # style_norm "mean" = each layer's term divided by N_l^2 (Gatys et al.'s own code's
    # 1e3/N_l^2 weights, jcjohnson's Gram / (C H W)): shallow layers count far more
    "scales-meannorm": dict(steps=150, scales="ladder", style_norm="mean"),
    "scales-meannorm-noise": dict(steps=150, scales="ladder", style_norm="mean", init="noise"),
    "scales-recoloured": dict(steps=150, scales="ladder", init="recoloured"),
    "scales-recoloured-avgpool": dict(steps=150, scales="ladder", init="recoloured", pooling="avg"),
    "scales-recoloured-relative": dict(steps=150, scales="ladder", init="recoloured", style_norm="relative"),
    "scales-recoloured-avg": dict(steps=150, scales="ladder", init="recoloured", average=0.99),
    "scales-recoloured-backtrack": dict(steps=150, scales="ladder", init="recoloured", optimizer="lbfgs-backtrack"),
    "scales-recoloured-lr05": dict(steps=150, scales="ladder", init="recoloured", learning_rate=0.05),
    "scales-recoloured-backtrack-relative": dict(steps=150, scales="ladder", init="recoloured",
                                                 optimizer="lbfgs-backtrack", style_norm="relative"),
    # The third round's defaults (StyleConfig(size=...) then: no detail band), and with a
    # total-variation prior: the stylised 256 px sample has J_tv ~4e3 against the photo's
    # ~4e2, beside a loss of O(10)
    "defaults": dict(steps=100, scales="ladder"),
    "defaults-tv3e-4": dict(steps=100, scales="ladder", tv_weight=3e-4),
    "defaults-tv1e-3": dict(steps=100, scales="ladder", tv_weight=1e-3),
    "defaults-tv3e-3": dict(steps=100, scales="ladder", tv_weight=3e-3),
    # The fourth round: each scale starts with the start image's fine band put back
    "detail": dict(steps=100, scales="ladder", detail=1.0),
    # The fifth: and L-BFGS's directions low-passed (precondition.py)
    "precondition": dict(steps=100, scales="ladder", detail=1.0, precondition=0.1),
}
OLD_DEFAULT = StyleConfig(**ADAM_ON_SUMMED_LOSS, steps=300, log_every=10**6)
OLD_PROBE = 10
BETAS = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def variant_config(name: str, size: int, steps_factor: float = 1.0) -> StyleConfig:
    changes = dict(VARIANTS[name])
    changes["steps"] = max(1, round(changes["steps"] * steps_factor))
    if changes.get("scales") == "ladder":
        changes["scales"] = scale_ladder(size)
    # detail and precondition 0 unless a variant sets them: the rounds before the fourth ran
    # without the band, those before the fifth with plain L-BFGS
    return StyleConfig(size=size, content_norm="mean", log_every=10**6,
                       **{"detail": 0.0, "precondition": 0.0, **changes})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--betas", default=",".join(f"{b:g}" for b in BETAS))
    p.add_argument("--pairs", default=",".join(p[0] for p in quality.PAIRS))
    p.add_argument("--weights", default="embedded")
    p.add_argument("--shared", default=None, help="folder with images/ and reference/ (default ../shared)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "quality-study"))
    p.add_argument("--steps-factor", type=float, default=1.0, help="scale every variant's steps (tryouts)")
    p.add_argument("--budget", type=float, default=float("inf"), help="stop starting variants after this many s")
    p.add_argument("--defaults", action="store_true",
                   help="run stylize() with the CLI's defaults on every pair; write <name>.md/.png")
    p.add_argument("--name", default="quality", help="report name with --defaults")
    args = p.parse_args()
    pairs = [p for p in quality.PAIRS if p[0] in args.pairs.split(",")]
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if not pairs or unknown:
        sys.exit(f"--pairs takes {[p[0] for p in quality.PAIRS]}; --variants takes {list(VARIANTS)}")
    if args.defaults:
        return run_defaults(args, pairs)
    root = quality.locate_shared(args.shared)
    refs = {r["pair"]: r for r in quality.reference_scores(root)}
    weights = load_weights(args.weights)
    betas = [float(b) for b in args.betas.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"device": str(jax.devices()[0].device_kind), "size": args.size, "betas": betas, "rows": []}
    t_start = time.perf_counter()
    for name in args.variants.split(","):
        if time.perf_counter() - t_start > args.budget:
            print(f"budget spent: skipping {name} and after", flush=True)
            break
        config = variant_config(name, args.size, args.steps_factor)
        thumbs, labels = [], []
        for pair, c, s, _ in pairs:
            t0 = time.perf_counter()
            r = sweep(root / "images" / c, root / "images" / s, config, betas, weights=weights)
            seconds = time.perf_counter() - t0
            for b, beta in enumerate(betas):
                scores = quality.score(r.outputs[b], root / "images" / c, root / "images" / s)
                row = {"variant": name, "pair": pair, "beta": beta, **scores,
                       "pass": quality.passes(scores, refs[pair]), "sweep_seconds": seconds,
                       "compile_seconds": r.compile_seconds, "cells": len(betas)}
                results["rows"].append(row)
                thumbs.append(resize_longest(r.outputs[b], 256))
                save_image(r.outputs[b], out / f"{name}-{pair}-b{beta:g}.png")
            labels.append(pair)
            print(f"{name:>16} {pair:<20} " + "  ".join(
                f"b{x['beta']:g}: c{x['content']:.3f} s{x['style']:.3f}{'*' if x['pass'] else ''}"
                for x in results["rows"][-len(betas):]) + f"  ({seconds:.1f} s, compile {r.compile_seconds:.1f} s)",
                flush=True)
            (out / "study.json").write_text(json.dumps(results, indent=1))
        h = min(t.shape[0] for t in thumbs)
        thumbs = [t[:h] for t in thumbs]
        save_image(contact_sheet(thumbs, labels, [f"beta {b:g}" for b in betas], title=f"{name} ({args.size} px)"),
                   out / f"sheet-{name}.png")
    write_table(results, refs, out / "study.md")
    print(f"wrote {out}", flush=True)


def run_defaults(args, pairs) -> None:
    """Every pair with ``StyleConfig(size=--size)``, i.e. what ``nst-jax stylize --size N``
    does with nothing else given; timed, scored, written as a table and a figure. In the same
    run, the old default (300 Adam steps at full size from the content image, beta 1e6 on the
    paper's sum-normalised content loss) is timed over OLD_PROBE steps, compile apart, so
    "no slower than before" compares figures of one machine and one run."""
    from nst_jax.run import stylize

    root = quality.locate_shared(args.shared)
    weights = load_weights(args.weights)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    rows = []
    for pair, c, s, _ in pairs:
        t0 = time.perf_counter()
        result = stylize(root / "images" / c, root / "images" / s, StyleConfig(size=args.size), weights=weights)
        seconds = time.perf_counter() - t0
        rows.append({"pair": pair, "ours": result.output, "ours_seconds": seconds})
        save_image(result.output, Path(args.out) / f"{args.name}-{pair}.png")
        print(f"{pair}: {seconds:.0f} s (scored in the report below)", flush=True)
    c, s = pairs[0][1], pairs[0][2]
    old = OLD_DEFAULT.replace(size=args.size)
    probe = stylize(root / "images" / c, root / "images" / s, old.replace(steps=OLD_PROBE), weights=weights)
    per_step = (probe.seconds - probe.compile_seconds) / OLD_PROBE
    note = (f"Old default (300 Adam steps at {args.size} px from the content), timed in the same run: "
            f"{per_step:.2f} s per step, so {300 * per_step:.0f} s for 300 steps (compile apart: "
            f"{probe.compile_seconds:.0f} s).")
    md, png = quality.write_report(rows, args.out, args.name, root)
    md.write_text(md.read_text() + "\n" + note + "\n")
    print(md.read_text(), flush=True)


def write_table(results: dict, refs: dict, path: Path) -> None:
    lines = [f"# Quality study at {results['size']} px on {results['device']}", "",
             "Per variant and beta: content / style distance per pair (AlexNet judge; lower is "
             "better; * = beats jcjohnson's published output by the harness's rule).", "",
             "jcjohnson: " + ", ".join(f"{p} c {r['content']:.3f} s {r['style']:.3f}" for p, r in refs.items()), "",
             "| variant | beta | " + " | ".join(refs) + " | passes | seconds per sweep |",
             "|---|---|" + "---|" * len(refs) + "---|---|"]
    rows = results["rows"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        for beta in results["betas"]:
            cells = [r for r in rows if r["variant"] == variant and r["beta"] == beta]
            if not cells:
                continue
            by = {r["pair"]: r for r in cells}
            lines.append(f"| {variant} | {beta:g} | " + " | ".join(
                f"{by[p]['content']:.3f} / {by[p]['style']:.3f}{'*' if by[p]['pass'] else ''}" if p in by else "-"
                for p in refs) + f" | {sum(r['pass'] for r in cells)}/{len(cells)} | "
                f"{np.mean([r['sweep_seconds'] for r in cells]):.0f} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
