"""Colour control (Gatys et al. 2017, sec. 5), as pure numpy functions over RGB images.

Images are float ``(H, W, 3)`` RGB arrays in [0, 1]; results are float32. These run before
the optimisation (to build style targets) or after it (to recolour the result), never inside
the jitted step, so they are numpy, not JAX.

- luminance        Y = 0.299 R + 0.587 G + 0.114 B (Rec. 601 luma)
- YIQ              [Y, I, Q]^T = M [R, G, B]^T, M = ``YIQ_FROM_RGB`` (NTSC)
- original colours Y of the result, I and Q of the content, back to RGB
- luminance-only   L_S' = sigma_C / sigma_S (L_S - mu_S) + mu_C, transfer on luminance, recombine
- colour matching  p_S' = A (p_S - mu_S) + mu_C with A Sigma_S A^T = Sigma_C

Why YIQ: the paper does its luminance-only transfer in YIQ. jcjohnson/neural-style's
``-original_colors`` goes through YUV, anishathalye/neural-style's ``--preserve-colors``
through YCbCr. All three share the Rec. 601 luma above, and their chroma pairs are fixed
linear mixtures of (R - Y, B - Y) (YCbCr adds an offset of 0.5), so "luminance of one image,
chroma of the other" gives the same RGB in each, up to the rounding of each standard's
coefficients (and PIL's 8-bit YCbCr). The test suite checks this against YUV.

References:
  Gatys, Ecker, Bethge, Hertzmann & Shechtman, "Controlling Perceptual Factors in Neural
  Style Transfer", CVPR 2017, arXiv:1611.07865, sec. 5.1 (luminance-only transfer) and
  sec. 5.2 (colour histogram matching).
  Hertzmann, Jacobs, Oliver, Curless & Salesin, "Image Analogies", SIGGRAPH 2001.
  Pitie & Kokaram, "The linear Monge-Kantorovitch linear colour mapping for example-based
  colour transfer", CVMP 2007.
"""

from __future__ import annotations

import numpy as np

# NTSC YIQ, the classic three-digit coefficients. The I and Q rows sum to zero, so grey has
# no chroma and the first column of the inverse is (1, 1, 1): changing Y alone moves R, G
# and B by the same amount.
YIQ_FROM_RGB = np.array([[0.299, 0.587, 0.114],
                         [0.596, -0.274, -0.322],
                         [0.211, -0.523, 0.312]])
RGB_FROM_YIQ = np.linalg.inv(YIQ_FROM_RGB)

# Added to both colour covariances before any square root or factorisation, as in the
# authors' code: a variance of 1e-5 is a standard deviation of 0.003, under one 8-bit level
# (1/255 = 0.004), so it changes the covariance of any visibly coloured image by little
# while keeping flat and grey images (singular covariances) from failing.
COLOUR_EPS = 1e-5

# A luminance whose standard deviation is below this is flat: it is shifted, not scaled.
_FLAT_STD = 1e-6

MATCH_METHODS = ("image_analogies", "cholesky", "monge_kantorovich", "principal_axes")


def rgb_to_yiq(rgb) -> np.ndarray:
    """[Y, I, Q] = M [R, G, B] per pixel, M = ``YIQ_FROM_RGB``; (H, W, 3) -> (H, W, 3)."""
    return (_rgb(rgb, "rgb") @ YIQ_FROM_RGB.T).astype(np.float32)


def yiq_to_rgb(yiq) -> np.ndarray:
    """[R, G, B] = M^-1 [Y, I, Q] per pixel (not clipped); (H, W, 3) -> (H, W, 3)."""
    return (_rgb(yiq, "yiq") @ RGB_FROM_YIQ.T).astype(np.float32)


def luminance(rgb) -> np.ndarray:
    """Y = 0.299 R + 0.587 G + 0.114 B; (H, W, 3) -> (H, W)."""
    return (_rgb(rgb, "rgb") @ YIQ_FROM_RGB[0]).astype(np.float32)


def luminance_to_rgb(lum) -> np.ndarray:
    """(H, W) luminance -> (H, W, 3) grey image R = G = B = Y: what the network sees in a
    luminance-only transfer."""
    lum = _luminance(lum, "lum")
    return np.repeat(lum[..., None], 3, axis=-1).astype(np.float32)


def recombine(lum, content) -> np.ndarray:
    """RGB with Y from ``lum`` (H, W) and I, Q from ``content`` (H, W, 3), clipped to [0, 1].

    The last step of a luminance-only transfer (sec. 5.1): ``lum`` is the luminance of the
    stylised result, ``content`` the original content image at the same size.
    """
    lum = _luminance(lum, "lum")
    yiq = _rgb(content, "content") @ YIQ_FROM_RGB.T
    if lum.shape != yiq.shape[:2]:
        raise ValueError(f"luminance of shape {lum.shape} does not match content of shape "
                         f"{yiq.shape}; resize one to the other first")
    yiq[..., 0] = lum
    return np.clip(yiq @ RGB_FROM_YIQ.T, 0.0, 1.0).astype(np.float32)


def keep_original_colours(result, content) -> np.ndarray:
    """Y of ``result``, I and Q of ``content``, back to RGB and clipped to [0, 1].

    jcjohnson/neural-style's ``-original_colors``: stylise in colour, then put the content's
    colours back. ``content`` must already have the result's size.
    """
    result = _rgb(result, "result")
    content = _rgb(content, "content")
    if result.shape != content.shape:
        raise ValueError(f"result of shape {result.shape} and content of shape {content.shape} "
                         "differ; resize the content to the result first")
    return recombine(result @ YIQ_FROM_RGB[0], content)


def match_luminance(style_lum, content_lum) -> np.ndarray:
    """L_S' = sigma_C / sigma_S (L_S - mu_S) + mu_C: style luminance with the content's mean
    and standard deviation (sec. 5.1). Not clipped, so the moments match exactly.

    The two may differ in size. A flat style (sigma_S < 1e-6) cannot be stretched to
    sigma_C and is returned as the constant mu_C. Departure from the authors' notebook, which
    shifts the mean only: we follow the paper's text and match the spread too.
    """
    style = _luminance(style_lum, "style_lum")
    content = _luminance(content_lum, "content_lum")
    mu_s, sigma_s = style.mean(), style.std()
    mu_c, sigma_c = content.mean(), content.std()
    scale = sigma_c / sigma_s if sigma_s >= _FLAT_STD else 0.0
    return (scale * (style - mu_s) + mu_c).astype(np.float32)


def match_colour_histogram(style, content, method: str = "image_analogies",
                           eps: float = COLOUR_EPS, clip: bool = False) -> np.ndarray:
    """p_S' = A (p_S - mu_S) + mu_C for every style pixel, with A Sigma_S A^T = Sigma_C, so
    the new style has the content's colour mean and covariance (sec. 5.2).

    mu and Sigma are the mean and covariance (divided by the pixel count) of the RGB
    pixels, in float64. ``eps I`` (default 1e-5) is added to both covariances; the result's
    covariance is then Sigma_C + eps (I - A A^T), within eps (1 + |A|^2) of Sigma_C. ``eps=0``
    matches exactly and raises ValueError on a singular (flat or grey) image. Style and
    content may differ in size. The output is not clipped by default (departure from the
    authors' notebook, which clips): clipping to [0, 1] breaks the moment match. Pass
    ``clip=True``, or clip later, before using it as an image.

    ``method`` chooses A among the solutions, which are all Sigma_C^(1/2) R Sigma_S^(-1/2)
    with R orthogonal:

    - ``"image_analogies"``   A = Sigma_C^(1/2) Sigma_S^(-1/2), symmetric square roots from
      eigendecompositions: Image Analogies' colour transfer, the form the authors' released
      ColourControl notebook runs (its ``mode="pca"``). The default, to reproduce the
      paper; on the sample pair (nst_jax/samples, 128 px) it changes the style by mean
      |p_S' - p_S|^2 = 0.1391, 1.4% more than the least possible (monge_kantorovich, 0.1372).
    - ``"cholesky"``          A = L_C L_S^-1 with Sigma = L L^T (lower triangular; the
      notebook's ``mode="chol"``); depends on the channel order.
    - ``"monge_kantorovich"`` A = Sigma_S^(-1/2) (Sigma_S^(1/2) Sigma_C Sigma_S^(1/2))^(1/2)
      Sigma_S^(-1/2) (Pitie & Kokaram; the notebook's ``mode="sym"``): the A that moves the
      style's colours least, E |p_S' - p_S|^2 minimal among all matching A.
    - ``"principal_axes"``    A = Q_C Lambda_C^(1/2) Lambda_S^(-1/2) Q_S^T with Sigma = Q Lambda
      Q^T, eigenvalues in ascending order: the i-th principal colour axis of the style goes
      to the i-th of the content. Eigenvectors are oriented towards brighter grey
      (positive sum; else positive largest component), so the result does not depend on
      the signs the solver picks; still ambiguous when two eigenvalues are equal. Moves the
      colours most (0.1843 on the sample pair; cholesky 0.1425).
    """
    style64 = _rgb(style, "style")
    content64 = _rgb(content, "content")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    mu_s, cov_s = _moments(style64, eps)
    mu_c, cov_c = _moments(content64, eps)
    for name, cov in (("style", cov_s), ("content", cov_c)):
        if np.linalg.eigvalsh(cov)[0] <= 0.0:
            raise ValueError(f"the {name} colour covariance is singular (a flat or grey "
                             "image); use eps > 0")
    a = colour_transform(cov_s, cov_c, method)
    out = (style64 - mu_s) @ a.T + mu_c
    return (np.clip(out, 0.0, 1.0) if clip else out).astype(np.float32)


def colour_transform(cov_s: np.ndarray, cov_c: np.ndarray,
                     method: str = "image_analogies") -> np.ndarray:
    """The 3x3 A with A Sigma_S A^T = Sigma_C of ``method`` (see ``match_colour_histogram``);
    both covariances symmetric positive definite."""
    if method == "image_analogies":
        return _sqrtm(cov_c) @ _sqrtm(cov_s, -0.5)
    if method == "cholesky":
        return np.linalg.cholesky(cov_c) @ np.linalg.inv(np.linalg.cholesky(cov_s))
    if method == "monge_kantorovich":
        root_s, inv_root_s = _sqrtm(cov_s), _sqrtm(cov_s, -0.5)
        return inv_root_s @ _sqrtm(root_s @ cov_c @ root_s) @ inv_root_s
    if method == "principal_axes":
        lam_s, q_s = _oriented_eigh(cov_s)
        lam_c, q_c = _oriented_eigh(cov_c)
        return (q_c * np.sqrt(lam_c / lam_s)) @ q_s.T
    raise ValueError(f"unknown colour matching method {method!r}; choose one of {MATCH_METHODS}")


def before_run(content, styles: list, mode: str, method: str = "image_analogies") -> tuple:
    """(content, styles) as the network should see them under colour control ``mode``.

    - ``"histogram"``: each style becomes ``match_colour_histogram(style, content, method)``,
      not clipped: the network takes any values, and the moments stay the content's.
    - ``"luminance"``: the content becomes its luminance Y_C as grey RGB; each style its
      luminance matched to Y_C's mean and standard deviation (``match_luminance``), as grey
      RGB (not clipped either).
    - ``"none"``, ``"original"``: both unchanged.
    """
    if mode == "histogram":
        return content, [match_colour_histogram(s, content, method) for s in styles]
    if mode == "luminance":
        lum = luminance(content)
        return luminance_to_rgb(lum), [luminance_to_rgb(match_luminance(luminance(s), lum)) for s in styles]
    return content, styles


def after_run(images, content, mode: str) -> np.ndarray:
    """Results (..., H, W, 3) as pictures under colour control ``mode``: for ``"original"``
    and ``"luminance"`` the Y of each image with the I and Q of ``content`` (H, W, 3), as
    :func:`keep_original_colours` (a luminance-only result is grey, R = G = B = Y, so this
    is :func:`recombine` of its Y); other modes: unchanged."""
    images = np.asarray(images, np.float32)
    if mode not in ("original", "luminance"):
        return images
    flat = images.reshape((-1,) + images.shape[-3:])
    return np.stack([keep_original_colours(image, content) for image in flat]).reshape(images.shape)


def as_rgb(images) -> np.ndarray:
    """Luminance iterates (..., H, W, 1) as grey RGB (..., H, W, 3); RGB ones unchanged (for
    snapshots of raw iterates; results go through ``Objective.picture``)."""
    images = np.asarray(images, np.float32)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def _moments(image: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean (3,) and covariance + eps I (3, 3) of the pixels of a float64 (H, W, 3) image."""
    pixels = image.reshape(-1, 3)
    mu = pixels.mean(axis=0)
    centred = pixels - mu
    return mu, centred.T @ centred / len(pixels) + eps * np.eye(3)


def _sqrtm(cov: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Sigma^power for symmetric positive definite Sigma: Q Lambda^power Q^T."""
    lam, q = np.linalg.eigh(cov)
    return (q * lam ** power) @ q.T


def _oriented_eigh(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """eigh with each eigenvector's sign fixed: positive sum, or for a vector orthogonal to
    grey, a positive largest component."""
    lam, q = np.linalg.eigh(cov)
    sums = q.sum(axis=0)
    largest = q[np.argmax(np.abs(q), axis=0), np.arange(3)]
    signs = np.where(np.abs(sums) > 1e-9, np.sign(sums), np.sign(largest))
    return lam, q * signs


def _rgb(image, name: str) -> np.ndarray:
    """``image`` as a float64 (H, W, 3) array, or ValueError naming ``name``."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[-1] != 3 or image.size == 0:
        raise ValueError(f"{name} must be a non-empty (H, W, 3) image, got shape {image.shape}")
    return image


def _luminance(lum, name: str) -> np.ndarray:
    """``lum`` as a float64 (H, W) array, or ValueError naming ``name``."""
    lum = np.asarray(lum, dtype=np.float64)
    if lum.ndim != 2 or lum.size == 0:
        raise ValueError(f"{name} must be a non-empty (H, W) luminance, got shape {lum.shape}")
    return lum
