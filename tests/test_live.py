"""The live view's server: what it serves, what it refuses, and that a run it watches,
polled a thousand times at once, is the same run bit for bit."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
import resource
import socket
import threading
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from nst_jax import live
from nst_jax.errors import NstError
from nst_jax.live import LiveView
from nst_jax.losses import LossTerms
from nst_jax.run import Progress, stylize
from nst_jax.step import StepMetrics

from conftest import CONTENT, STYLE, tiny


@pytest.fixture
def view():
    with LiveView() as v:
        yield v


def exchange(view: LiveView, raw: bytes) -> tuple[int, bytes, bytes]:
    """Send ``raw`` as it is; (status, head, body) of the answer."""
    with socket.create_connection((view.host, view.port), timeout=20) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


def get(view: LiveView, target: str, method: str = "GET", host: str | None = None) -> tuple[int, bytes, bytes]:
    host = host if host is not None else f"127.0.0.1:{view.port}"
    return exchange(view, f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())


def progress(step: int, losses, picture=None, k: int = 1) -> Progress:
    """A driver's progress after a call of ``k`` steps; ``losses``: (total, content, style,
    tv) arrays of shape (k,) or (k, cells)."""
    total, content, style, tv = (np.asarray(x, np.float32) for x in losses)
    metrics = StepMetrics(total, LossTerms(content, style, tv), np.ones(total.shape, np.int32))
    return Progress(step, 10, total[-1], 0.0, None, metrics, picture)


def shade(jpeg: bytes) -> int:
    """The grey level of a flat JPEG picture."""
    with Image.open(io.BytesIO(jpeg)) as picture:
        assert picture.format == "JPEG"
        pixels = np.asarray(picture.convert("RGB"), np.int16)
    assert pixels.max() - pixels.min() <= 2
    return int(round(pixels.mean()))


def test_the_page_its_state_and_its_picture(view):
    view.begin(title="a <b>title</b>", settings={"config": {"size": 32}}, total=10, sizes=(32,), scale_ends=(10,))
    status, head, body = get(view, "/")
    assert status == 200 and body == (live.resources.files("nst_jax") / "static" / "live.html").read_bytes()
    assert b"Content-Type: text/html" in head and b"X-Content-Type-Options: nosniff" in head
    csp = re.search(rb"Content-Security-Policy: (.*)\r\n", head + b"\r\n").group(1)
    scripts = re.search(rb"script-src ([^;]*)", csp).group(1)
    assert b"default-src 'none'" in csp and scripts.startswith(b"'sha256-") and b"unsafe" not in scripts
    state = json.loads(get(view, "/state")[2])
    assert state["status"] == "starting" and state["title"] == "a <b>title</b>" and state["points"] == []
    assert state["settings"] == {"config": {"size": 32}} and state["total"] == 10 and state["memory"]["in_use"] > 0
    assert get(view, "/image.jpg")[0] == 404  # no state yet
    assert get(view, "/", method="HEAD")[2] == b""


def test_losses_arrive_once_each(view):
    view.begin(total=10)
    view.progress(progress(2, ([3.0, 2.0], [0.5, np.nan], [0.25, 0.125], [1.0, 1.0]), k=2))
    view.progress(progress(4, ([1.5, 1.0], [0.5, 0.5], [0.1, 0.05], [1.0, 1.0]), k=2))
    state = json.loads(get(view, "/state?since=0")[2])
    assert state["points"] == [[0, 0, 3.0, 0.5, 0.25, 1.0], [0, 1, 2.0, None, 0.125, 1.0],
                               [0, 2, 1.5, 0.5, 0.1, 1.0], [0, 3, 1.0, 0.5, 0.05, 1.0]]
    assert state["status"] == "running" and state["step"] == 4 and state["next"] == 2 and state["version"] == 2
    assert state["steps_per_second"] > 0 and state["eta"] >= 0
    later = json.loads(get(view, "/state?since=1")[2])
    assert later["from"] == 1 and later["points"] == state["points"][2:]
    assert json.loads(get(view, "/state?since=99")[2])["points"] == []


def test_the_state_names_the_scale_the_run_is_at(view):
    """Scales of 3, 3 and 4 steps: the state holds scale i's size from its first step on,
    so after 3 steps it is still at the first and after 4 at the second."""
    view.begin(total=10, sizes=(32, 45, 64), scale_ends=(3, 6, 10))
    assert json.loads(get(view, "/state")[2])["scale"] == 0
    seen = []
    for step in (1, 3, 4, 6, 7, 10):
        view.progress(progress(step, ([1.0], [0.5], [0.25], [0.0])))
        seen.append(json.loads(get(view, "/state")[2])["scale"])
    assert seen == [0, 0, 1, 1, 2, 2]
    view.begin(total=10)  # a run with no scales to place: none named
    assert json.loads(get(view, "/state")[2])["scale"] is None


def test_pictures_are_made_only_when_asked_and_at_most_at_the_page_rate(view, monkeypatch):
    made, when = [], []

    def picture(value):
        def make():
            made.append(value)
            when.append(time.monotonic())
            return np.full((6, 5, 3), value, np.float32)
        return make

    view.begin(total=10)
    for step in range(1, 6):
        view.progress(progress(step, ([1.0],) * 4, picture(step / 10)))
    assert made == []  # the run's callback made nothing
    assert shade(get(view, "/image.jpg")[2]) == pytest.approx(round(0.5 * 255), abs=1)
    assert made == [0.5]
    monkeypatch.setattr(live, "IMAGE_INTERVAL", 1.0)
    assert get(view, "/image.jpg")[0] == 200 and made == [0.5]  # the run has not moved on
    view.progress(progress(6, ([1.0],) * 4, picture(0.75)))
    assert shade(get(view, "/image.jpg")[2]) == pytest.approx(round(0.75 * 255), abs=1) and made == [0.5, 0.75]
    assert when[1] - when[0] >= 1.0  # the request waited for the page's rate
    view.finish("done", "saved o.png", "o.png", np.ones((6, 5, 3), np.float32))
    assert shade(get(view, "/image.jpg")[2]) == pytest.approx(255, abs=1)
    state = json.loads(get(view, "/state")[2])
    assert state["status"] == "done" and state["message"] == "saved o.png" and state["output"] == "o.png"


def test_a_picture_that_cannot_be_made_is_no_error(view, capfd):
    def broken():
        raise RuntimeError("Array has been deleted")

    view.begin(total=10)
    view.progress(progress(1, ([1.0],) * 4, broken))
    assert get(view, "/image.jpg")[0] == 404
    assert capfd.readouterr() == ("", "")


def test_a_sweep_shows_each_cell_of_each_chunk(view, monkeypatch):
    monkeypatch.setattr(live, "IMAGE_INTERVAL", 0.0)
    view.begin(kind="sweep", rows=1, cols=3, total=10)
    colours = lambda *v: lambda: np.stack([np.full((4, 4, 3), x, np.float32) for x in v])  # noqa: E731
    losses = lambda *v: ([v],) * 4  # noqa: E731 - one step, a value per cell
    view.progress(progress(1, losses(1.0, 2.0), colours(0.2, 0.4)), chunk=0)
    assert shade(get(view, "/image.jpg?cell=1")[2]) == pytest.approx(round(0.4 * 255), abs=1)
    view.progress(progress(1, losses(3.0, 9.0), colours(0.6, 0.8)), chunk=1)  # the second is padding
    state = json.loads(get(view, "/state")[2])
    assert state["chunks"] == 2 and state["chunk"] == 1
    assert [p[:3] for p in state["points"]] == [[0, 0, 1.0], [1, 0, 2.0], [2, 0, 3.0]]
    assert shade(get(view, "/image.jpg?cell=2")[2]) == pytest.approx(round(0.6 * 255), abs=1)
    assert shade(get(view, "/image.jpg?cell=1")[2]) == pytest.approx(round(0.4 * 255), abs=1)  # kept from chunk 0
    assert shade(get(view, "/image.jpg?cell=0")[2]) == pytest.approx(round(0.2 * 255), abs=1)
    assert get(view, "/image.jpg?cell=3")[0] == 404


def test_a_new_run_starts_over(view, monkeypatch):
    monkeypatch.setattr(live, "IMAGE_INTERVAL", 0.0)
    view.begin(total=10)
    view.progress(progress(1, ([1.0],) * 4, lambda: np.zeros((4, 4, 3))))
    assert get(view, "/image.jpg")[0] == 200
    view.begin(title="next", total=10)
    state = json.loads(get(view, "/state")[2])
    assert state["run"] == 2 and state["title"] == "next" and state["points"] == [] and state["step"] == 0
    assert get(view, "/image.jpg")[0] == 404


REFUSED = {
    "parent path": ("GET /../../etc/passwd", 404),
    "encoded parent path": ("GET /%2e%2e/%2e%2e/etc/passwd", 404),
    "absolute path": ("GET /etc/passwd", 404),
    "the page's file": ("GET /static/live.html", 404),
    "the package folder": ("GET /nst_jax/", 404),
    "a route's subpath": ("GET /state/../../etc/passwd", 404),
    "network-path reference": ("GET //etc/passwd", (400, 404)),  # http.server makes it /etc/passwd
    "absolute-form target": ("GET http://127.0.0.1/etc/passwd", 400),
    "bad number": ("GET /state?since=-1", 400),
    "not a number": ("GET /image.jpg?cell=x", 400),
    "two values": ("GET /image.jpg?cell=1&cell=2", 400),
    "too many fields": ("GET /state?a=1&b=2&c=3&d=4&e=5", 400),
    "a long URL": ("GET /state?since=0&" + "a" * 4000, 414),
    "a very long URL": ("GET /" + "a" * 70000, 414),
    "POST": ("POST /state", 501),
    "PUT": ("PUT /", 501),
    "DELETE": ("DELETE /state", 501),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_it_refuses_what_it_does_not_serve(view, case, capfd):
    line, code = REFUSED[case]
    status, _, body = exchange(view, f"{line} HTTP/1.1\r\nHost: 127.0.0.1:{view.port}\r\n\r\n".encode())
    assert status in (code if isinstance(code, tuple) else (code,)) and b"root:" not in body
    assert get(view, "/")[0] == 200  # still serving
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("host, code", [("evil.example", 403), ("evil.example:80", 403), ("127.0.0.1.evil.example", 403),
                                        ("localhost:1234", 200), ("LOCALHOST", 200), ("[::1]:80", 200),
                                        ("127.0.0.2", 200)])
def test_on_loopback_only_loopback_names_are_served(view, host, code):
    assert get(view, "/state", host=host)[0] == code


def test_garbage_is_refused(view, capfd):
    with socket.create_connection((view.host, view.port), timeout=20) as s:
        s.sendall(b"\x00\x01\x02 garbage\r\n\r\n")
        assert b"Error code: 400" in s.recv(65536)  # an HTTP/0.9 answer: the body alone
    assert exchange(view, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n")[0] == 431
    with socket.create_connection((view.host, view.port)):  # connects and says nothing
        pass
    assert get(view, "/")[0] == 200 and capfd.readouterr() == ("", "")


def test_where_it_listens():
    with LiveView() as view:
        assert view.loopback and view.host == "127.0.0.1" and view.url == f"http://127.0.0.1:{view.port}/"
        with pytest.raises(NstError, match=f"cannot serve the live view on 127.0.0.1:{view.port}: "):
            LiveView(port=view.port)  # in use
    with LiveView("0.0.0.0") as view:
        assert not view.loopback and view.host_allowed("evil.example")
    with pytest.raises(NstError, match="cannot serve the live view on 'no such host.invalid'"):
        LiveView("no such host.invalid")


async def _polls(port: int, targets: list[str]) -> list:
    async def one(target):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        return data
    return await asyncio.gather(*map(one, targets), return_exceptions=True)


def test_a_thousand_concurrent_polls_change_nothing_in_the_run(vgg16_weights, capfd):
    """A real run watched by a thousand concurrent polls (state, pictures, the page and
    paths it does not serve), wave after wave while it steps, ends as the same run bit for
    bit; every poll gets its answer and nothing is printed."""
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * n + 200:  # each poll holds a socket at both ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * n + 200), hard))
    config = tiny(steps=60)
    alone = stylize(CONTENT, STYLE, config, weights=vgg16_weights)

    answers, running_seen, stepping = Counter(), [], threading.Event()
    targets = ["/state?since=0", "/image.jpg", "/state?since=5", "/", "/../etc/passwd"] * (n // 5)

    with LiveView() as view:
        def load():
            stepping.wait(120)
            while True:
                for data in asyncio.run(_polls(view.port, targets)):
                    if isinstance(data, Exception):
                        answers[type(data).__name__] += 1
                        continue
                    answers[int(data.split()[1])] += 1
                    if data.startswith(b"HTTP/1.0 200") and b'"status": "running"' in data:
                        running_seen.append(1)
                if not thread_running[0]:
                    return

        made = []

        def counted(make):
            return lambda: made.append(1) or make()

        def callback(p):
            view.progress(dataclasses.replace(p, picture=counted(p.picture), hold=lambda: counted(p.hold())))
            stepping.set()

        thread_running = [True]
        poller = threading.Thread(target=load)
        poller.start()
        view.begin(total=config.steps)
        try:
            t0 = time.perf_counter()
            watched = stylize(CONTENT, STYLE, config, weights=vgg16_weights, callback=callback)
            seconds = time.perf_counter() - t0
        finally:
            thread_running[0] = False
            poller.join(300)

    assert not poller.is_alive()
    assert running_seen, "no poll was answered while the run stepped"
    assert set(answers) <= {200, 404} and sum(answers.values()) >= n and answers[404] >= n // 5, answers
    assert 0 < len(made) <= seconds / live.IMAGE_INTERVAL + 2  # pictures at most at the page's rate
    for a, b in [(alone.image, watched.image), (alone.best_image, watched.best_image)]:
        assert np.array_equal(a, b)
    assert np.array_equal(alone.history, watched.history, equal_nan=True) and alone.best_loss == watched.best_loss
    out, err = capfd.readouterr()
    assert out == "" and err == ""
