"""From command to file: `nst-jax stylize` as a fresh process, with a cold and a warm cache.

Each size runs the command twice in new processes sharing one empty compilation-cache
folder: the first compiles everything (cold), the second finds its programs in the cache
(warm). Reported per run: wall seconds from starting the process to its exit with the file
written, and the compile seconds the command itself prints. Every other option is the
default (embedded VGG16 unless ``--weights``).

    python bench/end_to_end.py --sizes 512 --name e2e-cpu-2c
    python bench/end_to_end.py --sizes 512,1024 --name e2e-gpu      (bench/gpu.sh)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402
from robustness import cpu_name  # noqa: E402

from nst_jax.run import COMPILE_EVENTS  # noqa: E402

FINAL = re.compile(r"(\d+) steps, \d+ loss evaluations in ([\d.]+) s \(compile ([\d.]+) s\)")
# The child counts every program it makes from JAX's own events (run.COMPILE_EVENTS, which
# run.compile_clock sums), whatever the command prints: the same measure for any version of
# nst-jax the child imports.
LAUNCH = f"""import atexit, sys, jax.monitoring
made = [0.0]
def count(event, seconds, **_):
    if event in {sorted(COMPILE_EVENTS)!r}:
        made[0] += seconds
jax.monitoring.register_event_duration_secs_listener(count)
atexit.register(lambda: print(f"ALL_COMPILES {{made[0]:.3f}}", file=sys.stderr))
from nst_jax.console import main; main()"""


def run_once(content: Path, style: Path, size: int, cache: Path, out: Path, extra: list[str]) -> dict:
    """One fresh process: wall seconds to exit, the run's seconds and compile seconds as it
    prints them, and every compile of the process as JAX's events count them."""
    command = [sys.executable, "-c", LAUNCH, "stylize", str(content), str(style), "-o", str(out),
               "--size", str(size), *extra]
    env = {**os.environ, "NST_JAX_CACHE_DIR": str(cache)}
    env.pop("NST_JAX_NO_CACHE", None)
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"the run failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    steps, seconds, compile_seconds = FINAL.search(done.stdout).groups()
    made = re.search(r"ALL_COMPILES ([\d.]+)", done.stderr)
    return {"wall_seconds": round(wall, 2), "run_seconds": float(seconds), "compile_seconds": float(compile_seconds),
            "all_compiles": float(made.group(1)), "steps": int(steps)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="512")
    p.add_argument("--pair", default="tubingen.jpg,starry_night.jpg", help="content,style under images/")
    p.add_argument("--weights", default=None)
    p.add_argument("--set", nargs="*", default=[], metavar="FLAG", help="more stylize options, e.g. --steps 50")
    p.add_argument("--shared", default=None)
    p.add_argument("--name", default="end-to-end")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    root = quality.locate_shared(args.shared)
    content, style = (root / "images" / name for name in args.pair.split(","))
    extra = [*(["--weights", args.weights] if args.weights else []), *args.set]
    device = cpu_name()
    try:
        import jax

        if jax.default_backend() != "cpu":
            device = jax.devices()[0].device_kind
    except ImportError:
        pass
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in map(int, args.sizes.split(",")):
            cache = Path(tmp) / f"cache-{size}"
            for label in ("cold", "warm"):
                row = {"size": size, "cache": label,
                       **run_once(content, style, size, cache, Path(tmp) / f"{size}-{label}.png", extra)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps({"device": device, "options": extra, "rows": rows}, indent=1))
    lines = [f"# nst-jax stylize from command to file ({device})", "",
             f"`python bench/end_to_end.py --sizes {args.sizes}"
             + (f" --set {' '.join(args.set)}" if args.set else "") + "`: a fresh process per run, "
             "one empty compilation-cache folder per size shared by its two runs; every other option the default.", "",
             "| size | cache | wall s (command to file) | run s (printed) | compile s (printed) | every compile s "
             "(JAX's events) | steps |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['size']} | {r['cache']} | {r['wall_seconds']:.1f} | {r['run_seconds']:.1f} | "
              f"{r['compile_seconds']:.1f} | {r['all_compiles']:.1f} | {r['steps']} |" for r in rows]
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / args.name}.md", flush=True)


if __name__ == "__main__":
    main()
