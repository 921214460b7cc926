"""Does a longer L-BFGS history reach the target sooner?

Evaluations and seconds of lbfgs-backtrack to the tutorial L-BFGS's lowest loss at 512 px
(8.151e5, bench/results/cpu-target-512*.md), for several L-BFGS history sizes."""
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import optax
import run as R
TARGET = 815147.375
orig = optax.lbfgs
c, s = R.images(512)
w = R.weights_for("vgg16")
for m in (10, 40, 100):
    optax.lbfgs = functools.partial(orig, memory_size=m)
    impl = R.JaxImpl(w, R.BENCH.replace(size=512, optimizer="lbfgs-backtrack", steps=600), c, s)
    R.sync(impl()); impl.reset()
    t0, best, reached = time.perf_counter(), float("inf"), None
    while impl.evals < 300:
        impl()
        best = min(best, impl.last_loss)
        if best <= TARGET:
            reached = impl.evals
            break
    dt = time.perf_counter() - t0
    print(f"| {m} | {reached} | {dt:.1f} | {dt / max(impl.evals, 1):.2f} | {best:.4g} |", flush=True)
