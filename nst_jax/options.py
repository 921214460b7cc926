"""The options ``stylize``, ``sweep`` and ``video`` share: declared once, in
``CONFIG_OPTIONS`` (annotation and default by parameter name), added to a command by
:func:`with_config_options`, which hands them over as one dict for
:func:`~nst_jax.specs.config_from_options`; ``FLAGS`` names the option of each config field."""

import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import (Balance, Colour, ColourMatch, ContentNorm, Conv, DType, GramPrecision, Init,
                     OptimizerName, Pooling, StyleConfig, StyleLoss, StyleNorm)
from .specs import FIELD_OF, LAYER_WEIGHTS

D = StyleConfig()
# The options stylize and sweep share, by parameter name: (annotation, default).
CONFIG_OPTIONS = {
    "size": (Annotated[int, typer.Option(help="Longest side of the output in pixels.")], D.size),
    "steps": (Annotated[int, typer.Option(help="Optimizer steps (coarse to fine: at the last scale).")],
              D.steps),
    "coarse_steps": (Annotated[Optional[int], typer.Option(
        "--coarse-steps", help="Coarse to fine: steps at each scale before the last (default: --steps).")],
        D.coarse_steps),
    "optimizer": (Annotated[OptimizerName, typer.Option(
        help="adam; lbfgs (zoom line search); lbfgs-fixed (unit step, no line search); "
             "lbfgs-backtrack (unit steps, Armijo backtracking: lbfgs-fixed's speed, with a "
             "safeguard; the L-BFGS for CPU); lbfgs-armijo (two trial steps per step).")],
        OptimizerName(D.optimizer)),
    "lr": (Annotated[Optional[float], typer.Option(
        "--lr", help="Learning rate in [0,1] pixel units (adam: 0.02; L-BFGS: none needed).")], None),
    "precondition": (Annotated[float, typer.Option(
        help="L-BFGS: low-pass its directions above this frequency in cycles per pixel, so coarse "
             "structure moves as fast as texture (0 = plain L-BFGS; others ignore it).")], D.precondition),
    "content_weight": (Annotated[Optional[float], typer.Option(
        "--content-weight", help=f"alpha (default {D.content_weight:g}).")], None),
    "ratio": (Annotated[Optional[float], typer.Option(
        help="alpha/beta: sets alpha = ratio x beta (instead of --content-weight).")], None),
    "tv_weight": (Annotated[float, typer.Option("--tv-weight", help="Total-variation weight (0 = off).")],
                  D.tv_weight),
    "content_layers": (Annotated[str, typer.Option("--content-layers",
                                                   help="NAME[:W],... e.g. relu4_2.")], "relu4_2"),
    "style_layers": (Annotated[str, typer.Option("--style-layers", help="NAME[:W],... or 'paper' "
                                                 "(relu1_1..relu5_1, 0.2 each).")], "paper"),
    "style_norm": (Annotated[StyleNorm, typer.Option("--style-norm", help="paper: 1/(4 N^2 M^2); "
                                                     "mean: the PyTorch tutorial's; relative: over |G_S|^2.")], StyleNorm(D.style_norm)),
    "style_loss": (Annotated[StyleLoss, typer.Option(
        "--style-loss", help="gram: the paper's Gram matrices; wasserstein: the 2-Wasserstein distance of "
                             "the features' mean and covariance.")], StyleLoss(D.style_loss)),
    "content_norm": (Annotated[ContentNorm, typer.Option(
        "--content-norm", help="sum: the paper's 1/2 sum (grows with size); mean: per element; relative: "
                               "over 1/2 sum P^2, the same at every size and for every photo.")],
        ContentNorm(D.content_norm)),
    "balance": (Annotated[Balance, typer.Option(
        help="gap: beta weighs the style term as a fraction of the photo's own distance from the painting "
             "(1 at the photo), the same trade for every pair and size; layers: each style layer as a "
             "fraction of the photo's own distance at that layer; fixed: the style term as it is "
             "(the paper).")], Balance(D.balance)),
    "per_channel": (Annotated[float, typer.Option(
        "--per-channel", help="A style layer keeps its whole weight when its Gram averages this many "
                              "positions per channel, less below (deep layers of small pictures, which "
                              "otherwise copy the painting's objects); 0 = the paper.")], D.per_channel),
    "scales": (Annotated[str, typer.Option(help="Coarse to fine: 'auto' (from 128 px in sqrt(2) steps), "
                                           "'none', or sizes like 256,512.")],
               D.scales if isinstance(D.scales, str) else ",".join(map(str, D.scales)) or "none"),
    "detail": (Annotated[float, typer.Option(help="Coarse to fine: how much of the start image's fine "
                                             "detail each scale gets back on upsampling, 0 to 1 (0 for "
                                             "--init noise).")], D.detail),
    "average": (Annotated[float, typer.Option(help="Iterate averaging: EMA decay, e.g. 0.99 (0 = off).")],
                D.average),
    "pooling": (Annotated[Pooling, typer.Option(help="max (as trained) or avg (the paper's advice).")],
                Pooling(D.pooling)),
    "init": (Annotated[Init, typer.Option(help="Start image; 'image' takes --init-image.")], Init(D.init)),
    "init_image": (Annotated[Optional[Path], typer.Option("--init-image", help="Start image file.")], None),
    "init_noise": (Annotated[float, typer.Option("--init-noise", help="Noise fraction for noisy-content.")],
                   D.init_noise),
    "seed": (Annotated[int, typer.Option(help="Random seed (same seed, same result).")], D.seed),
    "style_scale": (Annotated[float, typer.Option("--style-scale", help="Style image size relative "
                                                  "to --size.")], D.style_scale),
    "blend": (Annotated[Optional[str], typer.Option(help="Weights of several style images, e.g. 3,7 "
                                                  "(default: equal).")], None),
    "colour": (Annotated[Colour, typer.Option(
        "--colour", "--color", help="original: keep the content's colours (after the run); luminance: "
                                    "transfer luminance only; histogram: match the style's colours to the "
                                    "content's first.")], Colour(D.colour)),
    "colour_match": (Annotated[ColourMatch, typer.Option(
        "--colour-match", "--color-match", help="The colour map of --colour histogram (image_analogies: "
                                                "the paper's code).")], ColourMatch(D.colour_match)),
    "mask": (Annotated[Optional[list[Path]], typer.Option(
        "--mask", help="Where the style goes (white; black keeps the content): one per style image, or "
                       "one image with a flat colour per style (brightest = first).")], None),
    "style_mask": (Annotated[Optional[list[Path]], typer.Option(
        "--style-mask", help="One per style image: the part of it to take the style from (white).")], None),
    "mask_erode": (Annotated[int, typer.Option("--mask-erode", help="Shrink the masks by N positions at "
                                               "every style layer (0 = off).")], D.mask_erode),
    "keep_unmasked": (Annotated[bool, typer.Option(
        "--keep-unmasked/--free-unmasked", help="Outside the masks: keep the content's pixels, or let "
                                                "only the content loss hold them (the paper).")], D.keep_unmasked),
    "weights": (Annotated[str, typer.Option(help="'embedded' (VGG16), vgg19, a weights file, or a "
                                            "name from `nst-jax weights list`.")], D.weights),
    "log_every": (Annotated[int, typer.Option("--log-every", help="Record the separate loss terms "
                                              "every N steps.")], D.log_every),
    "dtype": (Annotated[DType, typer.Option(help="Network compute dtype (losses stay float32); "
                                            "bfloat16 is for GPUs/TPUs.")], DType(D.dtype)),
    "conv": (Annotated[Conv, typer.Option(help="How convolutions run: auto (winograd on CPU in float32, "
                                          "else lax), lax (XLA's own) or winograd (fewer multiplies; "
                                          "layers under 12 px as one matmul).")],
             Conv(D.conv)),
    "gram_precision": (Annotated[GramPrecision, typer.Option(
        help="The Gram matrices' matmul: auto (tf32x3 on GPUs with TF32, else float32), float32, or "
             "tf32x3 (three TF32 passes, about float32's accuracy; GPUs only).")], GramPrecision(D.gram_precision)),
    "remat": (Annotated[bool, typer.Option("--remat/--no-remat", help="Recompute each VGG block in the "
                                           "backward pass: less memory, about one more forward.")], D.remat),
    "max_memory": (Annotated[Optional[float], typer.Option(
        "--max-memory", help="GiB a step may use (default: 90% of the memory available); a step that "
                             "does not fit whole runs in tiles, with the same result.")], D.max_memory),
    "tile": (Annotated[str, typer.Option(help="Tile side in px: 'auto' (tiles only when the step does not "
                                         "fit), 'none' (never), or N.")], str(D.tile)),
    "steps_per_call": (Annotated[Optional[int], typer.Option(
        "--steps-per-call", help="Steps per compiled call (default: 1 on CPU, 10 on GPU).")], None),
}


def option_flag(name: str, annotation) -> str:
    """The command-line spelling of a declared option: its own name, else its first ``--`` one."""
    plain = "--" + name.replace("_", "-")
    info = typing.get_args(annotation)[1]  # in Annotated, typer takes a first "--name" as a name, not a default
    decls = [d.split("/")[0] for d in (info.default, *info.param_decls) if isinstance(d, str) and d.startswith("--")]
    return plain if not decls or plain in decls else decls[0]


# Config field -> the option that sets it (errors name the option).
FLAGS = {FIELD_OF.get(name, name): option_flag(name, annotation) for name, (annotation, _) in CONFIG_OPTIONS.items()}
FLAGS.update({weights: FLAGS[layers] for layers, weights in LAYER_WEIGHTS.items()},
             style_weight="--style-weight", bit_depth="--bit-depth")

# Not a config option (it changes only how results are written), shared by stylize and sweep.
BitDepth = Annotated[Optional[int], typer.Option(
    "--bit-depth", help="Bits per channel of the images written: 8, or 16 for .png and .tif (default: 16 "
                        "for .tif, 8 otherwise).")]


def with_config_options(exclude: tuple[str, ...] = (), **defaults):
    """Add ``CONFIG_OPTIONS`` (minus ``exclude``, with other ``defaults``) to a command's
    options; the command receives them as one ``options`` dict (specs.config_from_options)."""

    def decorate(command):
        own = [p for p in inspect.signature(command).parameters.values() if p.name != "options"]
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                    default=defaults.get(name, default))
                  for name, (annotation, default) in CONFIG_OPTIONS.items() if name not in exclude]

        @functools.wraps(command)
        def wrapper(**kwargs):
            options = {p.name: kwargs.pop(p.name) for p in shared}
            return command(options=options, **kwargs)

        wrapper.__signature__ = inspect.Signature(own + shared)
        del wrapper.__wrapped__  # typer must read the new signature, not the command's
        return wrapper

    return decorate

