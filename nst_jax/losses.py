"""The losses of Gatys, Ecker & Bethge, as small pure functions over feature maps.

Feature maps are ``(H, W, C)`` arrays (one image; batch with ``jax.vmap``). With
N = C channels and M = H * W positions of layer l (the paper's notation):

- Gram matrix      G_kk' = sum_ij a_ijk a_ijk'
- content loss     J_content = 1/2 sum (a_C - a_G)^2 (or its mean, 1/(2 N M) sum ..., see below)
- style loss       J_style^l = 1/(4 N^2 M^2) sum (G_S - G_G)^2, which is the article's
                   1/(2 n_H n_W n_C)^2 written another way; J_style = sum_l lambda_l J_style^l
- several styles   G_S = sum_k w_k G_k, the blend of each style image's Gram (weights w_k)
- guided (masks)   J_style^l = sum_r w_r 1/(4 N^2 M^2) sum (G_r,S - G_r,G)^2, G_r = F^T diag(t_r) F
                   for each region r and its guidance channel t_r (Gatys et al. 2017, sec. 4)
- total            J = alpha J_content + beta J_style + tv J_tv

References:
  Gatys, Ecker & Bethge, "A Neural Algorithm of Artistic Style", arXiv:1508.06576 (2015);
  "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016, eqs. (1)-(7).
  Gatys, Ecker, Bethge, Hertzmann & Shechtman, "Controlling Perceptual Factors in Neural
  Style Transfer", CVPR 2017, arXiv:1611.07865, sec. 4 (guided Gram matrices).

Size: the paper's style loss is a mean over positions (G / M is intensive) but its content
loss is a sum, so alpha/beta shifts with the image size. ``content_norm="mean"`` divides the
content term by its element count N M, which makes it intensive too: the same alpha/beta
gives the same balance at 256 and at 1024 px (a departure from the paper, offered as an
option; see config.py for which is the default and why). The TV term needs nothing: as a
sum of squared differences it is already invariant to upsampling.

Normalisation constants are Python floats: ``(2 * H * W * C) ** 2`` overflows int32 for a
512x512x64 layer.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from .errors import ConfigError


class LossWeights(NamedTuple):
    """The weights of one run; every leaf may carry a leading batch axis for a sweep."""

    content: jax.Array  # alpha
    style: jax.Array  # beta
    tv: jax.Array  # total-variation weight
    content_layers: jax.Array  # (n_content,) weight of each content tap
    style_layers: jax.Array  # (n_style,) lambda_l of each style tap
    # (n_styles,) w_k, summing to 1: the blend of the style images' Grams, or, with masks,
    # the weight of each style's region. A traced input, so a sweep can batch it too.
    blend: jax.Array
    # gamma of the temporal term (video.py); None: not a video frame.
    temporal: jax.Array | None = None


class LossTerms(NamedTuple):
    """Unweighted-by-alpha/beta terms: J_content, J_style (lambda-weighted), J_tv."""

    content: jax.Array
    style: jax.Array
    tv: jax.Array


# How a Gram's matmul is done (config.gram_precision, resolved by :func:`gram_precision`):
# "float32", XLA's HIGHEST (what the paper's formulas mean); "tf32x3", three TF32
# tensor-core passes whose sum carries about float32's accuracy (hi*hi + hi*lo + lo*hi),
# on GPUs only.
GRAM_PRECISIONS = {"float32": jax.lax.Precision.HIGHEST,
                   "tf32x3": jax.lax.DotAlgorithmPreset.TF32_TF32_F32_X3}


def gram_precision(name: str = "auto", device: jax.Device | None = None) -> str:
    """The Gram matmul a run uses on ``device`` (default: the first): ``"auto"`` is
    ``"tf32x3"`` on GPUs with TF32 tensor cores (compute capability 8.0 and up) and
    ``"float32"`` elsewhere; an explicit ``"tf32x3"`` elsewhere is a ConfigError (XLA:CPU
    has no TF32).

    Why tf32x3 on those GPUs: as accurate as float32 and no slower to within a few
    percent (the measurements: docs/defaults.md#gram_precision).
    """
    device = device or jax.devices()[0]
    capability = getattr(device, "compute_capability", None)
    try:
        tf32 = device.platform == "gpu" and capability is not None and float(capability) >= 8.0
    except ValueError:
        tf32 = False
    if name == "auto":
        return "tf32x3" if tf32 else "float32"
    if name not in GRAM_PRECISIONS:
        raise ConfigError("gram_precision", f"must be 'auto', 'float32' or 'tf32x3', not {name!r}")
    if name == "tf32x3" and not tf32:
        where = device.device_kind if device.platform == "gpu" else f"a {device.platform}"
        raise ConfigError("gram_precision", f"'tf32x3' needs a GPU with TF32 tensor cores, not {where}: "
                          "use 'float32' or 'auto'")
    return name


@partial(jax.custom_jvp, nondiff_argnums=(2,))
def weighted_gram(flat: jax.Array, weight: jax.Array | None, precision: str = "float32") -> jax.Array:
    """F^T (w F) for features F (N, C) and a weight per position w (N, 1), or F^T F for
    ``weight`` None; returns (C, C).

    Its derivative is written out: the tangent S + S^T with S = F^T (w dF) (and F^T (dw F)
    where w varies), which JAX transposes to one product F (C + C^T) for the gradient,
    where differentiating the product itself gives two, F C^T and F C: a third of the
    Grams' products saved (docs/performance.md).
    """
    return _product(flat.T, flat if weight is None else flat * weight, precision)


def _product(a: jax.Array, b: jax.Array, precision: str) -> jax.Array:
    return jnp.matmul(a, b, precision=GRAM_PRECISIONS[precision])


@partial(weighted_gram.defjvp, symbolic_zeros=True)
def _weighted_gram_jvp(precision, primals, tangents):
    flat, weight = primals
    d_flat, d_weight = tangents
    out = weighted_gram(flat, weight, precision)
    tangent = jnp.zeros_like(out)
    if not isinstance(d_flat, SymbolicZero):
        half = _product(flat.T, d_flat if weight is None else d_flat * weight, precision)
        tangent = half + half.T
    if weight is not None and not isinstance(d_weight, SymbolicZero):
        tangent = tangent + _product(flat.T, flat * d_weight, precision)
    return out, tangent


def gram(features: jax.ArrayLike, precision: str = "float32", moments: bool = False) -> jax.Array:
    """G_kk' = sum_ij a_ijk a_ijk' for features of shape (H, W, C); returns (C, C).

    ``precision``: one of :data:`GRAM_PRECISIONS`, never a single TF32 or bf16 pass: style
    losses are differences of large Grams, and those passes lose them. ``moments``: the Gram
    of the features with a channel of ones appended, (C + 1, C + 1), which holds the position
    count, the features' sum and their Gram (:func:`moments_of`).
    """
    flat = _flat(features, moments)
    return weighted_gram(flat, None, precision)


def _flat(features: jax.ArrayLike, moments: bool) -> jax.Array:
    """Features (H, W, C) as (H W, C), with a channel of ones appended when ``moments``."""
    features = jnp.asarray(features)
    flat = features.reshape(-1, features.shape[-1])
    return jnp.concatenate([flat, jnp.ones_like(flat[:, :1])], axis=1) if moments else flat


def content_normalizer(target: jax.ArrayLike, norm: str = "sum"):
    """What divides 1/2 sum (a_C - a_G)^2 for the content target ``target`` (a_C):
    ``"sum"``: 1 (eq. 1); ``"mean"``: its element count N M; ``"relative"``: 1/2 sum a_C^2,
    so the term is the squared relative error |a_G - a_C|^2 / |a_C|^2."""
    if norm == "sum":
        return 1.0
    if norm == "mean":
        return float(jnp.size(target))
    if norm == "relative":
        return 0.5 * jnp.sum(jnp.square(jnp.asarray(target)))
    raise ValueError(f"unknown content normalisation {norm!r}")


def content_loss(target: jax.ArrayLike, features: jax.ArrayLike, norm: str = "sum") -> jax.Array:
    """J_content = 1/2 sum (a_C - a_G)^2 (Gatys et al. eq. 1) / :func:`content_normalizer`."""
    features = jnp.asarray(features)
    return 0.5 * jnp.sum(jnp.square(features - jnp.asarray(target))) / content_normalizer(target, norm)


def gram_share(shape: tuple[int, ...], per_channel: float = 0.0) -> float:
    """The share of its weight a style layer of ``shape`` = (H, W, C) keeps:
    min(1, H W / (per_channel C)); 1 when ``per_channel`` is 0 (the paper).

    A Gram over M positions of N channels has rank at most M: with few positions per
    channel it stops being a statistic of the texture and pins down the painting's feature
    vectors themselves, so matching it paints the painting's objects (faces, figures) into
    the picture. Deep layers of a small picture are where that happens."""
    h, w, c = (float(s) for s in shape[-3:])
    return 1.0 if per_channel <= 0 else min(1.0, h * w / (per_channel * c))


def style_normalizer(shape: tuple[int, ...], norm: str = "paper", target_gram=None):
    """What divides sum (G_S - G_G)^2 for a layer of ``shape`` = (H, W, C).

    ``"paper"``: 4 N^2 M^2 = (2 H W C)^2 (eq. 4). ``"mean"``: N^2 (N M)^2, the PyTorch
    tutorial's mean squared error of Grams divided by N M (a departure from the paper,
    offered for comparison with that code). ``"relative"``: sum G_S^2, the squared norm of
    the target itself, so each layer's term is its relative Gram error: dimensionless, the
    same for weights trained in any pixel space (Caffe's 0-255 or torchvision's), and
    comparable across layers whose activations differ by orders of magnitude (a
    departure from the paper, offered as an option: bench/results/quality-study-cpu.md).
    """
    h, w, c = (float(s) for s in shape[-3:])
    if norm == "paper":
        return (2.0 * h * w * c) ** 2
    if norm == "mean":
        return c * c * (c * h * w) ** 2
    if norm == "relative":
        return jnp.sum(jnp.square(jnp.asarray(target_gram)))
    raise ValueError(f"unknown style normalisation {norm!r}")


def style_gram_loss(target_gram: jax.ArrayLike, gram_matrix: jax.ArrayLike, shape: tuple[int, ...],
                    norm: str = "paper", kind: str = "gram") -> jax.Array:
    """J_style^l as a function of the Gram G_G of a layer of ``shape`` = (H, W, C):
    sum (G_S - G_G)^2 / :func:`style_normalizer`, or with ``kind`` "wasserstein"
    :func:`wasserstein_loss` of the two Grams with moments. The loss depends on the
    features only through G_G, a sum over positions, which is what lets tiling.py
    accumulate it tile by tile and differentiate it with G_G held fixed."""
    if kind == "wasserstein":
        return wasserstein_loss(target_gram, gram_matrix, norm)
    diff = jnp.asarray(gram_matrix) - jnp.asarray(target_gram)
    return jnp.sum(jnp.square(diff)) / style_normalizer(shape, norm, target_gram)


def style_layer_loss(target_gram: jax.ArrayLike, features: jax.ArrayLike,
                     norm: str = "paper", precision: str = "float32", kind: str = "gram") -> jax.Array:
    """J_style^l = sum (G_S - G_G)^2 / (4 N^2 M^2) (Gatys et al. eq. 4), or another
    :func:`style_normalizer`; or the ``kind`` "wasserstein" distance."""
    features = jnp.asarray(features)
    return style_gram_loss(target_gram, gram(features, precision, kind == "wasserstein"), features.shape,
                           norm, kind)


def moments_of(moment_gram: jax.ArrayLike) -> tuple[jax.Array, jax.Array]:
    """(mean (C,), covariance (C, C)) of the features whose :func:`gram` with moments is
    ``moment_gram`` (C + 1, C + 1): its corner is the position count M (or the guide's total
    weight), its last column the features' sum, the rest their Gram."""
    g = jnp.asarray(moment_gram)
    c = g.shape[-1] - 1
    count = jnp.maximum(g[c, c], jnp.finfo(g.dtype).tiny)
    mean = g[:c, c] / count
    return mean, g[:c, :c] / count - jnp.outer(mean, mean)


def _psd_eigh(m: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigenvalues (floored at 0) and eigenvectors of the symmetric part of ``m``."""
    w, v = jnp.linalg.eigh(0.5 * (m + m.T))
    return jnp.maximum(w, 0.0), v


@jax.custom_vjp
def trace_sqrt(m: jax.Array) -> jax.Array:
    """tr(M^(1/2)) of a symmetric positive semi-definite M: the sum of the square roots of
    its eigenvalues. Its gradient 1/2 M^(-1/2) is written out with the eigenvalues floored at
    1e-6 of the largest (JAX's own derivative of eigh divides by eigenvalue gaps, infinite
    for the repeated zeros of a rank-deficient covariance)."""
    return jnp.sum(jnp.sqrt(_psd_eigh(m)[0]))


def _trace_sqrt_fwd(m):
    w, v = _psd_eigh(m)
    floor = 1e-6 * jnp.maximum(jnp.max(w), jnp.finfo(w.dtype).tiny)
    return jnp.sum(jnp.sqrt(w)), (v, jnp.sqrt(jnp.maximum(w, floor)))


def _trace_sqrt_bwd(residuals, g):
    v, root = residuals
    return (0.5 * g * (v / root) @ v.T,)


trace_sqrt.defvjp(_trace_sqrt_fwd, _trace_sqrt_bwd)


def sqrtm_psd(m: jax.Array) -> jax.Array:
    """M^(1/2) of a symmetric positive semi-definite M (no gradient: used on targets)."""
    w, v = _psd_eigh(jax.lax.stop_gradient(m))
    return (v * jnp.sqrt(w)) @ v.T


def wasserstein_loss(target_gram: jax.ArrayLike, moment_gram: jax.ArrayLike, norm: str = "paper") -> jax.Array:
    """The squared 2-Wasserstein distance between the Gaussians with the features' mean and
    covariance and the target's (Grams with moments, :func:`gram`), per channel:

        (|mu - mu_S|^2 + tr C + tr C_S - 2 tr (C_S^(1/2) C C_S^(1/2))^(1/2)) / N

    (the mean-and-covariance style loss of crowsonkb/style-transfer-pytorch, after Li et
    al. 2017's and Kolkin et al. 2019's moment matching). ``norm`` "relative": divided by the
    target's E|a|^2 = tr C_S + |mu_S|^2 instead of N, a fraction of the painting's own energy."""
    mu_s, cov_s = moments_of(target_gram)
    mu, cov = moments_of(moment_gram)
    root = sqrtm_psd(cov_s)
    cross = trace_sqrt(root @ cov @ root)
    distance = jnp.sum(jnp.square(mu - mu_s)) + jnp.trace(cov) + jnp.trace(cov_s) - 2.0 * cross
    if norm == "relative":
        return distance / jnp.maximum(jnp.trace(cov_s) + jnp.sum(jnp.square(mu_s)), jnp.finfo(distance.dtype).tiny)
    return distance / float(mu_s.shape[0])


def blended_gram(grams: jax.ArrayLike, blend: jax.ArrayLike) -> jax.Array:
    """G = sum_k w_k G_k of the (K, C, C) Grams of K style images; returns (C, C)."""
    return jnp.tensordot(jnp.asarray(blend), jnp.asarray(grams), axes=1,
                         precision=jax.lax.Precision.HIGHEST)


def guided_gram(features: jax.ArrayLike, guide: jax.ArrayLike, precision: str = "float32",
                moments: bool = False) -> jax.Array:
    """G_kk' = sum_ij t_ij a_ijk a_ijk' for features (H, W, C) and a guidance channel t (H, W);
    returns (C, C). With t = 1 everywhere this is :func:`gram`, bit for bit (the same
    product, of the same numbers).

    Gatys et al. (2017) multiply the feature maps by the guidance channel, so their Gram
    weighs each position by its square; :func:`nst_jax.masks.normalised_guides` passes that
    square in, normalised (see there). ``moments``: as for :func:`gram`.
    """
    flat = _flat(features, moments)
    return weighted_gram(flat, jnp.asarray(guide, flat.dtype).reshape(-1, 1), precision)


def guided_style_layer_loss(target_grams: jax.ArrayLike, features: jax.ArrayLike, guides: jax.ArrayLike,
                            region_weights: jax.ArrayLike, norm: str = "paper",
                            precision: str = "float32", kind: str = "gram") -> jax.Array:
    """J_style^l = sum_r w_r sum (G_r(x) - T_r)^2 / (4 N^2 M^2), G_r(x) = guided_gram(F, t_r).

    ``target_grams`` (R, C, C) are each region's target T_r, ``guides`` (R, H, W) the
    normalised guidance channels t_r at this layer, ``region_weights`` (R,) the w_r. One
    region with t = 1 and w = 1 is :func:`style_layer_loss` exactly. The regions are a
    Python loop: R is small and static, and each Gram stays the plain matrix product that
    :func:`gram` computes (a batched product may round differently).
    """
    features = jnp.asarray(features)
    grams = [guided_gram(features, guides[r], precision, kind == "wasserstein") for r in range(len(target_grams))]
    return guided_style_gram_loss(target_grams, grams, features.shape, region_weights, norm, kind)


def guided_style_gram_loss(target_grams: jax.ArrayLike, grams, shape: tuple[int, ...],
                           region_weights: jax.ArrayLike, norm: str = "paper", kind: str = "gram") -> jax.Array:
    """:func:`guided_style_layer_loss` as a function of the R guided Grams G_r (a list or an
    (R, C, C) array) of a layer of ``shape`` = (H, W, C)."""
    per_region = [style_gram_loss(target_grams[r], grams[r], shape, norm, kind) for r in range(len(target_grams))]
    return jnp.dot(jnp.asarray(region_weights), jnp.stack(per_region))


def tv_loss(image: jax.ArrayLike) -> jax.Array:
    """Squared total variation sum (x[i+1,j]-x[i,j])^2 + (x[i,j+1]-x[i,j])^2 of (H, W, C).

    Not in the 2016 paper; the common smoothness prior of later work (Mahendran & Vedaldi
    2015, beta = 2), off unless its weight is set. Already size-invariant as a sum: it is
    the discrete integral of |grad x|^2, which does not change when an image is upsampled
    (the differences halve, their number quadruples).
    """
    image = jnp.asarray(image)
    dh = image[1:, :, :] - image[:-1, :, :]
    dw = image[:, 1:, :] - image[:, :-1, :]
    return jnp.sum(jnp.square(dh)) + jnp.sum(jnp.square(dw))


class Targets(NamedTuple):
    """What the image is compared with: content features and style Grams, one per tap,
    in the order of the configured layer names (tuples, not dicts: pytrees sort dict
    keys, and the order must match the layer weights)."""

    content: tuple[jax.Array, ...]
    # Per style tap, (K, C, C): the Gram of each of the K style images, scaled to the
    # output's positions (see inputs.style_targets); blended by LossWeights.blend.
    style: tuple[jax.Array, ...]
    # Per style tap, (K, H_l, W_l): the output's normalised guidance channel of each style's
    # region (masks.py). None: no masks, and no trace of them in the compiled step.
    guides: tuple[jax.Array, ...] | None = None
    # (free (H, W, 1), content (H, W, C)): with masks, pixels outside every mask keep the
    # content's values (see Objective.picture). None: every pixel is optimised.
    keep: tuple[jax.Array, jax.Array] | None = None
    # (n_style, K): J_style^l of the content image against each style image's target (each
    # region's, with masks), the style gap J_style is measured in (:func:`balanced_style`).
    # None: J_style as it is (the paper's).
    gaps: jax.Array | None = None
    # (target (H, W, C), weight (H, W, 1)) of a video frame's temporal term: the earlier
    # stylized frames warped to this one, and where they hold it (:func:`temporal_loss`,
    # video.py). None: not a video frame, and no trace of it in the compiled step.
    temporal: tuple[jax.Array, jax.Array] | None = None


def style_layer_term(targets: Targets, i: int, features: jax.Array, weights: LossWeights,
                     norm: str = "paper", precision: str = "float32", kind: str = "gram") -> jax.Array:
    """J_style^l of style tap ``i``: against the blended Gram, or region by region with masks."""
    if targets.guides is None:
        return style_layer_loss(blended_gram(targets.style[i], weights.blend), features, norm, precision, kind)
    return guided_style_layer_loss(targets.style[i], features, targets.guides[i], weights.blend, norm,
                                   precision, kind)


def style_gram_term(targets: Targets, i: int, grams: jax.Array, shape: tuple[int, ...],
                    weights: LossWeights, norm: str = "paper", kind: str = "gram") -> jax.Array:
    """:func:`style_layer_term` from the layer's Gram (C, C), or with masks its (R, C, C)
    guided Grams, of features of ``shape``."""
    if targets.guides is None:
        return style_gram_loss(blended_gram(targets.style[i], weights.blend), grams, shape, norm, kind)
    return guided_style_gram_loss(targets.style[i], grams, shape, weights.blend, norm, kind)


def balanced_style(layer_terms, targets: Targets, weights: LossWeights, shares, per_layer: bool = False) -> jax.Array:
    """J_style from each style layer's J_style^l (``layer_terms``, in the order of the
    layers), their weights lambda_l and :func:`gram_share` s_l:

    - ``targets.gaps`` None (the paper's): sum_l lambda_l s_l J_style^l;
    - the style gap: that sum as a fraction of the same sum for the photo,
      sum_l lambda_l s_l J_style^l / sum_l lambda_l s_l gap_l;
    - ``per_layer``: each layer as a fraction of the photo's own distance at that layer,
      sum_l lambda_l s_l J_style^l / gap_l / sum_l lambda_l s_l.

    Either balance reads 1 at the photo and 0 at the painting's statistics, for every pair
    and size. gap_l = sum_k w_k gap_lk blends each style image's gap: with one style it is
    J_style^l of the photo exactly, with several an upper bound of the blended target's (linear
    in the traced weights, so a sweep can batch them)."""
    # summed term by term in the layers' order, as the paper's J_style always was: the default
    # run's rounding does not depend on how a backend reduces a dot product
    tiny = jnp.finfo(jnp.float32).tiny
    lam = [weights.style_layers[i] * share for i, share in enumerate(shares)]
    gaps = None if targets.gaps is None else targets.gaps @ weights.blend
    if gaps is not None and per_layer:
        layer_terms = [t / jnp.maximum(gaps[i], tiny) for i, t in enumerate(layer_terms)]
    style = jnp.asarray(sum(l * t for l, t in zip(lam, layer_terms)), jnp.float32)
    if gaps is None:
        return style
    whole = sum(lam) if per_layer else jnp.dot(weights.style_layers * jnp.asarray(shares, jnp.float32), gaps,
                                                precision=jax.lax.Precision.HIGHEST)
    return style / jnp.maximum(whole, tiny)


def loss_terms(features: dict[str, jax.Array], image: jax.Array, targets: Targets,
               layers: tuple[tuple[str, ...], tuple[str, ...]], weights: LossWeights,
               norm: str = "paper", content_norm: str = "sum", precision: str = "float32",
               per_channel: float = 0.0, kind: str = "gram", per_layer: bool = False) -> LossTerms:
    """J_content, J_style and J_tv of one image, each summed with its per-layer weights.

    ``layers`` = (content layer names, style layer names), in the order of ``targets``;
    ``precision``: the Grams' matmul (:data:`GRAM_PRECISIONS`); ``per_channel``: see
    :func:`gram_share`; ``kind``: the style loss, "gram" (the paper's) or "wasserstein";
    ``per_layer``: see :func:`balanced_style`.
    """
    content_layers, style_layers = layers
    content = sum(weights.content_layers[i] * content_loss(targets.content[i], features[name], content_norm)
                  for i, name in enumerate(content_layers))
    shares = [gram_share(features[name].shape, per_channel) for name in style_layers]
    style = balanced_style([style_layer_term(targets, i, features[name], weights, norm, precision, kind)
                            for i, name in enumerate(style_layers)], targets, weights, shares, per_layer)
    return LossTerms(jnp.asarray(content, jnp.float32), style,
                     tv_loss(image))


def total_loss(terms: LossTerms, weights: LossWeights) -> jax.Array:
    """J = alpha J_content + beta J_style + tv J_tv (Gatys et al. eq. 7, plus TV)."""
    return weights.content * terms.content + weights.style * terms.style + weights.tv * terms.tv


def temporal_loss(picture: jax.ArrayLike, target: jax.ArrayLike, weight: jax.ArrayLike) -> jax.Array:
    """J_temporal = 1/D sum_p c_p (x_p - w_p)^2 over the D = H W C values of ``picture``
    (Ruder, Dosovitskiy & Brox, "Artistic style transfer for videos", GCPR 2016, eq. 2):
    ``target`` w (H, W, C) is the previous stylized frame warped to this one, ``weight`` c
    (H, W, 1) is 0 where it cannot be trusted (disocclusions, motion boundaries), else 1."""
    picture = jnp.asarray(picture)
    diff = picture - jnp.asarray(target)
    return jnp.sum(jnp.asarray(weight) * jnp.square(diff)) / float(picture.size)
