"""Memory estimates, the refusal of what cannot fit, the chunk planner and the tile planner."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from conftest import CONTENT, STYLE, tiny
from nst_jax.errors import NstError
from nst_jax.inputs import prepare
from nst_jax.memory import (BACKWARD_FACTOR, FIXED_BYTES, OTHER_BACKWARD_FACTOR, STATE_IMAGES, TILE_BYTES,
                            estimate_bytes, network_bytes, plan_chunks, plan_memory)
from nst_jax.step import init_state, optimizer_named
from nst_jax.tiling import receptive_radius
from nst_jax.vgg import activation_bytes


def test_estimate_by_hand():
    # vgg16 to relu1_1 at 4x2 px: conv1_1 and relu1_1, each 4*2*64 floats of 4 bytes.
    assert activation_bytes("vgg16", 4, 2, ("relu1_1",)) == 2 * 4 * 2 * 64 * 4
    factor = BACKWARD_FACTOR.get(jax.default_backend(), OTHER_BACKWARD_FACTOR)  # 1.4 on CPU, 4 elsewhere
    network = int(factor * 2 * 4 * 2 * 64 * 4)
    per_image = network + 24 * 4 * 2 * 3 * 4  # Adam: its 5 state images twice, 14 more
    assert estimate_bytes("vgg16", 4, 2, ("relu1_1",), batch=3) == 3 * per_image + FIXED_BYTES
    lbfgs = network + 76 * 4 * 2 * 3 * 4  # L-BFGS: 28 state images twice, 14 more, 6 for the filter
    assert estimate_bytes("vgg16", 4, 2, ("relu1_1",), optimizer="lbfgs-backtrack") == lbfgs + FIXED_BYTES


@pytest.mark.parametrize("optimizer,family", [("adam", "adam"), ("lbfgs-backtrack", "lbfgs")])
def test_the_estimate_counts_the_optimizers_state(optimizer, family, vgg16_weights):
    """STATE_IMAGES is the size of the step's state in images (scalars aside): a change of
    the state (another buffer, a longer L-BFGS history) must change the estimate too."""
    run = prepare(CONTENT, STYLE, tiny(optimizer=optimizer), vgg16_weights)
    opt = optimizer_named(optimizer)
    state = jax.eval_shape(lambda: init_state(run.objective, opt, run.problem, jnp.asarray(run.start)))
    images = sum(leaf.size for leaf in jax.tree.leaves(state)) / run.start.size
    assert round(images) == STATE_IMAGES[family], images


def test_memory_estimate_refuses_what_cannot_fit():
    gib = 2**30
    with pytest.raises(NstError, match=r"20000x20000 px needs about \d+\.\d GiB .* 16.0 GiB may be used"):
        plan_memory("vgg19", 20000, 20000, ("relu1_1", "relu5_1"), budget=16 * gib, tile=0)
    assert plan_memory("vgg19", 64, 64, ("relu1_1", "relu5_1"), budget=16 * gib).tiles is None


def test_tiles_and_targets_by_hand():
    taps = ("relu1_1", "relu2_1")
    # vgg16 to relu2_1 at 8x8: conv1_1, relu1_1, conv1_2, relu1_2 (8x8x64), pool1 (4x4x64),
    # conv2_1, relu2_1 (4x4x128)
    forward = (4 * 64 * 64 + 16 * 64 + 2 * 16 * 128) * 4
    factor = BACKWARD_FACTOR["cpu"]
    assert network_bytes("vgg16", 8, 8, taps) == int(factor * forward)
    tiled = estimate_bytes("vgg16", 64, 64, taps, crop=(8, 8), tiles=64)
    assert tiled == (estimate_bytes("vgg16", 64, 64, taps) - network_bytes("vgg16", 64, 64, taps)
                     + int(factor * forward) + 64 * TILE_BYTES)
    # the content targets are the content taps' features of the whole picture
    assert (estimate_bytes("vgg16", 64, 64, taps, content_taps=("relu2_1",))
            == estimate_bytes("vgg16", 64, 64, taps) + 32 * 32 * 128 * 4)


@pytest.mark.parametrize("remat", [False, True])
def test_the_plan_picks_the_largest_tiles_that_fit(remat):
    taps, gib = ("relu1_1", "relu5_1"), 2**30
    need = lambda budget, **kw: plan_memory("vgg19", 3072, 4096, taps, budget=budget, remat=remat,  # noqa: E731
                                          content_taps=("relu4_2",), **kw)
    whole = need(10**15)
    assert whole.tiles is None and whole.count == 1 and "4096x3072, vgg19, whole" in str(whole)
    for budget in (8 * gib, 12 * gib, 18 * gib):
        plan = need(budget)
        assert plan.bytes <= budget and plan.tiles is not None and plan.tiles.halo == receptive_radius("vgg19", taps)
        # the next larger tile (one pooling cell more) does not fit: asked for, it is refused
        with pytest.raises(NstError, match=rf"needs at least about .* \(in tiles of {plan.tiles.tile + 16} px\)"):
            need(budget, tile=plan.tiles.tile + 16)
        assert plan.tiles.tile % 16 == 0 and plan.count > 1
        text = str(plan)
        assert f"{plan.count} tiles of" in text and "+ 70 px halo" in text and ("remat per block" in text) == remat
        assert "larger tiles are faster" not in text  # large tiles: their halos add little
    assert need(8 * gib).count > need(18 * gib).count
    small = plan_memory("vgg19", 64, 96, taps, budget=10**15, tile=16, content_taps=("relu4_2",))
    # 24 tiles, each crop 16 + 2 x 70 px a side clipped to the 64 x 96 picture: the whole picture, 24 times
    passes = small.count * small.crop[0] * small.crop[1] / (64 * 96)
    assert small.count == 24 and passes == 24 and f"({passes:.0f}x the picture's pixels a step: larger tiles are faster)" in str(small)
    fixed = need(18 * gib, tile=1000)  # rounded down to the pooling grid
    assert fixed.tiles.tile == 992
    with pytest.raises(NstError, match=r"needs at least about \d+\.\d+ GiB .* \(in tiles of \d+ px\) .* 0.20 GiB may be"):
        need(0.2 * gib)
    with pytest.raises(NstError, match=r"needs at least about 1\d\.\d GiB .* \(in tiles of 2048 px\) but only 8.0"):
        need(8 * gib, tile=2048)


def test_plan_chunks():
    gib = 2**30
    assert plan_chunks(8, 1, per_cell=gib, fixed=0, budget=100 * gib) == 8
    assert plan_chunks(8, 1, per_cell=gib, fixed=gib, budget=3 * gib) == 2  # (3 - 1) / 1
    assert plan_chunks(8, 4, per_cell=gib, fixed=0, budget=1.5 * gib) == 4  # at least one per device
    assert plan_chunks(3, 4, per_cell=1, fixed=0, budget=gib) == 4  # padded up to the devices
