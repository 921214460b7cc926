"""Coarse-to-fine: the ladder of sizes, and carrying a run from one size to the next.

A multi-scale run optimises at a small size, upsamples the result (putting back the
start image's fine band, :func:`next_start`) and continues at the next size with the
same step (crowsonkb's style-transfer-pytorch goes coarse to fine by default; Gatys et
al.'s high-resolution notebook uses two scales). Most steps then happen where
pixels are cheap, and the coarse scales lay out the large structures of the style that
the network's receptive field cannot see at full size. Adam's moment buffers are
resampled to the new size, so the optimizer keeps its per-pixel step sizes; L-BFGS's
curvature pairs do not survive a change of size and are started afresh.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .cache import kept_or_jitted
from .config import LBFGS_NAMES
from .step import Optimizer, StepState, averaged, box


def resample(x: jax.Array, height: int, width: int) -> jax.Array:
    """Resize the (..., H, W, C) array ``x`` to ``height`` x ``width`` (linear
    interpolation), keeping the mean of every channel exactly: an additive correction
    removes what interpolation at the borders shifts. Non-negative arrays (Adam's second
    moments) stay non-negative."""
    x = jnp.asarray(x)  # numpy's mean rounds differently: a resumed run must match bit for bit
    out = jax.image.resize(x, x.shape[:-3] + (height, width, x.shape[-1]), method="linear")
    out = out + (x.mean(axis=(-3, -2), keepdims=True) - out.mean(axis=(-3, -2), keepdims=True))
    return jnp.where(jnp.all(x >= 0), jnp.maximum(out, 0.0), out)


def next_start(state: StepState, start: jax.Array, detail: float = 0.0) -> jax.Array:
    """The next scale's first iterate (one program per scale change, kept between runs:
    cache.kept_or_jitted): this scale's output (the iterate average when
    averaging is on, else the last iterate) upsampled to the size of ``start`` (the next
    scale's own start image), plus ``detail`` times the band of ``start`` that this scale
    was too small to hold (``start`` minus itself resampled down to this scale and back),
    projected into [0, 1].

    Upsampling alone leaves the next scale a blur of the photo's edges, which its steps
    spend their time sharpening again; the band puts them back, so the layout the coarse
    scales found is kept and only the fine scale's texture is left to optimise. The band
    has zero mean per channel (``resample`` keeps means), so it adds no colour cast; a
    coarse result that never moved from its start comes back as the full-size start."""
    return kept_or_jitted(("next_start", detail), partial(_next_start, detail=detail), (state, start),
                          jax.tree.structure(0))


@partial(jax.jit, static_argnames="detail")
def _next_start(state: StepState, start: jax.Array, detail: float) -> jax.Array:
    height, width = start.shape[-3:-1]
    coarse = averaged(state)
    out = resample(coarse, height, width)
    if detail:
        start = jnp.asarray(start, out.dtype)
        out = out + detail * (start - resample(resample(start, *coarse.shape[-3:-1]), height, width))
    return box(out)


@jax.jit
def mended(state: StepState) -> StepState:
    """A batch's state (images on a leading axis) with each image whose iterate or average
    is not finite (its loss blew up while others went on) put back at its best image, and
    the optimizer's non-finite entries zeroed (Adam's moments took the NaN gradient in), so
    the next scale starts it from there rather than from NaN. Finite images are untouched."""
    ok = jnp.isfinite(state.image).all(axis=(-3, -2, -1)) & jnp.isfinite(averaged(state)).all(axis=(-3, -2, -1))
    ok = ok.reshape(ok.shape + (1, 1, 1))
    weight = state.average_weight.reshape(state.average_weight.shape + (1, 1, 1))
    opt_state = jax.tree.map(lambda x: jnp.where(jnp.isfinite(x), x, 0) if jnp.issubdtype(x.dtype, jnp.inexact)
                             else x, state.opt_state)
    return state._replace(image=jnp.where(ok, state.image, state.best_image),
                          average=jnp.where(ok, state.average, state.best_image * weight), opt_state=opt_state)


def carry_state(state: StepState, fresh: StepState, optimizer: Optimizer) -> StepState:
    """Move ``state`` (the end of one scale) into ``fresh`` (``init_state`` at the next
    scale, from :func:`next_start`): evaluation counts and the iterate average carry over,
    a first-order optimizer's image-shaped buffers are resampled; L-BFGS starts afresh.
    The best image and loss start afresh too: losses at different sizes do not compare.
    One program per scale change, kept between runs (cache.kept_or_jitted)."""
    lbfgs = optimizer.name in LBFGS_NAMES
    return kept_or_jitted(("carry_state", lbfgs), partial(_carry_state, lbfgs=lbfgs), (state, fresh),
                          jax.tree.structure(fresh))


@partial(jax.jit, static_argnames="lbfgs")
def _carry_state(state: StepState, fresh: StepState, lbfgs: bool) -> StepState:
    height, width = fresh.image.shape[-3:-1]

    def carry(old, new):
        if old.shape == new.shape:  # counts and other scalars
            return old
        return resample(old, height, width)  # image-shaped buffers (Adam's moments)

    opt_state = fresh.opt_state if lbfgs else jax.tree.map(carry, state.opt_state, fresh.opt_state)
    return fresh._replace(opt_state=opt_state, evals=fresh.evals + state.evals,
                          average=resample(state.average, height, width),
                          average_weight=state.average_weight)
