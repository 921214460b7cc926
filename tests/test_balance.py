"""The balance: J_style measured as a fraction of the photo's own style gap (losses.gap_fraction)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CONTENT, STYLE, tiny
from nst_jax.config import StyleConfig
from nst_jax.image import save_image
from nst_jax.inputs import prepare
from nst_jax.losses import LossWeights, Targets, gap_fraction
from nst_jax.run import stylize

OTHER_STYLE = np.random.default_rng(5).uniform(size=(30, 26, 3)).astype(np.float32)


def gap_config(**changes) -> StyleConfig:
    return tiny(**{"balance": "gap", "content_norm": "relative", "per_channel": 4.0,
                               "init": "content", **changes})


def test_gap_fraction_by_hand():
    # two layers x two style images: gaps [[2, 4], [10, 30]]; lambda (0.5, 1), shares (1, 0.25),
    # blend (0.25, 0.75): layer 1: 0.25*2 + 0.75*4 = 3.5, layer 2: 2.5 + 22.5 = 25;
    # gap = 0.5*1*3.5 + 1*0.25*25 = 8
    targets = Targets(content=(), style=(), gaps=jnp.asarray([[2.0, 4.0], [10.0, 30.0]]))
    w = LossWeights(*(jnp.asarray(v, jnp.float32) for v in (1.0, 1.0, 0.0, [1.0], [0.5, 1.0], [0.25, 0.75])))
    assert float(jax.jit(gap_fraction, static_argnums=3)(jnp.asarray(4.0), targets, w, (1.0, 0.25))) == 0.5
    assert float(gap_fraction(jnp.asarray(4.0), targets._replace(gaps=None), w, (1.0, 0.25))) == 4.0


@pytest.mark.parametrize("size, tile, loss", [(32, "auto", "gram"), (64, "auto", "gram"), (64, 32, "gram"),
                                              (64, "auto", "wasserstein"), (64, 32, "wasserstein")])
def test_the_style_term_reads_one_at_the_photo_at_every_size(size, tile, loss, vgg16_weights):
    """The point of the balance: at the photo J_style = 1 and J_content = 0, whatever the
    pair, the size, the style loss, or whether the objective runs whole or in tiles."""
    for style in (STYLE, OTHER_STYLE):
        run = prepare(CONTENT, style, gap_config(size=size, tile=tile, style_loss=loss), vgg16_weights)
        assert (run.objective.tiles is not None) == (tile == 32)
        _, terms = jax.jit(run.objective)(run.problem, jnp.asarray(run.content))
        assert float(terms.style) == pytest.approx(1.0, rel=1e-5)
        assert float(terms.content) == pytest.approx(0.0, abs=1e-6)
        fixed = prepare(CONTENT, style, gap_config(size=size, tile=tile, balance="fixed", style_loss=loss),
                        vgg16_weights)
        _, raw = jax.jit(fixed.objective)(fixed.problem, jnp.asarray(fixed.content))
        x = jnp.asarray(np.random.default_rng(0).uniform(size=run.content.shape), jnp.float32)
        _, at_x = jax.jit(run.objective)(run.problem, x)
        _, raw_x = jax.jit(fixed.objective)(fixed.problem, x)
        assert float(at_x.style) == pytest.approx(float(raw_x.style) / float(raw.style), rel=1e-5)


def test_the_gap_of_a_blend_and_of_masks(tmp_path, vgg16_weights):
    """Several styles: the blend of each one's gap; masks: each region's guided gap. At the
    photo a single style image in a blend or a mask reads 1."""
    blended = prepare(CONTENT, [STYLE, OTHER_STYLE], gap_config(style_blend=(1.0, 0.0)), vgg16_weights)
    _, terms = jax.jit(blended.objective)(blended.problem, jnp.asarray(blended.content))
    assert float(terms.style) == pytest.approx(1.0, rel=1e-5)
    half = np.zeros((32, 28, 3), np.float32)
    half[:, :14] = 1.0
    save_image(half, tmp_path / "left.png")
    save_image(1.0 - half, tmp_path / "right.png")
    masked = prepare(CONTENT, [STYLE, OTHER_STYLE], gap_config(masks=(str(tmp_path / "left.png"),
                                                                       str(tmp_path / "right.png"))),
                     vgg16_weights)
    assert masked.problem.targets.gaps.shape == (2, 2)
    _, terms = jax.jit(masked.objective)(masked.problem, jnp.asarray(masked.content))
    assert float(terms.style) == pytest.approx(1.0, rel=1e-5)


def test_an_explicit_style_weight_means_what_it_says(vgg16_weights):
    run = prepare(CONTENT, STYLE, gap_config(style_weight=3.0, content_weight=2.0), vgg16_weights)
    assert float(run.problem.weights.style) == 3.0 and float(run.problem.weights.content) == 2.0
    x = jnp.asarray(np.random.default_rng(1).uniform(size=run.content.shape), jnp.float32)
    value, terms = jax.jit(run.objective)(run.problem, x)
    assert float(value) == pytest.approx(2.0 * float(terms.content) + 3.0 * float(terms.style), rel=1e-6)
    assert any(n.startswith("balance: beta 3 on the style gap") for n in run.notes)


@pytest.mark.slow
def test_a_run_with_the_gap_balance_resumes_to_the_same_picture(tmp_path, vgg16_weights):
    config = gap_config(scales=(16, 32), steps=2, optimizer="lbfgs-backtrack")
    whole = stylize(CONTENT, STYLE, config, weights=vgg16_weights)
    ckpt = tmp_path / "run.ckpt"
    stylize(CONTENT, STYLE, config, weights=vgg16_weights, checkpoint=ckpt, checkpoint_every=1,
            callback=lambda p: p.step == 3)
    rest = stylize(CONTENT, STYLE, config, weights=vgg16_weights, resume=ckpt)
    np.testing.assert_array_equal(rest.output, whole.output)
    assert whole.history[0].style == pytest.approx(1.0, rel=1e-5)  # the run starts at the photo
