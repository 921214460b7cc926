"""The live page in a real browser: headless Chromium watches a real 32 px run of the
command: the page loads, its picture changes while the run steps, the charts have points,
and it ends saying done with the output's path; Ctrl-C then ends the command with the
run's exit code. A video's page names its frames.

It needs Chromium (Debian: ``apt-get install chromium``; another binary: NST_JAX_CHROMIUM)
and fails when there is none, so a machine without a browser cannot pass it silently;
NST_JAX_NO_BROWSER=1 skips it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nst_jax
from nst_jax.weights import save

pytestmark = pytest.mark.slow  # a real run watched in a browser

SAMPLES = Path(nst_jax.__file__).parent / "samples"
# Flags for a headless browser in a sandboxed, offline machine: no background traffic.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    """The browser to drive, or the test fails saying how to get one."""
    if os.environ.get("NST_JAX_NO_BROWSER", "") not in ("", "0"):
        pytest.skip("NST_JAX_NO_BROWSER is set")
    found = os.environ.get("NST_JAX_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if not found:
        pytest.fail("the browser test needs Chromium: apt-get install chromium (or NST_JAX_CHROMIUM=PATH; "
                    "NST_JAX_NO_BROWSER=1 skips it)")
    return found


# A page script: the picture's address once it has loaded, else null.
SHOWN = ("() => { const i = document.getElementById('image'); "
         "return i.complete && i.naturalWidth > 0 ? i.src : null; }")


def pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as picture:
        return np.asarray(picture.convert("RGB"), np.int16)


@contextlib.contextmanager
def command_with_a_page(command, deadline_s: float = 120):
    """Start ``command`` (which prints the page's URL); yields (process, URL, stderr lines
    so far); at the end, kills it if it still runs and checks its stderr had no traceback."""
    # Ctrl-C ends the linger, as at a terminal: a runner that ignores SIGINT (a background
    # job) would hand that on to the process, which rightly keeps ignoring it. A handler
    # (unlike SIG_IGN) is not inherited: the child starts with the default action.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "JAX_PLATFORMS": "cpu"})
    finally:
        signal.signal(signal.SIGINT, previous)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # never let a pipe fill
    reader.start()
    try:
        deadline = time.monotonic() + deadline_s
        while not (urls := [m.group(1) for m in map(re.compile(r"live: (http://127\.0\.0\.1:\d+/)$").match,
                                                      map(str.strip, lines)) if m]):
            assert proc.poll() is None and time.monotonic() < deadline, f"no URL printed: {lines}"
            time.sleep(0.1)
        yield proc, urls[0], lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        proc.stdout.close()
        proc.stderr.close()
    text = "".join(lines)
    assert "Traceback" not in text and "stays up" in text, text


@contextlib.contextmanager
def page_at(url: str, browser_path: str):
    """Headless Chromium showing ``url``; yields (page, the page's script errors so far)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            problems = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(url)
            yield page, problems
        finally:
            browser.close()


def test_the_page_watches_a_real_run(tmp_path, vgg16_weights):
    browser_path = chromium()
    weights = save(vgg16_weights, tmp_path / "vgg16.safetensors")
    out = tmp_path / "out.png"
    command = [sys.executable, "-m", "nst_jax", "stylize", SAMPLES / "content.jpg", SAMPLES / "style.jpg",
               "-o", out, "--weights", weights, "--size", 32, "--steps", 500, "--optimizer", "adam", "--lr", 0.05,
               "--init", "noise", "--scales", "24,32", "--coarse-steps", 100, "--log-every", 5, "--live",
               "--live-linger", 300]
    with command_with_a_page(command) as (proc, url, lines):
        with page_at(url, browser_path) as (page, problems):
            assert page.title().startswith("nst-jax")

            step = lambda: int(page.inner_text("#step").split("/")[0])  # noqa: E731
            page.wait_for_function(f"() => document.getElementById('status').textContent === 'running' "
                                   f"&& ({SHOWN})()", timeout=120_000)
            first_src, first_step = page.evaluate(SHOWN), step()
            first = page.locator("#image").screenshot()
            page.wait_for_function(f"() => parseInt(document.getElementById('step').textContent) >= "
                                   f"{first_step + 30} && ({SHOWN})() && ({SHOWN})() !== {first_src!r}",
                                   timeout=60_000)
            second, second_step = page.locator("#image").screenshot(), step()
            assert second_step < 600, "the run ended before the second picture"
            assert np.abs(pixels(first) - pixels(second)).max() > 0, "the picture did not change"
            assert page.inner_text("#status") == "running" and page.inner_text("#speed").endswith("steps/s")

            points = page.eval_on_selector_all("#charts canvas", "cs => cs.map(c => Number(c.dataset.points))")
            assert len(points) == 4 and min(points[:3]) > 0, points  # total, content, style

            page.wait_for_function("() => document.getElementById('status').textContent === 'done'",
                                   timeout=120_000)
            assert page.inner_text("#message") == f"saved {out} and its record {tmp_path / 'out.json'}"
            assert page.inner_text("#step") == "600 / 600" and page.inner_text("#eta") == "-"
            assert page.inner_text("#scale") == "2 of 2: 32 px"  # 100 steps at 24 px, then 500 at 32
            page.screenshot(path=tmp_path / "page.png", full_page=True)
            assert problems == []

        proc.send_signal(signal.SIGINT)  # Ctrl-C ends the linger
        assert proc.wait(60) == 0
        assert out.exists() and (tmp_path / "out.json").exists()


def test_the_page_watches_a_video_frame_by_frame(tmp_path, vgg16_weights):
    """A folder of four frames made into numbered frames: the page names the frame being
    made, shows it, and ends with the last frame and the folder's record."""
    browser_path = chromium()
    from nst_jax.image import load_image, save_image

    weights = save(vgg16_weights, tmp_path / "vgg16.safetensors")
    clip, out = tmp_path / "clip", tmp_path / "frames"
    clip.mkdir()
    content = load_image(SAMPLES / "content.jpg", 48)
    for t in range(4):  # the window pans 2 px a frame
        save_image(content[4:28, 2 + 2 * t:34 + 2 * t], clip / f"f{t}.png")
    command = [sys.executable, "-m", "nst_jax", "video", clip, SAMPLES / "style.jpg", "-o", out, "--weights", weights,
               "--size", 32, "--first-steps", 150, "--steps", 100, "--optimizer", "adam", "--lr", 0.05,
               "--live", "--live-linger", 300]
    with command_with_a_page(command) as (proc, url, lines):
        with page_at(url, browser_path) as (page, problems):
            page.wait_for_function(f"() => document.getElementById('status').textContent === 'running' "
                                   f"&& ({SHOWN})()", timeout=120_000)
            assert page.inner_text("#scale-label") == "frame"
            assert re.fullmatch(r"[1-4] of 4(; the last took [0-9.]+ s)?", page.inner_text("#scale"))
            page.wait_for_function("() => document.getElementById('status').textContent === 'done'",
                                   timeout=120_000)
            assert re.fullmatch(r"4 of 4; the last took [0-9.]+ s", page.inner_text("#scale"))
            assert page.inner_text("#message") == f"saved {out} and its record {out / 'record.json'}"
            assert page.inner_text("#step") == "450 / 450"
            page.wait_for_function(f"() => ({SHOWN})()", timeout=30_000)
            shown = pixels(page.locator("#image").screenshot())
            assert shown.std() > 0
            assert "video.steps" in page.inner_text("#settings")
            assert problems == []

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    assert sorted(p.name for p in out.glob("*.png")) == [f"00000{i}.png" for i in range(4)]
