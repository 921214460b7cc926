"""The low-pass initial curvature of L-BFGS (precondition.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nst_jax.precondition import gains, lowpass
from nst_jax.step import lbfgs, optimizer_named


def test_gains_by_hand():
    """1 / (1 + |f| / f0) on the real FFT grid: a 4 x 4 image has frequencies 0, 1/4, -1/2,
    -1/4 down and 0, 1/4, 1/2 across."""
    g = gains(4, 4, corner=0.25)[..., 0]
    assert g.shape == (4, 3)
    assert g[0, 0] == 1.0  # the mean passes unchanged
    np.testing.assert_allclose(g[1, 0], 1 / (1 + 0.25 / 0.25))
    np.testing.assert_allclose(g[0, 2], 1 / (1 + 0.5 / 0.25))
    np.testing.assert_allclose(g[2, 2], 1 / (1 + np.hypot(0.5, 0.5) / 0.25), rtol=1e-6)
    np.testing.assert_allclose(g[3, 1], g[1, 1])  # radial: -1/4 and 1/4 alike


def test_lowpass_against_a_dense_circulant_filter():
    """S x equals the filter applied as a full complex FFT in numpy (its gains on the
    whole grid); S^-1 undoes it; S is symmetric; a flat image and a checkerboard pass
    with gains 1 and 1 / (1 + 0.707 / f0)."""
    rng = np.random.default_rng(0)
    x = rng.random((2, 6, 5, 3)).astype(np.float32)  # a batch, odd width
    y = rng.random((2, 6, 5, 3)).astype(np.float32)
    corner = 0.1
    full = 1 / (1 + np.hypot(np.fft.fftfreq(6)[:, None], np.fft.fftfreq(5)[None, :]) / corner)
    want = np.real(np.fft.ifft2(np.fft.fft2(x, axes=(1, 2)) * full[None, :, :, None], axes=(1, 2)))
    np.testing.assert_allclose(lowpass(jnp.asarray(x), corner), want, atol=1e-6)
    np.testing.assert_allclose(lowpass(lowpass(jnp.asarray(x), corner), corner, inverse=True), x, atol=1e-5)
    np.testing.assert_allclose(np.vdot(lowpass(jnp.asarray(x), corner), y),
                               np.vdot(x, lowpass(jnp.asarray(y), corner)), rtol=1e-5)
    flat = jnp.full((4, 4, 3), 0.3)
    np.testing.assert_allclose(lowpass(flat, corner), flat, atol=1e-6)
    checker = jnp.asarray(np.indices((4, 4)).sum(0) % 2, jnp.float32)[..., None] - 0.5
    np.testing.assert_allclose(lowpass(checker, corner), checker / (1 + np.hypot(0.5, 0.5) / corner), atol=1e-6)


def quadratic(x):
    """An ill-conditioned least squares: pixel-to-pixel differences weigh 100x the mean
    level (fine frequencies are stiff, coarse ones soft, as in the style loss)."""
    dx, dy = jnp.diff(x, axis=0), jnp.diff(x, axis=1)
    return 100.0 * (jnp.sum(dx ** 2) + jnp.sum(dy ** 2)) + jnp.sum((x - 0.7) ** 2)


def run(tx, f, x, steps):
    state, values = tx.init(x), []
    for _ in range(steps):
        value, grad = jax.value_and_grad(f)(x)
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
        x = optax.apply_updates(x, updates)
        values.append(float(value))
    return x, values


@pytest.mark.slow
def test_preconditioned_lbfgs_is_lbfgs_on_the_filtered_coordinates():
    """The defining identity: from x0, the preconditioned L-BFGS's iterates are S z_k,
    where z_k are plain L-BFGS's iterates on z -> f(S z) from z0 = S^-1 x0."""
    corner = 0.15
    x0 = jnp.asarray(np.random.default_rng(1).random((8, 6, 3)), jnp.float32)
    xs, _ = run(lbfgs(1.0, None, corner), quadratic, x0, 4)
    zs, _ = run(optax.lbfgs(1.0, linesearch=None), lambda z: quadratic(lowpass(z, corner)),
                lowpass(x0, corner, inverse=True), 4)
    np.testing.assert_allclose(xs, lowpass(zs, corner), atol=1e-4)


def test_no_corner_is_optax_lbfgs():
    x0 = jnp.asarray(np.random.default_rng(2).random((8, 6, 3)), jnp.float32)
    ours, _ = run(lbfgs(1.0, None, 0.0), quadratic, x0, 3)
    theirs, _ = run(optax.lbfgs(1.0, linesearch=None), quadratic, x0, 3)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.slow
def test_the_low_pass_helps_where_fine_frequencies_are_stiff():
    """On the quadratic above (optimum 0.7 everywhere, from noise) 15 steps of the
    filtered L-BFGS with the Armijo search end at least 10x lower than unfiltered ones.
    A filter applied the wrong way round (S^-1 for S) would do worse, not better."""
    x0 = jnp.asarray(np.random.default_rng(3).random((32, 32, 3)), jnp.float32)
    final = {}
    for corner in (0.0, 0.05):
        opt = optimizer_named("lbfgs-backtrack", precondition=corner)
        _, values = run(opt.tx, quadratic, x0, 15)
        final[corner] = min(values)
    assert final[0.05] < final[0.0] / 10, final


def layout(tree):
    """What a checkpoint checks of a state: key paths, shapes and dtypes."""
    return [(jax.tree_util.keystr(k), np.shape(v), jnp.asarray(v).dtype)
            for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]]


@pytest.mark.parametrize("name", ["lbfgs", "lbfgs-fixed", "lbfgs-backtrack", "lbfgs-armijo"])
def test_every_lbfgs_takes_the_corner_and_keeps_its_state_layout(name):
    """The filtered chain's state has the plain one's key paths, shapes and dtypes (so a
    run's checkpoint template is the same either way), and the corner changes the first
    direction."""
    x = jnp.asarray(np.random.default_rng(4).random((8, 8, 3)), jnp.float32)
    plain, low = optimizer_named(name, precondition=0.0), optimizer_named(name, precondition=0.1)
    assert layout(plain.tx.init(x)) == layout(low.tx.init(x))
    value, grad = jax.value_and_grad(quadratic)(x)
    steps = [o.tx.update(grad, o.tx.init(x), x, value=value, grad=grad, value_fn=quadratic)[0]
             for o in (plain, low)]
    assert not np.allclose(steps[0], steps[1])


def test_lbfgs_without_a_corner_is_optax_lbfgs_with_its_zoom_search():
    """optimizer_named("lbfgs", precondition=0) rebuilds optax.lbfgs() (its memory, scaling
    and zoom line search defaults): the same state layout and the same iterates."""
    x0 = jnp.asarray(np.random.default_rng(5).random((8, 6, 3)), jnp.float32)
    ours = optimizer_named("lbfgs", precondition=0.0).tx
    assert layout(ours.init(x0)) == layout(optax.lbfgs().init(x0))
    np.testing.assert_array_equal(run(ours, quadratic, x0, 4)[0], run(optax.lbfgs(), quadratic, x0, 4)[0])
