"""Many runs as one vmapped program: a sweep's grid of loss weights, a folder's photos.

Every cell of a batch runs the same objective at each scale; what differs per cell (a
sweep cell's loss weights; a photo's targets and start image) rides on a leading batch
axis of the problem and of the step state. :func:`drive_cells` takes the cells coarse to
fine through ``run.run_cells``, as one picture runs, in equal chunks that fit in memory,
sharded over the devices, through one compiled program per scale. :func:`stylize_many` groups photos by shape and runs each
group so, one :class:`~nst_jax.run.Result` per photo.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .config import StyleConfig
from .errors import NstError
from .image import read_image, scaled_shape
from .inputs import prepare, resolve_weights
from .memory import budget_bytes, estimate_bytes, plan_chunks
from .objective import Problem
from .run import Lanes, Result, RunState, Scale, cell_result, join_traces, light, one_lane, run_cells
from .schedule import mended
from .step import StepState, init_state, make_optimizer
from .weights import VGGWeights


@dataclass
class Chunk:
    """One chunk of cells where it ended, on the host (padding cells removed)."""

    state: StepState  # batched over the chunk's cells
    trace: dict[str, np.ndarray]  # TERMS -> (steps, cells)
    cells: int
    steps: int  # steps completed in total
    stopped: str  # "done", "nan" (every cell of it), "interrupted" or "callback"
    seconds: float  # its run's, each scale's preparation included
    compile_seconds: float  # of those, making programs (run.compile_clock)


@dataclass
class Cells:
    """Where a batch of cells ended (see :func:`drive_cells`)."""

    chunks: list[Chunk]  # those that ran, in cell order
    chunk: int  # cells per chunk
    devices: int
    compiles: int  # compiled step programs
    stopped: str  # "done", "nan" (every cell) or "interrupted"


def chunk_size(config: StyleConfig, arch: str, objective, hw: tuple[int, int], n_cells: int, devices,
               max_chunk: int | None = None, budget: int | None = None) -> int:
    """Cells per chunk: as many as the memory estimate lets run at once (at most
    ``max_chunk``), a multiple of the device count. ``budget``: a device's bytes, as
    ``memory.budget_bytes`` reads them (default: read now)."""
    taps, conv = objective.model.taps, objective.model.conv
    fixed = estimate_bytes(arch, *hw, taps, batch=0, conv=conv)
    per_cell = estimate_bytes(arch, *hw, taps, batch=1, content_taps=config.content_layers,
                              optimizer=config.optimizer, conv=conv) - fixed
    # Accelerators each have their own memory; CPU "devices" share the host's RAM.
    budget = budget_bytes(config.max_memory) if budget is None else budget
    budget *= 1 if devices[0].platform == "cpu" else len(devices)
    if jax.process_count() > 1:  # one plan for all: the least any process has
        budget = int(gather(np.array([budget], np.float32)).min())
    chunk = plan_chunks(n_cells, len(devices), per_cell, fixed, budget)
    if max_chunk:
        chunk = max(len(devices), min(chunk, max_chunk) // len(devices) * len(devices))
    return chunk


def drive_cells(config: StyleConfig, objectives: list, n_cells: int, chunk: int,
                cells_at: Callable[[int, np.ndarray], tuple[Problem, jax.Array]], axes: Problem, *,
                devices, picture_at: Callable | None = None, callback=None,
                resume: RunState | None = None) -> Cells:
    """Run ``n_cells`` cells coarse to fine, ``chunk`` at a time (the last chunk padded by
    wrapping around), each chunk through ``run.run_cells`` with the cells on a leading
    axis. ``objectives``: the one objective of every cell per scale of
    ``config.sizes``; ``cells_at(index, cells)`` -> the problem of those cells at scale
    ``index``, batched along ``axes`` (None: shared), and their start: (B, H, W, C), or
    (H, W, C) when every cell starts alike. ``picture_at(index, cells)`` -> a function of a
    state making what the run would save (for the callback's progress; None: no picture).
    ``callback(chunk, progress)`` runs after every compiled call; ``resume`` continues a
    batch of the same cells from an earlier one's state."""
    one = n_cells == 1  # a batch of one cell runs the picture's own programs: bit for bit stylize's, and kept
    chunk, devices = (1, devices[:1]) if one else (chunk, devices)
    lanes = cell_lanes(config, axes) if one else batch_lanes(config, axes, chunk, devices)
    on_axis = partial(jax.tree.map, lambda x: np.asarray(x)[None]) if one else (lambda tree: tree)
    state_on_axis = partial(jax.tree.map, lambda x: x[None]) if one else (lambda tree: tree)  # on the device
    compiled = {}  # per scale: its step programs, shared by the chunks
    chunks, stopped = [], "done"

    def report(c, progress):  # the state on the batch axis, as its pictures and metrics are
        return callback(c, dataclasses.replace(progress, state=state_on_axis(progress.state)))

    for c in range(math.ceil(n_cells / chunk)):
        idx = np.arange(c * chunk, (c + 1) * chunk) % n_cells

        def scale_at(index):
            return Scale(objectives[index], *cells_at(index, idx))

        state = None if resume is None else jax.tree.map(lambda x: x[idx], resume.state)
        climbed = run_cells(config, lanes, scale_at, state=state, steps=resume.step if resume else 0,
                            resumed=resume is not None,
                            picture_at=picture_at and (lambda index: compose(on_axis, picture_at(index, idx))),
                            callback=callback and partial(report, c), compiled=compiled)
        keep = min(chunk, n_cells - c * chunk)
        trace = join_traces(climbed.traces)
        chunks.append(Chunk(jax.tree.map(lambda x: gather(x)[:keep], on_axis(climbed.state)),
                            {key: v[:, :keep] for key, v in trace.items()}, keep, climbed.steps,
                            climbed.stopped, climbed.seconds, climbed.compile_seconds))
        if climbed.stopped == "interrupted":
            stopped = "interrupted"
            break
        stopped = "nan" if climbed.stopped == "nan" and (c == 0 or stopped == "nan") else "done"
    return Cells(chunks, chunk, len(devices), sum(len(p) for p in compiled.values()), stopped)


def cell_lanes(config: StyleConfig, axes: Problem) -> Lanes:
    """Lanes of a batch of one cell: the picture's own programs (run.one_lane: bit for bit
    stylize's, and kept between runs) on the cell, the batch axis taken off its problem,
    start and resumed state on the way in and put back on the metrics on the way out
    (drive_cells puts it back on the state, the progress and the pictures)."""
    lane = one_lane(config)
    first = partial(jax.tree.map, lambda x: x[0])

    def place(index: int, scale: Scale) -> Scale:
        problem = Problem(*(p if a is None else first(p) for p, a in zip(scale.problem, axes)))
        return Scale(scale.objective, problem, scale.start if scale.start.ndim == 3 else scale.start[0])

    return dataclasses.replace(lane, place=place, put=first,
                               fetch=lambda metrics: jax.tree.map(lambda x: np.asarray(x)[:, None],
                                                                  jax.device_get(metrics)))


def batch_lanes(config: StyleConfig, axes: Problem, chunk: int, devices) -> Lanes:
    """Lanes of ``chunk`` cells on a leading axis, sharded over ``devices``: the problem's
    parts along ``axes`` (None: shared by every cell, put on the devices once per scale)."""
    optimizer = make_optimizer(config)
    mesh = Mesh(np.array(devices), ("batch",))
    batched = NamedSharding(mesh, PartitionSpec("batch"))
    replicated = NamedSharding(mesh, PartitionSpec())
    inits = {}  # per objective: its vmapped init program
    placed = {}  # per scale: the replicated parts of its problem, put on the mesh once

    def init(objective, problem, start):
        if objective not in inits:
            inits[objective] = jax.jit(jax.vmap(partial(init_state, objective, optimizer), in_axes=(axes, 0)),
                                       out_shardings=batched)
        if start.ndim == 3:
            start = jnp.broadcast_to(jnp.asarray(start), (chunk,) + start.shape)
        return inits[objective](problem, start)

    def place(index: int, scale: Scale) -> Scale:
        parts = []
        for i, (part, axis) in enumerate(zip(scale.problem, axes)):
            if axis is None:
                if (index, i) not in placed:
                    placed[(index, i)] = jax.device_put(part, replicated)
                parts.append(placed[(index, i)])
            else:
                parts.append(jax.device_put(part, batched))
        return scale._replace(problem=Problem(*parts))

    # Every output carries the batch axis (metrics behind the steps axis); pin it to the
    # mesh so the next call's inputs match (left free, XLA replicates small leaves and
    # the second call would compile again).
    return Lanes(init, lambda step: jax.vmap(step, in_axes=(0, axes, None)), place,
                 partial(jax.device_put, device=batched), mended,
                 {"out_shardings": (batched, NamedSharding(mesh, PartitionSpec(None, "batch")))}, gather,
                 devices[0].platform)


def compose(after: Callable, before: Callable) -> Callable:
    """``x -> after(before(x))``."""
    return lambda *args: after(before(*args))


def gather(tree):
    """The full arrays on this host, also when other hosts hold some of their shards."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)
    return jax.device_get(tree)


def shape_groups(contents: list, sizes: tuple[int, ...]) -> list[list[int]]:
    """Indices of ``contents`` (paths or (H, W, 3) arrays) grouped by their shape at every
    size of ``sizes`` (photos of one aspect ratio), in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for i, content in enumerate(contents):
        hw = read_image(content)[0].shape[:2]
        groups.setdefault(tuple(scaled_shape(hw, size) for size in sizes), []).append(i)
    return list(groups.values())


def stylize_many(contents: list, style, config: StyleConfig = StyleConfig(), *,
                 weights: VGGWeights | None = None, callback=None, devices=None,
                 max_chunk: int | None = None, on_plan=None) -> list[Result]:
    """Stylize each of ``contents`` (paths or (H, W, 3) arrays) in ``style`` as
    ``run.stylize`` would, photos of one shape batched into one vmapped program per scale:
    one compile per group and scale instead of one per photo, and on an accelerator the
    photos of a chunk share each step's launch. Returns one Result per photo, in order
    (None for those an interruption left out), each with its share of its chunk's time.
    ``callback(group, chunk, progress)`` runs after every compiled call (``progress.loss``:
    one value per photo of the chunk); ``on_plan(group, photos, plans)`` once per group before
    it runs (its photos' indices, and the memory plan of each one's scales)."""
    weights = resolve_weights(config, weights)
    devices = list(devices or jax.devices())
    budget = budget_bytes(config.max_memory)  # read once: every photo gets the same memory plan
    results: list[Result | None] = [None] * len(contents)
    groups = shape_groups(contents, config.sizes)
    plans = [group_plan(contents[group[0]], style, config, weights, budget, len(group), devices, max_chunk)
             for group in groups]  # every group's sizes checked before any runs
    for g, (group, (objectives, chunk, memory)) in enumerate(zip(groups, plans)):
        if on_plan is not None:
            on_plan(g, group, memory)
        last = {}  # per photo of the group: what its Result needs of its latest prepared scale

        def cells_at(index, idx):
            targets, starts, variables, loss_weights = [], [], None, None
            for i in idx[idx >= idx[0]]:  # the chunk's own photos; wrapped padding repeats the first
                run = prepare(contents[group[i]], style, config, weights, size=config.sizes[index], budget=budget)
                if run.objective != objectives[index]:  # never: the same shape, config and budget
                    raise NstError("photos of one shape gave different objectives")
                variables, loss_weights = run.problem.variables, run.problem.weights
                last[i] = light(run)
                targets.append(run.problem.targets)
                starts.append(jnp.asarray(run.start))
            pad = len(idx) - len(targets)
            targets, starts = targets + targets[:1] * pad, starts + starts[:1] * pad
            return (Problem(variables, jax.tree.map(lambda *xs: jnp.stack(xs), *targets), loss_weights),
                    jnp.stack(starts))

        def report(c, progress):  # the chunk's own photos (the last chunk is padded)
            cells = min(chunk, len(group) - c * chunk)
            return callback(g, c, dataclasses.replace(progress, loss=progress.loss[:cells]))

        cells = drive_cells(config, objectives, len(group), chunk, cells_at, Problem(None, 0, None),
                            devices=devices, callback=callback and report)
        for c, ch in enumerate(cells.chunks):
            for j in range(ch.cells):
                i = c * cells.chunk + j
                results[group[i]] = photo_result(config, last[i], ch, j)
        if cells.stopped == "interrupted":
            break
    return results


def group_plan(content, style, config: StyleConfig, weights: VGGWeights, budget: int, n_cells: int, devices,
               max_chunk: int | None) -> tuple[list, int, tuple]:
    """(the objective at each size, photos per chunk, each photo's memory plans) of a group
    of ``n_cells`` photos of ``content``'s shape; its inputs are checked at every size on the way."""
    runs = [prepare(content, style, config, weights, size=size, budget=budget) for size in config.sizes]
    final = runs[-1]
    return ([r.objective for r in runs],
            chunk_size(config, final.arch, final.objective, final.content.shape[:2], n_cells, devices, max_chunk,
                       budget), final.plans)


def photo_result(config: StyleConfig, run, chunk: Chunk, j: int) -> Result:
    """Cell ``j`` of ``chunk`` (a photo prepared at its last scale as ``run``) as a Result,
    with its share of the chunk's time."""
    state = jax.tree.map(lambda x: x[j], chunk.state)
    arrays = {k: v[:, j] for k, v in chunk.trace.items()}
    blew_up = bool(arrays) and not np.isfinite(arrays["loss"]).all()  # at some step, if it went on from its best
    stopped = "nan" if blew_up and chunk.stopped == "done" else chunk.stopped
    return cell_result(config, run, state, arrays, chunk.steps, stopped, chunk.seconds / chunk.cells,
                       chunk.compile_seconds / chunk.cells, run.notes)
