"""Spatial control: mask images -> the guidance channel of each region at each style layer.

Gatys et al. (2017, sec. 4) match each region of the output to its own style: the feature
maps of layer l are multiplied by the region's guidance channel m_r^l before the Gram is
taken, in the output and (with a style mask) in the style image. Here:

- regions    one channel per style image, m_r in [0, 1] at the image's size: a mask per
             style (its grey value; white = that style), or one labelled image whose flat
             colours name the regions (the brightest colour the first style's region, the next
             the second's, ...; black is no style's)
- layer l    m_r^l = m_r averaged over each 2^p x 2^p block of pixels, p the poolings before
             layer l: exactly the pixels a position of that layer sits on (2x2 average pooling,
             floor mode, as the network pools), optionally eroded by a minimum over a
             (2e+1) x (2e+1) neighbourhood of positions
- normalised t_r^l = (m_r^l)^2 / mean((m_r^l)^2), what :func:`nst_jax.losses.guided_gram`
             weighs positions with: G_r = F^T diag(t_r) F. The square is the paper's (features
             times the guide); dividing by its mean is the authors' released code's (each
             guide divided by the root of its mean square), which makes G_r the mean over the
             region scaled to all M positions: a region is matched as if it filled the image,
             and a mask of ones gives t = 1 and the plain Gram, bit for bit.

Region weights: each region's loss is weighted by w_r, the normalised blend weights (equal,
1/R each, by default, as in the authors' code), so the style term keeps the size of one
style's. Outside every region no style loss acts. In the paper the content loss alone holds
those pixels, but the deep style layers' receptive fields reach across a region's border
and carry texture into the rest (docs/controls.md#masks shows it). So by default
(``keep_unmasked``) the pixels outside every mask are the content's (:func:`free_pixels`,
``Objective.picture``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .colour import luminance
from .errors import NstError
from .image import load_image, resize
from .vgg import layout, pool2x2

# A mask must have a pixel at least this bright somewhere ("white pixels").
WHITE = 0.5


def load_regions(paths, n_styles: int, source_hw: tuple[int, int], run_hw: tuple[int, int],
                 what: str, notes: list[str]) -> np.ndarray:
    """(K, H, W) region channels in [0, 1] at ``run_hw`` from mask files (or arrays): one per
    style, or one labelled image for several styles. ``source_hw`` is the size of the image
    they belong to; a mask of another size is resized anyway, and a note says so."""
    paths = list(paths)
    if len(paths) == n_styles:
        raw = [load_image(p) for p in paths]
        channels = [luminance(m) for m in raw]
        for k, (path, m) in enumerate(zip(paths, channels)):
            if m.max() < WHITE:
                raise NstError(f"the {what} {_name(path)} has no white pixels: white marks where "
                               f"style {k + 1} goes")
    elif len(paths) == 1 and n_styles > 1:
        raw = [load_image(paths[0])]
        channels = labelled_regions(raw[0], n_styles, _name(paths[0]))
    else:
        raise NstError(f"{len(paths)} {what}s for {n_styles} style images: give one per style image, "
                       "or one image with a flat colour per style")
    for path, image in zip(paths, raw):
        if image.shape[:2] != tuple(source_hw):
            notes.append(f"the {what} {_name(path)} is {image.shape[1]}x{image.shape[0]} px, its image "
                         f"{source_hw[1]}x{source_hw[0]}: resized (stretched if the shapes differ)")
    stacked = np.stack(channels, axis=-1).astype(np.float32)
    return np.moveaxis(resize(stacked, *run_hw, method="bilinear"), -1, 0)


def labelled_regions(image: np.ndarray, n_styles: int, name: str) -> list[np.ndarray]:
    """One 0/1 channel per flat colour of ``image`` other than black, brightest first."""
    codes = np.round(np.asarray(image) * 255).astype(np.int32)
    flat = codes[..., 0] * 65536 + codes[..., 1] * 256 + codes[..., 2]
    colours = [c for c in np.unique(flat) if c != 0]
    if len(colours) != n_styles:
        raise NstError(f"the mask {name} has {len(colours)} colours besides black for {n_styles} style "
                       "images: paint each style's region in one flat colour (PNG, no smoothing)")
    rgb = lambda c: np.array([c // 65536, c // 256 % 256, c % 256], np.float64) / 255  # noqa: E731
    colours.sort(key=lambda c: (-float(rgb(c) @ [0.299, 0.587, 0.114]), -c))
    return [(flat == c).astype(np.float32) for c in colours]


def layer_guides(regions: np.ndarray, arch: str, layers: tuple[str, ...], erode: int = 0) -> tuple:
    """Per layer of ``layers``, the (K, H_l, W_l) guidance m_r^l: ``regions`` (K, H, W)
    averaged over the 2^p x 2^p pixel block of each position (p = the layer's poolings),
    then eroded by ``erode`` positions (a minimum filter, edges repeated)."""
    pools = {layer.name: layer.pools for layer in layout(arch)}
    out = []
    for name in layers:
        m = np.moveaxis(np.asarray(regions, np.float32), 0, -1)
        for _ in range(pools[name]):
            m = np.asarray(pool2x2(m, "avg"))
        out.append(erode_min(np.moveaxis(m, -1, 0), erode))
    return tuple(out)


def erode_min(guides: np.ndarray, radius: int) -> np.ndarray:
    """Grey erosion of (K, H, W) channels: each value the minimum of its (2r+1)^2 neighbourhood
    (edges repeated), one axis at a time. A radius past the image's side sees the whole
    image, so it is capped there: any radius costs O(H W log r)."""
    if radius <= 0:
        return guides
    h, w = guides.shape[-2:]
    r = min(radius, max(h, w))
    padded = np.pad(guides, ((0, 0), (r, r), (r, r)), mode="edge")
    rows = _sliding_min(padded, 2 * r + 1)  # (K, H + 2r, W)
    return np.swapaxes(_sliding_min(np.swapaxes(rows, -1, -2), 2 * r + 1), -1, -2)


def _sliding_min(a: np.ndarray, width: int) -> np.ndarray:
    """The minimum of every ``width`` consecutive values along the last axis: minima over
    doubling spans (span <= width < 2 span), then two overlapping spans per window."""
    m, span = a, 1
    while 2 * span <= width:
        m = np.minimum(m[..., :-span], m[..., span:])
        span *= 2
    n = a.shape[-1] - width + 1
    return np.minimum(m[..., :n], m[..., width - span:width - span + n])


def normalised_guides(guides: tuple, layers: tuple[str, ...], what: str) -> tuple:
    """t_r^l = (m_r^l)^2 / mean((m_r^l)^2) per layer, or one error naming the layer where a
    region has vanished."""
    out = []
    for name, m in zip(layers, guides):
        square = np.square(np.asarray(m, np.float32))
        mean = square.mean(axis=(-2, -1), keepdims=True)
        if (mean <= 0).any():
            k = int(np.argmin(mean.reshape(-1)))
            raise NstError(f"the {what} region of style {k + 1} vanishes at {name} ({m.shape[-1]}x"
                           f"{m.shape[-2]} positions): make it larger, or use a larger --size or a "
                           "smaller --mask-erode")
        out.append((square / mean).astype(np.float32))
    return tuple(out)


def guidance(paths, n_styles: int, source_hw, run_hw, arch: str, layers: tuple[str, ...], erode: int,
             what: str, notes: list[str]) -> tuple[tuple, np.ndarray]:
    """Mask files -> (per style layer the normalised (K, H_l, W_l) guidance channels, the
    (K, H, W) regions at the image's size)."""
    regions = load_regions(paths, n_styles, source_hw, run_hw, what, notes)
    return normalised_guides(layer_guides(regions, arch, layers, erode), layers, what), regions


def free_pixels(regions: np.ndarray) -> np.ndarray | None:
    """(H, W, 1) how much of each pixel is inside some mask, min(1, sum_r m_r); None when
    every pixel is wholly inside (nothing to keep)."""
    free = np.minimum(1.0, np.asarray(regions, np.float32).sum(axis=0))[..., None]
    return None if free.min() >= 1.0 else free


def _name(source) -> str:
    return Path(source).name if isinstance(source, (str, Path)) else "array"
