"""Exact tiled evaluation: the value and gradient of a picture too large to differentiate whole.

Every loss of Gatys et al. depends on the features F^l of the picture through sums over
positions (Galerne, Raad, Lezama & Morel, "Scaling Painting Style Transfer", 2023):

- style:   G^l = sum_i F_i^T F_i (guided: sum_i t_r,i F_i^T F_i), J_style^l = L^l(G^l)
- content: J_content = sum_i 1/2 |F_i - P_i|^2 (over N M for content_norm="mean")

So with the picture's positions split into tiles T, the statistics s = (G^l, content
sums) are sums of per-tile statistics s_T, and J = L(s) + tv J_tv(x). By the chain rule

    dJ/dx = sum_T (ds_T/dx)^T dL/ds,

where dL/ds (for the style terms, dL/dG^l = 2 (G^l - G_S^l) / norm^l for the paper's loss)
needs the global statistics only. Hence two passes over the tiles:

1. forward only: accumulate s = sum_T s_T (Grams, content sums) and evaluate J from them
   (losses.py's Gram-level forms, which cover every style norm, blends and guided Grams);
2. per tile: the VJP of crop -> s_T with cotangent dL/ds, scatter-added into the gradient,
   dL/ds being the VJP of the loss as a function of the statistics.

:func:`tiled_objective` is J(x) with pass 1 as its forward and pass 2 as its custom VJP,
so ``jax.value_and_grad`` of a tiled :class:`~nst_jax.objective.Objective` is the plain
one's up to float rounding, wherever it is taken (the step, L-BFGS's line search).

A tile computes its interior's features exactly when its crop reaches :func:`receptive_radius`
pixels beyond the interior on every side that is not the picture's border (where the crop
stops, so the network's own zero padding is the true one), and when crops start on the
pooling grid (multiples of :func:`alignment`). The picture mapping (masks, luminance) and the
TV term are pixel-local and cheap: they are computed on the whole picture.

Tiles are a Python loop over static slices inside the one jit region of the step: XLA:CPU
runs convolutions in loop bodies slower (bench/README.md). Each tile's crop is made
to depend on the previous tile's result (:func:`tile_features`), so XLA runs the tiles one
after the other, one tile's activations alive at a time, and cannot merge pass 2's
forward with pass 1's; all crops have one shape (:func:`spans`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from .errors import NstError
from .losses import (LossTerms, balanced_style, content_loss, content_normalizer, gram, gram_share, guided_gram,
                     style_gram_term, total_loss, tv_loss)
from .vgg import deepest, layer_sizes, layout


def receptive_radius(arch: str, taps) -> int:
    """R: how far (px) beyond its pixel block a position of the deepest tap sees.

    A position of a layer after p poolings sits on a 2^p x 2^p block of pixels; each 3x3
    convolution at that layer widens what it sees by 2^p px on every side, and a 2x2 pooling
    only joins two blocks (adding nothing beyond them). So R = sum over the convolutions up
    to the deepest tap of 2^(poolings before it): 70 px for VGG19 up to relu5_1
    (2*1 + 2*2 + 4*4 + 4*8 + 1*16), 58 for VGG16, 38 for VGG19's relu4_2. (Counting each
    pooling's input stride as well, as a centre-based receptive field does, gives 85 for
    VGG19: an upper bound, not needed with aligned tiles.)
    """
    last = deepest(arch, taps).index
    return sum(2 ** l.pools for l in layout(arch)[: last + 1] if l.kind == "conv")


def alignment(arch: str, taps) -> int:
    """2^P, P the poolings before the deepest tap: crops start, and interiors split, on
    multiples of it, so each pooled position's pixel block lies in one tile."""
    return 2 ** deepest(arch, taps).pools


class Tile(NamedTuple):
    """One tile: its interior (the positions it accounts for) and its crop (interior + halo,
    clipped to the picture), each as [start, end) pixel spans of rows and columns."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    crop_rows: tuple[int, int]
    crop_cols: tuple[int, int]


@dataclass(frozen=True)
class TilePlan:
    """How to tile: interiors of at most ``tile`` x ``tile`` px with ``halo`` px of context.

    ``halo`` below :func:`receptive_radius` gives wrong features near the interiors' edges
    (tested: a measurable gradient error), which is what it is there to show."""

    tile: int
    halo: int

    def grid(self, height: int, width: int, align: int) -> tuple[Tile, ...]:
        return tile_grid(height, width, self.tile, self.halo, align)


def splits(length: int, tile: int, align: int) -> tuple[tuple[int, int], ...]:
    """[start, end) spans covering 0..length: ceil(length / tile) nearly equal parts, inner
    boundaries on multiples of ``align``, the last ending at ``length``."""
    n = max(1, math.ceil(length / tile))
    step = max(align, math.ceil(length / n / align) * align)
    bounds = [k * step for k in range(n) if k * step < length] + [length]
    return tuple(zip(bounds[:-1], bounds[1:]))


def spans(length: int, tile: int, halo: int, align: int) -> tuple[tuple[tuple[int, int], tuple[int, int]], ...]:
    """Along one axis: (interior, crop) spans of the tiles, every crop of the same length.

    A crop reaches ``halo`` px beyond its interior (clipped to the picture) and starts on a
    multiple of ``align``. All crops get the length of the longest, shifted inward at the
    picture's end (that length is chosen so a crop ending there starts on the grid too):
    tiles of one shape share XLA's materialised constants (e.g. the zeros each ReLU is
    compared with, one per layer shape, computed at the start of the program), which with
    a shape per tile would all be alive at once."""
    if tile < align or tile % align:
        raise NstError(f"tiles must be a multiple of {align} px (the deepest layer's pooling), not {tile}")
    if halo < 0:
        raise NstError(f"the halo must be 0 or more px, not {halo}")
    interiors = splits(length, tile, align)
    start = lambda a: max(0, a - halo) // align * align  # noqa: E731
    size = max(min(length, b + halo) - start(a) for a, b in interiors)
    size = length - (length - size) // align * align
    return tuple(((a, b), (min(start(a), length - size), min(start(a), length - size) + size)) for a, b in interiors)


def tile_grid(height: int, width: int, tile: int, halo: int, align: int) -> tuple[Tile, ...]:
    """The tiles of a ``height`` x ``width`` picture, row by row (see :func:`spans`)."""
    return tuple(Tile(r, c, crop_r, crop_c) for r, crop_r in spans(height, tile, halo, align)
                 for c, crop_c in spans(width, tile, halo, align))


def positions(tile: Tile, pools: int, in_crop: bool = True) -> tuple[slice, slice]:
    """Row and column slices of the tile's interior at a layer after ``pools`` poolings, in
    the crop's feature map (``in_crop``) or the whole picture's."""
    (r0, r1), (c0, c1) = tile.rows, tile.cols
    dr, dc = (tile.crop_rows[0] >> pools, tile.crop_cols[0] >> pools) if in_crop else (0, 0)
    return slice((r0 >> pools) - dr, (r1 >> pools) - dr), slice((c0 >> pools) - dc, (c1 >> pools) - dc)


def crop_of(image: jax.Array, tile: Tile) -> jax.Array:
    return image[slice(*tile.crop_rows), slice(*tile.crop_cols)]


def token(tree) -> jax.Array:
    """A scalar that exists only once all of ``tree`` is computed: the sum of its leaves
    (not one element: XLA would compute only that element of a Gram, and the rest later)."""
    return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(tree))


def after(x: jax.Array, previous) -> jax.Array:
    """``x``, made to depend on ``previous`` (a :func:`token`): + 0 x token, which XLA does
    not fold for floats. A non-finite token makes it NaN, where the loss is not finite
    anyway."""
    return x if previous is None else x + jnp.zeros((), x.dtype) * previous.astype(x.dtype)


def tile_features(model, variables, crop: jax.Array, tile: Tile, names, previous=None) -> dict[str, jax.Array]:
    """The features of ``names`` at the tile's interior positions, from its crop; computed
    after ``previous`` (the :func:`token` of the tile before, None for the first).

    That data dependency is what orders the tiles: XLA:CPU drops ``optimization_barrier``
    before scheduling, and left free it interleaves the tiles, each one's activations
    alive at once (measured: bench/README.md, "High resolution").
    """
    pools = {l.name: l.pools for l in layout(model.arch)}
    feats = model.apply(variables, after(crop, previous))
    return {n: feats[n][positions(tile, pools[n])] for n in names}


class Stats(NamedTuple):
    """The sums over positions the losses depend on: per content layer 1/2 sum |F - P|^2,
    per style layer the Gram (C, C), or with masks the R guided Grams (R, C, C)."""

    content: tuple[jax.Array, ...]
    style: tuple[jax.Array, ...]


def tile_stats(objective, problem, crop: jax.Array, tile: Tile, previous=None) -> Stats:
    """The statistics of one tile's interior positions, from its crop (of the picture),
    computed after ``previous`` (see :func:`tile_features`)."""
    pools = {l.name: l.pools for l in layout(objective.model.arch)}
    names = tuple(dict.fromkeys(objective.content_layers + objective.style_layers))
    feats = tile_features(objective.model, problem.variables, crop, tile, names, previous)
    targets = problem.targets
    content = tuple(content_loss(targets.content[i][positions(tile, pools[n], False)], feats[n], "sum")
                    for i, n in enumerate(objective.content_layers))
    style = []
    for i, n in enumerate(objective.style_layers):
        if targets.guides is None:
            style.append(gram(feats[n], objective.gram_precision, objective.moments))
        else:
            rows, cols = positions(tile, pools[n], False)
            guides = targets.guides[i][:, rows, cols]
            style.append(jnp.stack([guided_gram(feats[n], g, objective.gram_precision, objective.moments)
                                    for g in guides]))
    return Stats(content, tuple(style))


def stats_loss(objective, problem, stats: Stats, height: int, width: int):
    """alpha J_content + beta J_style from the whole picture's statistics, and (J_content,
    J_style); the normalisers use each layer's full (H_l, W_l, C) of a height x width picture."""
    shapes = {l.name: (h, w, l.c_out) for l, h, w in layer_sizes(objective.model.arch, height, width,
                                                                    objective.model.taps)}
    weights = problem.weights
    targets = problem.targets
    content = sum(weights.content_layers[i] * stats.content[i] / content_normalizer(targets.content[i],
                                                                                    objective.content_norm)
                  for i, n in enumerate(objective.content_layers))
    shares = [gram_share(shapes[n], objective.per_channel) for n in objective.style_layers]
    style = balanced_style([style_gram_term(targets, i, stats.style[i], shapes[n], weights, objective.style_norm,
                                            objective.style_loss)
                            for i, n in enumerate(objective.style_layers)], targets, weights, shares,
                           objective.per_layer)
    content = jnp.asarray(content, jnp.float32)
    return weights.content * content + weights.style * style, (content, style)


def accumulate_stats(objective, problem, picture: jax.Array, grid: tuple[Tile, ...]) -> Stats:
    """Pass 1: sum_T s_T, the tiles one after the other, forward only."""
    total, previous = None, None
    for tile in grid:
        s = tile_stats(objective, problem, crop_of(picture, tile), tile, previous)
        total = s if total is None else jax.tree.map(jnp.add, total, s)
        previous = token(s)
    return total


def grid_of(objective, picture: jax.Array) -> tuple[Tile, ...]:
    """The tiles of ``objective.tiles`` over ``picture`` (H, W, C)."""
    h, w = picture.shape[:2]
    return objective.tiles.grid(h, w, alignment(objective.model.arch, objective.model.taps))


def head(objective, problem, stats: Stats, picture: jax.Array) -> tuple[jax.Array, LossTerms]:
    """(J, terms) from the whole picture's statistics, and the picture itself for J_tv."""
    h, w = picture.shape[:2]
    _, (content, style) = stats_loss(objective, problem, stats, h, w)
    terms = LossTerms(content, style, tv_loss(picture))
    return total_loss(terms, problem.weights), terms


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def tiled_objective(objective, problem, image: jax.Array) -> tuple[jax.Array, LossTerms]:
    """``objective(problem, image)`` = (J, terms), tile by tile: pass 1 only when evaluated,
    both passes when differentiated (its custom VJP), one tile's activations alive at a
    time either way. Differentiable with respect to the image (every output, the separate
    terms too), not the problem."""
    picture = objective.picture(problem, image)
    return head(objective, problem, accumulate_stats(objective, problem, picture, grid_of(objective, picture)),
                picture)


def _unwrap(tree):
    return jax.tree.map(lambda p: p.value, tree, is_leaf=lambda x: isinstance(x, CustomVJPPrimal))


def _tiled_forward(objective, problem, image):
    """Pass 1, keeping the statistics for the backward pass."""
    leaves = jax.tree.leaves(problem, is_leaf=lambda x: isinstance(x, CustomVJPPrimal))
    if any(p.perturbed for p in leaves):
        raise NstError("a tiled objective is differentiable with respect to the image only, not the "
                       "network weights, targets or loss weights; evaluate it whole for those")
    problem, image = _unwrap(problem), image.value
    picture = objective.picture(problem, image)
    stats = accumulate_stats(objective, problem, picture, grid_of(objective, picture))
    return head(objective, problem, stats, picture), (problem, image, stats)


def _tiled_backward(objective, residuals, cotangent):
    """dL/ds and the TV term's gradient from the head, then pass 2: per tile the VJP of
    crop -> s_T with cotangent dL/ds, scatter-added, pulled back through the picture map."""
    problem, image, stats = residuals
    cotangent = jax.tree.map(lambda c: jnp.zeros(c.shape, c.dtype) if isinstance(c, SymbolicZero) else c,
                             cotangent, is_leaf=lambda x: isinstance(x, SymbolicZero))
    picture, pull = jax.vjp(lambda x: objective.picture(problem, x), image)
    _, head_vjp = jax.vjp(lambda s, p: head(objective, problem, s, p), stats, picture)
    d_stats, grad = head_vjp(cotangent)
    previous = token(d_stats)  # pass 2 after pass 1
    for tile in grid_of(objective, picture):
        _, vjp = jax.vjp(lambda crop, tile=tile, previous=previous: tile_stats(objective, problem, crop, tile,
                                                                               previous),
                         crop_of(picture, tile))
        d_crop = vjp(d_stats)[0]
        grad = grad.at[slice(*tile.crop_rows), slice(*tile.crop_cols)].add(d_crop)
        previous = jnp.sum(d_crop)
    return None, pull(grad)[0]


tiled_objective.defvjp(_tiled_forward, _tiled_backward, symbolic_zeros=True)


def tiled_features(model, variables, image: jax.Array, plan: TilePlan, names) -> dict[str, jax.Array]:
    """The whole picture's features of ``names``, assembled tile by tile (forward only)."""
    h, w = image.shape[:2]
    sizes = {l.name: (hl, wl, l.c_out) for l, hl, wl in layer_sizes(model.arch, h, w, model.taps)}
    pools = {l.name: l.pools for l in layout(model.arch)}
    out = {n: jnp.zeros(sizes[n], jnp.float32) for n in names}
    previous = None
    for tile in plan.grid(h, w, alignment(model.arch, model.taps)):
        feats = tile_features(model, variables, crop_of(image, tile), tile, names, previous)
        out = {n: out[n].at[positions(tile, pools[n], False)].set(feats[n]) for n in names}
        previous = sum(jnp.sum(f) for f in feats.values())
    return out


def tiled_grams(model, variables, image: jax.Array, plan: TilePlan, names, guides=None,
                moments: bool = False) -> dict[str, jax.Array]:
    """Per layer of ``names`` the Gram sum_i F_i^T F_i of the whole picture, or with
    ``guides`` (one (H_l, W_l) channel per name) the guided Gram, tile by tile; ``moments``:
    as losses.gram."""
    h, w = image.shape[:2]
    pools = {l.name: l.pools for l in layout(model.arch)}
    total, previous = None, None
    for tile in plan.grid(h, w, alignment(model.arch, model.taps)):
        feats = tile_features(model, variables, crop_of(image, tile), tile, names, previous)
        grams = {n: gram(f, moments=moments) if guides is None
                 else guided_gram(f, guides[i][positions(tile, pools[n], False)], moments=moments)
                 for i, (n, f) in enumerate(feats.items())}
        total = grams if total is None else jax.tree.map(jnp.add, total, grams)
        previous = token(grams)
    return total
