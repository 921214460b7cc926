"""The commands' --live and run-record options, and `nst-jax plot`: every run leaves its
record, every bad option or path is one line before any work, the page serves while the
run goes and for --live-linger seconds after."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import nst_jax
from nst_jax import inputs, live, run
from nst_jax.cli import app
from conftest import made_result

SAMPLES = Path(nst_jax.__file__).parent / "samples"
C, S = SAMPLES / "content.jpg", SAMPLES / "style.jpg"
TINY = ["--size", 32, "--steps", 3, "--optimizer", "adam", "--scales", "none", "--style-layers", "relu1_1,relu2_1",
        "--content-layers", "relu2_1", "--conv", "lax"]
runner = CliRunner()


@pytest.fixture(autouse=True)
def fabricated(monkeypatch, vgg16_weights):
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights)


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def one_line_error(result, code=1) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code and len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_run_leaves_its_record_beside_the_output(tmp_path):
    out = tmp_path / "o.png"
    r = invoke("stylize", C, S, "-o", out, *TINY)
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "o.json").read_text())
    assert f"wrote {out} and its record {tmp_path / 'o.json'}" in r.stdout
    assert record["kind"] == "stylize" and record["output"] == str(out) and record["stopped"] == "done"
    assert record["inputs"] == {"content": str(C), "styles": [str(S)]}
    assert record["config"]["size"] == 32 and len(record["history"]["loss"]) == 3
    assert record["calls"]["step"] == [1, 2, 3] and record["memory"]["plan"].startswith("32x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.json", "o.png"]


def test_record_options(tmp_path):
    assert invoke("stylize", C, S, "-o", tmp_path / "a.png", "--no-record", *TINY).exit_code == 0
    assert not (tmp_path / "a.json").exists()
    r = invoke("stylize", C, S, "-o", tmp_path / "b.png", "--record", tmp_path / "new" / "b-run.json", *TINY)
    assert r.exit_code == 0 and json.loads((tmp_path / "new" / "b-run.json").read_text())["output"].endswith("b.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "new"]


def record_cases(tmp_path: Path) -> dict:
    content = tmp_path / "content.png"
    content.write_bytes(C.read_bytes())
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("p.png", "q.png"):
        (folder / name).write_bytes(C.read_bytes())
    o = tmp_path / "o.png"
    return {
        "an input": ([content, S, "-o", o, "--record", content], "it is an input of this run"),
        "the output": ([content, S, "-o", o, "--record", o], "it is an output of this run"),
        "the checkpoint": ([content, S, "-o", o, "--checkpoint-every", 1, "--record", tmp_path / "o.ckpt"],
                           "it is an output of this run"),
        "unwritable": ([content, S, "-o", o, "--record", "/proc/o.json"], "cannot write into /proc"),
        "a directory": ([content, S, "-o", o, "--record", folder], "it is a directory"),
        "both": ([content, S, "-o", o, "--record", tmp_path / "r.json", "--no-record"], "not both"),
        "a folder": ([folder, S, "-o", tmp_path / "results", "--record", tmp_path / "r.json"],
                     "--record takes one content image"),
        "beside is unwritable": ([content, S, "-o", tmp_path / ("o" * 245 + ".png")], "its name is too long"),
    }


@pytest.mark.parametrize("case", ["an input", "the output", "the checkpoint", "unwritable", "a directory", "both",
                                  "a folder", "beside is unwritable"])
def test_a_record_that_cannot_be_written_is_refused_before_the_run(tmp_path, case, monkeypatch):
    monkeypatch.setattr(run, "stylize", lambda *a, **k: pytest.fail("the run started"))
    args, message = record_cases(tmp_path)[case]
    before = sorted(tmp_path.rglob("*"))
    assert message in one_line_error(invoke("stylize", *args, *TINY))
    assert sorted(tmp_path.rglob("*")) == before


def test_a_busy_port_is_one_line_before_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "stylize", lambda *a, **k: pytest.fail("the run started"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        message = one_line_error(invoke("stylize", C, S, "-o", tmp_path / "o.png", "--live-port", port, *TINY))
    assert f"cannot serve the live view on 127.0.0.1:{port}: " in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--live-port", 70000], "--live-port must be an integer in [0, 65535], not 70000"),
    (["--live-port", -1], "--live-port must be an integer in [0, 65535], not -1"),
    (["--live-linger", -1], "--live-linger must be a number of seconds, 0 or more, not -1.0"),
    (["--live-linger", "nan"], "--live-linger must be a number of seconds, 0 or more, not nan"),
    (["--live-host", "no such host.invalid"], "cannot serve the live view on 'no such host.invalid'"),
])
def test_live_options_are_checked(tmp_path, args, message):
    assert message in one_line_error(invoke("stylize", C, S, "-o", tmp_path / "o.png", *args, *TINY))
    assert list(tmp_path.iterdir()) == []


def test_the_page_serves_during_the_run_and_lingers_after_it(tmp_path):
    port, seen, stop = free_port(), [], threading.Event()

    def watch():  # a viewer polling the page's state
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=5) as answer:
                    seen.append(json.loads(answer.read())["status"])
            except OSError:
                pass
            time.sleep(0.05)

    viewer = threading.Thread(target=watch)
    viewer.start()
    try:
        t0 = time.perf_counter()
        r = invoke("stylize", C, S, "-o", tmp_path / "o.png", "--live-port", port, "--live-linger", 2, *TINY)
        seconds = time.perf_counter() - t0
    finally:
        stop.set()
        viewer.join()
    assert r.exit_code == 0, r.output
    assert f"live: http://127.0.0.1:{port}/" in r.stderr and "stays up" in r.stderr
    assert "running" in seen or "starting" in seen
    assert seen.count("done") >= 10 and seconds >= 2  # it served the finished run for the linger
    with pytest.raises(OSError):  # and then stopped
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_ctrl_c_ends_the_linger_with_the_run_s_exit_code(tmp_path, monkeypatch):
    def interrupted(self, seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(live.LiveView, "wait", interrupted)
    r = invoke("stylize", C, S, "-o", tmp_path / "o.png", "--live", *TINY)
    assert r.exit_code == 0 and (tmp_path / "o.png").exists() and "wrote" in r.stdout


def test_an_interrupted_run_records_it_and_does_not_linger(tmp_path, monkeypatch):
    real = run.drive

    def interrupted_drive(*args, callback=None, **kw):
        def stop(progress):
            callback(progress)
            raise KeyboardInterrupt  # as Ctrl-C after the first step
        return real(*args, callback=stop, **kw)

    monkeypatch.setattr(run, "drive", interrupted_drive)
    t0 = time.perf_counter()
    r = invoke("stylize", C, S, "-o", tmp_path / "o.png", "--live", "--live-linger", 600, *TINY)
    assert r.exit_code == 130 and time.perf_counter() - t0 < 300 and "stays up" not in r.stderr
    record = json.loads((tmp_path / "o.json").read_text())
    assert record["stopped"] == "interrupted" and record["steps"] == 1


def test_a_run_that_blew_up_records_it(tmp_path):
    r = invoke("stylize", C, S, "-o", tmp_path / "o.png", *TINY, "--style-weight", 1e38, "--content-weight", 1e38,
               "--init", "noise", "--content-norm", "sum")
    assert r.exit_code == 3
    record = json.loads((tmp_path / "o.json").read_text(), parse_constant=pytest.fail)
    assert record["stopped"] == "nan" and None in record["history"]["loss"]


def test_a_loopback_address_is_the_default_and_another_warns(tmp_path):
    r = invoke("stylize", C, S, "-o", tmp_path / "a.png", "--live", "--live-linger", 0, *TINY)
    assert r.exit_code == 0 and "live: http://127.0.0.1:" in r.stderr and "warning" not in r.stderr
    r = invoke("stylize", C, S, "-o", tmp_path / "b.png", "--live-host", "0.0.0.0", "--live-linger", 0, *TINY)
    assert r.exit_code == 0 and "warning: the live page listens on 0.0.0.0, not only this machine" in r.stderr


def test_a_sweep_leaves_its_record_in_its_folder(tmp_path):
    out = tmp_path / "grid"
    r = invoke("sweep", C, S, "-o", out, "--style-weight", "1,100", "--live", "--live-linger", 0, *TINY)
    assert r.exit_code == 0, r.output
    record = json.loads((out / "record.json").read_text())
    assert record["kind"] == "sweep" and record["grid"] == {"rows": 1, "cols": 2}
    assert np.array(record["history"]["loss"]).shape == (3, 2) and f"wrote the record {out / 'record.json'}" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid"]
    assert "it is an output of this run" in one_line_error(
        invoke("sweep", C, S, "-o", out, "--record", out / "losses.json", *TINY))
    assert "--live watches one-process sweeps only" in one_line_error(
        invoke("sweep", C, S, "-o", tmp_path / "g2", "--live", "--coordinator", "localhost:1", *TINY))


def test_plot_draws_a_record(tmp_path):
    assert invoke("stylize", C, S, "-o", tmp_path / "o.png", *TINY).exit_code == 0
    r = invoke("plot", tmp_path / "o.json", "-o", tmp_path / "losses.png")
    assert r.exit_code == 0 and (tmp_path / "losses.png").read_bytes().startswith(b"\x89PNG")
    assert "it is the record to plot" in one_line_error(invoke("plot", tmp_path / "o.json", "-o", tmp_path / "o.json"))
    assert "is not an nst-jax run record" in one_line_error(invoke("plot", tmp_path / "o.png", "-o", tmp_path / "x.png"))
    for other in ("x.xyz", "x.gif", "photo.jpg"):  # matplotlib writes a GIF or a JPEG, but the command offers three
        assert "unknown plot format" in one_line_error(invoke("plot", tmp_path / "o.json", "-o", tmp_path / other))
    before = (tmp_path / "o.png").read_bytes()
    assert "the record names it, as the run's output or an input" in one_line_error(
        invoke("plot", tmp_path / "o.json", "-o", tmp_path / "o.png"))  # the picture itself
    assert (tmp_path / "o.png").read_bytes() == before
    assert "no such file" in one_line_error(invoke("plot", tmp_path / "nope.json"))


@pytest.mark.parametrize("stopped, status, message", [
    ("done", "done", "saved o.png and its record o.json"),
    ("nan", "nan", "the loss became NaN/inf; saved the best image before it to o.png and its record o.json"),
    ("interrupted", "interrupted", "interrupted; saved o.png and its record o.json"),
])
def test_the_page_ends_saying_how_the_run_ended(tmp_path, monkeypatch, stopped, status, message):
    from nst_jax import watch

    ended = []

    class View:
        def finish(self, *args):
            ended.append(args)

    monkeypatch.setattr(watch, "write_record", lambda record, path: path)
    monkeypatch.setattr(watch, "run_record", lambda result, **kw: {})
    session = watch.Session({Path("o.png"): Path("o.json")}, View(), 600, print)
    result = made_result(None, np.zeros((1, 4, 4, 3)), [], stopped=stopped, steps=1)
    image = result.image
    assert session.finished(result, Path("o.png"), image) == Path("o.json")
    assert ended == [(status, message, "o.png", image)] and session.stay == (stopped != "interrupted")
