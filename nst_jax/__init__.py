"""nst-jax: Gatys et al.'s neural style transfer as pure JAX functions.

The public API, re-exported::

    from nst_jax import StyleConfig, stylize, save_image
    result = stylize("content.jpg", "style.jpg", StyleConfig(size=256))
    save_image(result.best_image, "out.png")
"""

import importlib

# name -> the module that defines it; imported on first use, so that ``import nst_jax``
# (and the command line's start, which must handle Ctrl-C from its first moment) is quick.
_EXPORTS = {
    "batch": ["stylize_many"],
    "config": ["PAPER_CONTENT_LAYERS", "PAPER_STYLE_LAYERS", "StyleConfig"],
    "errors": ["ConfigError", "ImageError", "NstError", "WeightsError"],
    "image": ["load_image", "save_image"],
    "inputs": ["prepare"],
    "losses": ["LossTerms", "LossWeights", "Targets", "content_loss", "gram", "style_layer_loss", "total_loss",
               "tv_loss"],
    "objective": ["Objective", "Problem", "build_objective", "loss_weights"],
    "run": ["Grid", "Progress", "Result", "RunState", "drive", "stylize"],
    "step": ["StepState", "init_state", "make_optimizer", "make_step", "optimizer_named"],
    "sweeps": ["sweep"],
    "vgg": ["VGG", "layer_names", "layout"],
    "video": ["VideoConfig", "VideoResult", "stylize_video"],
    "weights": ["VGGWeights", "convert", "load_weights"],
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)


def __dir__():
    return sorted([*globals(), *_HOME])


__version__ = "0.2.0"

__all__ = [name for names in _EXPORTS.values() for name in names]
