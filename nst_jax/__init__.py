"""nst-jax: Gatys et al.'s neural style transfer as pure JAX functions.

The public API, re-exported::

    from nst_jax import StyleConfig, stylize, load_weights
    result = stylize("content.jpg", "style.jpg", StyleConfig(size=256))
"""

from .config import PAPER_CONTENT_LAYERS, PAPER_STYLE_LAYERS, StyleConfig, layer_names
from .errors import ImageError, NstError, WeightsError
from .image import load_image, save_image
from .losses import LossTerms, LossWeights, Targets, content_loss, gram, style_layer_loss, total_loss, tv_loss
from .optimize import Result, make_optimizer, make_step, stylize
from .sweep import SweepResult, sweep
from .vgg import VGG
from .weights import VGGWeights, convert, load_weights

__version__ = "0.1.0"

__all__ = [
    "PAPER_CONTENT_LAYERS", "PAPER_STYLE_LAYERS", "StyleConfig", "layer_names",
    "ImageError", "NstError", "WeightsError", "load_image", "save_image",
    "LossTerms", "LossWeights", "Targets", "content_loss", "gram", "style_layer_loss",
    "total_loss", "tv_loss", "Result", "make_optimizer", "make_step", "stylize", "SweepResult",
    "sweep", "VGG",
    "VGGWeights", "convert", "load_weights",
]
