"""Peak memory and seconds per step against size: whole, remat per block, and tiled.

    python bench/highres.py                                  # the CPU defaults below
    python bench/highres.py --runs plain:1024,tiled-512:2048 # more, where there is time
    python bench/highres.py --runs auto:8192 --steps 0       # tiles as the memory plan chooses
    python bench/highres.py --whole 1024,2048,4096           # whole default runs: process peak against the plan

Each measurement runs in a fresh process (``--one``), so peaks do not mix: VGG19 on
He-initialised weights (speed and memory do not depend on the values), the sample images
at the size, one Adam step (or the optimizer a mode names) compiled whole, then timed.
Per run it records:

- ``runtime_mib``: resident memory after importing jax and nst_jax (the interpreter and
  XLA's libraries, which no estimate counts);
- ``device_peak_mib``: on an accelerator, its own peak memory (what the estimate is then
  compared with);
- ``step_peak_mib``: the peak resident memory during the steps (VmHWM reset after
  compiling, through /proc/self/clear_refs), and ``process_peak_mib`` over the whole
  process (preparing the targets and compiling included);
- ``estimate_mib``: the memory plan's estimate for the run (memory.estimate_bytes), to
  compare with step_peak - runtime; ``xla_temp_mib``: the temporaries XLA planned for the step;
- ``compile_s`` and ``step_s`` (median of ``--steps`` steps after the compiled call's
  first; with ``--steps 0``, the first call, where one step takes minutes).

Writes bench/results/highres-<machine>.json, .md and .png (memory and time against size).

``--whole``: each size is a whole default run of the command (``nst-jax stylize`` with
every default but ``--steps``, every scale of the ladder, the He-initialised ``--arch``
saved as a weights file), in a fresh process; its peak resident memory (the kernel's
maximum RSS of the process: the interpreter, the earlier scales, the compiles, the
files) against the memory plan the run printed, whose largest scale is what it budgets.
Writes highres-whole-<machine>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# mode:size[:tile] runs: whole and remat where they fit in reasonable time on a 2-core CPU;
# fixed 128 px tiles at every size (the crop, and so the network's memory, stays the same);
# 256 px tiles at 512 for the cost of exactness with fewer, larger tiles.
DEFAULT_RUNS = ("plain:128,plain:256,plain:512,remat:256,remat:512,tiled-128:256,tiled-128:512,"
                "tiled-256:512")


def rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) on Linux


def he_weights(arch: str):
    import numpy as np

    from nst_jax.vgg import conv_shapes
    from nst_jax.weights import VGGWeights

    rng = np.random.default_rng(19)
    params = {}
    for name, (c_in, c_out) in conv_shapes(arch).items():
        params[f"{name}.kernel"] = (rng.standard_normal((3, 3, c_in, c_out)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
        params[f"{name}.bias"] = np.zeros(c_out, np.float32)
    return VGGWeights(arch, "torchvision", params, "random", "he-init", "")


def measure_one(mode: str, size: int, arch: str, steps: int) -> dict:
    """One run in this process (a fresh one: see main)."""
    sys.path.insert(0, str(ROOT))
    import jax

    from nst_jax.config import StyleConfig
    from nst_jax.image import load_image
    from nst_jax.inputs import prepare
    from nst_jax.run import compile_chunk
    from nst_jax.step import init_state, make_optimizer, make_step

    runtime = rss_mib()
    base = mode.partition("/")[0]
    tile = int(base.split("-")[1]) if base.startswith("tiled") else "auto" if base == "auto" else 0
    config = StyleConfig(size=size, scales=(), remat=base == "remat", tile=tile, max_memory=None,
                         optimizer=optimizer_of(mode))
    weights = he_weights(arch)
    content = load_image(ROOT / "nst_jax" / "samples" / "content.jpg", size)
    style = load_image(ROOT / "nst_jax" / "samples" / "style.jpg", size)
    run = prepare(content, style, config, weights)
    plan = run.plans[-1]
    h, w = run.content.shape[:2]
    optimizer = make_optimizer(config)
    state = jax.block_until_ready(jax.jit(init_state, static_argnums=(0, 1))(run.objective, optimizer,
                                                                              run.problem, run.start))
    t0 = time.perf_counter()
    compiled = compile_chunk(make_step(run.objective, optimizer), 1, state, run.problem, {})
    compile_s = time.perf_counter() - t0
    analysis = compiled.memory_analysis()
    xla_temp = getattr(analysis, "temp_size_in_bytes", float("nan")) / 2**20 if analysis else float("nan")
    process_peak = rss_mib("VmHWM")
    records = jax.numpy.zeros((1,), bool)
    reset_peak()
    before = rss_mib()
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        state, metrics = compiled(state, run.problem, records)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    step_peak = rss_mib("VmHWM")
    stats = jax.devices()[0].memory_stats() or {}  # an accelerator's own memory (None on CPU)
    device_peak = stats.get("peak_bytes_in_use", float("nan")) / 2**20
    estimate = plan.bytes / 2**20
    tile = plan.tiles.tile if plan.tiles else 0
    return {"mode": mode, "arch": arch, "size": size, "height": h, "width": w, "tile": tile,
            "conv": run.objective.model.conv,
            "tiles": plan.count, "halo": plan.tiles.halo if plan.tiles else 0,
            "runtime_mib": runtime, "before_step_mib": before, "step_peak_mib": step_peak,
            "process_peak_mib": max(process_peak, step_peak), "estimate_mib": estimate,
            "device_peak_mib": device_peak, "device": jax.devices()[0].device_kind,
            "xla_temp_mib": xla_temp, "compile_s": compile_s,
            "first_step_s": times[0], "step_s": statistics.median(times[1:] or times), "steps": steps,
            "loss": float(metrics.loss[0])}


def above_runtime(x: dict) -> float:
    """The step's measured peak that the estimate predicts: an accelerator's own peak, or on
    CPU the resident peak above the runtime."""
    device = x.get("device_peak_mib", float("nan"))
    return device if device == device else x["step_peak_mib"] - x["runtime_mib"]


def machine() -> dict:
    cores = os.cpu_count()
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import jax

    device = jax.devices()[0]
    return {"cpu": name if device.platform == "cpu" else f"{device.device_kind} ({name} host)",
            "cores": cores, "jax": jax.__version__, "date": str(date.today()),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def paper_taps(arch: str) -> tuple[str, ...]:
    """The layers the default config reads, deepest last (what the estimate and tiles need)."""
    sys.path.insert(0, str(ROOT))
    from nst_jax.config import StyleConfig
    from nst_jax.vgg import check_layers

    config = StyleConfig()
    return check_layers(arch, tuple(dict.fromkeys(config.content_layers + config.style_layers)))


def optimizer_of(mode: str) -> str:
    """The optimizer a mode names after a slash (tiled-512/lbfgs-backtrack), else Adam."""
    return mode.partition("/")[2] or "adam"


def work(height: int, width: int, tile: int, arch: str = "vgg19") -> float:
    """Network work of a step over the whole picture's: 1 whole; tiled, the crops' area over
    the picture's x 4/3 (pass 1 adds a forward to the forward and backward of pass 2)."""
    sys.path.insert(0, str(ROOT))
    from nst_jax.tiling import alignment, receptive_radius, tile_grid

    if not tile:
        return 1.0
    taps = paper_taps(arch)
    grid = tile_grid(height, width, tile, receptive_radius(arch, taps), alignment(arch, taps))
    area = sum((t.crop_rows[1] - t.crop_rows[0]) * (t.crop_cols[1] - t.crop_cols[0]) for t in grid)
    return area / (height * width) * 4 / 3


def extrapolate(arch: str, budget_gib: float, runs: list[dict]) -> list[dict]:
    """What the plan (the estimate) says for sizes not measured here (4:3 pictures), and
    the seconds per step it predicts: the largest whole step's seconds per pixel x pixels
    x :func:`work`."""
    sys.path.insert(0, str(ROOT))
    from nst_jax.config import StyleConfig
    from nst_jax.conv import resolve
    from nst_jax.memory import estimate_bytes, plan_memory

    config = StyleConfig()
    conv = resolve(config.conv, config.dtype)
    taps = paper_taps(arch)
    plain = max((x for x in runs if x["mode"] == "plain"), key=lambda x: x["size"], default=None)
    rate = plain["step_s"] / (plain["height"] * plain["width"]) if plain else float("nan")
    rows = []
    for size in (1024, 2048, 4096):
        h, w = size * 3 // 4, size
        plan = plan_memory(arch, h, w, taps, budget=int(budget_gib * 2**30), content_taps=config.content_layers,
                           conv=conv)
        whole = estimate_bytes(arch, h, w, taps, content_taps=config.content_layers, conv=conv)
        factor = work(h, w, plan.tiles.tile if plan.tiles else 0, arch)
        rows.append({"size": f"{w}x{h}", "whole_gib": whole / 2**30, "plan": str(plan), "work": factor,
                     "step_s": rate * h * w * factor})
    return rows


def write_report(r: dict, stem: Path) -> None:
    m = r["machine"]
    lines = [f"# High resolution: memory and time per step ({stem.name})", "",
             f"Machine: {m['cpu']} ({m['cores']} cores, {m['mem_gib']} GiB), jax {m['jax']}, {m['date']}. "
             f"{r['arch']} (He-initialised), the paper's layers (relu4_2; relu1_1..relu5_1), one Adam step "
             "(a mode ending /NAME: that optimizer's step).",
             ""] + [f"Note: {n}" for n in r.get("notes", [])] + ["",
             "| mode | picture | tiles | step peak MiB | above runtime | estimate | estimate / measured | "
             "XLA temp MiB | compile s | s / step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for x in r["runs"]:
        above = above_runtime(x)
        tiles = f"{x['tiles']} x {x['tile']} + {x['halo']}" if x["tile"] else "-"
        lines.append(f"| {x['mode']} | {x['width']}x{x['height']} | {tiles} | {x['step_peak_mib']:.0f} | {above:.0f} | "
                     f"{x['estimate_mib']:.0f} | {x['estimate_mib'] / above:.2f} | {x['xla_temp_mib']:.0f} | "
                     f"{x['compile_s']:.1f} | {x['step_s']:.2f} |")
    lines += ["", "Runtime (interpreter and XLA's libraries, no estimate counts it): "
              + ", ".join(f"{x['runtime_mib']:.0f}" for x in r["runs"][:1]) + " MiB.", ""]
    plain = {x["size"]: x for x in r["runs"] if x["mode"] == "plain"}
    lines += ["## The cost of exactness", "",
              "Step time over the whole picture's step at the same size, against the work the tiles "
              "add (the crops' area over the picture's, x 4/3 for pass 1's forward):", "",
              "| mode | picture | measured | work |", "|---|---|---|---|"]
    for x in r["runs"]:
        if x["mode"] != "plain" and x["size"] in plain:
            lines.append(f"| {x['mode']} | {x['width']}x{x['height']} | {x['step_s'] / plain[x['size']]['step_s']:.2f}x | "
                         f"{work(x['height'], x['width'], x['tile'], x['arch']):.2f}x |")
    lines += ["", "## Planned, not measured: sizes this machine was not asked to run", "",
              f"Budget {r['budget_gib']} GiB (what the plan allowed itself on this machine when the bench ran: 90% "
              "of the memory then available). Seconds per step predicted from the largest whole step's "
              "seconds per pixel x pixels x the tiles' work.", "",
              "| picture | whole, estimated GiB | plan | work | predicted s / step |", "|---|---|---|---|---|"]
    for x in r["planned"]:
        lines.append(f"| {x['size']} | {x['whole_gib']:.1f} | {x['plan']} | {x['work']:.2f}x | {x['step_s']:.0f} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, t, b) = plt.subplots(1, 3, figsize=(15, 4.2))
    for mode in dict.fromkeys(x["mode"] for x in r["runs"]):
        xs = [x for x in r["runs"] if x["mode"] == mode]
        px = [x["width"] * x["height"] / 1e6 for x in xs]
        line, = a.plot(px, [above_runtime(x) for x in xs], "o-", label=f"{mode} measured")
        a.plot(px, [x["estimate_mib"] for x in xs], "x--", color=line.get_color(), label=f"{mode} estimate")
        t.plot(px, [x["xla_temp_mib"] for x in xs], "o-", color=line.get_color(), label=mode)
        b.plot(px, [x["step_s"] for x in xs], "o-", color=line.get_color(), label=mode)
    planned = r.get("planned", [])
    if planned:
        px = [int(x["size"].split("x")[0]) * int(x["size"].split("x")[1]) / 1e6 for x in planned]
        a.plot(px, [x["whole_gib"] * 1024 for x in planned], "s:", mfc="none", color="grey",
               label="whole, estimate only")
        a.plot(px, [float(x["plan"].split("~")[1].split(" GiB")[0]) * 1024 for x in planned], "D:", mfc="none",
               color="black", label="the plan (auto tiles), estimate only")
        a.axhline(r["budget_gib"] * 1024, color="red", lw=0.8, ls="--", label="budget")
    a.set(xlabel="megapixels", ylabel="MiB above the runtime", title="peak memory of one step")
    t.set(xlabel="megapixels", ylabel="MiB", title="XLA's planned temporaries of the step")
    b.set(xlabel="megapixels", ylabel="seconds", title="one step")
    for ax in (a, t, b):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{r['arch']}, {r['machine']['cpu']} ({r['machine']['cores']} cores)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=DEFAULT_RUNS,
                   help="mode:size,... with mode plain, remat, tiled-TILE or auto (the memory plan's "
                        "choice), each optionally /OPTIMIZER (default adam)")
    p.add_argument("--arch", default="vgg19")
    p.add_argument("--steps", type=int, default=2, help="timed steps after the first")
    p.add_argument("--name", default=None, help="results file stem (default: from the machine)")
    p.add_argument("--note", action="append", default=[], help="a line for the report (e.g. a shared machine)")
    p.add_argument("--keep", action="store_true", help="keep the other runs of an earlier results file")
    p.add_argument("--report", action="store_true", help="only rewrite the report of the results file, with the "
                   "estimates of the current memory.py")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    p.add_argument("--whole", default=None, help="sizes of whole default runs (e.g. 1024,2048,4096); "
                   "--steps is then the steps per scale")
    p.add_argument("--one", nargs=2, metavar=("MODE", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one[0], int(args.one[1]), args.arch, args.steps)))
        return
    sys.path.insert(0, str(ROOT))
    from nst_jax.memory import budget_bytes

    m = machine()
    if args.whole:
        import tempfile

        from nst_jax.weights import save as save_weights

        stem = args.out / (args.name or f"highres-whole-cpu-{m['cores']}c")
        result = {"machine": m, "arch": args.arch, "steps": args.steps, "runs": [], "notes": args.note}
        with tempfile.TemporaryDirectory() as folder:
            weights = save_weights(he_weights(args.arch), Path(folder) / f"{args.arch}.safetensors")
            for size in map(int, args.whole.split(",")):
                print(f"whole run {size} px ...", file=sys.stderr, flush=True)
                x = whole_run(size, args.steps, weights, Path(folder))
                print(f"  exit {x['exit']}, peak {x['peak_gib']:.2f} GiB, plan {x['plan']}, {x['seconds']:.0f} s",
                      file=sys.stderr, flush=True)
                result["runs"].append(x)
                stem.parent.mkdir(parents=True, exist_ok=True)
                stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
                write_whole(result, stem)
        return
    name = args.name or f"highres-cpu-{m['cores']}c"
    stem = args.out / name
    if args.report:
        result = json.loads(stem.with_suffix(".json").read_text())
        for x in result["runs"]:
            x["estimate_mib"] = estimate_mib(x)
        result["planned"] = extrapolate(result["arch"], result["budget_gib"], result["runs"])
        return save(result, stem)
    runs = []
    if args.keep and stem.with_suffix(".json").exists():  # an earlier, interrupted or partial run
        runs = json.loads(stem.with_suffix(".json").read_text())["runs"]
    for spec in filter(None, args.runs.split(",")):
        mode, size = spec.split(":")
        runs = [x for x in runs if (x["mode"], x["size"]) != (mode, int(size))]
        print(f"{mode} {size} px ...", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, __file__, "--one", mode, size, "--arch", args.arch,
                              "--steps", str(args.steps)], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            continue
        x = json.loads(out.stdout.strip().splitlines()[-1])
        runs.append(x)
        runs.sort(key=lambda x: (DEFAULT_RUNS.find(x["mode"]), x["size"]))
        print(f"  peak {x['step_peak_mib']:.0f} MiB (runtime {x['runtime_mib']:.0f}, measured "
              f"{above_runtime(x):.0f}, estimate "
              f"{x['estimate_mib']:.0f}), compile {x['compile_s']:.1f} s, {x['step_s']:.2f} s/step",
              file=sys.stderr, flush=True)
        result = {"machine": m, "arch": args.arch, "runs": runs, "notes": args.note,
                  "budget_gib": round(budget_bytes() / 2**30, 1)}
        result["planned"] = extrapolate(args.arch, result["budget_gib"], runs)
        save(result, stem)  # after every run: partial results survive


def whole_run(size: int, steps: int, weights: Path, folder: Path) -> dict:
    """A default ``nst-jax stylize`` at ``size`` in a child process: its peak RSS, exit code,
    seconds, and the memory plan from its record (the largest scale's bytes and the budget)."""
    images = Path(ROOT).parent / "shared" / "images"
    content, style = ((images / "tubingen.jpg", images / "starry_night.jpg") if images.is_dir() else
                      (ROOT / "nst_jax" / "samples" / "content.jpg", ROOT / "nst_jax" / "samples" / "style.jpg"))
    out = folder / f"whole-{size}.png"
    command = [sys.executable, "-m", "nst_jax", "stylize", str(content), str(style), "-o", str(out),
               "--size", str(size), "--steps", str(steps), "--weights", str(weights)]
    log = folder / f"whole-{size}.log"  # a file, not a pipe: nothing is read while the child runs
    t0 = time.perf_counter()
    with open(log, "w") as output:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage: its peak RSS in KiB
    seconds = time.perf_counter() - t0
    record = out.with_suffix(".json")
    memory = json.loads(record.read_text())["memory"] if record.exists() else {"plan": None, "plans": []}
    largest = max(memory["plans"], key=lambda x: x["bytes"], default=None)
    return {"size": size, "steps": steps, "exit": os.waitstatus_to_exitcode(status), "seconds": seconds,
            "peak_gib": usage.ru_maxrss / 2**20, "plan_gib": largest and largest["bytes"] / 2**30,
            "budget_gib": largest and largest["budget"] / 2**30, "plan": memory["plan"] or "",
            "last_lines": log.read_text().strip().splitlines()[-2:]}


def write_whole(result: dict, stem: Path) -> None:
    lines = [f"# Whole default runs: process peak against the memory plan ({stem.name})", "",
             f"Machine: {result['machine']['cpu']} ({result['machine']['cores']} cores, "
             f"{result['machine']['mem_gib']} GiB), jax {result['machine']['jax']}, {result['machine']['date']}. "
             f"`nst-jax stylize` with every default but `--steps {result['steps']}` (each scale of the ladder), "
             f"{result['arch']} (He-initialised weights file), in a fresh process each: "
             f"`python bench/highres.py --whole {','.join(str(x['size']) for x in result['runs'])} "
             f"--steps {result['steps']} --arch {result['arch']}`.", "",
             "Peak: the process's maximum resident memory (the kernel's count). Plan: the largest scale's "
             "estimate in the plan the run printed, and the budget it planned against.", "",
             "| size | plan | peak GiB | peak / plan | budget GiB | exit | seconds |", "|---|---|---|---|---|---|---|"]
    for x in result["runs"]:
        ratio = f"{x['peak_gib'] / x['plan_gib']:.2f}" if x["plan_gib"] else "-"
        budget = f"{x['budget_gib']:.1f}" if x["budget_gib"] else "-"
        lines.append(f"| {x['size']} | {x['plan'] or '-'} | {x['peak_gib']:.1f} | {ratio} | {budget} | {x['exit']} | "
                     f"{x['seconds']:.0f} |")
    lines += [""] + [f"Note: {n}" for n in result.get("notes", [])]
    stem.with_suffix(".md").write_text("\n".join(lines).rstrip() + "\n")


def save(result: dict, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    write_report(result, stem)
    try:
        plot(result, stem.with_suffix(".png"))
    except ImportError:
        pass


def estimate_mib(x: dict) -> float:
    """The current memory plan's estimate for a recorded run."""
    sys.path.insert(0, str(ROOT))
    from nst_jax.config import StyleConfig
    from nst_jax.memory import plan_memory

    return plan_memory(x["arch"], x["height"], x["width"], paper_taps(x["arch"]), budget=2**50, tile=x["tile"],
                       content_taps=StyleConfig().content_layers, optimizer=optimizer_of(x["mode"]),
                       conv=x.get("conv", "lax")).bytes / 2**20  # runs recorded before Winograd: lax


if __name__ == "__main__":
    main()
