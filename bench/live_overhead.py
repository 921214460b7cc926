"""What watching a run costs the run: step times with and without a live page.

    python bench/live_overhead.py                      # 192 px, Adam, 5 rounds
    python bench/live_overhead.py --browser /usr/bin/chromium

The same stylize() (embedded VGG16, the bundled samples, one scale, Adam, one step per
compiled call) is timed two ways:

- **alternating**: one long run with a LiveView, a client (a process of its own) polling it as the page does
  (/state about once a step, /image.jpg whenever the run has moved on) for ``--block``
  steps, then idle for as many, and so on; the steps of the two halves are compared. One
  process, one compiled program, and a machine's drift falls on both halves alike. With
  ``--browser``, again with the page itself in headless Chromium (frozen while idle).
- **runs**: whole runs taking turns in every round: ``none`` (no view), ``poller`` (the
  view and that client) and, with ``--browser``, ``chromium`` (the page itself in headless
  Chromium on the same cores: the server's cost and the browser's).

A run's step time is the median time between its compiled calls after a warm-up (the
first calls hold the compile). The server's threads' CPU time is counted too, the steadier
measure on a machine shared with other work. Writes a Markdown table (``--out``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nst_jax import live  # noqa: E402
from nst_jax.config import StyleConfig  # noqa: E402
from nst_jax.live import LiveView  # noqa: E402
from nst_jax.record import environment  # noqa: E402
from nst_jax.run import stylize  # noqa: E402
from nst_jax.weights import load_weights  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "nst_jax" / "samples"
WARMUP = 3  # calls left out of a run's step time
POLL_S = (0.25, 2.0)  # the page polls about once a step, within these seconds (nst_jax/static/live.html)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SERVER_CPU = [0.0]  # seconds of CPU the server's threads spent answering


def counted(answer):
    """A request handler that adds its thread's CPU time to SERVER_CPU."""
    def timed(self, *args, **kw):
        t0 = time.thread_time()
        try:
            return answer(self, *args, **kw)
        finally:
            SERVER_CPU[0] += time.thread_time() - t0
    return timed


def poll_like_the_page(url: str, stop, on, counts) -> None:
    """Run in a process of its own, as a browser would be (not competing for the run's GIL)."""
    since, shown = 0, -1
    while not stop.is_set():
        if not on.wait(0.05):
            continue
        with urllib.request.urlopen(f"{url}state?since={since}") as answer:
            state = json.loads(answer.read())
        counts["state"] += 1
        since = state["next"]
        if state["version"] != shown and state["version"] > 0:
            shown = state["version"]
            with urllib.request.urlopen(f"{url}image.jpg?v={shown}") as answer:
                answer.read()
            counts["image"] += 1
        rate = state["steps_per_second"]
        stop.wait(min(POLL_S[1], max(POLL_S[0], 1 / rate if rate else POLL_S[0])))


def processes_cpu(word: str) -> float:
    """CPU seconds so far of this machine's processes whose command line holds ``word``
    (Linux /proc; the browser runs as several)."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if word.encode() not in f.read():
                    continue
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def show_in_chromium(url: str, browser: str, stop: threading.Event, on: threading.Event,
                     ready: threading.Event) -> None:
    """The page in headless Chromium, frozen (its timers stopped: no polls, no drawing)
    while ``on`` is clear."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser, args=FLAGS)
        page = chromium.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url)
        devtools = page.context.new_cdp_session(page)
        ready.set()
        shown = True
        while not stop.is_set():
            if on.is_set() != shown:
                shown = on.is_set()
                devtools.send("Page.setWebLifecycleState", {"state": "active" if shown else "frozen"})
            stop.wait(0.05)
        chromium.close()


def watched_run(config: StyleConfig, weights, viewer: str, block: int = 0, browser: str | None = None) -> dict:
    """One run; ``viewer``: none, poller or chromium. ``block`` > 0: the client watches for
    ``block`` steps, then idles for as many (Chromium: the page frozen). Returns each step's seconds, whether
    the client was polling during it, the client's counts and the server's CPU seconds."""
    calls, polling = [], []
    SERVER_CPU[0] = 0.0
    view = LiveView() if viewer != "none" else None
    spawn = multiprocessing.get_context("spawn")
    stop, on, ready, client = spawn.Event(), spawn.Event(), threading.Event(), None
    counts = spawn.Manager().dict(state=0, image=0) if viewer == "poller" else {"state": 0, "image": 0}
    on.set()
    if view is not None:
        view.begin(total=config.steps, sizes=config.sizes, steps_per_scale=config.steps)
        if viewer == "poller":
            client = spawn.Process(target=poll_like_the_page, args=(view.url, stop, on, counts))
        else:
            client = threading.Thread(target=show_in_chromium, args=(view.url, browser, stop, on, ready))
        client.start()
        if viewer == "chromium":
            ready.wait(120)

    def callback(progress):
        calls.append(time.perf_counter())
        polling.append(on.is_set())
        if view is not None:
            view.progress(progress)
        if block and progress.step % block == 0:
            (on.clear if on.is_set() else on.set)()

    browser_cpu = processes_cpu(browser) if viewer == "chromium" else 0.0
    try:
        stylize(SAMPLES / "content.jpg", SAMPLES / "style.jpg", config, weights=weights, callback=callback)
        browser_cpu = processes_cpu(browser) - browser_cpu if viewer == "chromium" else 0.0
    finally:
        stop.set()
        if client is not None:
            client.join(120)
        if view is not None:
            view.close()
    # the step between calls i - 1 and i ran with the client as callback i - 1 left it: polling[i]
    return {"seconds": np.diff(calls)[WARMUP:], "polling": np.array(polling[1:])[WARMUP:], "counts": dict(counts),
            "server_cpu": SERVER_CPU[0], "browser_cpu": browser_cpu, "run_seconds": calls[-1] - calls[0]}


def paired_ratio(seconds: np.ndarray, watched: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Watched / idle step time over adjacent blocks: each watched block's mean step over the
    mean of the idle blocks either side, so slow drift cancels; (median of those ratios, and
    a 95% bootstrap interval of the median)."""
    edges = np.flatnonzero(np.diff(watched.astype(int))) + 1
    blocks = [(w[0], s.mean()) for w, s in zip(np.split(watched, edges), np.split(seconds, edges))]
    ratios = [m / np.mean([blocks[i - 1][1], blocks[i + 1][1]])
              for i, (w, m) in enumerate(blocks) if w and 0 < i < len(blocks) - 1]
    ratios = np.array(ratios)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(ratios, (2000, len(ratios))), axis=1)
    return float(np.median(ratios)), float(np.quantile(medians, 0.025)), float(np.quantile(medians, 0.975))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--steps", type=int, default=40, help="steps of each whole run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alternate", type=int, default=200, help="steps of the alternating run (0: none)")
    parser.add_argument("--block", type=int, default=5, help="steps per half of the alternating run")
    parser.add_argument("--browser", help="a Chromium binary: adds the chromium condition")
    parser.add_argument("--out", type=Path, default=Path("bench/results/live-overhead-cpu-2c.md"))
    args = parser.parse_args()

    live._Handler._answer = counted(live._Handler._answer)
    config = StyleConfig(size=args.size, steps=args.steps, optimizer="adam", scales=(), steps_per_call=1)
    weights = load_weights("embedded")
    env = environment()
    load_before = os.getloadavg()
    lines = [f"# Step time with and without a live page ({args.size} px)", "",
             f"`python bench/live_overhead.py --size {args.size} --steps {args.steps} --rounds {args.rounds} "
             f"--alternate {args.alternate} --block {args.block}{' --browser ' + args.browser if args.browser else ''}`"
             f" on {date.today()}: {env['machine']['cpu']}, {env['machine']['cpus']} cores, "
             f"{env['devices']['platform']}, jax {env['versions']['jax']}, Python {env['versions']['python']}. "
             f"stylize() of the bundled samples at {args.size} px, embedded VGG16, Adam, one scale, one step per "
             "call. The client polls as the page does: /state about once a step (every 0.25 to 2 s), the "
             "picture whenever the run has moved on.", ""]

    if args.alternate:
        lines += [f"**Alternating**: one run of {args.alternate} steps each, the viewer watching for {args.block} "
                  f"steps, then idle for {args.block}, and so on:", "",
                  "| viewer | steps idle / watched | idle ms, median (mean) | watched ms, median (mean) | "
                  "watched / idle, median (mean) | adjacent blocks: watched / idle, median [95% interval] | "
                  "CPU per s of run: server, browser |", "|---|---|---|---|---|---|---|"]
        for viewer in ["poller"] + (["chromium"] if args.browser else []):
            run = watched_run(config.replace(steps=args.alternate), weights, viewer, block=args.block,
                              browser=args.browser)
            on, off = run["seconds"][run["polling"]], run["seconds"][~run["polling"]]
            print(f"alternating {viewer}: watched {np.median(on) * 1e3:.1f}, idle {np.median(off) * 1e3:.1f} ms",
                  flush=True)
            paired = paired_ratio(run["seconds"], run["polling"])
            lines.append(f"| {viewer} | {len(off)} / {len(on)} | {np.median(off) * 1e3:.1f} ({np.mean(off) * 1e3:.1f})"
                         f" | {np.median(on) * 1e3:.1f} ({np.mean(on) * 1e3:.1f}) | {np.median(on) / np.median(off):.3f}"
                         f" ({np.mean(on) / np.mean(off):.3f}) | {paired[0]:.3f} [{paired[1]:.3f}, {paired[2]:.3f}] | "
                         f"{1e3 * run['server_cpu'] / run['run_seconds']:.1f} ms, "
                         f"{1e3 * run['browser_cpu'] / run['run_seconds']:.0f} ms |")
        lines.append("")

    viewers = ["none", "poller"] + (["chromium"] if args.browser else [])
    times = {v: [] for v in viewers}
    cpu = {v: [] for v in viewers}
    for r in range(args.rounds):
        for viewer in viewers[r % len(viewers):] + viewers[: r % len(viewers)]:  # another first each round
            run = watched_run(config, weights, viewer, browser=args.browser)
            times[viewer].append(float(np.median(run["seconds"])))
            cpu[viewer].append(run["server_cpu"] / run["run_seconds"])
            print(f"round {r + 1} {viewer}: {times[viewer][-1] * 1e3:.1f} ms per step {run['counts']}", flush=True)
    if args.rounds:
        base = statistics.median(times["none"])
        lines += [f"**Whole runs** of {args.steps} steps, the viewers taking turns in each round (a run's step "
                  f"time: the median after its first {WARMUP} calls):", "",
                  "| viewer | ms per step, each round | median | vs none | server CPU, ms per s of run |",
                  "|---|---|---|---|---|"]
        for viewer in viewers:
            median = statistics.median(times[viewer])
            lines.append(f"| {viewer} | {', '.join(f'{s * 1e3:.1f}' for s in times[viewer])} | {median * 1e3:.1f} "
                         f"| {100 * (median / base - 1):+.1f}% | {1e3 * statistics.median(cpu[viewer]):.1f} |")
        lines.append("")
    load_after = os.getloadavg()
    lines.append(f"Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
