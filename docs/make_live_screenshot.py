"""The README's picture of the live page: a coarse-to-fine run of the bundled samples
watched in headless Chromium, photographed while its last scale steps.

    python docs/make_live_screenshot.py [CHROMIUM]   # writes docs/live.png

Needs Chromium (default /usr/bin/chromium) and playwright (the dev extra). The command it
runs is printed first; its output goes to a temporary folder.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
SAMPLES = DOCS.parent / "nst_jax" / "samples"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def main(browser: str = "/usr/bin/chromium") -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as work:
        cmd = ["nst-jax", "stylize", str(SAMPLES / "content.jpg"), str(SAMPLES / "style.jpg"), "-o",
               f"{work}/out.png", "--size", "192", "--scales", "128,192", "--steps", "60", "--style-weight", "10",
               "--live", "--live-linger", "60"]
        print(" ".join(cmd), flush=True)
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        try:
            url = next(m.group(1) for line in proc.stderr if (m := re.match(r"live: (\S+)$", line.strip())))
            with sync_playwright() as p:
                chromium = p.chromium.launch(executable_path=browser, args=FLAGS)
                page = chromium.new_page(viewport={"width": 1200, "height": 760})
                page.goto(url)
                page.wait_for_function("() => document.getElementById('scale').textContent.startsWith('2 of 2')"
                                       " && parseInt(document.getElementById('step').textContent) >= 100",
                                       timeout=600_000)
                time.sleep(1)  # the picture of that step
                page.screenshot(path=DOCS / "live.png")
                chromium.close()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    print(f"wrote {DOCS / 'live.png'}")


if __name__ == "__main__":
    main(*sys.argv[1:])
