"""A sweep before the batched runner (commit 6d47e5d, its chunk loop in sweep.py) against this
tree's (batch.drive_cells), in one process, alternated run by run, same inputs and seed.

    git worktree add /tmp/nst-6d47e5d 6d47e5d
    python bench/batch_before_after.py --old /tmp/nst-6d47e5d --size 128 --rounds 3

Each run is a whole sweep (4 cells, every default but the size and steps); timed is its
stepping (``seconds - compile_seconds``), compared by the median of the per-round ratios
new / old; the pictures of the two must be bit-identical.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nst_jax.config import StyleConfig  # noqa: E402
from old_tree import import_old  # noqa: E402
from nst_jax.sweeps import sweep  # noqa: E402
from nst_jax.weights import load_weights  # noqa: E402
from quality import locate_shared  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="a worktree of the commit before")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--shared", default=None)
    args = p.parse_args()
    old = import_old(Path(args.old))
    old_sweep = importlib.import_module("nst_old.sweep").sweep
    root = locate_shared(args.shared)
    content, style = root / "images" / "tubingen.jpg", root / "images" / "starry_night.jpg"
    betas = [5.0, 10.0, 20.0, 40.0]
    config = StyleConfig(size=args.size, steps=args.steps, scales=())
    old_config = old.StyleConfig(size=args.size, steps=args.steps, scales=())
    weights = load_weights(config.weights)
    old_weights = importlib.import_module("nst_old.weights").load_weights(old_config.weights)
    times = {"old": [], "new": []}
    pictures = {}
    for r in range(args.rounds):
        for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
            result = (old_sweep(content, style, old_config, betas, weights=old_weights) if side == "old"
                      else sweep(content, style, config, betas, weights=weights))
            times[side].append(result.seconds - result.compile_seconds)
            pictures[side] = np.asarray(result.outputs)
            print(f"round {r} {side}: {times[side][-1]:.2f} s stepping, {result.compile_seconds:.2f} s compile",
                  flush=True)
    ratios = [n / o for n, o in zip(times["new"], times["old"])]
    print(f"median stepping: old {statistics.median(times['old']):.2f} s, new {statistics.median(times['new']):.2f} s;"
          f" median ratio new / old {statistics.median(ratios):.3f}; pictures bit-identical: "
          f"{np.array_equal(pictures['old'], pictures['new'])}", flush=True)


if __name__ == "__main__":
    main()
