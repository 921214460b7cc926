"""The live view: a local web page that shows a run as it goes, without slowing it.

The run's callback (:meth:`LiveView.progress`) only stores references under a lock: this
call's losses, already on the host, and, when a page asked for a picture since the last
(at most every :data:`IMAGE_INTERVAL` seconds), a picture maker holding a device copy of
the state's images (the next step may write over the state's own buffers). Everything
else happens on the server's threads, when a page asks: the losses become JSON, and the
picture (a device transfer, the objective's picture, a JPEG) is made only for a state not
yet shown. The server never calls into the step.

It serves three routes and nothing else: ``/`` (the page, one static file read at start),
``/state`` (JSON; ``?since=N``: only the losses of calls N and later) and ``/image.jpg``
(``?cell=K``: a sweep's cell). Nothing from a request reaches a path or a shell; requests
that name a host other than loopback are refused while it listens on loopback (a page
elsewhere cannot read it through DNS rebinding).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import ipaddress
import json
import math
import re
import resource
import socket
import statistics
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from urllib.parse import parse_qs

import numpy as np

from . import interrupt
from .config import scale_index
from .errors import NstError

# Seconds between two pictures made for the page (several a second at most).
IMAGE_INTERVAL = 0.25
# Longest side of the page's picture: larger results are shown scaled down.
IMAGE_SIDE = 1024
# The page's picture is a JPEG of this quality, colours at full resolution: a fifth of a
# PNG's encoding time, which the run's machine pays.
JPEG_QUALITY = 90
# Threads answering requests: a burst of polls queues for them instead of taking the CPU.
WORKERS = 8
# Longest request target served (ours are under 40 characters).
MAX_URL = 1024
# Compiled calls whose step times give the rate (their median: compiles are outliers).
RATE_WINDOW = 20


class LiveView:
    """A page at :attr:`url` showing one run at a time (:meth:`begin` starts the next).

    ``host``/``port``: where to listen (port 0: a free one); a port in use or an address
    that cannot be bound is an :class:`NstError`. :attr:`loopback` says whether only this
    machine can connect. Close it with :meth:`close` (or use it as a context manager).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()  # what the run's callback writes
        self._points_lock = threading.Lock()
        self._image_lock = threading.Lock()
        self._page = resources.files(__package__).joinpath("static/live.html").read_bytes()
        self._csp = _content_security_policy(self._page)
        self._run = 0
        self._reset()
        self._memory = (0.0, {})
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        except (socket.gaierror, UnicodeError, ValueError) as e:
            raise NstError(f"cannot serve the live view on {host!r}: {getattr(e, 'strerror', None) or e}") from None
        except OverflowError:
            raise NstError(f"cannot serve the live view on port {port}: ports are 0 to 65535") from None
        try:
            self._server = _Server((host, port), family, self)
        except OSError as e:
            raise NstError(f"cannot serve the live view on {host}:{port}: {e.strerror or e}") from None
        address = self._server.server_address
        self.host, self.port = address[0], address[1]
        self.loopback = ipaddress.ip_address(self.host.split("%")[0]).is_loopback
        self._thread = threading.Thread(target=self._server.serve_forever, name="nst-jax-live", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = self.host
        if ipaddress.ip_address(host.split("%")[0]).is_unspecified:
            host = socket.gethostname()
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def __enter__(self) -> "LiveView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving (requests in progress are dropped)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------ what the run tells it

    def begin(self, *, kind: str = "stylize", title: str = "", settings: dict | None = None,
              total: int = 0, sizes=(), rows: int = 1, cols: int = 1, row_labels=(), col_labels=(),
              scale_ends=(), frames: tuple[int, int] | None = None) -> None:
        """A new run: forget the last one's numbers and pictures. ``settings`` (JSON-able)
        is shown as it is; ``sizes`` and ``scale_ends`` (the step each ends at) place the scales; ``rows`` x
        ``cols`` cells for a sweep (cells in row-major order, as a sweep's ``Result``); a video's
        ``frames``: (finished, in all)."""
        with self._image_lock, self._lock:
            self._run += 1
            frame = None if frames is None else {"done": frames[0], "total": frames[1], "seconds": None,
                                                 "eta": None}
            self._reset(kind=kind, title=title, settings=settings or {}, total=total, sizes=list(sizes),
                        rows=rows, cols=cols, row_labels=list(row_labels), col_labels=list(col_labels),
                        scale_ends=list(scale_ends), frame=frame)

    def _reset(self, kind: str = "stylize", total: int = 0, rows: int = 1, cols: int = 1, **run) -> None:
        self._info = {"status": "starting", "message": "", "output": None, "plan": None, "kind": kind,
                      "rows": rows, "cols": cols, "title": "", "settings": {}, "sizes": [], "row_labels": [],
                      "col_labels": [], "scale_ends": [], "frame": None, **run}
        self._total = total
        self._calls: list = []  # (cells, steps done, metrics, loss) per compiled call
        self._points: list[str] = []  # each call's losses as a JSON fragment, made on first request
        self._latest = None  # (picture maker, cells) of the newest state
        self._version = 0
        self._step = self._chunk = 0
        self._chunks = 1
        self._step_times: deque = deque(maxlen=RATE_WINDOW)  # seconds per step of recent calls
        self._last = None  # (time, steps done) of the last call
        self._started = self._frame_at = time.perf_counter()
        self._ended = None
        self._images: dict = {}
        self._encoded: dict = {}
        self._image_key = None
        self._image_time = 0.0
        self._held = 0  # picture makers taken from the run so far
        self._held_at = 0.0  # when the last was
        self._asked = False  # a viewer asked for a picture since

    def plan(self, text: str) -> None:
        """The run's memory plan, one line (memory.describe_plans)."""
        with self._lock:
            self._info["plan"] = text

    def progress(self, progress, chunk: int = 0) -> None:
        """The run's callback (``sweep`` passes its chunk): references, and a device copy of
        the pictures when a page asked for one."""
        now = time.perf_counter()
        with self._lock:
            cells = self._cells(progress, chunk)
            self._calls.append((cells, int(progress.step), progress.metrics, progress.loss))
            if progress.hold is None:  # a state no later call reuses: its picture can wait
                self._latest = (progress.picture, cells)
                self._held += 1
            elif self._latest is None or (self._asked and now - self._held_at >= IMAGE_INTERVAL):
                self._latest, self._asked, self._held_at = (progress.hold(), cells), False, now
                self._held += 1
            if self._last is not None and progress.step > self._last[1] and chunk == self._chunk:
                self._step_times.append((now - self._last[0]) / (progress.step - self._last[1]))
            self._last = (now, int(progress.step))
            self._step, self._chunk, self._total = int(progress.step), chunk, int(progress.total)
            self._info["status"] = "running"
            self._version += 1

    def _cells(self, progress, chunk: int) -> list[int]:
        """The grid cells a sweep's chunk holds (sweep pads its last chunk by wrapping)."""
        n = self._info["rows"] * self._info["cols"] if self._info["kind"] == "sweep" else 1
        size = int(np.size(progress.loss))
        self._chunks = max(1, math.ceil(n / size))
        return [(chunk * size + i) % n for i in range(min(size, n - chunk * size))]

    def frame(self, done: int, total: int, seconds: float, eta: float | None) -> None:
        """A video's frame is finished: ``done`` of ``total``, in ``seconds``; ``eta``: the
        seconds its other frames should take (frames, unlike steps, include the flow)."""
        with self._lock:
            self._info["frame"] = {"done": done, "total": total, "seconds": seconds, "eta": eta}
            self._frame_at = time.perf_counter()
            self._version += 1

    def finish(self, status: str, message: str, output: str | None = None, images=None) -> None:
        """The run ended (``status``: done, nan, interrupted, failed); ``images``: what it
        saved (one picture, or one per cell) to show from now on."""
        with self._lock:
            self._info.update(status=status, message=message, output=output)
            self._ended = time.perf_counter()
            if images is not None:
                images = np.asarray(images)
                cells = list(range(1 if images.ndim == 3 else len(images)))
                self._latest = ((lambda: images), cells)
                self._held += 1
            self._version += 1

    # ------------------------------------------------------------ what the page asks

    def state_json(self, since: int = 0) -> bytes:
        """The page's poll: the run's settings, where it stands, and the losses of the
        compiled calls from ``since`` on (each point: cell, step, total, content, style, tv)."""
        with self._lock:
            calls, fragments = self._calls, self._points
            since = min(max(0, since), len(calls))
            info = dict(self._info)
            step, total, chunk, chunks = self._step, self._total, self._chunk, self._chunks
            per_step = statistics.median(self._step_times) if self._step_times else None
            version, n = self._version, len(calls)
            elapsed = (self._ended or time.perf_counter()) - self._started
        with self._points_lock:  # apart from the run's lock: a long history is made once, not under it
            for i in range(len(fragments), n):
                fragments.append(_points_json(*calls[i]))
            points = fragments[since:n]
        done_steps = chunk * total + step
        left = chunks * total - done_steps
        eta = left * per_step if per_step is not None else None
        if info["frame"] is not None and info["frame"]["eta"] is not None:  # counted down since given
            eta = max(0.0, info["frame"]["eta"] - (time.perf_counter() - self._frame_at))
        head = {"run": self._run, **info, "step": step, "total": total, "chunk": chunk, "chunks": chunks,
                "scale": scale_index(info["scale_ends"], step) if info["scale_ends"] else None,
                "steps_per_second": 1 / per_step if per_step else None,
                "eta": eta if info["status"] == "running" else None,
                "elapsed": elapsed, "version": version, "from": since, "next": n, "memory": self._memory_now()}
        text = json.dumps(_finite(head), allow_nan=False)
        return (text[:-1] + ', "points": [' + ",".join(points) + "]}").encode()

    def image_jpeg(self, cell: int = 0) -> bytes | None:
        """The picture of ``cell`` as JPEG, or None when there is none yet. A new picture is
        made only when the run has moved on, and no sooner than :data:`IMAGE_INTERVAL` after
        the last (the request waits for that); otherwise the last one is served."""
        with self._image_lock:
            with self._lock:
                latest, key = self._latest, (self._run, self._held)
                self._asked = True
            if latest is not None and latest[0] is not None and key != self._image_key:
                time.sleep(max(0.0, self._image_time + IMAGE_INTERVAL - time.monotonic()))
                with self._lock:  # the newest state by now
                    latest, key = self._latest, (self._run, self._held)
                self._image_key, self._image_time = key, time.monotonic()
                make, cells = latest
                try:
                    images = np.asarray(make())
                except Exception:  # noqa: BLE001 - e.g. buffers freed by the run: keep the last picture
                    images = None
                if images is not None:
                    images = images.reshape((-1,) + images.shape[-3:])
                    for i, c in enumerate(cells[: len(images)]):
                        self._images[c] = images[i]
                        self._encoded.pop(c, None)
            if cell not in self._images:
                return None
            if cell not in self._encoded:
                self._encoded[cell] = _jpeg(self._images[cell])
            return self._encoded[cell]

    def _memory_now(self) -> dict:
        """Memory in use now (the device's when it reports it, else this process's), read
        at most once a second."""
        when, memory = self._memory
        if time.monotonic() - when < 1.0:
            return memory
        memory = {}
        try:
            import jax

            stats = jax.local_devices()[0].memory_stats() or {}
            if "bytes_in_use" in stats:
                memory = {"in_use": stats["bytes_in_use"], "peak": stats.get("peak_bytes_in_use"), "of": "device"}
        except Exception:  # noqa: BLE001 - a backend without memory statistics
            pass
        if not memory:
            try:
                with open("/proc/self/statm") as f:
                    in_use = int(f.read().split()[1]) * resource.getpagesize()
            except (OSError, ValueError, IndexError):
                in_use = None
            memory = {"in_use": in_use, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "of": "process"}
        self._memory = (time.monotonic(), memory)
        return memory

    def host_allowed(self, host: str | None) -> bool:
        """Whether a request naming ``host`` (its Host header) is served."""
        if host is None or not self.loopback:
            return True
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
        try:
            return ipaddress.ip_address(name.strip("[]")).is_loopback
        except ValueError:
            return name.lower() == "localhost"

    def wait(self, seconds: float) -> None:
        """Keep serving for ``seconds``; Ctrl-C (KeyboardInterrupt, or a signal the command
        line noted: interrupt.check) ends it."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            interrupt.check()
            time.sleep(min(left, 0.5))


def _points_json(cells, steps_done, metrics, loss) -> str:
    """One compiled call's losses: [cell, step, total, content, style, tv] per step and cell."""
    if metrics is None:  # a driver without metrics: the last step's total only
        columns = [np.reshape(np.asarray(loss, np.float64), (1, -1))] + [np.full((1, np.size(loss)), np.nan)] * 3
    else:
        columns = [np.asarray(a, np.float64) for a in (metrics.loss, *metrics.terms)]
        columns = [a.reshape(a.shape[0], -1) for a in columns]
    k = columns[0].shape[0]
    rows = []
    for j in range(k):
        for b, cell in enumerate(cells):
            rows.append([cell, steps_done - k + j] + [_number(c[j, b]) for c in columns])
    return json.dumps(rows, allow_nan=False)[1:-1]


def _number(x: float):
    return float(f"{x:.6g}") if math.isfinite(x) else None


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _jpeg(image: np.ndarray) -> bytes:
    from PIL import Image

    from .image import to_uint8

    picture = Image.fromarray(to_uint8(image), mode="RGB")
    if max(picture.size) > IMAGE_SIDE:
        picture.thumbnail((IMAGE_SIDE, IMAGE_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


def _content_security_policy(page: bytes) -> str:
    """Only the page's own inline script and style run; images and polls only from here."""
    scripts = re.findall(rb"<script>(.*?)</script>", page, re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in scripts)
    return (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class _Server(http.server.HTTPServer):
    """An HTTP server answering on a fixed pool of threads."""

    request_queue_size = 1024  # a burst of connections waits in the backlog instead of being refused

    def __init__(self, address, family, view: LiveView) -> None:
        self.address_family = family
        self.view = view
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="nst-jax-live-request")
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own looks the host's name up, which can take seconds without a network
        socketserver_bind = super(http.server.HTTPServer, self).server_bind
        socketserver_bind()
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request, client_address) -> None:
        self.pool.submit(self._answer, request, client_address)

    def _answer(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a client gone mid-answer is no concern of the run's
            pass
        finally:
            self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        """Quiet: a bad client never prints to the run's terminal."""

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "nst-jax-live"
    protocol_version = "HTTP/1.0"  # one request per connection: no idle connection holds a thread
    timeout = 10  # seconds a client may take to send its request

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        view: LiveView = self.server.view
        if len(self.path) > MAX_URL:
            return self.send_error(414)
        if not self.path.startswith("/") or self.path.startswith("//"):
            return self.send_error(400, "only paths on this server")
        if not view.host_allowed(self.headers.get("Host")):
            return self.send_error(403, "this page is served to this machine only")
        route, _, query = self.path.partition("?")
        try:
            params = parse_qs(query, max_num_fields=4, strict_parsing=bool(query))
            since, cell = (_one_int(params, name) for name in ("since", "cell"))
        except ValueError:
            return self.send_error(400, "bad query")
        if route == "/":
            return self._send(200, "text/html; charset=utf-8", view._page, body)
        if route == "/state":
            return self._send(200, "application/json", view.state_json(since), body)
        if route == "/image.jpg":
            jpeg = view.image_jpeg(cell)
            if jpeg is None:
                return self.send_error(404, "no picture yet")
            return self._send(200, "image/jpeg", jpeg, body)
        return self.send_error(404)

    def _send(self, code: int, kind: str, data: bytes, body: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", self.server.view._csp)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format, *args) -> None:  # noqa: A002 - http.server's signature
        """Quiet: requests are not the run's news."""


def _one_int(params: dict, name: str) -> int:
    values = params.get(name, ["0"])
    if len(values) != 1 or not re.fullmatch(r"\d{1,9}", values[0]):
        raise ValueError(name)
    return int(values[0])
