"""The objective: an image -> (J, terms), built once from the model and the run's data.

Everything that evaluates the loss calls this one function: the step, sweeps, the
benchmarks and the parity checks. Its data (network weights, targets, loss weights) is a
pytree passed as an argument, never closed over, so the same compiled program serves any
weights of the same shapes and a sweep batches the loss weights with ``jax.vmap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .config import Balance, Colour, StyleConfig
from .conv import resolve
from .losses import LossTerms, LossWeights, Targets, gram_precision, loss_terms, temporal_loss, total_loss
from .tiling import TilePlan, tiled_objective
from .vgg import VGG, check_layers


class Problem(NamedTuple):
    """The traced data of the objective; leaves of ``weights`` may carry a batch axis."""

    variables: dict  # the VGG's {"params": ...}
    targets: Targets  # content features and style Grams
    weights: LossWeights  # alpha, beta, tv and the per-layer weights


@dataclass(frozen=True)
class Objective:
    """J(image) = alpha J_content + beta J_style + tv J_tv for the layers it names.

    Static structure only (hashable): the model, which taps feed which loss, the
    normalisers, and whether the image is one luminance channel. Call it as
    ``objective(problem, image) -> (J, terms)``.

    The iterate is mapped to the picture it stands for (:meth:`picture`) before the network
    sees it; ``luminance``: the image is (H, W, 1), the luminance Y of a luminance-only
    transfer (Gatys et al. 2017, sec. 5.1).

    ``tiles``: evaluate the picture tile by tile (tiling.py): the same J, terms and
    gradient up to float rounding, with one tile's activations in memory at a time; None:
    the whole picture at once. Everything that differentiates the objective (the step,
    line searches) gets the tiled gradient through its custom VJP, unchanged.
    """

    model: VGG
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    style_norm: str = "paper"
    content_norm: str = "sum"
    luminance: bool = False
    tiles: TilePlan | None = None
    # The Grams' matmul in the step (losses.GRAM_PRECISIONS; config.gram_precision).
    gram_precision: str = "float32"
    # Positions per channel a style layer needs for its whole weight (losses.gram_share).
    per_channel: float = 0.0
    # The style loss: "gram" (the paper's) or "wasserstein" (its Grams carry moments: losses.gram).
    style_loss: str = "gram"
    # With style gaps: each layer measured against the photo's own (losses.balanced_style).
    per_layer: bool = False

    @property
    def moments(self) -> bool:
        """Whether the style Grams carry the features' count and sum (losses.gram)."""
        return self.style_loss == "wasserstein"

    def picture(self, problem: Problem, image: jax.Array) -> jax.Array:
        """The RGB picture an iterate stands for, what the losses see.

        - masks that keep the rest (``targets.keep`` = (f, c)): x f + c (1 - f), f = 1 inside
          the masks, 0 outside: unmasked pixels are the content's, exactly (their gradient
          is 0), and soft mask edges blend the two.
        - ``luminance``: the one channel Y as grey RGB, R = G = B = Y. Optimising one channel
          keeps the result exactly grey, whatever the optimizer does; its gradient is the
          sum of the three channels' gradients.
        """
        if problem.targets.keep is not None:
            free, content = problem.targets.keep
            image = image * free + content * (1.0 - free)
        if self.luminance:
            image = jnp.broadcast_to(image, image.shape[:-1] + (3,))
        return image

    def __call__(self, problem: Problem, image: jax.Array) -> tuple[jax.Array, LossTerms]:
        """(J, terms); a video frame's J adds gamma J_temporal (``targets.temporal``, pixel-local,
        on the whole picture even when tiled), which ``terms`` leave out: a run's history and
        checkpoints keep their three terms, and its loss column counts the temporal term."""
        value, terms = self.spatial(problem, image)
        if problem.targets.temporal is None:
            return value, terms
        return value + problem.weights.temporal * temporal_loss(self.picture(problem, image),
                                                                *problem.targets.temporal), terms

    def spatial(self, problem: Problem, image: jax.Array) -> tuple[jax.Array, LossTerms]:
        """(J, terms) of Gatys et al.'s losses alone."""
        if self.tiles is not None:
            return tiled_objective(self, problem, image)
        image = self.picture(problem, image)
        features = self.model.apply(problem.variables, image)
        terms = loss_terms(features, image, problem.targets, (self.content_layers, self.style_layers),
                           problem.weights, self.style_norm, self.content_norm, self.gram_precision,
                           self.per_channel, self.style_loss, self.per_layer)
        return total_loss(terms, problem.weights), terms

    def value(self, problem: Problem, image: jax.Array) -> jax.Array:
        return self(problem, image)[0]


def build_objective(arch: str, pixel_space: str, config: StyleConfig, tiles: TilePlan | None = None) -> Objective:
    """The objective the config describes, its network truncated at the deepest tap;
    ``tiles``: evaluated tile by tile (see :class:`Objective`)."""
    taps = check_layers(arch, tuple(dict.fromkeys(config.content_layers + config.style_layers)))
    model = VGG(arch=arch, taps=taps, pooling=config.pooling, pixel_space=pixel_space, dtype=config.dtype,
                remat=config.remat, conv=resolve(config.conv, config.dtype))
    return Objective(model, config.content_layers, config.style_layers, config.style_norm,
                     config.content_norm, config.colour == Colour.luminance, tiles,
                     gram_precision(config.gram_precision), config.per_channel, config.style_loss,
                     config.balance == Balance.layers)


def loss_weights(config: StyleConfig, blend: tuple[float, ...] = (1.0,)) -> LossWeights:
    """The config's loss weights as float32 arrays (traced inputs of the step); ``blend``:
    the normalised weight of each style image (see inputs.normalised_blend)."""
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return LossWeights(f32(config.content_weight), f32(config.style_weight), f32(config.tv_weight),
                       f32(config.content_layer_weights), f32(config.style_layer_weights), f32(blend))
