"""Where one Adam step's time goes: device time per kernel, nst-jax beside PyTorch.

    python bench/profile_step.py --size 1024 --arch vgg19      (what bench/gpu.sh runs)

Runs a few steps of each implementation under its framework's profiler (jax.profiler's
Perfetto trace, torch.profiler) and prints the kernels that take the most device time per
step, grouped by the trace's line (stream) so that nothing is counted twice. Meant for
accelerators; on a CPU the trace holds host threads and says less.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import jax
import torch

from run import BENCH, GPU, build, default_steps_per_call, sync  # bench/run.py's implementations, as timed


def device_time(trace: dict, steps: int, top: int) -> list[str]:
    """Per line of the device's process in a Perfetto trace: total ms per step and the
    ``top`` events by time."""
    meta = [e for e in trace["traceEvents"] if e.get("ph") == "M"]
    procs = {e["pid"]: e["args"]["name"] for e in meta if e.get("name") == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e.get("name") == "thread_name"}
    device = {p for p, n in procs.items() if "GPU" in n or "TPU" in n} or set(procs)
    per_line: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in trace["traceEvents"]:
        if e.get("ph") == "X" and e.get("pid") in device:
            line = f"{procs[e['pid']]} / {threads.get((e['pid'], e.get('tid')), e.get('tid'))}"
            per_line[line][e["name"]] += e.get("dur", 0) / 1e3 / steps
    out = []
    for line, events in sorted(per_line.items(), key=lambda kv: -sum(kv[1].values())):
        out.append(f"{line}: {sum(events.values()):.3f} ms per step, {len(events)} kinds")
        for name, ms in sorted(events.items(), key=lambda kv: -kv[1])[:top]:
            out.append(f"  {ms:8.3f}  {name[:110]}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--arch", default="vgg19")
    p.add_argument("--steps", type=int, default=3, help="profiled calls of each implementation")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--compile-torch", action="store_true")
    args = p.parse_args()
    k = default_steps_per_call()  # steps per call as the bench times them (and compiles: a cache hit)

    jax_impl = build("jax", args.arch, args.size, BENCH, k=k)
    for _ in range(2):
        sync(jax_impl())
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(args.steps):
                sync(jax_impl())
        trace_file = next(Path(d).rglob("perfetto_trace.json.gz"))
        trace = json.loads(gzip.decompress(trace_file.read_bytes()))
    n = args.steps * k
    print(f"== nst-jax, {args.arch} {args.size} px, {n} steps ({jax.devices()[0].device_kind})")
    print("\n".join(device_time(trace, n, args.top)), flush=True)
    del jax_impl

    torch_impl = build("torch-fast", args.arch, args.size, BENCH, args.compile_torch, k)
    for _ in range(2):
        sync(torch_impl())
    activities = [torch.profiler.ProfilerActivity.CUDA if GPU else torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(args.steps):
            sync(torch_impl())
    print(f"== torch fast, {args.arch} {args.size} px, {n} steps (totals over all {n})")
    sort = "cuda_time_total" if GPU else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.top, max_name_column_width=90), flush=True)


if __name__ == "__main__":
    main()
