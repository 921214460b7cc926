"""The Adam step before the run-driver redesign (commit ea7759a) against this tree's, in one
process, alternated call by call, so the machine's drift falls on both alike.

    git worktree add /tmp/nst-ea7759a ea7759a
    python bench/before_after.py --old /tmp/nst-ea7759a --size 256 --rounds 40

The old tree's package is imported under another name (``nst_old``). Each side is timed as
its own bench times it: ea7759a's ``JaxImpl`` (the jitted step, the evaluation count read
back, synchronised on the loss) and this tree's (one call of the driver, ``drive``, with one
step per call). Also times each compiled step alone (synchronised on all its outputs), and
prints the optimised HLO's operation counts and XLA's cost analysis of both steps. Rounds
go old, new, new, old, ...; reported are the medians and the median of the per-round
ratios new / old.
"""

from __future__ import annotations

import argparse
import importlib
import re
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402  (this tree's bench: images, weights, JaxImpl)
from old_tree import import_old  # noqa: E402

OPS = ("convolution", "dot", "reduce", "fusion", "copy", "transpose")


class OldImpl:
    """ea7759a's bench JaxImpl, call for call."""

    def __init__(self, optimize, config, content, style, weights):
        self.model, self.vars, self.targets, start, _ = optimize.prepare(content, style, config, weights)
        self.opt = optimize.make_optimizer(config.optimizer, config.learning_rate)
        self.step = jax.jit(optimize.make_step(self.model, self.opt, config))
        self.w = optimize.loss_weights(config)
        self.state, self.i, self.evals = optimize.init_state(start, self.opt), 0, 0

    def args(self):
        return self.state, self.vars, self.targets, self.w, jnp.asarray(self.i, jnp.int32)

    def __call__(self):
        self.state, metrics = self.step(*self.args())
        self.i += 1
        self.evals += int(metrics.evals)
        return metrics.loss


def hlo_summary(compiled) -> dict:
    text = compiled.as_text()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    out = {op: len(re.findall(rf"= \S+ {op}\(", text)) for op in OPS}
    out.update(gflop=cost["flops"] / 1e9, mb_accessed=cost["bytes accessed"] / 1e6,
               temp_mib=compiled.memory_analysis().temp_size_in_bytes / 2**20)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, type=Path, help="a checkout of commit ea7759a")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=40)
    args = p.parse_args()
    import_old(args.old.resolve())
    optimize, old_config = (importlib.import_module(f"nst_old.{m}") for m in ("optimize", "config"))
    content, style = bench.images(args.size)
    weights = bench.weights_for("vgg16")
    # ea7759a's bench config (its defaults were then Adam from the content, summed content loss).
    old = OldImpl(optimize, old_config.StyleConfig(style_weight=1e6, size=args.size), content, style, weights)
    new = bench.build("jax", "vgg16", args.size, bench.BENCH)

    new_step = jax.jit(new.step)
    record = jnp.asarray(False)
    alone = {"old": [old.state], "new": [new.state]}

    def old_alone():
        alone["old"][0], m = old.step(alone["old"][0], *old.args()[1:])
        return alone["old"][0], m

    def new_alone():
        alone["new"][0], m = new_step(alone["new"][0], new.run.problem, record)
        return alone["new"][0], m

    for name, compiled in (("old", old.step.lower(*old.args()).compile()),
                           ("new", new_step.lower(new.state, new.run.problem, record).compile())):
        print(f"{name} step HLO: {hlo_summary(compiled)}", flush=True)

    pairs = {"bench call": (old, new), "step alone": (old_alone, new_alone)}
    times = {(kind, side): [] for kind in pairs for side in ("old", "new")}
    for fns in pairs.values():
        for fn in fns:
            bench.sync(fn())
            bench.sync(fn())
    for r in range(args.rounds):
        for kind, (old_fn, new_fn) in pairs.items():
            order = (("old", old_fn), ("new", new_fn)) if r % 2 == 0 else (("new", new_fn), ("old", old_fn))
            for side, fn in order:
                t0 = time.perf_counter()
                bench.sync(fn())
                times[kind, side].append(1e3 * (time.perf_counter() - t0))
    for kind in pairs:
        o, n = times[kind, "old"], times[kind, "new"]
        ratio = statistics.median(b / a for a, b in zip(o, n))
        print(f"{kind:>10}: old {statistics.median(o):6.1f} ms  new {statistics.median(n):6.1f} ms  "
              f"median ratio new/old {ratio:.3f}  ({args.rounds} rounds)", flush=True)


if __name__ == "__main__":
    main()
