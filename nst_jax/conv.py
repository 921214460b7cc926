"""How the network's 3x3 convolutions are computed: XLA's own, or Winograd F(4x4, 3x3).

A style-transfer step needs each convolution's forward pass and its gradient with respect
to the input only: the kernels are frozen. On XLA:CPU the library convolution runs slower
than PyTorch's oneDNN kernels at VGG's shapes, while its batched matmul runs close to the
machine's ceiling (bench/README.md, "Convolutions on this CPU"). Winograd's minimal
filtering algorithm F(m x m, 3 x 3) (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", CVPR 2016) turns a convolution into (m+2)^2 independent matmuls over
tiles:

    Y = A^T [ (G g G^T) . (B^T d B) ] A      per (m+2) x (m+2) input tile d, m x m output

with m = 4 here: 36 matmuls doing 4x fewer multiplies than the direct convolution. The
kernel transforms G g G^T are computed once per run (:func:`with_transforms`), not per
step. The input gradient of a convolution is the convolution of the output gradient with
the kernel flipped and its channels swapped, so the backward pass (a ``custom_vjp``) is
the same algorithm with that kernel's transform: no input is kept for it.

The transforms are written as slices and adds along one axis at a time (separable), so
XLA fuses them into a few loops and the compiled program stays small (the other forms
tried, and their compile times: bench/README.md, "Winograd F(4x4, 3x3)").

Exactness: the same sums, reassociated; the difference from ``lax.conv`` is float
rounding (tests/test_conv.py asserts 1e-4 relative at every VGG layer shape). F(4x4)
rather than F(2x2): its input transform writes 2.25x the input, F(2x2)'s 4x. The first
block and layers with little work stay on XLA's convolution (MIN_OUT_CHANNELS, MIN_WORK),
and layers under 12 px on a side are one im2col matmul (MIN_SIDE); :func:`lowering`
decides. The measurements behind these choices: docs/defaults.md#conv and bench/README.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .cache import kept_or_jitted

M = 4  # output tile side of F(4x4, 3x3)
A = M + 2  # input tile side
# Interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray, section 4.2).
BT = np.array([[4, 0, -5, 0, 1, 0],
               [0, -4, -4, 1, 1, 0],
               [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0],
               [0, 4, 0, -5, 0, 1]], np.float64)
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 1, 1, 0],
               [0, 1, -1, 2, -2, 0],
               [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], np.float64)
# Which layers run as Winograd: those with the work for it (H W C_in C_out from 2^24, where
# it won at every layer shape measured), outside the first block (conv1_1 is a 3-deep
# matmul; conv1_2 gained nothing in the whole step, and its temporaries would be the
# network's largest). So small images have no Winograd layer, which compiles slower than
# lax. Measured: bench/README.md, "Which layers".
MIN_OUT_CHANNELS = 128
MIN_WORK = 2**24
# Small layers (under 12 px on a side) are one matmul over the nine shifted copies of the
# input (im2col): there XLA:CPU's convolution spends more per step transposing and
# reversing its kernel than convolving, and on an input narrower than the kernel it swaps
# the operands too. At 12 px im2col measured level with Winograd (bench/README.md, "Small
# layers as im2col"); the whole step's gain: docs/defaults.md#conv.
MIN_SIDE = 12
# The collection of the model's variables that holds the kernel transforms.
COLLECTION = "winograd"


def resolve(conv: str, dtype: str = "float32", platform: str | None = None) -> str:
    """The lowering a run uses (config.conv, checked there): ``"auto"`` is Winograd on CPU
    in float32 (faster there, docs/defaults.md#conv) and XLA's own elsewhere
    (GPUs call cuDNN, which picks its own algorithms; bfloat16's 8-bit mantissa is too
    coarse for the transforms' constants)."""
    if conv != "auto":
        return conv
    platform = platform or jax.default_backend()
    return "winograd" if platform == "cpu" and dtype == "float32" else "lax"


def uses_winograd(height: int, width: int, c_in: int, c_out: int) -> bool:
    """Whether a conv layer on a height x width input has the work for Winograd
    (MIN_OUT_CHANNELS, MIN_WORK) and is no narrower than MIN_SIDE; see :func:`lowering`."""
    return (c_out >= MIN_OUT_CHANNELS and height * width * c_in * c_out >= MIN_WORK
            and min(height, width) >= MIN_SIDE)


def kernel_transforms(kernel: jax.Array) -> dict[str, jax.Array]:
    """``{"u": G g G^T, "ut": the same of the flipped, channel-swapped kernel}`` of an HWIO
    3x3 kernel, each (36, C_in, C_out) / (36, C_out, C_in), in float32."""
    g = jnp.asarray(G, jnp.float32)
    kernel = jnp.asarray(kernel, jnp.float32)
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    u = lambda k: jnp.einsum("ai,ijco,bj->abco", g, k, g).reshape(A * A, *k.shape[2:])  # noqa: E731
    return {"u": u(kernel), "ut": u(flipped)}


def lowering(height: int, width: int, c_in: int, c_out: int, conv: str) -> str:
    """How a conv layer on a height x width input is computed in mode ``conv`` (a name
    :func:`resolve` gives): ``"lax"`` runs XLA's own everywhere; ``"winograd"`` (the CPU
    default) runs Winograd where :func:`uses_winograd`, im2col on inputs narrower than
    :data:`MIN_SIDE`, XLA's own elsewhere. vgg.VGG decides with it at the traced size; the
    memory plan and :func:`with_transforms` count the Winograd layers by
    :func:`uses_winograd`, the same test."""
    if conv == "lax":
        return "lax"
    if min(height, width) < MIN_SIDE:
        return "im2col"
    return "winograd" if uses_winograd(height, width, c_in, c_out) else "lax"


def im2col_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3x3 "SAME" convolution of NHWC ``x`` with an HWIO ``kernel`` as one matmul: the
    nine shifted copies of the zero-padded input side by side, times the kernel as a
    (9 C_in, C_out) matrix (rows in (dy, dx, c) order, as HWIO stores them)."""
    _, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=-1)
    return patches @ kernel.reshape(9 * c, kernel.shape[-1]).astype(x.dtype)


def transform_bytes(height: int, width: int, c_in: int, c_out: int) -> int:
    """Bytes of one layer's two kernel transforms (8x its float32 kernel) where it runs as
    Winograd on a height x width input."""
    return 2 * A * A * c_in * c_out * 4 if uses_winograd(height, width, c_in, c_out) else 0


def temp_bytes(height: int, width: int, c_in: int, c_out: int) -> int:
    """Bytes of the temporaries of one Winograd convolution on a height x width input: the
    input tiles after the column and after the row transform (1.5x and 2.25x the input),
    the 36 matmuls' output (2.25x the output)."""
    return int((1.5 + 2.25) * height * width * c_in * 4 + 2.25 * height * width * c_out * 4) \
        if uses_winograd(height, width, c_in, c_out) else 0


def with_transforms(variables: dict, sizes) -> dict:
    """``variables`` plus, under :data:`COLLECTION`, the kernel transforms of every conv of
    ``sizes`` (vgg.layer_sizes: (layer, height, width) at the run's size) that runs as
    Winograd there: computed once, then passed to every step. A smaller image (a tile, a
    style image) runs a subset of these layers as Winograd; one the set lacks computes its
    transforms in the call."""
    params = variables["params"]
    return {**variables, COLLECTION: {
        l.name: kept_or_jitted(("kernel_transforms",), _transforms, (params[l.name]["kernel"],))
        for l, h, w in sizes if l.kind == "conv" and uses_winograd(h, w, l.c_in, l.c_out)}}


_transforms = jax.jit(kernel_transforms)  # one program per kernel shape, kept between runs


def _windows(x: jax.Array, axis: int, count: int) -> jax.Array:
    """(..., L, ...) -> (..., count, A, ...): ``count`` windows of A along ``axis`` with
    stride M (L >= M (count + 1)): M-blocks, each with the next block's first two rows."""
    shape = x.shape

    def blocks(start):
        part = jax.lax.slice_in_dim(x, start, start + M * count, axis=axis)
        return part.reshape(shape[:axis] + (count, M) + shape[axis + 1:])
    return jnp.concatenate([blocks(0), jax.lax.slice_in_dim(blocks(M), 0, A - M, axis=axis + 1)], axis=axis + 1)


def _apply(mat: np.ndarray, x: jax.Array, axis: int) -> jax.Array:
    """sum_j mat[i, j] x[..., j (at axis), ...] for each row i, stacked on a new first axis;
    slices and adds that skip the zeros (XLA fuses them; a dot this small would not pay).
    lax's own ops, not jnp's: the same program, traced in a fraction of the time."""
    lax = jax.lax
    parts = [lax.index_in_dim(x, j, axis, keepdims=False) for j in range(x.shape[axis])]
    rows = []
    for row in mat:
        terms = [p if c == 1 else lax.neg(p) if c == -1 else lax.mul(p, lax.full_like(p, c))
                 for c, p in zip(row, parts) if c]
        total = terms[0]
        for t in terms[1:]:
            total = lax.add(total, t)
        rows.append(lax.expand_dims(total, (0,)))
    return lax.concatenate(rows, 0)


@jax.jit  # traced once per shape: a layer's gradient (C_in = C_out) reuses its forward's trace
def _winograd(x: jax.Array, u: jax.Array) -> jax.Array:
    """SAME 3x3 convolution of NHWC ``x`` with the transformed kernel ``u`` (36, C_in, C_out)."""
    n, h, w, c = x.shape
    th, tw = -(-h // M), -(-w // M)  # tiles down and across
    padded = jnp.pad(x, ((0, 0), (1, M * (th + 1) - h - 1), (1, M * (tw + 1) - w - 1), (0, 0)))
    v = _apply(BT, _windows(padded, 2, tw), 3)  # (col, n, rows, tw, c)
    v = _apply(BT, _windows(v, 2, th), 3)  # (row, col, n, th, tw, c)
    m = jnp.einsum("btc,bco->bto", v.reshape(A * A, n * th * tw, c), u).reshape(A, A, n, th, tw, -1)
    y = _apply(AT, _apply(AT, m, 0), 1)  # (j, i, n, th, tw, out): j across, i down the tile
    y = jnp.transpose(y, (2, 3, 1, 4, 0, 5)).reshape(n, M * th, M * tw, -1)
    return y[:, :h, :w]


@jax.custom_vjp
def winograd_conv(x: jax.Array, u: jax.Array, ut: jax.Array) -> jax.Array:
    """The SAME 3x3 convolution (no bias) of NHWC float32 ``x`` by the kernel whose
    transforms are ``u`` and ``ut`` (:func:`kernel_transforms`). Differentiable in ``x``;
    the transforms are constants (their cotangent is zero: use lax to train a kernel)."""
    return _winograd(x, u)


def _forward(x, u, ut):
    return _winograd(x, u), ut


def _backward(ut, g):
    return _winograd(g, ut), None, None


winograd_conv.defvjp(_forward, _backward)
