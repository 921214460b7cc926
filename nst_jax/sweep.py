"""A whole grid of loss weights as one compiled, vmapped program.

``sweep()`` optimises one image per cell of (layer-weight set) x (style weight) -- the
grids of Gatys et al.'s figures -- with the same jitted step as ``stylize()``, batched by
``jax.vmap`` over the image state and the loss weights. The content features and style
Grams are shared by every cell. With several devices the batch axis is sharded over a
``Mesh``; a grid that does not fit in memory runs in equal chunks that do.

Multi-host: call ``jax.distributed.initialize()`` first (``nst-jax sweep --distributed``);
``jax.devices()`` then lists every host's devices, the mesh spans them, and results are
gathered to every process (only process 0 writes files in the CLI).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .config import StyleConfig
from .errors import NstError
from .losses import LossWeights
from .optimize import (available_bytes, estimate_bytes, init_image, init_state, loss_weights,
                       make_optimizer, make_step, prepare)
from .weights import VGGWeights


def paper_layer_sets(style_layers: tuple[str, ...]) -> list[tuple[float, ...]]:
    """Fig. 9 (right) of the article: the first k style layers, equal weights 1/k."""
    n = len(style_layers)
    return [tuple(1.0 / k if j < k else 0.0 for j in range(n)) for k in range(1, n + 1)]


@dataclass
class SweepResult:
    """One entry per cell, cells in row-major order (rows = layer sets, cols = style weights)."""

    best_images: np.ndarray  # (B, H, W, 3)
    images: np.ndarray  # (B, H, W, 3) last iterates
    best_losses: np.ndarray  # (B,)
    history: np.ndarray  # (steps, B) total loss per step
    final_terms: dict[str, np.ndarray]  # "content", "style", "tv": (B,) at the last step
    style_weights: list[float]
    layer_weight_sets: list[tuple[float, ...]]
    chunks: int
    devices: int
    compiles: int  # how many times the vmapped step was compiled (1: the whole grid shares it)
    seconds: float
    compile_seconds: float
    config: StyleConfig = field(repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.layer_weight_sets), len(self.style_weights)

    def cells(self) -> list[dict]:
        """Each cell's settings and final numbers (what the CLI writes as JSON)."""
        out = []
        for b, (r, c) in enumerate(itertools.product(range(self.shape[0]), range(self.shape[1]))):
            out.append({"row": r, "col": c, "style_weight": self.style_weights[c],
                         "style_layer_weights": dict(zip(self.config.style_layers, self.layer_weight_sets[r])),
                         "content_weight": self.config.content_weight,
                         "final_loss": float(self.history[-1, b]) if len(self.history) else None,
                         "best_loss": float(self.best_losses[b]),
                         **{f"final_{k}": float(v[b]) for k, v in self.final_terms.items()}})
        return out


def grid_weights(config: StyleConfig, style_weights, layer_weight_sets) -> LossWeights:
    """Stack the per-cell LossWeights along a leading batch axis (row-major grid)."""
    base = loss_weights(config)
    cells = list(itertools.product(layer_weight_sets, style_weights))
    for layer_set, _ in cells:
        if len(layer_set) != len(config.style_layers):
            raise NstError(f"a layer weight set has {len(layer_set)} weights for "
                           f"{len(config.style_layers)} style layers")
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    n = len(cells)
    return LossWeights(content=jnp.full((n,), base.content), style=f32([s for _, s in cells]),
                       tv=jnp.full((n,), base.tv), content_layers=jnp.tile(base.content_layers, (n, 1)),
                       style_layers=f32([ls for ls, _ in cells]))


def plan_chunks(n_cells: int, n_devices: int, per_cell: int, fixed: int, available: int) -> int:
    """Cells per chunk: as many as fit in 90% of memory, a multiple of the device count."""
    fit = max(1, int((0.9 * available - fixed) // per_cell)) if per_cell else n_cells
    size = min(n_cells, fit * n_devices)
    return max(n_devices, size // n_devices * n_devices)


def sweep(content, style, config: StyleConfig = StyleConfig(), style_weights=None,
          layer_weight_sets=None, *, weights: VGGWeights | None = None, devices=None,
          max_chunk: int | None = None, callback=None) -> SweepResult:
    """Optimise every (layer set, style weight) cell in one vmapped, jitted step.

    ``style_weights`` default to ``[config.style_weight]``; ``layer_weight_sets`` (each a
    lambda vector over ``config.style_layers``) default to ``[config.style_layer_weights]``.
    ``max_chunk`` caps the cells per chunk (the memory estimate sets it otherwise).
    """
    style_weights = list(style_weights or [config.style_weight])
    layer_weight_sets = [tuple(map(float, s)) for s in (layer_weight_sets or [config.style_layer_weights])]
    model, variables, targets, content_img, style_img = prepare(content, style, config, weights)
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    grid = grid_weights(config, style_weights, layer_weight_sets)
    n_cells = len(style_weights) * len(layer_weight_sets)

    devices = list(devices or jax.devices())
    h, w = content_img.shape[:2]
    fixed = estimate_bytes(model.arch, h, w, model.taps, batch=0)
    per_cell = estimate_bytes(model.arch, h, w, model.taps, batch=1) - fixed
    # Accelerators each have their own memory; CPU "devices" share the host's RAM.
    memory = available_bytes() * (1 if devices[0].platform == "cpu" else len(devices))
    chunk = plan_chunks(n_cells, len(devices), per_cell, fixed, memory)
    if max_chunk:
        chunk = max(len(devices), min(chunk, max_chunk) // len(devices) * len(devices))
    n_chunks = math.ceil(n_cells / chunk)

    mesh = Mesh(np.array(devices), ("batch",))
    batched = NamedSharding(mesh, PartitionSpec("batch"))
    replicated = NamedSharding(mesh, PartitionSpec())
    # Every output carries the batch axis; pin it to the mesh so the next step's inputs
    # match (left free, XLA replicates small leaves and the second step recompiles).
    step = jax.jit(jax.vmap(make_step(model, optimizer, config), in_axes=(0, None, None, 0, None)),
                   out_shardings=batched)
    variables, targets = jax.device_put((variables, targets), replicated)
    single = init_state(init_image(config, content_img, style_img), optimizer)

    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                          ("best", "last", "best_loss", "history", "content", "style", "tv")}
    compile_seconds, start = 0.0, time.perf_counter()
    for c in range(n_chunks):
        idx = np.arange(c * chunk, (c + 1) * chunk) % n_cells  # pad the last chunk by wrapping
        keep = min(chunk, n_cells - c * chunk)
        state = jax.device_put(jax.tree.map(lambda x: jnp.broadcast_to(x, (chunk,) + x.shape), single), batched)
        cell_weights = jax.device_put(jax.tree.map(lambda x: x[idx], grid), batched)
        totals, terms = [], {k: np.full(chunk, np.nan, np.float32) for k in ("content", "style", "tv")}
        for i in range(config.steps):
            t0 = time.perf_counter()
            state, metrics = step(state, variables, targets, cell_weights, jnp.asarray(i, jnp.int32))
            totals.append(_gather(metrics.loss))
            if c == 0 and i == 0:
                compile_seconds = time.perf_counter() - t0
            if callback is not None:
                callback(c, i, metrics)
        if config.steps:
            terms = {k: _gather(v) for k, v in metrics.terms._asdict().items()}
        parts["best"].append(_gather(state.best_image)[:keep])
        parts["last"].append(_gather(state.image)[:keep])
        parts["best_loss"].append(_gather(state.best_loss)[:keep])
        parts["history"].append(np.stack(totals)[:, :keep] if totals else np.zeros((0, keep), np.float32))
        for k in ("content", "style", "tv"):
            parts[k].append(terms[k][:keep])

    joined = {k: np.concatenate(v, axis=1 if k == "history" else 0) for k, v in parts.items()}
    return SweepResult(np.clip(joined["best"], 0, 1), np.clip(joined["last"], 0, 1), joined["best_loss"],
                       joined["history"], {k: joined[k] for k in ("content", "style", "tv")},
                       style_weights, layer_weight_sets, n_chunks, len(devices), step._cache_size(),
                       time.perf_counter() - start, compile_seconds, config)


def is_writer() -> bool:
    """Whether this process writes results (process 0 of a multi-host run)."""
    return jax.process_index() == 0


def _gather(x: jax.Array) -> np.ndarray:
    """The full array on this host, also when other hosts hold some of its shards."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(x)
