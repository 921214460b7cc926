"""Every loss against numbers computed by hand, an independent numpy version, and
numerical gradients; every function is also run under jax.jit."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from nst_jax.errors import ConfigError
from nst_jax.losses import (LossWeights, Targets, blended_gram, content_loss, gram, gram_precision, gram_share,
                            guided_gram, guided_style_layer_loss, loss_terms, moments_of, style_layer_loss,
                            style_normalizer, total_loss, trace_sqrt, tv_loss, wasserstein_loss)

pytestmark = pytest.mark.usefixtures("strict_promotion")

# A 2x1 map with 2 channels: positions p1 = (1, 2), p2 = (3, 4).
A = np.array([[[1.0, 2.0]], [[3.0, 4.0]]], np.float32)


def test_gram_by_hand():
    # G = [[1*1 + 3*3, 1*2 + 3*4], [2*1 + 4*3, 2*2 + 4*4]]
    np.testing.assert_allclose(jax.jit(gram)(A), [[10.0, 14.0], [14.0, 20.0]])


def test_gram_precision_is_tf32x3_only_where_tensor_cores_have_tf32():
    gpu = lambda capability: SimpleNamespace(platform="gpu", compute_capability=capability,  # noqa: E731
                                             device_kind="Some GPU")
    cpu = SimpleNamespace(platform="cpu", device_kind="cpu")
    assert [gram_precision("auto", d) for d in (gpu("9.0"), gpu("8.0"), gpu("7.5"), cpu)] == [
        "tf32x3", "tf32x3", "float32", "float32"]
    assert gram_precision("float32", gpu("9.0")) == "float32"
    assert gram_precision("tf32x3", gpu("8.6")) == "tf32x3"
    with pytest.raises(ConfigError, match="'tf32x3' needs a GPU with TF32 tensor cores, not a cpu"):
        gram_precision("tf32x3", cpu)
    with pytest.raises(ConfigError, match="not Some GPU"):
        gram_precision("tf32x3", gpu("7.0"))
    # This machine's own device: what a run here resolves "auto" to, and float32 on CPUs.
    if jax.devices()[0].platform == "cpu":
        assert gram_precision() == "float32"


def test_gram_derivatives_match_the_plain_products_and_the_gradient_is_one_product():
    rng = np.random.default_rng(3)
    f = rng.standard_normal((6, 5, 4)).astype(np.float32)
    t = rng.standard_normal((4, 4)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, (6, 5)).astype(np.float32)
    hi = jax.lax.Precision.HIGHEST
    plain = lambda x, g: jnp.matmul(x.reshape(-1, 4).T, x.reshape(-1, 4) * g.reshape(-1, 1), precision=hi)  # noqa: E731
    loss = lambda gram_fn: lambda x, g: jnp.sum(jnp.square(gram_fn(x, g) - t) * t)  # noqa: E731 (C not symmetric)
    for argnum in (0, 1):  # features, and the guide
        np.testing.assert_allclose(jax.grad(loss(guided_gram), argnum)(f, w),
                                   jax.grad(loss(plain), argnum)(f, w), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(jax.grad(loss(lambda x, g: gram(x)))(f, w),
                               jax.grad(loss(lambda x, g: plain(x, jnp.ones_like(g))))(f, w), rtol=1e-5, atol=1e-4)
    tangent = rng.standard_normal(f.shape).astype(np.float32)  # forward mode too
    np.testing.assert_allclose(jax.jvp(gram, (f,), (tangent,))[1],
                               jax.jvp(lambda x: plain(x, jnp.ones((6, 5))), (f,), (tangent,))[1], rtol=1e-5, atol=1e-4)
    # The step's gradient of a Gram is one matmul besides the forward one (autodiff makes two).
    for fn in (lambda x: loss(lambda y, g: gram(y))(x, w), lambda x: loss(guided_gram)(x, w)):
        assert str(jax.make_jaxpr(jax.grad(fn))(f)).count("dot_general") == 2


def test_content_loss_by_hand():
    b = A + np.array([[[1.0, 0.0]], [[0.0, -2.0]]], np.float32)
    assert float(jax.jit(content_loss)(A, b)) == pytest.approx(0.5 * (1 + 4))


def test_relative_content_loss_by_hand():
    # A = [[1,2]],[[3,4]]: sum a_C^2 = 30; the difference below: 1 + 4 = 5 -> 5 / 30.
    b = A + np.array([[[1.0, 0.0]], [[0.0, -2.0]]], np.float32)
    assert float(jax.jit(content_loss, static_argnums=2)(A, b, "relative")) == pytest.approx(5.0 / 30.0)
    assert float(content_loss(A, b, "mean")) == pytest.approx(0.5 * 5.0 / 4)
    assert float(content_loss(2 * A, 2 * b, "relative")) == pytest.approx(5.0 / 30.0)  # scale-free


def test_gram_share_by_hand():
    # 8 x 6 positions of 512 channels, 4 positions per channel asked: 48 / 2048.
    assert gram_share((8, 6, 512), 4.0) == pytest.approx(48 / 2048)
    assert gram_share((64, 48, 512), 4.0) == 1.0  # 3072 >= 2048
    assert gram_share((8, 6, 512), 0.0) == 1.0  # off: the paper's weights
    # it scales the layer's term in the total: two layers, the second at a quarter
    feats = {"a": jnp.asarray(A), "b": jnp.asarray(A)}
    targets = Targets(content=(jnp.asarray(A),), style=(jnp.zeros((1, 2, 2)), jnp.zeros((1, 2, 2))))
    w = LossWeights(*(jnp.asarray(v, jnp.float32) for v in (1.0, 1.0, 0.0, [1.0], [1.0, 1.0], [1.0])))
    full = loss_terms(feats, jnp.zeros((2, 1, 3)), targets, (("a",), ("a", "b")), w).style
    shared = loss_terms(feats, jnp.zeros((2, 1, 3)), targets, (("a",), ("a", "b")), w, per_channel=4.0).style
    # each layer: M = 2 positions, N = 2 channels: share 2 / 8 = 0.25
    assert float(shared) == pytest.approx(0.25 * float(full))


def test_style_layer_loss_by_hand():
    # G(A) = [[10,14],[14,20]]; target G = 0 -> sum G^2 = 100 + 2*196 + 400 = 892.
    # N = 2, M = 2: 4 N^2 M^2 = 64 = (2 * 2 * 1 * 2)^2 (the article's form).
    got = jax.jit(style_layer_loss)(jnp.zeros((2, 2)), A)
    assert float(got) == pytest.approx(892.0 / 64.0)
    assert style_normalizer((2, 1, 2)) == 64.0 == (2 * 2 * 1 * 2) ** 2


def test_mean_style_normaliser_by_hand():
    # Three channels (with N = 2 the two normalisers coincide): positions (1,2,0), (3,4,1).
    # G = [[10,14,3],[14,20,4],[3,4,1]], sum G^2 = 943; N = 3, M = 2.
    b = np.array([[[1.0, 2.0, 0.0]], [[3.0, 4.0, 1.0]]], np.float32)
    zero = jnp.zeros((3, 3))
    assert float(jax.jit(style_layer_loss)(zero, b)) == pytest.approx(943.0 / (4 * 9 * 4))
    # "mean": N^2 (N M)^2 = 9 * 36, the tutorial's mean of (G / (N M))^2 over N^2 entries
    assert float(style_layer_loss(zero, b, "mean")) == pytest.approx(943.0 / (9 * 36))
    assert float(style_layer_loss(zero, b, "mean")) == pytest.approx(np.mean((np.array(
        [[10, 14, 3], [14, 20, 4], [3, 4, 1]]) / 6.0) ** 2))


def test_blended_gram_by_hand():
    grams = np.array([[[1.0, 2.0], [2.0, 4.0]], [[5.0, 0.0], [0.0, 1.0]]], np.float32)
    # 0.25 * G_0 + 0.75 * G_1 = [[0.25 + 3.75, 0.5], [0.5, 1 + 0.75]]
    got = jax.jit(blended_gram)(grams, np.array([0.25, 0.75], np.float32))
    np.testing.assert_allclose(got, [[4.0, 0.5], [0.5, 1.75]], rtol=1e-6)


def test_guided_gram_by_hand():
    # A's positions p1 = (1, 2), p2 = (3, 4) weighted by t = (2, 0.5):
    # [[2*1 + 0.5*9, 2*2 + 0.5*12], [., 2*4 + 0.5*16]] = [[6.5, 10], [10, 16]]
    got = jax.jit(guided_gram)(A, np.array([[2.0], [0.5]], np.float32))
    np.testing.assert_allclose(got, [[6.5, 10.0], [10.0, 16.0]], rtol=1e-6)


def test_guided_style_loss_by_hand():
    # Two regions: t_0 = (2, 0) -> G_0 = 2 * p1 p1^T = [[2, 4], [4, 8]], target 0, sum G^2 = 100;
    # t_1 = (0, 2) -> G_1 = 2 * p2 p2^T = [[18, 24], [24, 32]], target = G_1, loss 0.
    guides = np.array([[[2.0], [0.0]], [[0.0], [2.0]]], np.float32)
    targets = np.stack([np.zeros((2, 2)), [[18.0, 24.0], [24.0, 32.0]]]).astype(np.float32)
    got = jax.jit(guided_style_layer_loss)(targets, A, guides, np.array([0.3, 0.7], np.float32))
    assert float(got) == pytest.approx(0.3 * 100.0 / 64.0)


def test_an_all_ones_guide_is_the_unguided_loss_exactly():
    feats = jax.random.uniform(jax.random.key(1), (12, 10, 16))
    target = gram(jax.random.uniform(jax.random.key(2), (9, 7, 16))) * (120 / 63)
    plain = jax.jit(style_layer_loss)(target, feats)
    guided = jax.jit(guided_style_layer_loss)(target[None], feats, jnp.ones((1, 12, 10)), jnp.ones((1,)))
    assert float(plain) > 0 and np.asarray(guided) == np.asarray(plain)
    np.testing.assert_array_equal(jax.jit(guided_gram)(feats, jnp.ones((12, 10))), jax.jit(gram)(feats))


def test_gram_with_moments_by_hand():
    # A with a channel of ones: positions (1, 2, 1), (3, 4, 1): the Gram, the sums (4, 6), the count 2
    np.testing.assert_allclose(jax.jit(gram, static_argnums=(1, 2))(A, "float32", True),
                               [[10.0, 14.0, 4.0], [14.0, 20.0, 6.0], [4.0, 6.0, 2.0]])
    mean, cov = moments_of(gram(A, moments=True))
    # mean (2, 3); both channels move together by +-1: covariance [[1, 1], [1, 1]]
    np.testing.assert_allclose(mean, [2.0, 3.0])
    np.testing.assert_allclose(cov, [[1.0, 1.0], [1.0, 1.0]], atol=1e-6)
    # guided: weights (2, 0.5) -> count 2.5, sums (2 + 1.5, 4 + 2) = (3.5, 6)
    np.testing.assert_allclose(guided_gram(A, np.array([[2.0], [0.5]], np.float32), moments=True)[2],
                               [3.5, 6.0, 2.5], rtol=1e-6)


# Four positions on a square: x at (0|2, 0|2): mean (1, 1), covariance diag(1, 1);
# the target at (1|5, 1|5): mean (3, 3), covariance diag(4, 4).
SQUARE = np.array([[[0.0, 0.0], [2.0, 0.0]], [[0.0, 2.0], [2.0, 2.0]]], np.float32)


def test_wasserstein_loss_by_hand():
    target = gram(1.0 + 2.0 * SQUARE, moments=True)
    # commuting covariances: W2^2 = |mu - mu_S|^2 + sum_i (sqrt c_i - sqrt c_S,i)^2
    # = (4 + 4) + (1 - 2)^2 + (1 - 2)^2 = 10; per channel 10 / 2
    assert float(jax.jit(wasserstein_loss)(target, gram(SQUARE, moments=True))) == pytest.approx(5.0, rel=1e-6)
    assert float(style_layer_loss(target, SQUARE, kind="wasserstein")) == pytest.approx(5.0, rel=1e-6)
    # "relative": over the target's E|a|^2 = tr C_S + |mu_S|^2 = 8 + 18
    assert float(wasserstein_loss(target, gram(SQUARE, moments=True), "relative")) == pytest.approx(10 / 26,
                                                                                                    rel=1e-6)
    # the target scaled to another position count (inputs.style_targets) is the same distribution
    assert float(wasserstein_loss(3.0 * target, gram(SQUARE, moments=True))) == pytest.approx(5.0, rel=1e-6)


def test_wasserstein_loss_matches_scipy():
    """Non-commuting covariances against scipy's matrix square root, in float64."""
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(6, 5, 4)) @ rng.normal(size=(4, 4)) + 1.0).astype(np.float32)
    y = rng.normal(size=(7, 3, 4)).astype(np.float32)
    fx, fy = (np.asarray(f, np.float64).reshape(-1, 4) for f in (x, y))
    cx, cy = np.cov(fx.T, bias=True), np.cov(fy.T, bias=True)
    root = scipy_linalg.sqrtm(cy).real
    want = (np.sum((fx.mean(0) - fy.mean(0)) ** 2) + np.trace(cx) + np.trace(cy)
            - 2.0 * np.trace(scipy_linalg.sqrtm(root @ cx @ root).real)) / 4
    got = float(jax.jit(wasserstein_loss)(gram(y, moments=True), gram(x, moments=True)))
    assert got == pytest.approx(want, rel=1e-4)


def test_trace_sqrt_and_its_gradient_by_hand():
    # M = diag(4, 9, 0): tr M^(1/2) = 5; gradient 1/2 M^(-1/2) = diag(1/4, 1/6, .) with the zero
    # eigenvalue floored at 1e-6 of the largest: finite
    m = jnp.diag(jnp.array([4.0, 9.0, 0.0]))
    assert float(jax.jit(trace_sqrt)(m)) == pytest.approx(5.0)
    g = jax.jit(jax.grad(trace_sqrt))(m)
    np.testing.assert_allclose(jnp.diag(g)[:2], [0.25, 1 / 6], rtol=1e-5)
    assert bool(jnp.all(jnp.isfinite(g))) and float(g[2, 2]) == pytest.approx(0.5 / np.sqrt(9e-6), rel=1e-3)


def test_wasserstein_gradient_matches_finite_differences():
    x = jax.random.uniform(jax.random.key(3), (4, 5, 3), jnp.float32)
    target = gram(jax.random.normal(jax.random.key(4), (6, 6, 3)), moments=True)
    with jax.enable_x64(True):
        check_grads(jax.jit(lambda f: style_layer_loss(target.astype(jnp.float64), f, kind="wasserstein")),
                    (x.astype(jnp.float64),), order=1, modes=("rev",))


def test_wasserstein_is_zero_at_the_target_with_fewer_positions_than_channels():
    """A deep layer of a small picture: 3 positions of 8 channels, a covariance of rank 2.
    At its own statistics the distance is 0 to what float32 allows, and the gradient finite.
    The bound: eigh leaves each of the N - r zero eigenvalues of C_S^(1/2) C C_S^(1/2) ~ C^2
    at up to N eps lambda_max^2, whose square roots enter the distance twice:
    |d| <= 2 (N - r) sqrt(N eps) tr C = 1.2e-2 tr C here (measured over ten seeds on an
    AVX-512 CPU: 1.4e-4 to 1.1e-3 tr C)."""
    n, rank = 8, 2
    x = jax.random.uniform(jax.random.key(5), (1, 3, n), jnp.float32)
    target = gram(x, moments=True)
    value, grad = jax.jit(jax.value_and_grad(lambda f: style_layer_loss(target, f, kind="wasserstein")))(x)
    bound = 2 * (n - rank) * np.sqrt(n * np.finfo(np.float32).eps) * float(jnp.trace(moments_of(target)[1]))
    assert abs(float(value)) * n < bound  # the loss is the distance per channel
    assert bool(jnp.all(jnp.isfinite(grad)))


def test_tv_loss_by_hand():
    img = np.array([[[0.0], [1.0]], [[2.0], [4.0]]], np.float32)  # 2x2, one channel
    # vertical: (2-0)^2 + (4-1)^2 = 13, horizontal: (1-0)^2 + (4-2)^2 = 5
    assert float(jax.jit(tv_loss)(img)) == pytest.approx(18.0)


def test_style_loss_of_a_512x512x64_layer_matches_float64():
    # The normaliser (2 * 512 * 512 * 64)^2 = 1.15e15 overflows int32 if it is ever computed
    # from array shapes in integer arithmetic; the loss must match a float64 reference.
    feats = jax.random.uniform(jax.random.key(0), (512, 512, 64))
    target = gram(feats) * 0.5
    got = float(jax.jit(style_layer_loss)(target, feats))
    f = np.asarray(feats, np.float64).reshape(-1, 64)
    g = f.T @ f
    want = np.sum((g - 0.5 * g) ** 2) / (2.0 * 512 * 512 * 64) ** 2
    assert np.isfinite(got) and got == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("fn", [gram, tv_loss, lambda x: content_loss(jnp.ones_like(x), x),
                                lambda x: style_layer_loss(jnp.eye(3), x),
                                lambda x: guided_style_layer_loss(
                                    jnp.stack([jnp.eye(3), 2 * jnp.eye(3)]), x,
                                    jnp.linspace(0.0, 2.0, 40).reshape(2, 4, 5), jnp.array([0.4, 0.6]))])

def test_gradients_match_finite_differences(fn):
    x = jax.random.uniform(jax.random.key(3), (4, 5, 3), jnp.float32)
    with jax.enable_x64(True):
        check_grads(jax.jit(fn), (x.astype(jnp.float64),), order=2, modes=("rev",))


def numpy_total(feats, image, c_targets, s_targets, alpha, beta, tv, cw, sw, c_names, s_names):
    """Independent float64 implementation, written from the paper's equations."""
    total_c = sum(w * 0.5 * np.sum((feats[n] - c_targets[i]) ** 2) for i, (n, w) in enumerate(zip(c_names, cw)))
    total_s = 0.0
    for i, (n, w) in enumerate(zip(s_names, sw)):
        h, wd, c = feats[n].shape
        fl = feats[n].reshape(-1, c)
        total_s += w * np.sum((fl.T @ fl - s_targets[i]) ** 2) / (4.0 * c**2 * (h * wd) ** 2)
    t = np.sum(np.diff(image, axis=0) ** 2) + np.sum(np.diff(image, axis=1) ** 2)
    return alpha * total_c + beta * total_s + tv * t


def test_total_matches_numpy_reference():
    rng = np.random.default_rng(0)
    feats = {"a": rng.uniform(size=(8, 6, 4)), "b": rng.uniform(size=(4, 3, 8)), "c": rng.uniform(size=(2, 2, 5))}
    image = rng.uniform(size=(16, 12, 3))
    c_names, s_names = ("b",), ("a", "b", "c")
    c_t = [rng.uniform(size=(4, 3, 8))]
    # two style images per layer, blended 0.3 / 0.7
    s_t = [np.stack([g @ g.T for g in rng.uniform(size=(2, c, m))]) for c, m in ((4, 40), (8, 10), (5, 3))]
    blend = [0.3, 0.7]
    alpha, beta, tv, cw, sw = 0.7, 1e3, 0.3, [1.0], [0.2, 0.5, 0.3]
    blended = [0.3 * g[0] + 0.7 * g[1] for g in s_t]
    want = numpy_total(feats, image, c_t, blended, alpha, beta, tv, cw, sw, c_names, s_names)

    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    weights = LossWeights(f32(alpha), f32(beta), f32(tv), f32(cw), f32(sw), f32(blend))
    targets = Targets(tuple(map(f32, c_t)), tuple(map(f32, s_t)))

    @jax.jit
    def ours(feats, image):
        terms = loss_terms(feats, image, targets, (c_names, s_names), weights)
        return total_loss(terms, weights)

    got = ours({k: f32(v) for k, v in feats.items()}, f32(image))
    assert float(got) == pytest.approx(want, rel=1e-5)
