"""A sweep over two processes on localhost (CPU collectives) gives the one-process cells."""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import CONTENT, STYLE, random_params
from nst_jax.cli import app
from nst_jax.image import save_image
from nst_jax.weights import VGGWeights, save

ROOT = Path(__file__).resolve().parents[1]
LIB = importlib.import_module("nst_jax.sweeps")

# One process of the documented launch (argv: where to put its numbers, then the command's
# arguments). Process 1 is told it has no memory to spare, process 0 that it has plenty:
# alone they would plan 2 and 1 chunks; together they must agree. The result is saved
# before the command writes anything.
CHILD = textwrap.dedent("""
    import importlib, sys
    import jax, numpy as np
    lib = importlib.import_module("nst_jax.sweeps")  # the module (the package exports the function as sweep)
    from nst_jax.cli import app

    dump, args = sys.argv[1], sys.argv[2:]
    pid = int(args[args.index("--process-id") + 1])
    importlib.import_module("nst_jax.batch").budget_bytes = lambda max_memory=None: 0 if pid else 1 << 40
    real = lib.sweep

    def recorded(*a, **k):
        r = real(*a, **k)
        np.savez(dump, images=r.images, best=r.best_losses, history=r.trace["loss"],
                 counts=[jax.process_count(), jax.process_index(), jax.local_device_count(), r.grid.devices,
                         r.grid.chunks])
        return r

    lib.sweep = recorded
    app(args, prog_name="nst-jax")
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture
def sweep_args(tmp_path):
    save_image(CONTENT, tmp_path / "content.png")
    save_image(STYLE, tmp_path / "style.png")
    save(VGGWeights("vgg16", "torchvision", random_params("vgg16", seed=16), "test", "random", ""),
         tmp_path / "vgg16.safetensors")
    return ["sweep", str(tmp_path / "content.png"), str(tmp_path / "style.png"), "--size", "32", "--steps", "3",
            "--optimizer", "adam", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
            "--layers", "relu1_1;relu1_1,relu2_1", "--style-weight", "1e2,1e4", "--pooling", "max",
            "--weights", str(tmp_path / "vgg16.safetensors")]


@pytest.mark.slow
def test_two_processes_give_the_cells_of_one(tmp_path, sweep_args, monkeypatch):
    env = child_env()
    port, script = free_port(), tmp_path / "child.py"
    script.write_text(CHILD)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / f"p{i}.npz"), *sweep_args,
                               "-o", str(tmp_path / f"out{i}"), "--coordinator", f"localhost:{port}",
                               "--num-processes", "2", "--process-id", str(i)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    deadline, outputs = time.monotonic() + 120, []
    try:
        for p in procs:  # a hang fails here instead of blocking the run
            outputs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    finally:
        for p in procs:
            p.kill()
    for p, output in zip(procs, outputs):
        assert p.returncode == 0, output[-3000:]
        assert "4 cells (2 x 2) in 2 chunk(s) on 2 device(s)" in output, output[-3000:]
    got = [np.load(tmp_path / f"p{i}.npz") for i in range(2)]
    # two processes, one CPU device each, the mesh over both; both planned 2 chunks of 2
    assert [g["counts"].tolist() for g in got] == [[2, 0, 1, 2, 2], [2, 1, 1, 2, 2]]
    # only process 0 wrote, and it wrote every cell
    assert not (tmp_path / "out1").exists()
    assert sorted(p.name for p in (tmp_path / "out0").glob("cell_*.png")) == [
        "cell_r0_c0.png", "cell_r0_c1.png", "cell_r1_c0.png", "cell_r1_c1.png"]
    assert json.loads((tmp_path / "out0" / "losses.json").read_text())["devices"] == 2

    # the same command in one process (this one, one device)
    assert jax.process_count() == 1 and jax.device_count() == 1
    seen = []
    real = LIB.sweep
    monkeypatch.setattr(LIB, "sweep", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    r = CliRunner().invoke(app, [*sweep_args, "-o", str(tmp_path / "single")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, [*sweep_args, "-o", str(tmp_path / "single-1"), "--max-chunk", "1"])
    assert r.exit_code == 0, r.output
    whole, by_one = seen
    assert (whole.grid.devices, whole.grid.chunks, by_one.grid.chunks) == (1, 1, 4)
    # Each device stepped one cell per call in both runs: the same arithmetic, bit for bit.
    # Batched four to a device, XLA's CPU convolutions round differently (6.6e-7 measured,
    # 1e-5 as in test_sweep's batched-against-single comparisons; with average pooling Adam's
    # three steps carried it to 6.2e-5, hence max pooling here).
    for g in got:  # each process holds the whole grid
        np.testing.assert_array_equal(g["images"], by_one.images)
        np.testing.assert_array_equal(g["best"], by_one.best_losses)
        np.testing.assert_array_equal(g["history"], by_one.trace["loss"])
        np.testing.assert_allclose(g["images"], whole.images, rtol=0, atol=1e-5)
        np.testing.assert_allclose(g["history"], whole.trace["loss"], rtol=1e-5)
    # and so are the files process 0 wrote
    cells = lambda d: json.loads((tmp_path / d / "losses.json").read_text())["cells"]  # noqa: E731
    assert cells("out0") == cells("single-1")
    for png in (tmp_path / "out0").glob("cell_*.png"):
        assert png.read_bytes() == (tmp_path / "single-1" / png.name).read_bytes()


@pytest.mark.parametrize("args,message", [
    (["--coordinator", "localhost"], "--coordinator takes HOST:PORT (a port from 1 to 65535), not 'localhost'"),
    (["--coordinator", "host:99999"], "--coordinator takes HOST:PORT"),
    (["--process-id", "0"], "--num-processes must be given with the process id"),
    (["--num-processes", "2"], "--process-id must be given with the number of processes"),
    (["--num-processes", "0", "--process-id", "0"], "--num-processes must be 1 or more, not 0"),
    (["--num-processes", "2", "--process-id", "2"], "--process-id must be from 0 to 1, not 2"),
    (["--num-processes", "2", "--process-id", "-1"], "--process-id must be from 0 to 1, not -1"),
    (["--num-processes", "two"], "Invalid value for '--num-processes'"),
])
def test_bad_launch_options_are_one_line(tmp_path, args, message):
    r = CliRunner().invoke(app, ["sweep", "a.jpg", "b.jpg", "-o", str(tmp_path / "out"), *args])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:"), r.output
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


def test_joining_after_jax_started_is_one_line(tmp_path):
    jax.devices()  # this process's backend is up: too late to join
    r = CliRunner().invoke(app, ["sweep", "a.jpg", "b.jpg", "-o", str(tmp_path / "out"), "--coordinator",
                                 f"localhost:{free_port()}", "--num-processes", "2", "--process-id", "0"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 2 and lines[0].startswith("note: waiting for the other processes at "
                                                                        "localhost:"), r.output
    assert lines[1].startswith("error: cannot start the distributed run: jax.distributed.initialize() must be "
                               "called before")


# A process of a launch whose coordinator never answers: joins with a short deadline.
WAITER = textwrap.dedent("""
    import importlib, sys
    importlib.import_module("nst_jax.sweeps").JOIN_TIMEOUT_S = float(sys.argv[1])
    from nst_jax.console import main
    sys.argv = ["nst-jax", *sys.argv[2:]]
    main()
""")


def child_env() -> dict:
    """This environment for a child process: CPU only, no proxies (JAX warns of them), no XLA flags."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS" and not k.lower().endswith("_proxy")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    return env


@contextmanager
def waiter(tmp_path, timeout_s: float):
    """The console script, process 1 of 2, waiting for a coordinator nobody runs; killed after."""
    save_image(CONTENT, tmp_path / "content.png")
    save_image(STYLE, tmp_path / "style.png")
    args = ["sweep", str(tmp_path / "content.png"), str(tmp_path / "style.png"), "-o", str(tmp_path / "out"),
            "--size", "32", "--style-weight", "1,2", "--coordinator", f"localhost:{free_port()}",
            "--num-processes", "2", "--process-id", "1"]
    p = subprocess.Popen([sys.executable, "-c", WAITER, str(timeout_s), *args], cwd=ROOT, env=child_env(),
                         text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield p
    finally:
        p.kill()
        p.communicate()


def test_ctrl_c_while_waiting_for_the_others_stops_at_once(tmp_path):
    with waiter(tmp_path, 600) as p:
        first = []
        reader = threading.Thread(target=lambda: first.append(p.stderr.readline()), daemon=True)
        reader.start()
        reader.join(120)  # the note comes once the imports are done
        assert first and first[0].startswith("note: waiting for the other processes at localhost:"), first
        time.sleep(1.0)  # inside the join
        p.send_signal(signal.SIGINT)
        start = time.monotonic()
        err = p.communicate(timeout=60)[1]
        assert time.monotonic() - start < 10
        assert p.returncode == 130 and err.strip() == "interrupted; nothing more was saved", err
    assert not (tmp_path / "out").exists()


def test_a_join_that_times_out_is_one_line(tmp_path):
    with waiter(tmp_path, 2) as p:
        err = p.communicate(timeout=120)[1]
        lines = err.strip().splitlines()
        assert p.returncode == 1 and len(lines) == 2, err  # the note, then the error: no abort, no trace
        assert lines[0].endswith("(up to 2 s)")
        assert lines[1] == "error: cannot start the distributed run: not every process joined within 2 s"
    assert not (tmp_path / "out").exists()
