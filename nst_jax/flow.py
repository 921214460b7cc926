"""Optical flow between video frames, the warp it drives, and where it can be trusted.

A flow ``f`` is an (H, W, 2) array of (dx, dy) pixel displacements defined on one frame:
pixel p of that frame shows what the other frame shows at p + f(p). For a frame t and an
earlier frame s, the *backward* flow b (t -> s, on frame t's grid) warps s onto t, and the
*forward* flow (s -> t, on frame s's grid) checks it (Ruder et al. 2016, sec. 3.1):

- warp          w(x_s)(p) = x_s(p + b(p)), quintic spline interpolation (:func:`warp`)
- disocclusion  |f~ + b|^2 > 0.01 (|f~|^2 + |b|^2) + 0.5, f~ = w(f) the forward flow warped to t
- motion edge   |grad b_x|^2 + |grad b_y|^2 > 0.01 |b|^2 + 0.002
- weight        c = 0 where either holds or p + b(p) leaves the frame, 1 elsewhere

The flow itself is OpenCV's DIS (Kroeger et al., "Fast Optical Flow using Dense Inverse
Search", ECCV 2016): no learned weights, milliseconds per pair at video sizes. The warp is
a quintic spline, not the paper's bilinear: each frame starts from the last one warped, so
the interpolation's blur compounds from frame to frame (Unser, "Splines: a perfect fit for
signal and image processing", IEEE SPM 1999, for the prefilter and the kernel).

References:
  Ruder, Dosovitskiy & Brox, "Artistic style transfer for videos", GCPR 2016,
  arXiv:1604.08610, sec. 3.1 (eqs. 3-4) and 3.2 (long-term weights).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .errors import NstError

# DIS presets by name (OpenCV's own): finer presets search more patches and iterate more.
PRESETS = ("ultrafast", "fast", "medium")
# DIS runs on the frames magnified this many times: its patches (8-12 px) are coarse on small
# frames, and at 2x the flow's error halved on the bench's clips (docs/video.md).
FLOW_UPSCALE = 2


def check_flow() -> None:
    """Raise at once where optical flow cannot run (no OpenCV): before a video's first frame."""
    _cv2()


def _cv2():
    try:
        import cv2
    except ImportError:
        raise NstError("optical flow needs OpenCV: pip install 'nst-jax[video]'") from None
    return cv2


def optical_flow(a: np.ndarray, b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """The flow from frame ``a`` to frame ``b`` (float RGB (H, W, 3) in [0, 1]), on ``a``'s
    grid: a(p) ~ b(p + f(p)); returns (H, W, 2) float32 (dx, dy), DIS on the luminance at
    :data:`FLOW_UPSCALE` times the frames' size, averaged back down."""
    cv2 = _cv2()
    if preset not in PRESETS:
        raise NstError(f"unknown flow preset {preset!r}: use {', '.join(PRESETS)}")
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))
    h, w = np.shape(a)[:2]

    def grey(x):  # ITU-R 601 luma, as OpenCV's own, magnified
        y = np.clip(np.asarray(x, np.float32) @ np.float32([0.299, 0.587, 0.114]) * 255.0 + 0.5, 0, 255)
        return cv2.resize(y.astype(np.uint8), (w * FLOW_UPSCALE, h * FLOW_UPSCALE), interpolation=cv2.INTER_CUBIC)

    flow = dis.calc(grey(a), grey(b), None)
    return np.asarray(cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA), np.float32) / FLOW_UPSCALE


def _sample(image: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
    """``image`` (H, W, C) at real-valued positions, bilinear, the border extended."""
    def channel(x):
        return jax.scipy.ndimage.map_coordinates(x, [rows, cols], order=1, mode="nearest")
    return jax.vmap(channel, in_axes=-1, out_axes=-1)(image)


def _grid(flow: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(rows, cols) each pixel of ``flow``'s grid points to: p + f(p)."""
    h, w = flow.shape[:2]
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    return rows + flow[..., 1], cols + flow[..., 0]


# The quintic B-spline at 0, 1, 2 (its values at the integers: the interpolation's prefilter).
BSPLINE5_AT_INTEGERS = (66 / 120, 26 / 120, 1 / 120)


def bspline5(t: jax.Array) -> jax.Array:
    """The quintic B-spline (support |t| < 3)."""
    t = jnp.abs(t)
    return sum(jnp.where(t < k, (k - t) ** 5, 0.0) * c for k, c in ((3, 1), (2, -6), (1, 15))) / 120


def spline_coefficients(image: jax.Array, axis: int) -> jax.Array:
    """Quintic spline coefficients along ``axis``: the c with sum_j c_j beta5(i - j) = x_i,
    the picture mirrored at its ends (x_{-i} = x_i, whole-sample symmetry), by FFT."""
    n = image.shape[axis]
    if n < 2:
        return image
    x = jnp.moveaxis(image, axis, 0)
    period = jnp.concatenate([x, x[-2:0:-1]], axis=0)  # 2n - 2 samples
    omega = 2 * jnp.pi * jnp.fft.rfftfreq(2 * n - 2)
    b0, b1, b2 = BSPLINE5_AT_INTEGERS
    response = b0 + 2 * b1 * jnp.cos(omega) + 2 * b2 * jnp.cos(2 * omega)  # >= 16/120 (at omega = pi)
    shape = (-1,) + (1,) * (x.ndim - 1)
    c = jnp.fft.irfft(jnp.fft.rfft(period, axis=0) / response.reshape(shape), n=2 * n - 2, axis=0)[:n]
    return jnp.moveaxis(c, 0, axis)


@jax.jit
def warp(image: jax.ArrayLike, flow: jax.ArrayLike) -> jax.Array:
    """w(x)(p) = x(p + f(p)): ``image`` (H, W, C) pulled along ``flow`` (H, W, 2) by quintic
    spline interpolation (exact at the pixels), the picture mirrored past its borders: what
    a pan brings into view starts as a reflection of the strokes beside it, not as the edge
    pixels smeared. Not clipped: the spline overshoots at sharp edges."""
    image, flow = jnp.asarray(image, jnp.float32), jnp.asarray(flow, jnp.float32)
    h, w = image.shape[:2]
    c = spline_coefficients(spline_coefficients(image, 0), 1)
    rows, cols = _grid(flow)
    r0, c0 = jnp.floor(rows), jnp.floor(cols)
    out = jnp.zeros_like(image)
    for dr in (-2, -1, 0, 1, 2, 3):
        r = r0 + dr
        ri = _mirror(r, h)
        for dc in (-2, -1, 0, 1, 2, 3):
            cc = c0 + dc
            out = out + (bspline5(rows - r) * bspline5(cols - cc))[..., None] * c[ri, _mirror(cc, w)]
    return out


def _mirror(i: jax.Array, n: int) -> jax.Array:
    """Index ``i`` reflected into [0, n - 1] (whole-sample symmetry: -1 -> 1, n -> n - 2)."""
    if n < 2:
        return jnp.zeros_like(i, jnp.int32)
    period = 2 * n - 2
    i = jnp.mod(i, period)
    return jnp.where(i < n, i, period - i).astype(jnp.int32)


@jax.jit
def inside(flow: jax.ArrayLike) -> jax.Array:
    """(H, W) bool: p + f(p) lies within the frame (the other frame saw this point)."""
    flow = jnp.asarray(flow, jnp.float32)
    rows, cols = _grid(flow)
    h, w = flow.shape[:2]
    return (rows >= 0) & (rows <= h - 1) & (cols >= 0) & (cols <= w - 1)


@jax.jit
def consistency(backward: jax.ArrayLike, forward: jax.ArrayLike) -> jax.Array:
    """Ruder et al.'s weights c (H, W) float32 on the later frame's grid: 0 at disoccluded
    pixels, motion boundaries and pixels whose source leaves the frame, 1 elsewhere.

    ``backward`` (t -> s) is on frame t's grid, ``forward`` (s -> t) on frame s's. The
    flow's gradient is by central differences (one-sided at the border). Leaving the frame
    is this module's addition: a camera pan reveals a strip the earlier frame never saw,
    and the forward-backward check passes it (the forward flow, extended past the border,
    agrees with the backward flow there).
    """
    backward, forward = jnp.asarray(backward, jnp.float32), jnp.asarray(forward, jnp.float32)
    forward_at_t = _sample(forward, *_grid(backward))
    square = lambda v: jnp.sum(jnp.square(v), axis=-1)  # noqa: E731
    disoccluded = square(forward_at_t + backward) > 0.01 * (square(forward_at_t) + square(backward)) + 0.5
    du_dy, du_dx = jnp.gradient(backward[..., 0])
    dv_dy, dv_dx = jnp.gradient(backward[..., 1])
    edge = du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2 > 0.01 * square(backward) + 0.002
    return jnp.where(disoccluded | edge | ~inside(backward), 0.0, 1.0).astype(jnp.float32)


def later_frame_wins(weights) -> list[jax.Array]:
    """Long-term weights (Ruder et al. sec. 3.2): for weights c_j of the earlier frames,
    nearest first, c_j^long = max(c_j - sum_{k<j} c_k, 0): each pixel is held to the nearest
    earlier frame that saw it, and to no other."""
    out, seen = [], jnp.zeros_like(jnp.asarray(weights[0]))
    for c in weights:
        out.append(jnp.maximum(jnp.asarray(c) - seen, 0.0))
        seen = seen + jnp.asarray(c)
    return out


def fold(targets, weights) -> tuple[jax.Array, jax.Array]:
    """One (target, weight) pair for a sum of temporal terms sum_j c_j (x - w_j)^2 with
    (H, W) weights: C = sum_j c_j and T = sum_j c_j w_j / C (T = 0 where C = 0).

    sum_j c_j (x - w_j)^2 = C (x - T)^2 + sum_j c_j w_j^2 - C T^2, so the two have the same
    gradient everywhere, and the same value when at most one c_j is non-zero at each pixel,
    as :func:`later_frame_wins` makes them: the long-term objective costs no more than the
    short-term one and runs in the same compiled step. Returns (T (H, W, C), C (H, W, 1)).
    """
    total = sum(jnp.asarray(c) for c in weights)
    weighted = sum(jnp.asarray(c)[..., None] * jnp.asarray(w) for c, w in zip(weights, targets))
    target = jnp.where(total[..., None] > 0, weighted / jnp.maximum(total, 1e-12)[..., None], 0.0)
    return target.astype(jnp.float32), total[..., None].astype(jnp.float32)
