"""Colour functions against numbers computed by hand, the exact moment identities of each
colour-matching variant, and the invariants of recombination (Y of one image, I and Q of
the other) on tiny random images; then each colour control through prepare, stylize and
sweep, with fabricated weights."""

from __future__ import annotations

import numpy as np
import pytest

from nst_jax.colour import (MATCH_METHODS, RGB_FROM_YIQ, YIQ_FROM_RGB, after_run, as_rgb, before_run,
                            colour_transform, keep_original_colours, luminance, luminance_to_rgb,
                            match_colour_histogram, match_luminance, recombine, rgb_to_yiq,
                            yiq_to_rgb)
from nst_jax.inputs import prepare
from nst_jax.run import stylize
from nst_jax.sweeps import sweep
from conftest import tiny


def uniform(shape, low=0.0, high=1.0, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def correlated(shape, seed) -> np.ndarray:
    """Pixels in [0.1, 0.9] with correlated channels and unequal spreads: a well-conditioned,
    non-diagonal covariance."""
    rng = np.random.default_rng(seed)
    mix = np.diag([0.5, 0.35, 0.25]) + rng.uniform(-0.15, 0.15, (3, 3))
    return (0.5 + rng.uniform(-0.5, 0.5, shape) @ mix.T).astype(np.float32)


def moments(image) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.asarray(image, np.float64).reshape(-1, 3)
    return pixels.mean(axis=0), np.cov(pixels, rowvar=False, bias=True)


# --- YIQ -----------------------------------------------------------------------------------

def test_yiq_by_hand():
    rgb = np.array([[[0.2, 0.4, 0.6], [1.0, 0.0, 0.0]]], np.float32)
    # Y = 0.299*0.2 + 0.587*0.4 + 0.114*0.6 = 0.0598 + 0.2348 + 0.0684
    # I = 0.596*0.2 - 0.274*0.4 - 0.322*0.6 = 0.1192 - 0.1096 - 0.1932
    # Q = 0.211*0.2 - 0.523*0.4 + 0.312*0.6 = 0.0422 - 0.2092 + 0.1872
    expected = [[[0.363, -0.1836, 0.0202], [0.299, 0.596, 0.211]]]
    yiq = rgb_to_yiq(rgb)
    assert yiq.dtype == np.float32 and yiq.shape == (1, 2, 3)
    np.testing.assert_allclose(yiq, expected, atol=1e-6)


def test_luminance_of_primaries_and_grey():
    primaries = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]], np.float32)
    np.testing.assert_allclose(luminance(primaries), [[0.299, 0.587, 0.114, 1.0]], atol=1e-7)
    grey = np.full((2, 3, 3), 0.37, np.float32)
    np.testing.assert_allclose(rgb_to_yiq(grey), np.stack(
        [np.full((2, 3), 0.37), np.zeros((2, 3)), np.zeros((2, 3))], axis=-1), atol=1e-7)


def test_inverse_matrix():
    np.testing.assert_allclose(YIQ_FROM_RGB @ RGB_FROM_YIQ, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(RGB_FROM_YIQ @ YIQ_FROM_RGB, np.eye(3), atol=1e-12)
    # I and Q rows sum to zero, so a change of Y alone moves R, G, B equally.
    np.testing.assert_allclose(RGB_FROM_YIQ[:, 0], [1.0, 1.0, 1.0], atol=1e-12)


def test_yiq_round_trip():
    rgb = uniform((5, 7, 3), seed=1)
    np.testing.assert_allclose(yiq_to_rgb(rgb_to_yiq(rgb)), rgb, atol=1e-6)
    yiq = rgb_to_yiq(uniform((4, 3, 3), seed=2))
    np.testing.assert_allclose(rgb_to_yiq(yiq_to_rgb(yiq)), yiq, atol=1e-6)


# --- recombination: Y of one image, I and Q of the other -----------------------------------

def test_keep_original_colours():
    # Ranges chosen so nothing clips: content + (Y_r - Y_c) stays in [0.1, 0.9].
    result = uniform((6, 5, 3), 0.3, 0.7, seed=3)
    content = uniform((6, 5, 3), 0.4, 0.6, seed=4)
    out = keep_original_colours(result, content)
    assert out.dtype == np.float32 and out.shape == (6, 5, 3)
    yiq_r, yiq_c = rgb_to_yiq(result), rgb_to_yiq(content)
    unclipped = yiq_to_rgb(np.concatenate([yiq_r[..., :1], yiq_c[..., 1:]], axis=-1))
    assert unclipped.min() > 0.0 and unclipped.max() < 1.0
    yiq_out = rgb_to_yiq(out)
    np.testing.assert_allclose(yiq_out[..., 1:], yiq_c[..., 1:], atol=1e-6)
    np.testing.assert_allclose(yiq_out[..., 0], yiq_r[..., 0], atol=1e-6)
    # Independently: a change of Y alone adds the same amount to R, G and B.
    np.testing.assert_allclose(out, content + (luminance(result) - luminance(content))[..., None],
                               atol=1e-6)


def test_recombine():
    lum = uniform((4, 6), 0.4, 0.6, seed=5)
    content = uniform((4, 6, 3), 0.4, 0.6, seed=6)
    out = recombine(lum, content)
    assert out.min() > 0.0 and out.max() < 1.0  # no clipping happened
    np.testing.assert_allclose(rgb_to_yiq(out)[..., 1:], rgb_to_yiq(content)[..., 1:], atol=1e-6)
    np.testing.assert_allclose(luminance(out), lum, atol=1e-6)


def test_recombine_clips():
    # White luminance with saturated red chroma: R would be 1 + 0.701 unclipped.
    out = recombine(np.ones((1, 1)), np.array([[[1.0, 0.0, 0.0]]]))
    assert out.min() >= 0.0 and out.max() == 1.0


def test_yuv_recombination_agrees():
    # BT.601 YUV (jcjohnson/neural-style's -original_colors) gives the same RGB: its chroma
    # pair is another mixture of (R - Y, B - Y).
    yuv_from_rgb = np.array([[0.299, 0.587, 0.114],
                             [-0.14713, -0.28886, 0.436],
                             [0.615, -0.51499, -0.10001]])
    result = uniform((3, 4, 3), 0.3, 0.7, seed=7)
    content = uniform((3, 4, 3), 0.4, 0.6, seed=8)
    yuv_r, yuv_c = result @ yuv_from_rgb.T, content @ yuv_from_rgb.T
    mixed = np.concatenate([yuv_r[..., :1], yuv_c[..., 1:]], axis=-1)
    via_yuv = mixed @ np.linalg.inv(yuv_from_rgb).T
    np.testing.assert_allclose(keep_original_colours(result, content), via_yuv, atol=1e-4)


# --- luminance-only transfer ----------------------------------------------------------------

def test_match_luminance_by_hand():
    # mu_s = 1.5, sigma_s = sqrt(1.25); mu_c = 2, sigma_c = 1.
    style = np.array([[0.0, 1.0], [2.0, 3.0]])
    content = np.array([[1.0, 1.0, 3.0, 3.0]])
    expected = (style - 1.5) / np.sqrt(1.25) + 2.0
    np.testing.assert_allclose(match_luminance(style, content), expected, atol=1e-6)


def test_match_luminance_moments():
    style = uniform((7, 4), 0.0, 0.4, seed=9) ** 2
    content = uniform((5, 6), 0.2, 0.9, seed=10)
    out = match_luminance(style, content)
    assert out.shape == (7, 4) and out.dtype == np.float32
    assert abs(out.astype(np.float64).mean() - content.astype(np.float64).mean()) < 1e-6
    assert abs(out.astype(np.float64).std() - content.astype(np.float64).std()) < 1e-6


def test_match_luminance_flat_style():
    content = uniform((3, 3), seed=11)
    out = match_luminance(np.full((2, 5), 0.3), content)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, np.full((2, 5), content.astype(np.float64).mean()), atol=1e-6)


def test_luminance_to_rgb():
    lum = uniform((3, 2), seed=12)
    rgb = luminance_to_rgb(lum)
    assert rgb.shape == (3, 2, 3) and rgb.dtype == np.float32
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], lum)
    np.testing.assert_allclose(luminance(rgb), lum, atol=1e-6)  # luma weights sum to 1


# --- colour histogram matching --------------------------------------------------------------

@pytest.mark.parametrize("method", MATCH_METHODS)
def test_match_colour_histogram_moments(method):
    style, content = correlated((8, 9, 3), seed=13), correlated((7, 5, 3), seed=14)
    out = match_colour_histogram(style, content, method)
    assert out.shape == style.shape and out.dtype == np.float32
    mu_o, cov_o = moments(out)
    mu_c, cov_c = moments(content)
    np.testing.assert_allclose(mu_o, mu_c, atol=1e-4)
    np.testing.assert_allclose(cov_o, cov_c, atol=1e-4)
    # Without regularisation the match is exact up to float32 output rounding.
    mu_o, cov_o = moments(match_colour_histogram(style, content, method, eps=0.0))
    np.testing.assert_allclose(mu_o, mu_c, atol=1e-6)
    np.testing.assert_allclose(cov_o, cov_c, atol=1e-7)


@pytest.mark.parametrize("method", MATCH_METHODS)
def test_colour_transform_identity(method):
    rng = np.random.default_rng(15)
    b_s, b_c = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    cov_s, cov_c = b_s @ b_s.T + 0.1 * np.eye(3), b_c @ b_c.T + 0.1 * np.eye(3)
    a = colour_transform(cov_s, cov_c, method)
    np.testing.assert_allclose(a @ cov_s @ a.T, cov_c, atol=1e-10)


@pytest.mark.parametrize("method", MATCH_METHODS)
def test_match_colour_histogram_diagonal_by_hand(method):
    # Four pixels mu + h * sigma with h the rows of a Hadamard pattern: channel means mu,
    # channel variances sigma^2, no correlation. Every variant then scales each channel by
    # sigma_c / sigma_s, sending mu_s + h sigma_s to mu_c + h sigma_c.
    h = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], np.float64)
    style = (np.array([0.5, 0.5, 0.5]) + h * [0.1, 0.2, 0.3]).reshape(2, 2, 3)
    expected = (np.array([0.4, 0.5, 0.6]) + h * [0.05, 0.15, 0.25]).reshape(2, 2, 3)
    content = expected[:, ::-1]  # the same pixels in another order
    np.testing.assert_allclose(match_colour_histogram(style, content, method, eps=0.0), expected,
                               atol=1e-6)


def test_monge_kantorovich_moves_least():
    # Pitie & Kokaram's optimality holds for the exact covariances, hence eps=0.
    for seed in (16, 18):
        style, content = correlated((6, 6, 3), seed), correlated((5, 7, 3), seed + 1)
        change = {m: np.mean(np.square(match_colour_histogram(style, content, m, eps=0.0) - style))
                  for m in MATCH_METHODS}
        for method in MATCH_METHODS:
            assert change["monge_kantorovich"] <= change[method] + 1e-9


def test_match_colour_histogram_flat_and_grey_style():
    content = correlated((4, 4, 3), seed=20)
    mu_c, _ = moments(content)
    flat = match_colour_histogram(np.full((3, 5, 3), 0.2), content)
    np.testing.assert_allclose(flat, np.broadcast_to(mu_c, (3, 5, 3)), atol=1e-6)
    grey = np.repeat(uniform((3, 5, 1), seed=21), 3, axis=-1)
    for method in MATCH_METHODS:
        out = match_colour_histogram(grey, content, method)
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(moments(out)[0], mu_c, atol=1e-5)
    with pytest.raises(ValueError, match="singular"):
        match_colour_histogram(np.full((3, 5, 3), 0.2), content, eps=0.0)


def test_match_colour_histogram_clip():
    # A skewed style matched to a high-contrast content overshoots [0, 1] unless clipped.
    style = np.random.default_rng(22).exponential(0.1, (6, 6, 3))
    content = np.random.default_rng(23).integers(0, 2, (6, 6, 3)).astype(np.float64)
    raw = match_colour_histogram(style, content)
    assert raw.max() > 1.0 or raw.min() < 0.0
    np.testing.assert_array_equal(match_colour_histogram(style, content, clip=True),
                                  np.clip(raw, 0.0, 1.0))


# --- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 4, 4), (4, 4), (4, 4, 3, 1), (0, 4, 3)])
def test_rejects_non_rgb_shapes(shape):
    bad, good = np.zeros(shape), uniform((4, 4, 3), seed=24)
    for call in (lambda: rgb_to_yiq(bad), lambda: yiq_to_rgb(bad), lambda: luminance(bad),
                 lambda: keep_original_colours(bad, good), lambda: keep_original_colours(good, bad),
                 lambda: recombine(np.zeros((4, 4)), bad),
                 lambda: match_colour_histogram(bad, good),
                 lambda: match_colour_histogram(good, bad)):
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            call()


@pytest.mark.parametrize("shape", [(4, 4, 3), (4,), (0, 4)])
def test_rejects_non_luminance_shapes(shape):
    bad, good = np.zeros(shape), uniform((4, 4), seed=25)
    for call in (lambda: luminance_to_rgb(bad), lambda: recombine(bad, np.zeros((4, 4, 3))),
                 lambda: match_luminance(bad, good), lambda: match_luminance(good, bad)):
        with pytest.raises(ValueError, match=r"\(H, W\) luminance"):
            call()


def test_rejects_mismatched_sizes_and_bad_options():
    a, b = uniform((4, 4, 3), seed=26), uniform((4, 5, 3), seed=27)
    with pytest.raises(ValueError, match="resize"):
        keep_original_colours(a, b)
    with pytest.raises(ValueError, match="resize"):
        recombine(np.zeros((4, 5)), a)
    with pytest.raises(ValueError, match="unknown colour matching method 'sym'"):
        match_colour_histogram(a, b, method="sym")
    with pytest.raises(ValueError, match="eps"):
        match_colour_histogram(a, b, eps=-1.0)


# --- before and after the run: the colour control of prepare(), stylize() and sweep() ------

def chroma(image) -> np.ndarray:
    return rgb_to_yiq(image)[..., 1:]


# Mid-range images: the stylised luminance plus the content's chroma stays inside [0, 1], so
# recombination clips nothing and the chroma must come back to float precision.
MID_CONTENT = uniform((32, 28, 3), 0.3, 0.7, seed=30)
MID_STYLE = correlated((24, 32, 3), seed=31)
# Settings under which a few Adam steps move the fabricated network's image clearly.
MOVING = dict(steps=4, style_weight=1e4, content_weight=1e-3, learning_rate=0.01)


def test_before_and_after_run_by_mode():
    content, style = correlated((5, 6, 3), seed=32), correlated((4, 4, 3), seed=33)
    for mode in ("none", "original"):
        c, s = before_run(content, [style], mode)
        assert c is content and s[0] is style
        np.testing.assert_array_equal(after_run(style, content[:4, :4], "none"), style)
    c, s = before_run(content, [style], "histogram", "cholesky")
    np.testing.assert_array_equal(s[0], match_colour_histogram(style, content, "cholesky"))
    c, s = before_run(content, [style], "luminance")
    np.testing.assert_array_equal(c, luminance_to_rgb(luminance(content)))
    np.testing.assert_array_equal(s[0], luminance_to_rgb(match_luminance(luminance(style), luminance(content))))
    batch = np.stack([style, style[::-1]])
    out = after_run(batch, content[:4, :4], "luminance")
    assert out.shape == batch.shape
    np.testing.assert_array_equal(out[1], keep_original_colours(style[::-1], content[:4, :4]))
    np.testing.assert_array_equal(as_rgb(np.ones((2, 3, 1))), np.ones((2, 3, 3)))


def test_original_colours_end_to_end(vgg16_weights):
    config = tiny(colour="original", **MOVING)
    result = stylize(MID_CONTENT, MID_STYLE, config, weights=vgg16_weights)
    assert result.improved
    out = result.output
    assert np.abs(chroma(result.best_image) - chroma(MID_CONTENT)).max() > 5e-3  # the style moved it
    assert np.abs(chroma(out) - chroma(MID_CONTENT)).max() < 1e-3
    np.testing.assert_allclose(luminance(out), luminance(result.best_image), atol=1e-5)
    assert np.abs(luminance(out) - luminance(MID_CONTENT)).max() > 1e-3  # and it is stylised


def test_luminance_only_end_to_end(vgg16_weights):
    config = tiny(colour="luminance", scales=(16, 32), **MOVING)
    run = prepare(MID_CONTENT, MID_STYLE, config, vgg16_weights)
    assert run.start.shape == (32, 28, 1) and run.objective.luminance
    for grey in (run.content, run.styles[0]):
        assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])
    y_style, y_content = run.styles[0][..., 0].astype(np.float64), luminance(MID_CONTENT).astype(np.float64)
    assert abs(y_style.mean() - y_content.mean()) < 1e-5 and abs(y_style.std() - y_content.std()) < 1e-5

    result = stylize(MID_CONTENT, MID_STYLE, config, weights=vgg16_weights)
    assert result.improved and result.state.state.image.shape == (32, 28, 1)
    grey = result.best_image  # before recombination: exactly grey
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    out = result.output
    assert np.abs(chroma(out) - chroma(MID_CONTENT)).max() < 1e-3
    np.testing.assert_allclose(luminance(out), grey[..., 0], atol=1e-5)
    assert np.abs(luminance(out) - luminance(MID_CONTENT)).max() > 1e-3


def test_histogram_matching_end_to_end(vgg16_weights):
    config = tiny(colour="histogram", **MOVING)
    run = prepare(MID_CONTENT, MID_STYLE, config, vgg16_weights)
    mu_s, cov_s = moments(run.styles[0])
    mu_c, cov_c = moments(run.content)
    np.testing.assert_allclose(mu_s, mu_c, atol=1e-4)
    np.testing.assert_allclose(cov_s, cov_c, atol=1e-4)
    assert np.abs(moments(MID_STYLE)[1] - cov_c).max() > 1e-2  # there was something to match
    plain = prepare(MID_CONTENT, MID_STYLE, config.replace(colour="none"), vgg16_weights)
    assert not np.allclose(run.problem.targets.style[0], plain.problem.targets.style[0], rtol=1e-2)
    # the run is the plain run with the matched style (in [0, 1] here, so loading keeps it)
    matched = match_colour_histogram(MID_STYLE, MID_CONTENT)
    assert 0.0 <= matched.min() and matched.max() <= 1.0
    result = stylize(MID_CONTENT, MID_STYLE, config, weights=vgg16_weights)
    same = stylize(MID_CONTENT, matched, config.replace(colour="none"), weights=vgg16_weights)
    np.testing.assert_array_equal(result.image, same.image)
    assert np.abs(result.image - MID_CONTENT).max() > 1e-3


def test_a_luminance_sweep_cell_equals_its_own_stylize(vgg16_weights):
    config = tiny(colour="luminance", **MOVING)
    grid = sweep(MID_CONTENT, MID_STYLE, config, [1e3, 1e4], weights=vgg16_weights)
    assert grid.grid.compiles == 1 and grid.outputs.shape == (2, 32, 28, 3)
    for b, beta in enumerate([1e3, 1e4]):
        one = stylize(MID_CONTENT, MID_STYLE, config.replace(style_weight=beta), weights=vgg16_weights)
        np.testing.assert_allclose(grid.images[b], one.image, atol=1e-5)
        assert np.abs(grid.images[b] - luminance(MID_CONTENT)[..., None]).max() > 1e-3
        np.testing.assert_allclose(grid.outputs[b], one.output, atol=1e-5)
        assert np.abs(chroma(grid.outputs[b]) - chroma(MID_CONTENT)).max() < 1e-3
