"""What watching a run costs the run: step times with and without a live page.

    python bench/live_overhead.py                      # 192 px, 40 Adam steps, 5 rounds
    python bench/live_overhead.py --browser /usr/bin/chromium

Runs the same stylize() (embedded VGG16, the bundled samples, one scale, Adam, one step
per compiled call) again and again, the conditions taking turns in every round so that
a machine's drift hits them alike:

- ``none``: no live view (the callback only notes the time);
- ``poller``: a LiveView and a client polling it as the page does: /state four times a
  second, /image.jpg whenever the run has moved on (the server's whole cost);
- ``chromium`` (with ``--browser``): the real page in headless Chromium on the same
  machine (the server's cost and the browser's).

A run's step time is the median time between its compiled calls after a warm-up (the
first calls hold the compile). The server's own CPU time (its threads', summed over the
requests it answered) is counted too: on a machine shared with other work that is the
steadier measure of its cost. Writes a Markdown table (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
POLL_S = 0.25  # the page's poll interval (nst_jax/static/live.html)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def poll_like_the_page(url: str, stop: threading.Event, counts: dict) -> None:
    since, shown = 0, -1
    while not stop.is_set():
        with urllib.request.urlopen(f"{url}state?since={since}") as answer:
            state = json.loads(answer.read())
        counts["state"] += 1
        since = state["next"]
        if state["version"] != shown and state["version"] > 0:
            shown = state["version"]
            with urllib.request.urlopen(f"{url}image.png?v={shown}") as answer:
                answer.read()
            counts["image"] += 1
        stop.wait(POLL_S)


def show_in_chromium(url: str, browser: str, stop: threading.Event, ready: threading.Event) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser, args=FLAGS)
        page = chromium.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url)
        ready.set()
        stop.wait()
        chromium.close()


SERVER_CPU = [0.0]  # seconds of CPU the server's threads spent answering


def counted(answer):
    def timed(self, *args, **kw):
        t0 = time.thread_time()
        try:
            return answer(self, *args, **kw)
        finally:
            SERVER_CPU[0] += time.thread_time() - t0
    return timed


def one_run(mode: str, config: StyleConfig, weights, browser: str | None) -> tuple[float, dict]:
    calls, counts = [], {"state": 0, "image": 0}
    SERVER_CPU[0] = 0.0
    view = LiveView() if mode != "none" else None
    stop, ready, viewer = threading.Event(), threading.Event(), None
    if view is not None:
        view.begin(total=config.steps, sizes=config.sizes, steps_per_scale=config.steps)
        if mode == "poller":
            viewer = threading.Thread(target=poll_like_the_page, args=(view.url, stop, counts))
        else:
            viewer = threading.Thread(target=show_in_chromium, args=(view.url, browser, stop, ready))
        viewer.start()
        if mode == "chromium":
            ready.wait(120)

    def callback(progress):
        calls.append(time.perf_counter())
        if view is not None:
            view.progress(progress)

    try:
        stylize(SAMPLES / "content.jpg", SAMPLES / "style.jpg", config, weights=weights, callback=callback)
    finally:
        stop.set()
        if viewer is not None:
            viewer.join(120)
        if view is not None:
            view.close()
    counts["server_cpu_per_s"] = SERVER_CPU[0] / (calls[-1] - calls[0])
    return float(np.median(np.diff(calls)[WARMUP:])), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--browser", help="a Chromium binary: adds the chromium condition")
    parser.add_argument("--out", type=Path, default=Path("bench/results/live-overhead-cpu-2c.md"))
    args = parser.parse_args()

    live._Handler._answer = counted(live._Handler._answer)
    config = StyleConfig(size=args.size, steps=args.steps, optimizer="adam", scales=(), steps_per_call=1)
    weights = load_weights("embedded")
    modes = ["none", "poller"] + (["chromium"] if args.browser else [])
    load_before = os.getloadavg()
    rows = {m: [] for m in modes}
    counts = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode in modes[r % len(modes):] + modes[: r % len(modes)]:  # a different one first each round
            seconds, seen = one_run(mode, config, weights, args.browser)
            rows[mode].append(seconds)
            counts[mode].append(seen)
            print(f"round {r + 1} {mode}: {seconds * 1e3:.1f} ms per step {seen}", flush=True)
    load_after = os.getloadavg()

    env = environment()
    base = statistics.median(rows["none"])
    lines = [
        f"# Step time with and without a live page ({args.size} px)",
        "",
        f"`python bench/live_overhead.py --size {args.size} --steps {args.steps} --rounds {args.rounds}"
        f"{' --browser ' + args.browser if args.browser else ''}` on {date.today()}: "
        f"{env['machine']['cpu']}, {env['machine']['cpus']} cores, {env['devices']['platform']}, "
        f"jax {env['versions']['jax']}, Python {env['versions']['python']}. Load average "
        f"{load_before[0]:.1f} before and {load_after[0]:.1f} after (other jobs shared the cores).",
        "",
        f"stylize() of the bundled samples at {args.size} px, embedded VGG16, Adam, one scale, one step per call, "
        f"{args.steps} steps; a run's step time is the median time between calls after the first {WARMUP}. "
        "The conditions take turns in every round. poller: a client doing what the page does (state every "
        f"{POLL_S} s, the picture whenever the run moved on); chromium: the page itself in headless Chromium "
        "on the same cores.",
        "",
        "| viewer | ms per step, each round | median | vs none |",
        "|---|---|---|---|",
    ]
    for mode in modes:
        median = statistics.median(rows[mode])
        each = ", ".join(f"{s * 1e3:.1f}" for s in rows[mode])
        lines.append(f"| {mode} | {each} | {median * 1e3:.1f} | {100 * (median / base - 1):+.1f}% |")
    polls = counts["poller"]
    lines += ["", f"The poller made {statistics.median([c['state'] for c in polls]):.0f} state polls and "
              f"{statistics.median([c['image'] for c in polls]):.0f} picture requests a run (median). The "
              "server's threads spent, per second of the run (median over rounds), "
              + "; ".join(f"{1e3 * statistics.median([c['server_cpu_per_s'] for c in counts[m]]):.1f} ms of CPU "
                          f"with {m}" for m in modes if m != "none") + "."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
