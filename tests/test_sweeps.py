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
from PIL import Image
from typer.testing import CliRunner

import nst_jax
from conftest import CONTENT, STYLE, made_result, tiny
from nst_jax import inputs
from nst_jax.cli import app
from nst_jax.specs import parse_blend_grid, parse_layer_sets
from nst_jax.errors import NstError
from nst_jax.image import load_image
from nst_jax.run import stylize
from nst_jax.run import Grid
from nst_jax.sweeps import paper_layer_sets, steps_label, sweep, write_sweep
from nst_jax.config import StyleConfig
BETAS = [1e2, 1e4]
SETS = [(1.0, 0.0), (0.5, 0.5)]


# Losses agree to 1e-5 for every optimizer. Images: Adam's agree to 1e-5; L-BFGS's two-loop
# recursion and its line searches' accept/reject decisions turn float rounding of batched vs
# single convolutions (1e-7) into iterates that differ in a few pixels after 4 steps: up to
# 6e-4 with the zoom search, 1.5e-4 with backtracking on an AVX-512 CPU (below 1e-5 on AVX2).
@pytest.mark.parametrize("optimizer,k,tol", [("adam", 1, 1e-5), ("lbfgs", 1, 1e-3), ("adam", 2, 1e-5),
                                             ("lbfgs-backtrack", 1, 1e-3), ("lbfgs-armijo", 2, 1e-3)])
@pytest.mark.slow
def test_each_cell_equals_its_own_stylize(optimizer, k, tol, vgg16_weights):
    config = tiny(optimizer=optimizer, steps=4, init="noisy-content", steps_per_call=k)
    result = sweep(CONTENT, STYLE, config, BETAS, SETS, weights=vgg16_weights)
    assert result.grid.shape == (2, 2) and result.grid.compiles == 1
    for b, (layer_set, beta) in enumerate((s, w) for s in SETS for w in BETAS):
        one = stylize(CONTENT, STYLE, config.replace(style_weight=beta, style_layer_weights=layer_set),
                      weights=vgg16_weights)
        np.testing.assert_allclose(result.images[b], one.image, atol=tol)
        np.testing.assert_allclose(result.trace["loss"][:, b], [h.total for h in one.history], rtol=1e-5)
        assert result.best_losses[b] == pytest.approx(one.best_loss, rel=1e-5)


def test_a_blend_axis_cell_equals_its_own_stylize(vgg16_weights):
    other = np.random.default_rng(7).uniform(size=(20, 30, 3)).astype(np.float32)
    config = tiny(steps=3, init="noisy-content")
    blends = [(1.0, 0.0), (0.5, 0.5), (1.0, 3.0)]  # the last is normalised to (0.25, 0.75)
    result = sweep(CONTENT, [STYLE, other], config, [1e4], blends=blends, weights=vgg16_weights)
    assert result.grid.shape == (3, 1) and result.grid.compiles == 1
    assert [c["blend"] for c in result.cells()] == [[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]]
    for b, blend in enumerate(blends):
        one = stylize(CONTENT, [STYLE, other], config.replace(style_weight=1e4, style_blend=blend),
                      weights=vgg16_weights)
        np.testing.assert_allclose(result.images[b], one.image, atol=1e-5)
        np.testing.assert_allclose(result.trace["loss"][:, b], [h.total for h in one.history], rtol=1e-5)
    assert np.abs(result.images[0] - result.images[2]).max() > 1e-3  # the blend changes the result


def test_blend_grid_rows():
    assert parse_blend_grid("0,0.25,1", 2) == ([(1.0, 0.0), (0.75, 0.25), (0.0, 1.0)],
                                               ["blend 0", "blend 0.25", "blend 1"])
    blends, labels = parse_blend_grid("1,1,2;0,1,0", 3)
    assert blends == [(0.25, 0.25, 0.5), (0.0, 1.0, 0.0)] and labels[0] == "blend 0.25/0.25/0.5"
    assert parse_blend_grid("1,1,2", 3)[0] == [(0.25, 0.25, 0.5)]  # one row needs no ';'
    for spec, n, message in [("0,1", 3, r"one weight per style for each row, .*\(e\.g\. 1,0,0;0,1,0\)"),
                             ("0,2", 2, r"fractions in \[0, 1\]"), ("1,2", 1, "two or more style images"),
                             ("1,2;1", 2, r"one weight per style .*\(e\.g\. 1,0;0,1\)"), ("0,0,0", 3, "not all zero")]:
        with pytest.raises(NstError, match=message):
            parse_blend_grid(spec, n)


def test_chunks_give_the_same_cells_and_compile_once(vgg16_weights):
    config = tiny(steps=3)
    whole = sweep(CONTENT, STYLE, config, [1e2, 1e3, 1e4], weights=vgg16_weights)
    chunked = sweep(CONTENT, STYLE, config, [1e2, 1e3, 1e4], weights=vgg16_weights, max_chunk=2)
    assert (whole.grid.chunks, chunked.grid.chunks) == (1, 2)
    assert chunked.grid.compiles == 1  # the padded last chunk reuses the compiled step
    np.testing.assert_allclose(chunked.images, whole.images, atol=1e-6)
    assert chunked.best_images.shape == (3, 32, 28, 3) and chunked.trace["loss"].shape == (3, 3)



def test_chunks_are_planned_within_max_memory(vgg16_weights, monkeypatch):
    import nst_jax.batch as batch_module

    budgets = []
    monkeypatch.setattr(batch_module, "plan_chunks", lambda *a: budgets.append(a[-1]) or 1)
    sweep(CONTENT, STYLE, tiny(steps=1, max_memory=0.75), [1e2, 1e3], weights=vgg16_weights)
    assert budgets == [0.75 * 2**30]  # not all that is available


def test_paper_layer_sets_are_cumulative():
    sets = paper_layer_sets(("a", "b", "c"))
    assert sets == [(1.0, 0.0, 0.0), (0.5, 0.5, 0.0), (1 / 3, 1 / 3, 1 / 3)]
    layers, weights = ("relu1_1", "relu2_1"), (0.3, 0.7)
    union, rows, labels = parse_layer_sets("relu1_1;relu1_1:0.5,relu2_1:0.5", layers, weights)
    assert union == ("relu1_1", "relu2_1") and rows == [(1.0, 0.0), (0.5, 0.5)]
    assert parse_layer_sets("", layers, weights)[1] == [weights]  # one row: the configured layers
    assert parse_layer_sets("paper", layers, weights)[1] == [(1.0, 0.0), (0.5, 0.5)]


SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import random_params
    from nst_jax.config import StyleConfig
    from nst_jax.sweeps import sweep
    from nst_jax.weights import VGGWeights
    from conftest import CONTENT, STYLE, tiny
    w = VGGWeights("vgg16", "torchvision", random_params("vgg16", seed=16))
    r = sweep(CONTENT, STYLE, tiny(steps=3), [1e2, 1e3, 1e4], weights=w)
    print(json.dumps({{"devices": len(jax.devices()), "used": r.grid.devices, "compiles": r.grid.compiles,
                      "best": r.best_losses.tolist(), "last": r.trace["loss"][-1].tolist()}}))
""")


@pytest.mark.slow
def test_sharded_over_four_cpu_devices_matches_one(vgg16_weights):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    code = SHARDED.format(tests=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["devices"] == 4 and got["used"] == 4 and got["compiles"] == 1
    here = sweep(CONTENT, STYLE, tiny(steps=3), [1e2, 1e3, 1e4], weights=vgg16_weights)
    np.testing.assert_allclose(got["best"], here.best_losses, rtol=1e-5)
    np.testing.assert_allclose(got["last"], here.trace["loss"][-1], rtol=1e-5)


@pytest.mark.slow
def test_sweep_command_writes_cells_sheet_and_json(tmp_path, vgg16_weights, monkeypatch):
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights)
    samples = Path(nst_jax.__file__).parent / "samples"
    out = tmp_path / "new" / "grid"  # created when the results are written
    r = CliRunner().invoke(app, ["sweep", str(samples / "content.jpg"), str(samples / "style.jpg"),
                                 "-o", str(out), "--size", "32", "--steps", "2",
                                 "--style-weight", "20,40", "--layers", "relu1_1;relu1_1,relu2_1"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("cell_*.png")) == [
        "cell_r0_c0.png", "cell_r0_c1.png", "cell_r1_c0.png", "cell_r1_c1.png"]
    cells = json.loads((out / "losses.json").read_text())["cells"]
    assert [c["style_weight"] for c in cells] == [20, 40, 20, 40]
    assert cells[2]["style_layer_weights"] == {"relu1_1": 0.5, "relu2_1": 0.5}
    assert (out / "contact_sheet.png").exists()
    bad = CliRunner().invoke(app, ["sweep", "a.jpg", "b.jpg", "--style-weight", "x,y", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "numbers separated by commas" in bad.output
    failed = CliRunner().invoke(app, ["sweep", str(tmp_path / "none.jpg"), str(samples / "style.jpg"),
                                      "-o", str(tmp_path / "failed")])
    assert failed.exit_code == 1 and "no such file" in failed.output
    assert not (tmp_path / "failed").exists()  # a failed sweep leaves no empty folder


def test_one_result_type_reads_a_batch_or_a_batch_of_one():
    """A sweep's Result holds its cells on the leading axis; the singular names read a batch
    of one only, and a picture's Result has no grid of cells."""
    cells = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(np.float32)
    grid = made_result(tiny(), cells, [[2.0, 3.0], [1.0, 4.0]], best_losses=np.array([1.0, 3.0]),
                       grid=Grid([1e2, 1e4], [(0.2,) * 5], [()], 1, 1, 1))
    assert grid.cells_improved.tolist() == [True, False] and grid.final_terms["style"].shape == (2,)
    with pytest.raises(ValueError, match="a result of 2 cells"):
        grid.output
    one = made_result(tiny(), cells[:1], [[2.0], [1.0]])
    assert one.output.shape == (8, 8, 3) and one.improved is True and [r.total for r in one.history] == [2.0, 1.0]
    with pytest.raises(ValueError, match="not a sweep's result"):
        one.cells()


def test_cells_can_be_written_with_sixteen_bits(tmp_path):
    cells = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(np.float32)
    result = made_result(tiny(style_layers=("relu1_1",), style_layer_weights=(1.0,)), cells, [[2.0, 2.0], [1.0, 1.0]],
                         grid=Grid([1e2, 1e4], [(1.0,)], [()], 1, 1, 1))
    write_sweep(result, tmp_path, ["relu1_1"], 16)
    for c in range(2):
        with Image.open(tmp_path / f"cell_r0_c{c}.png") as cell:
            assert cell.tile[0][3] == "RGB;16B"  # the PNG's raw mode: 16 bits per channel
        assert np.abs(load_image(tmp_path / f"cell_r0_c{c}.png") - cells[c]).max() <= 1 / 65535
    with Image.open(tmp_path / "contact_sheet.png") as sheet:
        assert sheet.tile[0][3] == "RGB"
    # a smaller grid into the same folder: the earlier grid's third cell goes, the user's files stay
    (tmp_path / "cell_r0_c2.png").write_bytes((tmp_path / "cell_r0_c1.png").read_bytes())
    (tmp_path / "cell_r0_c2.png.keep").write_text("mine")
    write_sweep(made_result(result.config, cells[:1], [[2.0], [1.0]], grid=Grid([1e2], [(1.0,)], [()], 1, 1, 1)),
                tmp_path, ["relu1_1"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell_r0_c0.png", "cell_r0_c2.png.keep", "contact_sheet.png",
                                                          "losses.json"]


@pytest.mark.slow
def test_sweep_command_puts_blends_on_the_rows(tmp_path, vgg16_weights, monkeypatch):
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights)
    samples = Path(nst_jax.__file__).parent / "samples"
    args = ["sweep", str(samples / "content.jpg"), str(samples / "style.jpg"), str(samples / "content.jpg"),
            "-o", str(tmp_path / "grid"), "--size", "32", "--steps", "2", "--style-weight", "1e3", "--lr", "0.002",
            "--blend-grid", "0,1"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    cells = json.loads((tmp_path / "grid" / "losses.json").read_text())["cells"]
    assert [c["blend"] for c in cells] == [[1.0, 0.0], [0.0, 1.0]] and cells[1]["row"] == 1
    both = CliRunner().invoke(app, args + ["--blend", "1,1"])
    assert both.exit_code == 1 and "give --blend or --blend-grid, not both" in both.output


def test_sweep_resumes_from_its_own_state(vgg16_weights):
    config = tiny(steps=4)
    whole = sweep(CONTENT, STYLE, config, [1e2, 1e4], weights=vgg16_weights)
    half = sweep(CONTENT, STYLE, config.replace(steps=2), [1e2, 1e4], weights=vgg16_weights)
    rest = sweep(CONTENT, STYLE, config, [1e2, 1e4], weights=vgg16_weights, resume=half.state)
    np.testing.assert_array_equal(rest.images, whole.images)
    np.testing.assert_array_equal(rest.trace["loss"], whole.trace["loss"])


def test_cells_that_never_improve_are_flagged(vgg16_weights):
    # plain SGD's step grows with beta: the small-beta cells improve, the large one overshoots
    config = tiny(optimizer="sgd", learning_rate=1e-3, steps=3)
    result = sweep(CONTENT, STYLE, config, [1e2, 1e4, 1e6], weights=vgg16_weights)
    assert result.cells_improved.tolist() == [True, True, False]
    np.testing.assert_array_equal(result.best_images[2], np.clip(CONTENT, 0, 1))
    assert [c["improved"] for c in result.cells()] == result.cells_improved.tolist()


def test_a_chunk_pictures_what_the_sweep_would_save(vgg16_weights):
    """A sweep's progress makes each cell's picture of its chunk (the last chunk padded by
    wrapping) on demand: after the last step, the result's outputs."""
    last = {}
    result = sweep(CONTENT, STYLE, tiny(steps=2, average=0.5), style_weights=[1.0, 10.0, 1e3],
                   weights=vgg16_weights, max_chunk=2, callback=lambda chunk, p: last.__setitem__(chunk, p))
    assert sorted(last) == [0, 1] and last[1].metrics.loss.shape == (1, 2)
    np.testing.assert_array_equal(last[0].picture(), result.outputs[:2])
    np.testing.assert_array_equal(last[1].picture()[:1], result.outputs[2:])


def test_the_package_exports_the_sweep_function():
    """``from nst_jax import sweep`` (the README's Python block) is the function, also after
    the command line's modules imported the module that defines it."""
    import nst_jax
    import nst_jax.record  # noqa: F401  (imports nst_jax.sweeps, as the command line does)
    from nst_jax import sweep as exported

    assert exported is nst_jax.sweep is nst_jax.sweeps.sweep


def test_the_contact_sheets_title_says_the_steps_at_each_scale():
    assert steps_label(StyleConfig(size=200, scales=())) == "100 steps"
    assert steps_label(StyleConfig(size=256, steps=40)) == "40 steps at each of 128, 181, 256 px"
    assert (steps_label(StyleConfig(size=256, steps=40, coarse_steps=10))
            == "10 steps at each of 128, 181 px, 40 at 256 px")
