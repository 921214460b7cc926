"""vmapped sweeps: same numbers as one stylize() per cell, one compile, chunks, devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import nst_jax
from nst_jax import optimize
from nst_jax.cli import app, parse_layer_sets
from nst_jax.config import StyleConfig
from nst_jax.optimize import stylize
from nst_jax.sweep import paper_layer_sets, plan_chunks, sweep

RNG = np.random.default_rng(0)
CONTENT = RNG.uniform(size=(32, 28, 3)).astype(np.float32)
STYLE = RNG.uniform(size=(24, 32, 3)).astype(np.float32)
BETAS = [1e2, 1e4]
SETS = [(1.0, 0.0), (0.5, 0.5)]


@pytest.mark.parametrize("optimizer,lr,tol", [("adam", 0.02, 1e-5), ("lbfgs", None, 1e-5)])
def test_each_cell_equals_its_own_stylize(optimizer, lr, tol, vgg16_weights):
    config = StyleConfig.tiny(optimizer=optimizer, learning_rate=lr, steps=4, init="noisy-content")
    result = sweep(CONTENT, STYLE, config, BETAS, SETS, weights=vgg16_weights)
    assert result.shape == (2, 2) and result.compiles == 1
    for b, (layer_set, beta) in enumerate((s, w) for s in SETS for w in BETAS):
        one = stylize(CONTENT, STYLE, config.replace(style_weight=beta, style_layer_weights=layer_set),
                      weights=vgg16_weights)
        np.testing.assert_allclose(result.images[b], one.image, atol=tol)
        np.testing.assert_allclose(result.history[:, b], [h.total for h in one.history], rtol=1e-5)
        assert result.best_losses[b] == pytest.approx(one.best_loss, rel=1e-5)


def test_chunks_give_the_same_cells_and_compile_once(vgg16_weights):
    config = StyleConfig.tiny(steps=3)
    whole = sweep(CONTENT, STYLE, config, [1e2, 1e3, 1e4], weights=vgg16_weights)
    chunked = sweep(CONTENT, STYLE, config, [1e2, 1e3, 1e4], weights=vgg16_weights, max_chunk=2)
    assert (whole.chunks, chunked.chunks) == (1, 2)
    assert chunked.compiles == 1  # the padded last chunk reuses the compiled step
    np.testing.assert_allclose(chunked.images, whole.images, atol=1e-6)
    assert chunked.best_images.shape == (3, 32, 28, 3) and chunked.history.shape == (3, 3)


def test_plan_chunks():
    gib = 2**30
    assert plan_chunks(8, 1, per_cell=gib, fixed=0, available=100 * gib) == 8
    assert plan_chunks(8, 1, per_cell=gib, fixed=gib, available=4 * gib) == 2
    assert plan_chunks(8, 4, per_cell=gib, fixed=0, available=2 * gib) == 4  # at least one per device
    assert plan_chunks(3, 4, per_cell=1, fixed=0, available=gib) == 4  # padded up to the devices


def test_paper_layer_sets_are_cumulative():
    sets = paper_layer_sets(("a", "b", "c"))
    assert sets == [(1.0, 0.0, 0.0), (0.5, 0.5, 0.0), (1 / 3, 1 / 3, 1 / 3)]
    union, rows, labels = parse_layer_sets("relu1_1;relu1_1:0.5,relu2_1:0.5")
    assert union == ("relu1_1", "relu2_1") and rows == [(1.0, 0.0), (0.5, 0.5)]


SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import random_params
    from nst_jax.config import StyleConfig
    from nst_jax.sweep import sweep
    from nst_jax.weights import VGGWeights
    w = VGGWeights("vgg16", "torchvision", random_params("vgg16", seed=16))
    rng = np.random.default_rng(0)
    c = rng.uniform(size=(32, 28, 3)).astype(np.float32)
    s = rng.uniform(size=(24, 32, 3)).astype(np.float32)
    r = sweep(c, s, StyleConfig.tiny(steps=3), [1e2, 1e3, 1e4], weights=w)
    print(json.dumps({{"devices": len(jax.devices()), "used": r.devices, "compiles": r.compiles,
                      "best": r.best_losses.tolist(), "last": r.history[-1].tolist()}}))
""")


def test_sharded_over_four_cpu_devices_matches_one(vgg16_weights):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    code = SHARDED.format(tests=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["devices"] == 4 and got["used"] == 4 and got["compiles"] == 1
    here = sweep(CONTENT, STYLE, StyleConfig.tiny(steps=3), [1e2, 1e3, 1e4], weights=vgg16_weights)
    np.testing.assert_allclose(got["best"], here.best_losses, rtol=1e-5)
    np.testing.assert_allclose(got["last"], here.history[-1], rtol=1e-5)


def test_sweep_command_writes_cells_sheet_and_json(tmp_path, vgg16_weights, monkeypatch):
    monkeypatch.setattr(optimize, "load_weights", lambda spec: vgg16_weights)
    samples = Path(nst_jax.__file__).parent / "samples"
    out = tmp_path / "grid"
    r = CliRunner().invoke(app, ["sweep", str(samples / "content.jpg"), str(samples / "style.jpg"),
                                 "-o", str(out), "--size", "32", "--steps", "2",
                                 "--style-weight", "1e3,1e4", "--layers", "relu1_1;relu1_1,relu2_1"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("cell_*.png")) == [
        "cell_r0_c0.png", "cell_r0_c1.png", "cell_r1_c0.png", "cell_r1_c1.png"]
    cells = json.loads((out / "losses.json").read_text())["cells"]
    assert [c["style_weight"] for c in cells] == [1e3, 1e4, 1e3, 1e4]
    assert cells[2]["style_layer_weights"] == {"relu1_1": 0.5, "relu2_1": 0.5}
    assert (out / "contact_sheet.png").exists()
    bad = CliRunner().invoke(app, ["sweep", "a.jpg", "b.jpg", "--style-weight", "x,y"])
    assert bad.exit_code == 1 and "numbers separated by commas" in bad.output
