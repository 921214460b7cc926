"""Load a run's inputs and compute what the image is compared with.

``prepare`` turns file paths (or arrays) and a config into everything the step needs:
the objective, its traced data (:class:`~nst_jax.objective.Problem`), the start image,
and a digest of the inputs that checkpoints are matched against. The perceptual controls
are data made here, not second code paths: several style images give one Gram each (the
blend weights are traced loss weights), colour control changes the images the network
sees (colour.py), and masks become guidance channels per style layer (masks.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .cache import kept_or_jitted
from .colour import before_run, luminance, match_colour_histogram
from .config import WEIGHT, Balance, Init, StyleConfig
from .conv import resolve, with_transforms
from .errors import NstError
from .image import load_image, read_image, resize, scaled_shape
from .losses import Targets, gram, guided_gram, style_gram_loss
from .masks import free_pixels, guidance
from .memory import MemoryPlan, budget_bytes, check_forward, plan_memory
from .objective import Objective, Problem, build_objective, loss_weights
from .tiling import tiled_features, tiled_grams
from .vgg import check_image_size, layer_sizes
from .weights import VGGWeights, load_weights


@dataclass
class Prepared:
    """Everything a run needs, loaded and checked."""

    objective: Objective
    problem: Problem
    content: np.ndarray  # (H, W, 3) at the run's size, as the network sees it (grey for colour="luminance")
    styles: list[np.ndarray]  # each at its own size, as the network sees them (colour control applied)
    start: np.ndarray  # the first iterate: (H, W, 3), or (H, W, 1) luminance for colour="luminance"
    digest: str  # sha256 of the resized inputs and the weights (see input_digest)
    arch: str
    notes: list[str] = field(default_factory=list)  # what a user should know (resizing...)
    colour_content: np.ndarray | None = None  # the content in its own colours, at the run's size
    plans: tuple[MemoryPlan, ...] = ()  # how a step fits in memory, one per size of the run, coarse to fine


def as_list(styles) -> list:
    """One style (path or array) or a list of them, as a list."""
    return list(styles) if isinstance(styles, (list, tuple)) else [styles]


def read_noting(source, notes: list[str]) -> np.ndarray:
    """Read ``source`` (image.read_image), adding its note, if any, to ``notes`` once."""
    image, note = read_image(source)
    if note and note not in notes:
        notes.append(note)
    return image


def load_sized(source, longest: int, arch: str, taps, what: str, notes: list[str]) -> np.ndarray:
    """Load ``source`` and resize it so its longest side is ``longest``; the size is
    checked against the network before any resizing work is done."""
    raw = load_image(source)
    h, w = scaled_shape(raw.shape[:2], max(1, round(longest)))
    check_image_size(h, w, arch, taps, f"the {what} image at this size" if what != "content" else "image",
                     "raise --style-scale or use a larger style image" if what == "style"
                     else "use a larger size or a larger image")
    if max(h, w) > 2 * max(raw.shape[:2]):
        notes.append(f"the {what} image is {raw.shape[1]}x{raw.shape[0]} px, upscaled to {w}x{h}")
    return resize(raw, h, w)


def style_targets(objective: Objective, variables, styles: list[np.ndarray], out_hw,
                  guides: list | None = None) -> tuple:
    """Per style layer, the Gram of each style image scaled to the output's size, stacked
    (K, C, C): T_k^l = (M_out^l / M_k^l) G_k^l, where M^l counts the positions of layer l in
    the output and in style image k. ``guides[k]``: style k's normalised guidance channel
    per layer (a style mask, masks.py), or None for the whole image: then G_k^l is the
    guided Gram F^T diag(t) F.

    The objective blends them with the traced weights w_k (``LossWeights.blend``): the target
    is G_target^l = sum_k w_k T_k^l (jcjohnson/neural-style's -style_blend_weights: each Gram
    normalised for its own image's size, then averaged). With one style of the output's size
    this is the paper's A^l; the scaling lets styles of any size be matched against the Gram
    of the output, which sums over M_out^l positions.

    A tiled objective computes the Grams tile by tile too (forward only, with its tiles).
    """
    out_hw, layers = tuple(out_hw), objective.style_layers
    grams = partial(scaled_grams, objective, out_hw=out_hw)
    per_style = [kept_or_jitted(("scaled_grams", objective, out_hw), grams,
                                (variables, style, None if guides is None or guides[k] is None
                                 else [g[0] for g in guides[k]]), jax.tree.structure((0,) * len(layers)))
                 for k, style in enumerate(styles)]
    return tuple(jnp.stack(g) for g in zip(*per_style))


@partial(jax.jit, static_argnames=("objective", "out_hw"))
def scaled_grams(objective: Objective, variables, image, own=None, *, out_hw: tuple[int, int]) -> tuple:
    """One style image's T_k^l of :func:`style_targets` per style layer, as one program
    (kept between runs: cache.kept_or_jitted)."""
    arch, layers = objective.model.arch, objective.style_layers
    positions = {l.name: h * w for l, h, w in layer_sizes(arch, *out_hw, layers)}
    sizes = {l.name: h * w for l, h, w in layer_sizes(arch, *image.shape[:2], layers)}
    grams = image_grams(objective, variables, image, own)
    return tuple(positions[n] / sizes[n] * grams[n] for n in layers)


def image_grams(objective: Objective, variables, image, own=None) -> dict:
    """{style layer: Gram of ``image``} (guided by ``own``, one channel per layer, when
    given), tile by tile for a tiled objective."""
    layers = objective.style_layers
    if objective.tiles is not None:
        return tiled_grams(objective.model, variables, image, objective.tiles, layers, own, objective.moments)
    return layer_grams(one_pass(objective.model).apply(variables, image), layers, own, objective.moments)


def one_pass(model):
    """The network for a target's single forward pass: XLA's own convolutions. A step runs
    its network hundreds of times, a target once, and Winograd's longer program would
    cost more to trace and lower than it saves (docs/performance.md#compiles)."""
    return model.clone(conv="lax")


def layer_grams(feats: dict, layers, own=None, moments: bool = False) -> dict:
    """{layer: Gram of its features in ``feats``}, guided by ``own`` (one channel per layer) when
    given; ``moments``: as losses.gram."""
    return {n: gram(feats[n], moments=moments) if own is None else guided_gram(feats[n], own[i], moments=moments)
            for i, n in enumerate(layers)}


def content_features(objective: Objective, variables, content: np.ndarray) -> tuple[jax.Array, ...]:
    """The content taps' features of the content image (tile by tile for a tiled objective)."""
    return content_targets(objective, variables, content)[0]


def content_targets(objective: Objective, variables, content, style_grams: tuple | None = None,
                    guides: tuple | None = None):
    """(the content taps' features of ``content``, its style gaps or None), as one program
    (kept between runs: cache.kept_or_jitted) with one network pass when untiled."""
    out_tree = jax.tree.structure(((0,) * len(objective.content_layers), None if style_grams is None else 0))
    return kept_or_jitted(("content_targets", objective), partial(_content_targets, objective),
                          (variables, content, style_grams, guides), out_tree)


@partial(jax.jit, static_argnums=(0,))
def _content_targets(objective: Objective, variables, content, style_grams: tuple | None = None,
                     guides: tuple | None = None):
    """:func:`content_targets`' program. The gaps (n_style_layers, K), computed when
    ``style_grams`` are given: J_style^l (without lambda_l) of the ``content`` picture
    against each style image's target Gram (with masks: each region's, its guided Gram
    against that region's target), as the objective computes J_style^l. losses.balanced_style
    measures J_style in these."""
    model, layers = objective.model, objective.style_layers
    if objective.tiles is None:
        feats = one_pass(model).apply(variables, content)
    else:
        feats = tiled_features(model, variables, content, objective.tiles, objective.content_layers)
    features = tuple(feats[n] for n in objective.content_layers)
    if style_grams is None:
        return features, None
    shapes = {l.name: (h, w, l.c_out) for l, h, w in layer_sizes(model.arch, *content.shape[:2], layers)}
    rows = []
    for k in range(style_grams[0].shape[0]):
        own = None if guides is None else [g[k] for g in guides]
        grams = (layer_grams(feats, layers, own, objective.moments) if objective.tiles is None  # the pass above
                 else image_grams(objective, variables, content, own))
        rows.append([style_gram_loss(style_grams[i][k], grams[n], shapes[n], objective.style_norm,
                                     objective.style_loss) for i, n in enumerate(layers)])
    return features, jnp.asarray(rows, jnp.float32).T


def describe_balance(config: StyleConfig, gaps: jax.Array, blend, shape, arch: str) -> str:
    """One line: beta against the style gap, and what that is on J_style itself. Raises
    when the photo already has the painting's statistics at every style layer (a gap of 0
    leaves nothing to measure the style loss against, whatever the weights)."""
    from .losses import gram_share

    if not (np.asarray(gaps) > 0).any():
        raise NstError("the photo already has the style's statistics (a style gap of 0): is the style image the "
                       "photo? --balance fixed measures the style loss as it is")
    per_layer = np.asarray(gaps) @ np.asarray(blend)
    if config.balance == Balance.layers:
        return (f"balance: beta {config.style_weight:g} on each style layer's gap (the photo's own J_style^l at "
                f"{max(shape)} px: {', '.join(f'{g:.3g}' for g in per_layer)})")
    sizes = {l.name: (h, w, l.c_out) for l, h, w in layer_sizes(arch, *shape, config.style_layers)}
    shares = [gram_share(sizes[n], config.per_channel) for n in config.style_layers]
    gap = float(np.dot(np.asarray(config.style_layer_weights) * shares, per_layer))
    return (f"balance: beta {config.style_weight:g} on the style gap (J_style of the photo, {gap:.3g} at "
            f"{max(shape)} px): {config.style_weight / gap if gap > 0 else float('inf'):.3g} on J_style itself")


def memory_plans(config: StyleConfig, arch: str, taps, shape, budget: int | None = None) -> tuple[MemoryPlan, ...]:
    """How a step fits in memory at each of ``config.sizes`` for a content image of ``shape``
    (H, W): whole or in tiles (memory.plan_memory), within ``budget`` bytes (default: from
    ``config.max_memory`` and what is available now). Raises when the largest cannot fit."""
    budget = budget_bytes(config.max_memory) if budget is None else budget
    return tuple(plan_memory(arch, *scaled_shape(shape, size), taps, budget=budget, tile=config.tile,
                             remat=config.remat, content_taps=config.content_layers, optimizer=config.optimizer,
                             conv=resolve(config.conv, config.dtype))
                 for size in reversed(config.sizes))[::-1]


def normalised_blend(blend, n_styles: int) -> tuple[float, ...]:
    """Blend weights normalised to sum 1 (equal when not given)."""
    blend = tuple(float(b) for b in blend) if blend else (1.0,) * n_styles
    if len(blend) != n_styles:
        raise NstError(f"{len(blend)} blend weights for {n_styles} style images")
    if not all(b in WEIGHT for b in blend) or sum(blend) <= 0:
        raise NstError(f"blend weights must be finite, non-negative and not all zero, not {blend}")
    return tuple(b / sum(blend) for b in blend)


def start_image(config: StyleConfig, content: np.ndarray, style: np.ndarray) -> np.ndarray:
    """The first iterate: content, noise, noisy-content, style, recoloured (the content
    mapped to the style's colour mean and covariance, colour.match_colour_histogram with
    the roles swapped; the first style when there are several), or an image file."""
    noise = np.random.default_rng(config.seed).uniform(size=content.shape).astype(np.float32)
    if config.init == Init.content:
        return content
    if config.init == Init.recoloured:
        return np.clip(match_colour_histogram(content, style), 0.0, 1.0).astype(np.float32)
    if config.init == Init.noise:
        return noise
    if config.init == Init.noisy_content:
        return (1.0 - config.init_noise) * content + config.init_noise * noise
    source = style if config.init == Init.style else load_image(config.init_image)
    return resize(source, *content.shape[:2]).astype(np.float32)


def input_digest(images: list[np.ndarray], weights: VGGWeights) -> str:
    """sha256 over the resized content and style pixels (and guidance channels) and every
    weight array."""
    h = hashlib.sha256()
    for array in images:
        h.update(str(array.shape).encode())
        h.update(np.ascontiguousarray(array, np.float32).tobytes())
    for key in sorted(weights.params):
        h.update(key.encode())
        h.update(np.ascontiguousarray(weights.params[key]).tobytes())
    return h.hexdigest()


def resolve_weights(config: StyleConfig, weights: VGGWeights | None = None) -> VGGWeights:
    """The weights given, else those the config names (loaded once per run)."""
    return weights or load_weights(config.weights)


def prepare(content, styles, config: StyleConfig, weights: VGGWeights | None = None,
            size: int | None = None, budget: int | None = None) -> Prepared:
    """Load and check everything a run needs at ``size`` (default ``config.size``; a
    coarse-to-fine run prepares each of ``config.sizes``). ``styles``: one path/array or
    a list. ``budget``: the bytes a step may use (default: see :func:`memory_plans`).

    Sizes, and the memory of the run's largest size and of each style image, are checked
    on the target dimensions before any resizing, so a size that cannot fit fails at once
    with the estimate, before any step at a smaller scale. The objective is tiled where
    this size's memory plan says so, and the targets are computed with the same tiles.
    """
    weights = resolve_weights(config, weights)
    size = size or config.size
    taps = build_objective(weights.arch, weights.pixel_space, config).model.taps
    notes = []
    raw = read_noting(content, notes)
    h, w = scaled_shape(raw.shape[:2], size)
    if size != config.size:  # a coarse scale: a larger --size makes it no larger
        check_image_size(h, w, weights.arch, taps, f"the content at the coarse scale of {size} px",
                         "start the scales higher with --scales (e.g. --scales none)")
    check_image_size(h, w, weights.arch, taps)
    budget = budget_bytes(config.max_memory) if budget is None else budget
    plans = memory_plans(config, weights.arch, taps, raw.shape[:2], budget)
    plan = plans[config.sizes.index(size)] if size in config.sizes else memory_plans(
        config.replace(size=size, scales=()), weights.arch, taps, raw.shape[:2], budget)[0]
    objective = build_objective(weights.arch, weights.pixel_space, config, plan.tiles)
    colour_content = load_sized(raw, size, weights.arch, taps, "content", notes)
    styles = as_list(styles)
    blend = normalised_blend(config.style_blend, len(styles))
    raw_styles = [read_noting(s, notes) for s in styles]
    style_side = max(1, round(config.size * config.style_scale))  # at the largest size
    for raw_style in raw_styles:
        check_forward(weights.arch, *scaled_shape(raw_style.shape[:2], style_side), taps, budget=budget,
                      tiles=plans[-1].tiles, what="the style image at ",
                      conv=(one_pass(objective.model) if plans[-1].tiles is None else objective.model).conv)
    style_imgs = [load_sized(s, size * config.style_scale, weights.arch, taps, "style", notes)
                  for s in raw_styles]
    content_img, style_imgs = before_run(colour_content, style_imgs, config.colour, config.colour_match)
    guides, style_guides, free = spatial_guides(config, weights.arch, objective.style_layers,
                                                raw.shape[:2], (h, w), raw_styles, style_imgs, notes)
    start = np.clip(start_image(config, content_img, style_imgs[0]), 0.0, 1.0)  # reads init_image
    variables = jax.device_put(weights.variables())
    if objective.model.conv == "winograd":  # the kernel transforms, once per run, of the layers
        # that run as Winograd on what a step's network pass sees (the picture or a tile's
        # crop), as the memory plan counts them
        variables = with_transforms(variables, layer_sizes(weights.arch, *plan.crop, taps))
    kept = content_img
    if objective.luminance:  # one channel, the objective shows it as grey RGB
        start, kept = luminance(start)[..., None], content_img[..., :1]
    style_grams = style_targets(objective, variables, style_imgs, (h, w), style_guides)
    output_guides = None if guides is None else tuple(jnp.asarray(g) for g in guides)
    features, gaps = content_targets(objective, variables, content_img,
                                     style_grams if config.balance != Balance.fixed else None, output_guides)
    targets = Targets(features, style_grams, output_guides,
                      None if free is None else (jnp.asarray(free), jnp.asarray(kept)), gaps)
    if gaps is not None and size in (config.sizes[0], config.size):  # checked where a run starts, said at its size
        balance = describe_balance(config, gaps, blend, (h, w), weights.arch)  # (a host sync: not at every scale)
        if size == config.size:
            notes.append(balance)
    problem = Problem(variables, targets, loss_weights(config, blend))
    spatial = list(guides or ()) + [g for own in style_guides if own for g in own]
    return Prepared(objective, problem, content_img, style_imgs, start,
                    input_digest([colour_content, *style_imgs, *spatial], weights), weights.arch, notes,
                    colour_content, plans)


def spatial_guides(config: StyleConfig, arch: str, layers: tuple[str, ...], source_hw, run_hw,
                   raw_styles: list[np.ndarray], styles: list[np.ndarray], notes: list[str]) -> tuple:
    """(the output's guidance channels per style layer or None, per style image its own or
    None, the (H, W, 1) free pixels or None) from ``config.masks``, ``config.style_masks``
    and ``config.keep_unmasked`` (see masks.py)."""
    guides, free = None, None
    if config.masks:
        guides, regions = guidance(config.masks, len(styles), source_hw, run_hw, arch, layers,
                                   config.mask_erode, "mask", notes)
        free = free_pixels(regions) if config.keep_unmasked else None
    style_guides = [None] * len(styles)
    if config.style_masks:
        if len(config.style_masks) != len(styles):
            raise NstError(f"{len(config.style_masks)} style masks for {len(styles)} style images: "
                           "give one per style image")
        style_guides = [guidance([m], 1, raw.shape[:2], s.shape[:2], arch, layers, config.mask_erode,
                                 "style mask", notes)[0]
                        for m, raw, s in zip(config.style_masks, raw_styles, styles)]
    return guides, style_guides, free
