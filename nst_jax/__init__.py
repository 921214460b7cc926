"""nst-jax: Gatys et al.'s neural style transfer as pure JAX functions.

The public API, re-exported::

    from nst_jax import StyleConfig, stylize, save_image
    result = stylize("content.jpg", "style.jpg", StyleConfig(size=256))
    save_image(result.best_image, "out.png")
"""

from .config import PAPER_CONTENT_LAYERS, PAPER_STYLE_LAYERS, StyleConfig
from .errors import ConfigError, ImageError, NstError, WeightsError
from .image import load_image, save_image
from .inputs import prepare
from .losses import LossTerms, LossWeights, Targets, content_loss, gram, style_layer_loss, total_loss, tv_loss
from .objective import Objective, Problem, build_objective, loss_weights
from .run import Progress, Result, RunState, drive, stylize
from .step import StepState, init_state, make_optimizer, make_step
from .sweep import SweepResult, sweep
from .vgg import VGG, layer_names, layout
from .video import VideoConfig, VideoResult, stylize_video
from .weights import VGGWeights, convert, load_weights

__version__ = "0.2.0"

__all__ = [
    "PAPER_CONTENT_LAYERS", "PAPER_STYLE_LAYERS", "StyleConfig",
    "ConfigError", "ImageError", "NstError", "WeightsError", "load_image", "save_image", "prepare",
    "LossTerms", "LossWeights", "Targets", "content_loss", "gram", "style_layer_loss", "total_loss",
    "tv_loss", "Objective", "Problem", "build_objective", "loss_weights", "Progress", "Result",
    "RunState", "drive", "stylize", "StepState", "init_state", "make_optimizer", "make_step",
    "SweepResult", "sweep", "VGG", "layer_names", "layout", "VGGWeights", "convert", "load_weights",
    "VideoConfig", "VideoResult", "stylize_video",
]
