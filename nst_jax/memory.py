"""How much memory a run needs, how much there is, and how to fit: chunks of a batch, tiles
of a picture.

Every estimate is linear in the pixels: the network's activations kept for the backward
pass (:func:`network_bytes`), a handful of image-sized buffers (the iterate, its gradient,
the optimizer's state), the content targets, plus a fixed part (weights, XLA's buffers)
and, when tiled, the compiled code of each tile. The constants are fitted to the peak
resident memory bench/highres.py measures on CPU (one Adam step of VGG19, whole, remat
and tiled, 128-4096 px; bench/results/highres-cpu-2c.md compares the estimate with each
measured peak above the interpreter and XLA's libraries). The plan keeps
:data:`HEADROOM` of the available memory in reserve for the estimate's error.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import jax

from .config import LBFGS_NAMES
from .conv import temp_bytes, transform_bytes
from .errors import NstError
from .tiling import TilePlan, alignment, receptive_radius, spans
from .vgg import activation_bytes, layer_sizes

# Bytes of a step beyond what grows with the picture: the weights (as loaded, on the
# device, and as the program's arguments), the compiled program, XLA's runtime buffers;
# fitted to bench/highres.py's peaks at small sizes (docs/highres.md).
FIXED_BYTES = 448 * 2**20
# Share of the available memory a run may plan to use.
HEADROOM = 0.9
# Peak of a step over its forward activations: the activations kept for the backward
# pass, their gradients and XLA's temporaries. On XLA:CPU, a factor fitted to the peaks
# bench/highres.py measured from 128 to 2048 px (bench/README.md, "High resolution";
# estimate against measured: docs/highres.md). Accelerators were not measured this way:
# there the older, more cautious 4 stays.
BACKWARD_FACTOR = {"cpu": 1.4}
OTHER_BACKWARD_FACTOR = 4
# Per tile of a tiled step: its share of the compiled program (the tiles are unrolled:
# forward, backward and the forward computing the targets), from resident memory before
# the step with 4 and 12 tiles against whole.
TILE_BYTES = 24 * 2**20
# Image-sized float32 (H, W, 3) buffers in the optimizer's state, by family, measured with
# XLA's memory analysis of the compiled step (256 and 512 px): Adam 5 (the image, two
# moments, the best image, the iterate average), L-BFGS 28 (ten pairs of differences,
# the gradient, the search's trial point...). Other optax optimizers are counted as Adam.
STATE_IMAGES = {"adam": 5, "lbfgs": 28}
# Image-sized buffers besides the state: the gradient, the update and temporaries (6),
# and the copies a run keeps on the host (content, start, kept pixels, style, the content
# in its own colours, the output's conversions: 8).
OTHER_IMAGES = 6 + 8
# L-BFGS's low-pass filter (precondition.py): its spectra and filtered copies added 1 (512
# px) to 6 (256 px) images to the step's temporaries in XLA's memory analysis; counted
# for every L-BFGS run, the filter being the default.
FILTER_IMAGES = 6


def image_buffers(optimizer: str = "adam") -> int:
    """Image-sized buffers alive in a run of ``optimizer``: its state twice (the scale's
    start, which the run keeps, and the state each step writes over: run.drive donates it;
    where it cannot, a library run's step holds its input and output apart, a third),
    :data:`OTHER_IMAGES` and, for L-BFGS, :data:`FILTER_IMAGES`: 24 for Adam, 76 for
    L-BFGS. Counted per optimizer because a 4096 px L-BFGS run outgrew a plan that
    counted every optimizer as Adam (docs/highres.md)."""
    family = "lbfgs" if str(optimizer) in LBFGS_NAMES else "adam"
    return 2 * STATE_IMAGES[family] + OTHER_IMAGES + (FILTER_IMAGES if family == "lbfgs" else 0)


def network_bytes(arch: str, height: int, width: int, taps) -> int:
    """Peak bytes of the network's forward and backward pass on a height x width picture:
    :data:`BACKWARD_FACTOR` (of the default backend) x the forward activations.

    Remat per block (config.remat) is not counted on: on XLA:CPU it leaves the step's
    temporaries as they are (bench/results/highres-*.md), so the estimate stays the plain
    one, which is safe wherever remat does save memory.
    """
    factor = BACKWARD_FACTOR.get(jax.default_backend(), OTHER_BACKWARD_FACTOR)
    return int(factor * activation_bytes(arch, height, width, taps))


def winograd_bytes(arch: str, height: int, width: int, taps) -> tuple[int, int]:
    """(the kernel transforms, the largest layer's temporaries) of Winograd convolutions
    (conv.py) on a height x width picture: bytes the lax convolution does not need."""
    convs = [(l, h, w) for l, h, w in layer_sizes(arch, height, width, taps) if l.kind == "conv"]
    return (sum(transform_bytes(h, w, l.c_in, l.c_out) for l, h, w in convs),
            max(temp_bytes(h, w, l.c_in, l.c_out) for l, h, w in convs))


def estimate_bytes(arch: str, height: int, width: int, taps, batch: int = 1, *, content_taps=(),
                   crop: tuple[int, int] | None = None, tiles: int = 1, backward: bool = True,
                   optimizer: str = "adam", conv: str = "lax") -> int:
    """Rough peak memory of one step on a height x width picture: the network's pass
    (:func:`network_bytes`; on the ``crop`` (h, w) of ``tiles`` tiles when tiled), the
    image-sized buffers and the content targets (``content_taps``' features of the whole
    picture), per image of the batch, plus :data:`FIXED_BYTES` (and :data:`TILE_BYTES`
    per tile); the image-sized buffers depend on the ``optimizer`` (:func:`image_buffers`).
    ``conv="winograd"`` (a name conv.resolve gives) adds :func:`winograd_bytes`.
    ``backward=False``: of one forward pass (a style image's Grams), its activations and
    two copies of the image."""
    on = crop or (height, width)
    kernels, temps = winograd_bytes(arch, *on, taps) if conv == "winograd" else (0, 0)
    fixed = FIXED_BYTES + kernels
    if not backward:
        network = activation_bytes(arch, *on, taps) + temps + (TILE_BYTES * tiles if crop else 0)
        return batch * (network + 2 * height * width * 3 * 4) + fixed
    network = network_bytes(arch, *on, taps) + temps + (TILE_BYTES * tiles if crop else 0)
    targets = sum(h * w * l.c_out * 4 for l, h, w in layer_sizes(arch, height, width, taps)
                  if l.name in content_taps)
    per_image = network + image_buffers(optimizer) * height * width * 3 * 4 + targets
    return batch * per_image + fixed


def available_bytes() -> int:
    """Memory the run may use: the accelerator's limit, else the host's available RAM."""
    device = jax.local_devices()[0]  # this process's (a multi-host run's others are remote)
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def budget_bytes(max_memory: float | None = None) -> int:
    """What a run may plan for: :data:`HEADROOM` of the available memory, at most
    ``max_memory`` GiB."""
    budget = int(HEADROOM * available_bytes())
    return budget if max_memory is None else min(budget, int(max_memory * 2**30))


# Tiles whose crops hold this many times the picture's pixels are worth a word in the plan.
SLOW_TILES = 4


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 10 * 2**30 else f"{n / 2**30:.2f} GiB"


@dataclass(frozen=True)
class MemoryPlan:
    """How one step at height x width runs: whole (``tiles`` None) or tile by tile."""

    height: int
    width: int
    arch: str
    remat: bool
    tiles: TilePlan | None
    count: int  # tiles in the grid (1: whole)
    tile_shape: tuple[int, int]  # (h, w) of the largest interior
    bytes: int  # the estimated peak of one step
    budget: int
    crop: tuple[int, int]  # (h, w) one pass of the network runs on: the picture, or a tile's crop

    def __str__(self) -> str:
        how = "whole" if self.tiles is None else (
            f"{self.count} tiles of {self.tile_shape[1]}x{self.tile_shape[0]} + {self.tiles.halo} px halo")
        passes = self.count * self.crop[0] * self.crop[1] / (self.height * self.width)
        if self.tiles is not None and passes >= SLOW_TILES:  # halos larger than the tiles (e.g. --tile 16)
            how += f" ({passes:.0f}x the picture's pixels a step: larger tiles are faster)"
        remat = ", remat per block" if self.remat else ""
        return f"{self.width}x{self.height}, {self.arch}, {how}{remat}: ~{gib(self.bytes)} of {gib(self.budget)}"


def tile_shapes(height: int, width: int, side: int, halo: int, align: int) -> tuple[int, tuple, tuple]:
    """(tile count, largest interior (h, w), crop (h, w)) of tiles of ``side`` px with
    ``halo`` px of context (tiling.spans: every crop has one shape)."""
    rows, cols = spans(height, side, halo, align), spans(width, side, halo, align)
    longest = lambda spans, i: max(b - a for a, b in (s[i] for s in spans))  # noqa: E731
    return len(rows) * len(cols), (longest(rows, 0), longest(cols, 0)), (longest(rows, 1), longest(cols, 1))


def plan_memory(arch: str, height: int, width: int, taps, *, budget: int, tile: int | str = "auto",
                remat: bool = False, content_taps=(), optimizer: str = "adam", conv: str = "lax") -> MemoryPlan:
    """The way one step of ``optimizer`` at height x width fits ``budget`` bytes.

    ``tile``: ``"auto"`` = whole when the estimate fits, else the largest tiles that do
    (the fewest tiles: least halo recomputed); 0 = whole or an error; N = tiles of at most
    N px (rounded down to the pooling grid of the deepest tap), whole where that is one
    tile. Tiles carry a halo of
    :func:`~nst_jax.tiling.receptive_radius` px, which makes the tiled gradient exact.
    ``remat`` is only reported (see :func:`network_bytes`).
    """
    def estimate(crop=None, tiles=1):
        return estimate_bytes(arch, height, width, taps, content_taps=content_taps, crop=crop, tiles=tiles,
                              optimizer=optimizer, conv=conv)

    whole = estimate()
    align, halo = alignment(arch, taps), receptive_radius(arch, taps)
    if tile == "auto":
        sides = range(math.ceil(max(height, width) / align) * align, align - 1, -align)
    else:
        sides = (max(align, int(tile) // align * align),)
        if tile and tile_shapes(height, width, sides[0], halo, align)[0] == 1:
            tile = 0  # one tile is the whole picture, without pass 1
    if tile == 0 or (tile == "auto" and whole <= budget):
        if whole > budget:
            raise NstError(f"{width}x{height} px needs about {gib(whole)} for {arch} but only {gib(budget)} "
                           "may be used: tile the picture, use a smaller size or allow more memory")
        return MemoryPlan(height, width, arch, remat, None, 1, (height, width), whole, budget, (height, width))
    least = (whole, "whole")  # the smallest estimate tried, and how
    for side in sides:
        count, interior, crop = tile_shapes(height, width, side, halo, align)
        if count == 1:
            continue
        need = estimate(crop, count)
        if need <= budget:
            return MemoryPlan(height, width, arch, remat, TilePlan(side, halo), count, interior, need, budget, crop)
        least = min(least, (need, f"in tiles of {side} px"), key=lambda x: x[0])
    raise NstError(f"{width}x{height} px needs at least about {gib(least[0])} for {arch} ({least[1]}) "
                   f"but only {gib(budget)} may be used: use a smaller size or allow more memory")


def check_forward(arch: str, height: int, width: int, taps, *, budget: int, tiles: TilePlan | None = None,
                  what: str = "", conv: str = "lax") -> None:
    """Raise one error with the estimate when a forward pass over a height x width image (a
    style image's Grams), whole or in ``tiles``, cannot fit ``budget`` bytes; ``what``
    names the image."""
    count, crop = 1, None
    if tiles is not None:
        count, _, crop = tile_shapes(height, width, tiles.tile, tiles.halo, alignment(arch, taps))
    need = estimate_bytes(arch, height, width, taps, crop=crop if count > 1 else None, tiles=count, backward=False,
                          conv=conv)
    if need > budget:
        raise NstError(f"{what}{width}x{height} px needs about {gib(need)} for {arch} but only {gib(budget)} "
                       "may be used: use a smaller size or style scale, or allow more memory")


def describe_plans(plans) -> str:
    """One line for a run's plans, one per size coarse to fine: the largest size's, and how
    many sizes before it run whole."""
    last = plans[-1]
    whole = sum(p.tiles is None for p in plans)
    if len(plans) == 1:
        return str(last)
    return f"{last} ({whole} of {len(plans)} scales whole)"


def plan_chunks(n_cells: int, n_devices: int, per_cell: int, fixed: int, budget: int) -> int:
    """Cells per chunk: as many as fit in ``budget`` (:func:`budget_bytes`: the headroom of
    what is available, at most config.max_memory), a multiple of the device count."""
    fit = max(1, int((budget - fixed) // per_cell)) if per_cell else n_cells
    size = min(n_cells, fit * n_devices)
    return max(n_devices, size // n_devices * n_devices)
