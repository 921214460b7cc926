r"""A low-pass initial curvature for L-BFGS: coarse structure moves as fast as fine texture.

L-BFGS builds each direction from an initial inverse Hessian :math:`H_0 = \gamma I` and
the few curvature pairs it remembers: with :math:`\gamma I` every spatial frequency of the
image starts out stepped alike. The style loss's gradient is dominated by pixel-scale
frequencies (the shallow layers' Grams), while a painterly result has to change the
image's coarse structure too. Here :math:`H_0 = \gamma S^2`, with :math:`S` the radial
low-pass filter

.. math::

  \hat{S}(f) = \frac{1}{1 + |f| / f_0},

:math:`|f|` in cycles per pixel (0 to 0.71) and :math:`f_0` the corner frequency
(``corner``): before the memory corrects it, a direction's frequency :math:`f` gets the
gain :math:`\hat{S}(f)^2`, about :math:`(f_0/|f|)^2` above the corner. This is L-BFGS run
on :math:`z = S^{-1} x` (gradient :math:`S g`, since :math:`S` is symmetric), mapped back
with :math:`d_x = S d_z`: the memory stores the pairs :math:`(S^{-1} s, S y)`, so the
curvature condition and the line search's sufficient decrease (:math:`g^\top d` is the
same in both coordinates) are unchanged, and the line search and the box projection stay
in pixel space. Only the path changes: a minimum of the loss is one either way.

:math:`S` is applied with real FFTs over the image's two spatial axes: a circulant filter
(symmetric and positive definite, exactly invertible), so a direction's low frequencies
wrap around the image's edges (a reflecting DCT would not, at four times the transform
work; the pictures in bench/results/quality-cpu.png show no seam). The three filterings
per step are a small fraction of the network's work. The gain grows with the image,
which holds more fine frequencies: large at 512 px, little at 128 px, and none at the
unit tests' 32 px (measured: docs/defaults.md#precondition).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def gains(height: int, width: int, corner: float, xp=np):
    """:math:`\\hat{S}` on the real FFT's grid of an (height, width) image, shaped
    (height, width // 2 + 1, 1) to scale every channel alike; ``xp``: numpy, or jax.numpy
    to compute them inside a compiled program (a large image's gains would otherwise be
    constants in its code)."""
    radius = xp.hypot(xp.fft.fftfreq(height)[:, None], xp.fft.rfftfreq(width)[None, :])
    return (1.0 / (1.0 + radius / corner))[..., None].astype(xp.float32)


def lowpass(image: jax.Array, corner: float, inverse: bool = False) -> jax.Array:
    """:math:`S x` (or :math:`S^{-1} x`) for an (..., H, W, C) array."""
    height, width = image.shape[-3:-1]
    g = gains(height, width, corner, jnp)
    spectrum = jnp.fft.rfft2(image, axes=(-3, -2))
    spectrum = spectrum / g if inverse else spectrum * g
    return jnp.fft.irfft2(spectrum, s=(height, width), axes=(-3, -2)).astype(image.dtype)


def preconditioned(inner: optax.GradientTransformation, corner: float) -> optax.GradientTransformationExtraArgs:
    """``inner`` (``optax.scale_by_lbfgs``) run on :math:`z = S^{-1} x`: it sees the
    gradient :math:`S g` at :math:`S^{-1} x`, and its direction :math:`d_z` comes back as
    :math:`S d_z`. ``corner`` <= 0: ``inner`` unchanged."""
    if corner <= 0:
        return optax.with_extra_args_support(inner)
    apply = lambda tree, inverse=False: jax.tree.map(lambda x: lowpass(x, corner, inverse), tree)  # noqa: E731

    def init_fn(params):
        return inner.init(apply(params, inverse=True))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("preconditioned L-BFGS needs params, the current point")
        direction, state = inner.update(apply(updates), state, apply(params, inverse=True))
        return apply(direction), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
