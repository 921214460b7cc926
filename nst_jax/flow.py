"""Optical flow between video frames, the warp it drives, and where it can be trusted.

A flow ``f`` is an (H, W, 2) array of (dx, dy) pixel displacements defined on one frame:
pixel p of that frame shows what the other frame shows at p + f(p). For a frame t and an
earlier frame s, the *backward* flow b (t -> s, on frame t's grid) warps s onto t, and the
*forward* flow (s -> t, on frame s's grid) checks it (Ruder et al. 2016, sec. 3.1):

- warp          w(x_s)(p) = x_s(p + b(p)), bicubic (:func:`warp`)
- disocclusion  |f~ + b|^2 > 0.01 (|f~|^2 + |b|^2) + 0.5, f~ = w(f) the forward flow warped to t
- motion edge   |grad b_x|^2 + |grad b_y|^2 > 0.01 |b|^2 + 0.002
- weight        c = 0 where either holds or p + b(p) leaves the frame, 1 elsewhere

The flow itself is OpenCV's DIS (Kroeger et al., "Fast Optical Flow using Dense Inverse
Search", ECCV 2016): no learned weights, milliseconds per pair at video sizes.

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


def _cv2():
    try:
        import cv2
    except ImportError:
        raise NstError("optical flow needs OpenCV: pip install 'nst-jax[video]'") from None
    return cv2


def optical_flow(a: np.ndarray, b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """The flow from frame ``a`` to frame ``b`` (float RGB (H, W, 3) in [0, 1]), on ``a``'s
    grid: a(p) ~ b(p + f(p)); returns (H, W, 2) float32 (dx, dy), DIS on the luminance."""
    cv2 = _cv2()
    if preset not in PRESETS:
        raise NstError(f"unknown flow preset {preset!r}: use {', '.join(PRESETS)}")
    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))
    grey = lambda x: np.ascontiguousarray(  # noqa: E731  (ITU-R 601 luma, as OpenCV's own)
        np.clip(np.asarray(x, np.float32) @ np.float32([0.299, 0.587, 0.114]) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(dis.calc(grey(a), grey(b), None), np.float32)


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


def keys(t: jax.Array, a: float = -0.5) -> jax.Array:
    """Keys' cubic convolution kernel (a = -0.5: exact on quadratics; Catmull-Rom's)."""
    t = jnp.abs(t)
    near = (a + 2) * t**3 - (a + 3) * t**2 + 1
    far = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return jnp.where(t <= 1, near, jnp.where(t < 2, far, 0.0))


@jax.jit
def warp(image: jax.ArrayLike, flow: jax.ArrayLike) -> jax.Array:
    """w(x)(p) = x(p + f(p)): ``image`` (H, W, C) pulled along ``flow`` (H, W, 2), bicubic
    (Keys' kernel on the 4 x 4 pixels around p + f(p)); positions past the border take the
    nearest border pixel. Not clipped: cubic weights overshoot at sharp edges.

    Bicubic, not Ruder et al.'s bilinear: each frame starts from the last one warped, and
    bilinear sampling low-passes a stylized texture at every sub-pixel shift, which the
    later frames' few steps do not restore (bench/results/video-cpu-warp-blur.md).
    """
    image, flow = jnp.asarray(image, jnp.float32), jnp.asarray(flow, jnp.float32)
    h, w = image.shape[:2]
    rows, cols = _grid(flow)
    r0, c0 = jnp.floor(rows), jnp.floor(cols)
    out = jnp.zeros_like(image)
    for dr in (-1, 0, 1, 2):
        r = r0 + dr
        ri = jnp.clip(r, 0, h - 1).astype(jnp.int32)
        for dc in (-1, 0, 1, 2):
            c = c0 + dc
            ci = jnp.clip(c, 0, w - 1).astype(jnp.int32)
            out = out + (keys(rows - r) * keys(cols - c))[..., None] * image[ri, ci]
    return out


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
