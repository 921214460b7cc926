"""Does a longer L-BFGS history, or a low-pass initial curvature, reach the target sooner?

Evaluations and seconds of lbfgs-backtrack to the tutorial L-BFGS's lowest loss at 512 px
(8.151e5, bench/results/cpu-target-512*.md), for several L-BFGS history sizes and corner
frequencies of config.precondition (precondition.py; 0: plain L-BFGS). Prints one
markdown row per pair, one run after the other:

    python bench/lbfgs_memory.py --memory 10,40,100 --corners 0       # cpu-lbfgs-memory-512.md's rows
    python bench/lbfgs_memory.py --memory 10 --corners 0,0.05,0.1,0.2  # cpu-precondition-512.md

(cpu-lbfgs-memory-512.md came from an earlier version of this script: the same runs,
printed without the f0 column.)
"""
import argparse
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import optax  # noqa: E402
import run as R  # noqa: E402

TARGET = 815147.375
p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--memory", default="10", help="L-BFGS history sizes (optax's default: 10)")
p.add_argument("--corners", default="0", help="config.precondition values")
p.add_argument("--max-evals", type=int, default=300)
args = p.parse_args()
scale_by_lbfgs = optax.scale_by_lbfgs  # step.lbfgs looks it up at each call: patched per row
c, s = R.images(512)
w = R.weights_for("vgg16")
print("| history | f0 | evaluations to the target | seconds | s per evaluation | best loss |")
print("|---|---|---|---|---|---|")
for m in map(int, args.memory.split(",")):
    for corner in map(float, args.corners.split(",")):
        optax.scale_by_lbfgs = functools.partial(scale_by_lbfgs, memory_size=m)
        impl = R.JaxImpl(w, R.BENCH.replace(size=512, optimizer="lbfgs-backtrack", steps=2 * args.max_evals,
                                            precondition=corner), c, s)
        R.sync(impl())
        impl.reset()
        t0, best, reached = time.perf_counter(), float("inf"), None
        while impl.evals < args.max_evals:
            impl()
            best = min(best, impl.last_loss)
            if best <= TARGET:
                reached = impl.evals
                break
        dt = time.perf_counter() - t0
        print(f"| {m} | {corner:g} | {reached} | {dt:.1f} | {dt / max(impl.evals, 1):.2f} | {best:.4g} |",
              flush=True)
