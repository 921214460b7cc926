"""How much memory a run needs, how much there is, and how to split a batch to fit."""

from __future__ import annotations

import os

import jax

from .errors import NstError
from .vgg import activation_bytes

# Bytes of the program beyond the per-image activations: weights, XLA's buffers.
FIXED_BYTES = 160 * 2**20
# Share of the available memory a run may plan to use.
HEADROOM = 0.9


def estimate_bytes(arch: str, height: int, width: int, taps, batch: int = 1, backward: bool = True) -> int:
    """Rough peak memory of one step: activations kept for the backward pass, their
    gradients and XLA's temporaries (4x the forward activations, a factor measured on
    CPU, see bench/README.md), plus a handful of image-sized optimizer buffers.
    ``backward=False``: of one forward pass (a style image's Grams), its activations and
    the image."""
    activations, image = activation_bytes(arch, height, width, taps), height * width * 3 * 4
    per_image = 4 * activations + 16 * image if backward else activations + 2 * image
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


def check_memory(arch: str, height: int, width: int, taps, batch: int = 1, what: str = "",
                 backward: bool = True) -> None:
    """Raise one error with the estimate when a run of this size cannot fit; ``what``
    names the image (a style image only goes forward: ``backward=False``)."""
    need = estimate_bytes(arch, height, width, taps, batch, backward)
    have = available_bytes()
    if need > HEADROOM * have:
        raise NstError(f"{what}{width}x{height} px needs about {need / 2**30:.1f} GiB for {arch} "
                       f"(batch {batch}) but only {have / 2**30:.1f} GiB are available: "
                       f"use a smaller size{'' if backward else ' or style scale'}")


def plan_chunks(n_cells: int, n_devices: int, per_cell: int, fixed: int, available: int) -> int:
    """Cells per chunk: as many as fit in the headroom, a multiple of the device count."""
    fit = max(1, int((HEADROOM * available - fixed) // per_cell)) if per_cell else n_cells
    size = min(n_cells, fit * n_devices)
    return max(n_devices, size // n_devices * n_devices)
