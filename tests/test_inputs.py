"""Inputs -> targets: blended style Grams, size scaling, start images, the digest."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image

import icc_profiles
from conftest import CONTENT, STYLE, tiny
from nst_jax.errors import NstError
from nst_jax.inputs import normalised_blend, prepare
from nst_jax.losses import blended_gram, gram


def features(run, image, layer):
    return np.asarray(jax.jit(run.objective.model.apply)(run.problem.variables, image)[layer], np.float64)


def test_blended_target_by_hand(vgg16_weights):
    other = np.random.default_rng(5).uniform(size=(16, 40, 3)).astype(np.float32)  # another size
    config = tiny(style_blend=(3.0, 1.0), size=32)
    run = prepare(CONTENT, [STYLE, other], config, vgg16_weights)
    styles = run.styles  # each resized so its longest side is 32
    assert [s.shape[:2] for s in styles] == [(24, 32), (13, 32)]
    for i, layer in enumerate(config.style_layers):
        out = features(run, run.content, layer)
        m_out = out.shape[0] * out.shape[1]
        want = 0.0
        for style, w in zip(styles, (0.75, 0.25)):
            f = features(run, style, layer).reshape(-1, out.shape[-1])
            want = want + w * (m_out / len(f)) * (f.T @ f)
        got = blended_gram(run.problem.targets.style[i], run.problem.weights.blend)
        np.testing.assert_allclose(got, want, rtol=2e-5)


def test_one_style_of_the_output_size_is_the_papers_gram(vgg16_weights):
    run = prepare(CONTENT, CONTENT, tiny(), vgg16_weights)
    for i, layer in enumerate(run.objective.style_layers):
        np.testing.assert_allclose(run.problem.targets.style[i][0],
                                   gram(features(run, run.content, layer)), rtol=1e-5)


def test_the_targets_come_from_xla_convolutions_whatever_the_step_uses(vgg16_weights):
    """A target is one forward pass: it runs XLA's own convolutions (a short program to trace)
    even where the step's network runs Winograd's."""
    from nst_jax.vgg import VGG

    config = tiny(conv="winograd", size=128, balance="gap", content_norm="relative")  # relu2_1 Winograd there
    run = prepare(CONTENT, STYLE, config, vgg16_weights)
    assert run.objective.model.conv == "winograd"
    xla = VGG(arch="vgg16", taps=run.objective.model.taps, conv="lax")
    feats = jax.jit(xla.apply)(run.problem.variables, run.content)
    np.testing.assert_array_equal(run.problem.targets.content[0], feats["relu2_1"])
    style = jax.jit(xla.apply)(run.problem.variables, run.styles[0])["relu2_1"]
    scale = feats["relu2_1"].shape[0] * feats["relu2_1"].shape[1] / (style.shape[0] * style.shape[1])
    # the features are XLA's to the bit (above); the Grams differ only in how the sums are ordered
    np.testing.assert_allclose(run.problem.targets.style[1][0], scale * gram(style), rtol=1e-5)


def test_blend_weights():
    assert normalised_blend((), 2) == (0.5, 0.5)
    assert normalised_blend((3, 7), 2) == (0.3, 0.7)
    with pytest.raises(NstError, match="3 blend weights for 2 style images"):
        normalised_blend((1, 1, 1), 2)
    with pytest.raises(NstError, match="not all zero"):
        normalised_blend((0, 0), 2)


def test_digest_changes_with_every_input(vgg16_weights, vgg19_params):
    base = prepare(CONTENT, STYLE, tiny(), vgg16_weights).digest
    assert prepare(CONTENT, STYLE, tiny(), vgg16_weights).digest == base
    assert prepare(CONTENT, STYLE[::-1].copy(), tiny(), vgg16_weights).digest != base
    assert prepare(CONTENT * 0.5, STYLE, tiny(), vgg16_weights).digest != base
    from nst_jax.weights import VGGWeights

    params = dict(vgg16_weights.params, **{"conv1_1.bias": vgg16_weights.params["conv1_1.bias"] + 1})
    other = VGGWeights("vgg16", "torchvision", params)
    assert prepare(CONTENT, STYLE, tiny(), other).digest != base


def test_a_colour_profile_note_once_per_file(tmp_path, vgg16_weights):
    path = tmp_path / "p3.png"
    p3 = icc_profiles.rgb_profile("Display P3", icc_profiles.P3_PRIMARIES, icc_profiles.SRGB_CURVE)
    Image.fromarray((CONTENT * 255).astype(np.uint8)).save(path, icc_profile=p3)
    run = prepare(path, [path, STYLE], tiny(), vgg16_weights)  # the content is a style too
    assert run.notes == ["p3.png: converted from Display P3 to sRGB"]
