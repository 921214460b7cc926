"""How much memory a run needs, how much there is, and how to fit: chunks of a batch, tiles
of a picture.

Every estimate is linear in the pixels: the network's activations kept for the backward
pass (:func:`network_bytes`), a handful of image-sized buffers (the iterate, its gradient,
the optimizer's state), the content targets, plus a fixed part (weights, XLA's buffers).
The factors are measured on CPU by bench/highres.py, which prints each estimate beside the
measured peak (bench/results/highres-*.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import jax

from .errors import NstError
from .tiling import TilePlan, alignment, receptive_radius, spans
from .vgg import activation_bytes, layer_sizes

# Bytes of the program beyond the per-image activations: weights, XLA's buffers.
FIXED_BYTES = 160 * 2**20
# Share of the available memory a run may plan to use.
HEADROOM = 0.9
# Peak of a step over its forward activations: the activations kept for the backward
# pass, their gradients and XLA's temporaries (measured on CPU, see bench/README.md).
BACKWARD_FACTOR = 4
# Image-sized float32 buffers (H, W, 3) alive in a step: image, picture, gradient, Adam's
# two moments, best image, iterate average, the update and its temporaries.
IMAGE_BUFFERS = 16


def block_bytes(arch: str, height: int, width: int, taps, itemsize: int = 4) -> list[tuple[int, int]]:
    """Per VGG block up to the deepest tap (as vgg.features groups them for remat):
    (bytes of all its activations, bytes of what the block hands on: its output and taps)."""
    blocks: dict[int, list] = {}
    for layer, h, w in layer_sizes(arch, height, width, taps):
        blocks.setdefault(layer.pools - (layer.kind == "pool"), []).append((layer, h * w * layer.c_out * itemsize))
    out = []
    for group in blocks.values():
        kept = group[-1][1] + sum(b for layer, b in group[:-1] if layer.name in taps)
        out.append((sum(b for _, b in group), kept))
    return out


def network_bytes(arch: str, height: int, width: int, taps, remat: bool = False) -> int:
    """Peak bytes of the network's forward and backward pass on a height x width picture.

    Without remat: :data:`BACKWARD_FACTOR` x the forward activations. With remat per block
    only block outputs and taps are kept for the backward pass, and one block's
    activations are recomputed (with their gradients) at a time: the kept bytes twice
    (values and gradients) plus the largest block at the same factor.
    """
    if not remat:
        return BACKWARD_FACTOR * activation_bytes(arch, height, width, taps)
    blocks = block_bytes(arch, height, width, taps)
    return 2 * sum(kept for _, kept in blocks) + BACKWARD_FACTOR * max(total for total, _ in blocks)


def estimate_bytes(arch: str, height: int, width: int, taps, batch: int = 1, *, remat: bool = False,
                   content_taps=(), crop: tuple[int, int] | None = None) -> int:
    """Rough peak memory of one step on a height x width picture: the network's pass
    (:func:`network_bytes`; on the largest ``crop`` (h, w) when tiled), the image-sized
    buffers and the content targets (``content_taps``' features of the whole picture), per
    image of the batch, plus :data:`FIXED_BYTES`."""
    network = network_bytes(arch, *(crop or (height, width)), taps, remat)
    targets = sum(h * w * l.c_out * 4 for l, h, w in layer_sizes(arch, height, width, taps)
                  if l.name in content_taps)
    per_image = network + IMAGE_BUFFERS * height * width * 3 * 4 + targets
    return batch * per_image + FIXED_BYTES


def available_bytes() -> int:
    """Memory the run may use: the accelerator's limit, else the host's available RAM."""
    device = jax.devices()[0]
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


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


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

    def __str__(self) -> str:
        how = "whole" if self.tiles is None else (
            f"{self.count} tiles of {self.tile_shape[1]}x{self.tile_shape[0]} + {self.tiles.halo} px halo")
        remat = ", remat per block" if self.remat else ""
        return f"{self.width}x{self.height}, {self.arch}, {how}{remat}: ~{gib(self.bytes)} of {gib(self.budget)}"


def plan_memory(arch: str, height: int, width: int, taps, *, budget: int, tile: int | str = "auto",
                remat: bool = False, content_taps=()) -> MemoryPlan:
    """The way one step at height x width fits ``budget`` bytes.

    ``tile``: ``"auto"`` = whole when the estimate fits, else the largest tiles that do
    (the fewest tiles: least halo recomputed); 0 = whole or an error; N = tiles of at most
    N px (rounded down to the pooling grid of the deepest tap). Tiles carry a halo of
    :func:`~nst_jax.tiling.receptive_radius` px, which makes the tiled gradient exact.
    """
    def estimate(crop=None):
        return estimate_bytes(arch, height, width, taps, remat=remat, content_taps=content_taps, crop=crop)

    whole = estimate()
    if tile == 0 or (tile == "auto" and whole <= budget):
        if whole > budget:
            raise NstError(f"{width}x{height} px needs about {gib(whole)} for {arch} but only {gib(budget)} "
                           "may be used: tile the picture, use a smaller size or allow more memory")
        return MemoryPlan(height, width, arch, remat, None, 1, (height, width), whole, budget)
    align, halo = alignment(arch, taps), receptive_radius(arch, taps)
    if tile == "auto":
        sides = range(math.ceil(max(height, width) / align) * align, align - 1, -align)
        if estimate((min(height, align + 2 * halo), min(width, align + 2 * halo))) > budget:
            sides = sides[-1:]  # not even the smallest tiles fit: say so at once
    else:
        sides = (max(align, int(tile) // align * align),)
    need = whole
    for side in sides:
        rows, cols = spans(height, side, halo, align), spans(width, side, halo, align)
        if tile == "auto" and len(rows) * len(cols) == 1:
            continue
        longest = lambda spans, i: max(b - a for a, b in (s[i] for s in spans))  # noqa: E731
        need = estimate((longest(rows, 1), longest(cols, 1)))
        if need <= budget:
            return MemoryPlan(height, width, arch, remat, TilePlan(side, halo), len(rows) * len(cols),
                              (longest(rows, 0), longest(cols, 0)), need, budget)
    raise NstError(f"{width}x{height} px needs about {gib(need)} for {arch} even in tiles of {side} px but only "
                   f"{gib(budget)} may be used: use a smaller size or allow more memory")


def describe_plans(plans) -> str:
    """One line for a run's plans, one per size coarse to fine: the largest size's, and how
    many sizes before it run whole."""
    last = plans[-1]
    whole = sum(p.tiles is None for p in plans)
    if len(plans) == 1:
        return str(last)
    return f"{last} ({whole} of {len(plans)} scales whole)"


def plan_chunks(n_cells: int, n_devices: int, per_cell: int, fixed: int, available: int) -> int:
    """Cells per chunk: as many as fit in the headroom, a multiple of the device count."""
    fit = max(1, int((HEADROOM * available - fixed) // per_cell)) if per_cell else n_cells
    size = min(n_cells, fit * n_devices)
    return max(n_devices, size // n_devices * n_devices)
