"""The balance: J_style measured as a fraction of the photo's own style gap, whole or layer by
layer (losses.balanced_style)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CONTENT, STYLE, tiny
from nst_jax.config import StyleConfig
from nst_jax.image import save_image
from nst_jax.inputs import prepare
from nst_jax.losses import LossWeights, Targets, balanced_style
from nst_jax.run import stylize

OTHER_STYLE = np.random.default_rng(5).uniform(size=(30, 26, 3)).astype(np.float32)


def gap_config(**changes) -> StyleConfig:
    return tiny(**{"balance": "gap", "content_norm": "relative", "per_channel": 4.0,
                               "init": "content", **changes})


def test_balanced_style_by_hand():
    # two layers x two style images: gaps [[2, 4], [10, 30]], blend (0.25, 0.75): per layer
    # 0.25*2 + 0.75*4 = 3.5 and 2.5 + 22.5 = 25; lambda (0.5, 1) times shares (1, 0.25): (0.5, 0.25);
    # the layers' terms J_style^l = (3.5, 9)
    targets = Targets(content=(), style=(), gaps=jnp.asarray([[2.0, 4.0], [10.0, 30.0]]))
    w = LossWeights(*(jnp.asarray(v, jnp.float32) for v in (1.0, 1.0, 0.0, [1.0], [0.5, 1.0], [0.25, 0.75])))
    terms, shares = [jnp.asarray(3.5), jnp.asarray(9.0)], (1.0, 0.25)
    fn = jax.jit(balanced_style, static_argnums=(3, 4))
    # the paper's: 0.5*3.5 + 0.25*9 = 4
    assert float(fn(terms, targets._replace(gaps=None), w, shares, False)) == pytest.approx(4.0)
    # the style gap: 4 / (0.5*3.5 + 0.25*25 = 8)
    assert float(fn(terms, targets, w, shares, False)) == pytest.approx(0.5)
    # layer by layer: (0.5 * 3.5/3.5 + 0.25 * 9/25) / (0.5 + 0.25) = 0.59 / 0.75
    assert float(fn(terms, targets, w, shares, True)) == pytest.approx(0.59 / 0.75)


@pytest.mark.parametrize("size, tile, loss, balance", [
    (32, "auto", "gram", "gap"), (64, "auto", "gram", "gap"), (64, 32, "gram", "gap"),
    (64, "auto", "wasserstein", "gap"), (64, 32, "wasserstein", "gap"), (64, "auto", "gram", "layers"),
    (64, 32, "gram", "layers")])
def test_the_style_term_reads_one_at_the_photo_at_every_size(size, tile, loss, balance, vgg16_weights):
    """The point of the balance: at the photo J_style = 1 and J_content = 0, whatever the
    pair, the size, the style loss, or whether the objective runs whole or in tiles."""
    # layer by layer, the shares s_l at 1 (per_channel 0) so the expected value is a plain mean
    changes = dict(size=size, tile=tile, style_loss=loss, **({"per_channel": 0.0} if balance == "layers" else {}))
    for style in (STYLE, OTHER_STYLE):
        run = prepare(CONTENT, style, gap_config(balance=balance, **changes), vgg16_weights)
        assert (run.objective.tiles is not None) == (tile == 32)
        objective = jax.jit(run.objective)
        _, terms = objective(run.problem, jnp.asarray(run.content))
        assert float(terms.style) == pytest.approx(1.0, rel=1e-5)
        assert float(terms.content) == pytest.approx(0.0, abs=1e-6)
        fixed = prepare(CONTENT, style, gap_config(balance="fixed", **changes), vgg16_weights)
        x = jnp.asarray(np.random.default_rng(0).uniform(size=run.content.shape), jnp.float32)
        _, at_x = objective(run.problem, x)

        def raw(weights, image):  # J_style of the paper's loss with these layer weights
            problem = fixed.problem._replace(weights=fixed.problem.weights._replace(style_layers=weights))
            return float(jax.jit(fixed.objective)(problem, jnp.asarray(image))[1].style)

        lam = np.asarray(fixed.problem.weights.style_layers)
        if balance == "gap":
            want = raw(lam, x) / raw(lam, fixed.content)
        else:
            ones = np.eye(len(lam), dtype=np.float32)
            want = sum(lam[l] * raw(ones[l], x) / raw(ones[l], fixed.content) for l in range(len(lam))) / lam.sum()
        assert float(at_x.style) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("balance", ["gap", "layers"])
def test_the_gap_of_a_blend_and_of_masks(balance, tmp_path, vgg16_weights):
    """Several styles: the blend of each one's gap; masks: each region's guided gap. At the
    photo a single style image in a blend or a mask reads 1."""
    blended = prepare(CONTENT, [STYLE, OTHER_STYLE], gap_config(style_blend=(1.0, 0.0), balance=balance),
                      vgg16_weights)
    _, terms = jax.jit(blended.objective)(blended.problem, jnp.asarray(blended.content))
    assert float(terms.style) == pytest.approx(1.0, rel=1e-5)
    half = np.zeros((32, 28, 3), np.float32)
    half[:, :14] = 1.0
    save_image(half, tmp_path / "left.png")
    save_image(1.0 - half, tmp_path / "right.png")
    masked = prepare(CONTENT, [STYLE, OTHER_STYLE], gap_config(masks=(str(tmp_path / "left.png"),
                                                                       str(tmp_path / "right.png")),
                                                               balance=balance),
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


@pytest.mark.parametrize("balance", ["gap", "layers"])
def test_a_photo_that_already_has_the_style_is_refused(balance, vgg16_weights):
    """The style image is the photo (a gap of 0): no balance can be measured against it, so
    one error says so before any step, rather than a division by zero."""
    from nst_jax.errors import NstError

    with pytest.raises(NstError, match="already has the style's statistics.*--balance fixed"):
        prepare(CONTENT, CONTENT, gap_config(balance=balance), vgg16_weights)
    prepare(CONTENT, CONTENT, gap_config(balance="fixed", content_norm="mean"), vgg16_weights)  # the paper's: fine
    # a blend whose weight is all on the photo itself: another style's gap is there for a sweep's other rows
    blended = prepare(CONTENT, [CONTENT, STYLE], gap_config(balance=balance, style_blend=(1.0, 0.0)), vgg16_weights)
    assert any("balance: beta" in n for n in blended.notes)
