"""Tiled evaluation is the same objective: value, terms and gradient equal the whole
picture's for every loss variant; a halo too small is measurably wrong; targets, steps and
coarse-to-fine runs through the tiled path."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CONTENT, STYLE, tiny
from nst_jax import memory
from nst_jax.config import StyleConfig
from nst_jax.errors import NstError
from nst_jax.image import save_image
from nst_jax.inputs import memory_plans, prepare
from nst_jax.memory import describe_plans
from nst_jax.run import stylize
from nst_jax.step import init_state, make_step, optimizer_named
from nst_jax.tiling import TilePlan, alignment, receptive_radius, tile_grid

# Shallow taps (R = 10 px, tiles on a 4 px grid) so that small pictures have real halos.
SHALLOW = dict(content_layers=("relu3_1",), content_layer_weights=(1.0,),
               style_layers=("relu1_1", "relu2_1", "relu3_1"), style_layer_weights=(0.3, 0.3, 0.4))
OTHER_STYLE = np.random.default_rng(7).uniform(size=(30, 20, 3)).astype(np.float32)


def test_receptive_radius_and_alignment():
    paper = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")
    assert receptive_radius("vgg19", paper) == 70 and alignment("vgg19", paper) == 16
    assert receptive_radius("vgg16", paper) == 58
    assert receptive_radius("vgg19", ("relu4_2",)) == 38 and alignment("vgg19", ("relu4_2",)) == 8
    assert receptive_radius("vgg16", SHALLOW["style_layers"]) == 10


def test_tile_grid_covers_the_picture_once():
    grid = tile_grid(70, 45, 24, 10, 4)
    cover = np.zeros((70, 45), int)
    for t in grid:
        cover[slice(*t.rows), slice(*t.cols)] += 1
        assert t.crop_rows[0] % 4 == 0 and t.crop_cols[0] % 4 == 0  # on the pooling grid
        assert t.crop_rows[0] <= max(0, t.rows[0] - 10) and t.crop_rows[1] >= min(70, t.rows[1] + 10)
        assert t.crop_cols[0] <= max(0, t.cols[0] - 10) and t.crop_cols[1] >= min(45, t.cols[1] + 10)
        assert t.rows[0] % 4 == 0 and t.cols[0] % 4 == 0
    assert (cover == 1).all() and len(grid) == 3 * 2
    # one crop shape for all tiles (shifted inward at the far end, still on the grid)
    assert len({(t.crop_rows[1] - t.crop_rows[0], t.crop_cols[1] - t.crop_cols[0]) for t in grid}) == 1
    assert grid[-1].crop_rows[1] == 70 and grid[-1].crop_cols[1] == 45
    with pytest.raises(NstError, match="multiple of 16 px"):
        tile_grid(64, 64, 24, 70, 16)


def variant(name: str, tmp_path) -> tuple[StyleConfig, list]:
    """Configs on XLA's convolutions: tiling is exact whatever computes the convolutions,
    but at 80-96 px the whole picture would run some layers as Winograd where the smaller
    tiles do not, and two lowerings' rounding differs by ~2e-4 in the gradient on this
    random network (max-pool near-ties take another branch), which is not tiling's error."""
    base = tiny(size=80, tv_weight=3.0, conv="lax", **SHALLOW)
    if name == "paper norms":
        return base, [STYLE]
    if name == "content mean, luminance, wasserstein":
        return base.replace(content_norm="mean", content_weight=1e4, colour="luminance",
                            style_loss="wasserstein"), [STYLE]
    if name == "two styles, relative norms, gram share":
        return base.replace(style_blend=(3.0, 1.0), content_norm="relative", style_norm="relative",
                            per_channel=4.0), [STYLE, OTHER_STYLE]
    if name in ("masks", "masks, wasserstein"):
        left = np.zeros((32, 28, 3), np.float32)
        left[:, :12] = 1.0
        left[4:9, 12:15] = 0.5  # a soft edge
        save_image(left, tmp_path / "left.png")
        save_image(1.0 - left, tmp_path / "right.png")
        return base.replace(masks=(str(tmp_path / "left.png"), str(tmp_path / "right.png")),
                            style_loss="wasserstein" if "wasserstein" in name else "gram",
                            per_channel=4.0 if "wasserstein" in name else 0.0), [STYLE, OTHER_STYLE]
    if name == "paper layers":  # VGG16 to relu5_1: R = 58 px, 16 px grid
        return tiny(size=96, content_layers=("relu4_2",), style_layers=StyleConfig().style_layers,
                                style_layer_weights=StyleConfig().style_layer_weights, conv="lax"), [STYLE]
    raise KeyError(name)


def plain_and_tiled(run, tile: int, halo: int | None = None):
    """((J, terms), grad) of the run's objective, whole and in tiles, at a random picture."""
    taps = run.objective.model.taps
    tiled = dataclasses.replace(run.objective, tiles=TilePlan(tile, receptive_radius(run.arch, taps)
                                                              if halo is None else halo))
    x = jnp.asarray(np.random.default_rng(3).uniform(size=run.start.shape), jnp.float32)
    out = [jax.jit(jax.value_and_grad(o, argnums=1, has_aux=True))(run.problem, x) for o in (run.objective, tiled)]
    return out, tiled


def relative(a, b) -> float:
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("name", ["paper norms", "content mean, luminance, wasserstein",
                                  "two styles, relative norms, gram share", "masks", "paper layers",
                                  "masks, wasserstein"])
@pytest.mark.slow
def test_the_tiled_gradient_is_the_plain_gradient(name, tmp_path, vgg16_weights):
    config, styles = variant(name, tmp_path)
    run = prepare(CONTENT, styles, config.replace(tile=0), vgg16_weights)
    tile = 32 if name == "paper layers" else 24
    ((value, terms), grad), ((t_value, t_terms), t_grad) = plain_and_tiled(run, tile)[0]
    assert len(tile_grid(*run.start.shape[:2], tile, 0, 4)) >= 6
    # The Wasserstein loss's tr (.)^(1/2) takes square roots of small eigenvalues, which
    # magnify float32 rounding: the plain gradient itself is 4.5e-4 from float64's here
    # (the tiled one 4.4e-4), and values ~3e-5 apart.
    # Elementwise a few of its pixels stray further (2.8e-3 of the largest on an AVX2 CPU).
    rtol, gtol, atol = (1e-4, 2e-3, 5e-3) if "wasserstein" in name else (1e-5, 1e-4, 1e-4)
    np.testing.assert_allclose(t_value, value, rtol=rtol)
    for a, b in zip(t_terms, terms):
        np.testing.assert_allclose(a, b, rtol=rtol)
    assert float(jnp.abs(grad).max()) > 0
    assert relative(t_grad, grad) < gtol
    np.testing.assert_allclose(t_grad, grad, rtol=0, atol=atol * float(jnp.abs(grad).max()))


@pytest.mark.slow
def test_a_halo_too_small_gives_a_measurable_error(vgg16_weights):
    config, styles = variant("paper norms", None)
    run = prepare(CONTENT, styles, config.replace(tile=0), vgg16_weights)
    ((_, _), grad), ((_, _), t_grad) = plain_and_tiled(run, 24, halo=2)[0]
    assert relative(t_grad, grad) > 1e-2


@pytest.mark.slow
def test_every_output_differentiates_and_the_problem_does_not(vgg16_weights):
    config, styles = variant("paper norms", None)
    run = prepare(CONTENT, styles, config.replace(tile=0), vgg16_weights)
    _, tiled = plain_and_tiled(run, 24)
    x = jnp.asarray(np.random.default_rng(4).uniform(size=run.start.shape), jnp.float32)
    # each separate term's gradient, not only J's
    want = jax.jit(jax.jacrev(lambda x: jnp.stack(run.objective(run.problem, x)[1][:3])))(x)
    got = jax.jit(jax.jacrev(lambda x: jnp.stack(tiled(run.problem, x)[1][:3])))(x)
    for k in range(3):
        assert relative(got[k], want[k]) < 1e-4
    with pytest.raises(NstError, match="differentiable with respect to the image only"):
        jax.grad(lambda p: tiled(p, x)[0])(run.problem)


def test_targets_computed_in_tiles_are_the_same(tmp_path, vgg16_weights):
    config, styles = variant("masks", tmp_path)
    config = config.replace(style_scale=0.75)  # the style images at another size than the output
    whole = prepare(CONTENT, styles, config.replace(tile=0), vgg16_weights)
    tiled = prepare(CONTENT, styles, config.replace(tile=24), vgg16_weights)
    assert whole.objective.tiles is None and tiled.objective.tiles == TilePlan(24, 10)
    for a, b in zip(jax.tree.leaves(tiled.problem.targets), jax.tree.leaves(whole.problem.targets)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs-backtrack"])
@pytest.mark.slow
def test_a_tiled_step_is_the_plain_step(optimizer, vgg16_weights):
    config, styles = variant("paper norms", None)
    config = config.replace(size=32, optimizer=optimizer)  # 2 x 2 tiles
    runs = [prepare(CONTENT, styles, config.replace(tile=t), vgg16_weights) for t in (0, 16)]
    opt = optimizer_named(optimizer)
    results = []
    for run in runs:
        state = init_state(run.objective, opt, run.problem, jnp.asarray(run.start))
        state, metrics = jax.jit(make_step(run.objective, opt))(state, run.problem, True)
        results.append((state.image, metrics.loss))
    (image, loss), (t_image, t_loss) = results
    np.testing.assert_allclose(t_loss, loss, rtol=1e-5)
    np.testing.assert_allclose(t_image, image, atol=1e-5)


@pytest.mark.slow
def test_coarse_to_fine_tiles_only_the_scales_that_need_it(vgg16_weights, monkeypatch):
    # At these sizes a tile's share of the compiled program (memory.TILE_BYTES) outweighs
    # what tiling saves; without it, the planner's choices are those of large pictures.
    monkeypatch.setattr(memory, "TILE_BYTES", 0)
    # detail 0: with the photo's band the 96 px start has pixels at near-zero gradient, where
    # Adam's first steps (m / sqrt(v)) turn the tiles' rounding into steps of up to its
    # learning rate (measured: 7 of 24192 values 2.8e-4 apart); the losses agree either way.
    config = tiny(size=96, scales=(48, 96), steps=2, conv="lax", detail=0.0,
                              **SHALLOW)  # see variant()
    taps = prepare(CONTENT, STYLE, config, vgg16_weights).objective.model.taps
    # a budget between the whole steps at 48 and at 96 px
    small, large = (p.bytes for p in memory_plans(config, "vgg16", taps, CONTENT.shape[:2], 2**40))
    budget = (small + large) // 2
    plans = memory_plans(config, "vgg16", taps, CONTENT.shape[:2], budget)
    assert plans[0].tiles is None and plans[1].tiles is not None and plans[1].bytes <= budget
    assert describe_plans(plans).endswith("(1 of 2 scales whole)")
    seen = []
    tiled = stylize(CONTENT, STYLE, config.replace(max_memory=budget / 2**30), weights=vgg16_weights,
                    on_plan=seen.append)
    assert len(seen) == 1 and [p.tiles is None for p in seen[0]] == [True, False]
    whole = stylize(CONTENT, STYLE, config.replace(tile=0), weights=vgg16_weights)
    np.testing.assert_allclose([r.total for r in tiled.history], [r.total for r in whole.history], rtol=1e-4)
    np.testing.assert_allclose(tiled.image, whole.image, atol=1e-4)
