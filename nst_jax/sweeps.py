"""A whole grid of loss weights as one compiled, vmapped program.

``sweep()`` optimises one image per cell of (layer-weight set) x (style blend) x (style
weight) -- the grids of Gatys et al.'s figures -- with the same step and the same driver as
``stylize()``, batched by ``jax.vmap`` over the step state and the loss weights (the blend
of several style images is one of them). The content features and each style image's
Grams are shared by every cell. With several devices the batch axis is sharded over a
``Mesh``; a grid that does not fit in memory runs in equal chunks that do, all through one
compiled program.

Multi-host: every process calls ``start_distributed()`` first (``nst-jax sweep
--distributed``) and then the same ``sweep()``; ``jax.devices()`` then lists every
process's devices, the mesh spans them, every process plans the same chunks, and results
are gathered to every process (only process 0 writes files).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import interrupt
from .batch import Cells, chunk_size, drive_cells
from .config import StyleConfig
from .errors import ConfigError, NstError
from .inputs import as_list, normalised_blend, prepare, resolve_weights
from .losses import LossWeights
from .objective import Problem, loss_weights
from .run import (TERMS, Grid, Result, RunState, compile_clock, final_pictures, output_picture, prepared_at,
                  scale_of, scale_span)
from .weights import VGGWeights


def paper_layer_sets(style_layers: tuple[str, ...]) -> list[tuple[float, ...]]:
    """Fig. 9 (right) of the article: the first k style layers, equal weights 1/k."""
    n = len(style_layers)
    return [tuple(1.0 / k if j < k else 0.0 for j in range(n)) for k in range(1, n + 1)]


def check_grid(config: StyleConfig, style_weights, layer_weight_sets, blends) -> None:
    """Raise the config's own error unless every cell's weights are what a config accepts
    (each style weight, layer weight set and blend, checked as the config checks its own)."""
    for beta in style_weights:
        config.replace(style_weight=beta)
    for layer_set in layer_weight_sets:
        config.replace(style_layer_weights=tuple(layer_set))
    for blend in blends:
        config.replace(style_blend=tuple(blend))


def grid_weights(config: StyleConfig, style_weights, layer_weight_sets, blends) -> LossWeights:
    """Stack the per-cell LossWeights along a leading batch axis (row-major grid)."""
    check_grid(config, style_weights, layer_weight_sets, blends)
    base = loss_weights(config, blends[0])
    cells = list(itertools.product(layer_weight_sets, blends, style_weights))
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    n = len(cells)
    return LossWeights(content=jnp.full((n,), base.content), style=f32([s for _, _, s in cells]),
                       tv=jnp.full((n,), base.tv), content_layers=jnp.tile(base.content_layers, (n, 1)),
                       style_layers=f32([ls for ls, _, _ in cells]), blend=f32([b for _, b, _ in cells]))


def sweep(content, style, config: StyleConfig = StyleConfig(), style_weights=None,
          layer_weight_sets=None, *, blends=None, weights: VGGWeights | None = None, devices=None,
          max_chunk: int | None = None, callback=None, resume: RunState | None = None) -> Result:
    """Optimise every (layer set, blend, style weight) cell with one vmapped, jitted step.

    ``style_weights`` default to ``[config.style_weight]``; ``layer_weight_sets`` (each a
    lambda vector over ``config.style_layers``) default to ``[config.style_layer_weights]``;
    ``blends`` (each a weight per style image, normalised to sum 1) to ``[config.style_blend]``.
    ``max_chunk`` caps the cells per chunk (the memory estimate sets it otherwise).
    ``callback(chunk, progress)`` runs after every compiled call; ``resume`` continues
    from an earlier sweep's ``result.state`` (same grid).
    """
    since = time.perf_counter(), compile_clock()
    style_weights = list(style_weights or [config.style_weight])
    layer_weight_sets = [tuple(map(float, s)) for s in (layer_weight_sets or [config.style_layer_weights])]
    check_grid(config, style_weights, layer_weight_sets, blends or [])
    n_styles = len(as_list(style))
    blends = [normalised_blend(b, n_styles) for b in (blends or [config.style_blend])]
    weights = resolve_weights(config, weights)
    runs = [prepare(content, style, config.replace(style_blend=blends[0]), weights, size=size)
            for size in config.sizes]
    grid = grid_weights(config, style_weights, layer_weight_sets, blends)
    n_cells = len(style_weights) * len(layer_weight_sets) * len(blends)

    devices = list(devices or jax.devices())
    final = runs[-1]
    chunk = chunk_size(config, final.arch, final.objective, final.content.shape[:2], n_cells, devices, max_chunk)

    def cells_at(index, idx):  # the cells share the photo, the style and its start
        cell_weights = jax.tree.map(lambda x: x[idx], grid)
        return Problem(runs[index].problem.variables, runs[index].problem.targets, cell_weights), runs[index].start

    def picture_at(index, idx):
        run = runs[index]
        return partial(output_picture, run.objective, run.problem, config, run.colour_content)

    cells = drive_cells(config, [r.objective for r in runs], n_cells, chunk, cells_at, Problem(None, None, 0),
                        devices=devices, picture_at=picture_at, callback=callback, resume=resume)
    return _collect(cells, runs, config, (style_weights, layer_weight_sets, blends), resume, since)


def _collect(cells: Cells, runs, config, grid_axes, resume, since: tuple[float, float]) -> Result:
    """Join the chunks' states and traces into one result; ``since``: the sweep's start on
    the wall clock and run.compile_clock."""
    state = jax.tree.map(lambda *xs: np.concatenate(xs), *[c.state for c in cells.chunks])
    # the scale the images are at (an earlier one when every cell stopped on NaN)
    run = prepared_at(runs, state)
    steps = max(len(c.trace.get("loss", ())) for c in cells.chunks)
    arrays = {}
    for key in TERMS:
        parts = []
        for c in cells.chunks:
            a = c.trace.get(key, np.zeros((0, c.cells))).astype(np.float64)
            parts.append(np.pad(a, ((0, steps - len(a)), (0, 0)), constant_values=np.nan))
        arrays[key] = np.concatenate(parts, axis=1)
    if resume is not None and resume.history:
        arrays = {k: np.concatenate([resume.history[k], arrays[k]]) for k in arrays}
    done = (resume.step if resume else 0) + steps
    image, best, average = final_pictures(run, config, state)
    trace = {k: v.copy() for k, v in arrays.items()}  # the result's own: the state's resume from theirs
    return Result(image, best, state.best_loss, trace, state.evals, done, cells.stopped,
                  time.perf_counter() - since[0], compile_clock() - since[1], config, RunState(state, done, arrays),
                  run.notes, average, scale_span(config, scale_of(config, done))[0], run.colour_content,
                  Grid(*grid_axes, len(cells.chunks), cells.devices, cells.compiles))


def write_sweep(result: Result, out_dir: str | Path, row_labels: list[str],
                bit_depth: int | None = None) -> list[Path]:
    """Write every cell (``cell_r{row}_c{col}.png``, ``bit_depth`` bits per channel, 8 by
    default), a labelled contact sheet (8 bits) and ``losses.json`` (config and per-cell
    numbers; NaN and infinity as null) into ``out_dir``. All of them are written into a
    hidden folder there first and moved in only when every one is complete: if a write
    fails, the folder holds what it held before (nor is it left, when this made it). Cells
    an earlier, larger grid left there are removed."""
    from .atomic import created
    from .image import contact_sheet, save_image

    out_dir = Path(out_dir)
    try:
        with created(out_dir):
            staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".sweep-", suffix=".tmp"))
            try:
                staged, outputs, cells = [], result.outputs, result.cells()
                for b, cell in enumerate(cells):  # row-major, as the outputs
                    staged.append(save_image(outputs[b], staging / f"cell_r{cell['row']}_c{cell['col']}.png",
                                             bit_depth))
                cols = [f"beta {b:g}" for b in result.grid.style_weights]
                sheet = contact_sheet(outputs, row_labels, cols,
                                      title=f"rows: style layers{' x blend' if len(result.grid.blends) > 1 else ''}; "
                                            f"columns: style weight beta "
                                            f"(alpha {result.config.content_weight:g}, {steps_label(result.config)})")
                staged.append(save_image(sheet, staging / "contact_sheet.png"))
                report = {"config": dataclasses.asdict(result.config), "cells": cells,
                          "chunks": result.grid.chunks, "devices": result.grid.devices, "seconds": result.seconds,
                          "compile_seconds": result.compile_seconds, "stopped": result.stopped}
                staged.append(staging / "losses.json")
                staged[-1].write_text(json.dumps(json_safe(report), indent=1, allow_nan=False))
                written = []
                for path in staged:
                    written.append(out_dir / path.name)
                    os.replace(path, written[-1])
                for stale in out_dir.glob("cell_r*_c*.png"):  # an earlier, larger grid's: not this sweep's
                    if re.fullmatch(r"cell_r\d+_c\d+\.png", stale.name) and stale not in written:
                        stale.unlink()
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as e:
        raise NstError(f"cannot write into {out_dir}: {e.strerror or e}") from None
    return written


def json_safe(value):
    """``value`` with every NaN and infinity as None: JSON has neither (a cell whose loss
    blew up reports null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def steps_label(config: StyleConfig) -> str:
    """"200 steps", or "100 steps at each of 128, 181, 256 px" for a coarse-to-fine run
    ("50 steps at each of 128, 181 px, 150 at 256 px" with other coarse steps)."""
    *coarse, last = config.scale_steps
    if not coarse:
        return f"{config.steps} steps"
    if set(coarse) == {last}:
        return f"{last} steps at each of {', '.join(map(str, config.sizes))} px"
    return f"{coarse[0]} steps at each of {', '.join(map(str, config.sizes[:-1]))} px, {last} at {config.sizes[-1]} px"


# How long a process of a multi-process sweep waits for the others to join (JAX's default):
# on a cluster the processes may start minutes apart.
JOIN_TIMEOUT_S = 300
# JAX's own deadline comes this much later: at it, JAX aborts the process with a C++ trace.
JAX_GRACE_S = 60


def start_distributed(coordinator: str | None = None, num_processes: int | None = None,
                      process_id: int | None = None, notify=None) -> None:
    """Join a multi-process sweep: ``jax.distributed.initialize()`` with the coordinator's
    ``HOST:PORT`` (process 0 listens there), the number of processes and this one's id
    (0 to n - 1); what is left out JAX takes from a cluster it detects (SLURM, Open MPI,
    Kubernetes, Cloud TPU; the coordinator also from ``JAX_COORDINATOR_ADDRESS``). Call it
    before anything else uses JAX. On CPU the processes exchange data over TCP (JAX's
    default CPU collectives, gloo). A bad value is a :class:`ConfigError` naming the
    argument; a run that cannot start, an :class:`NstError`. ``notify(message)``, if given,
    hears once that the wait for the other processes begins (up to JOIN_TIMEOUT_S)."""
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("coordinator", f"takes HOST:PORT (a port from 1 to 65535), not {coordinator!r}")
    if num_processes is None and process_id is not None:
        raise ConfigError("num_processes", "must be given with the process id")
    if process_id is None and num_processes is not None:
        raise ConfigError("process_id", "must be given with the number of processes")
    if num_processes is not None and num_processes < 1:
        raise ConfigError("num_processes", f"must be 1 or more, not {num_processes}")
    if process_id is not None and not 0 <= process_id < num_processes:
        raise ConfigError("process_id", f"must be from 0 to {num_processes - 1}, not {process_id}")
    if notify:
        notify(f"waiting for the other processes{f' at {coordinator}' if coordinator else ''} "
               f"(up to {JOIN_TIMEOUT_S:g} s)")
    options = dict(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    try:
        if interrupt.in_command():
            join(JOIN_TIMEOUT_S, **options)
        else:  # a library caller's process must live on: JAX's own wait, and its abort at the end
            jax.distributed.initialize(**options, initialization_timeout=int(JOIN_TIMEOUT_S))
    except (ValueError, RuntimeError) as e:  # RuntimeError: also jax.errors.JaxRuntimeError
        lines = str(e).strip().splitlines() or [type(e).__name__]
        missing = isinstance(e, ValueError) and None in (coordinator, num_processes)
        hint = " (no cluster detected: give the coordinator address, number of processes and process id)" * missing
        raise NstError(f"cannot start the distributed run: {lines[0]}{hint}") from None


def join(timeout_s: float, **options) -> None:
    """``jax.distributed.initialize(**options)`` in a thread of its own, so that while it
    waits a signal still stops the command (:func:`interrupt.check`) and a join that takes
    longer than ``timeout_s`` is an :class:`NstError`. For the console script only: the
    thread waits on, and JAX_GRACE_S later JAX aborts the process unless it has ended."""
    done, failed = threading.Event(), []

    def initialize() -> None:
        try:
            jax.distributed.initialize(**options, initialization_timeout=int(timeout_s) + JAX_GRACE_S)
        except BaseException as e:  # handed to the caller's thread
            failed.append(e)
        done.set()

    threading.Thread(target=initialize, name="nst-jax-join", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not done.wait(0.1):
        interrupt.check()
        if time.monotonic() > deadline and not done.is_set():
            raise NstError(f"cannot start the distributed run: not every process joined within {timeout_s:g} s")
    if failed:
        raise failed[0]


def is_writer() -> bool:
    """Whether this process writes results (process 0 of a multi-host run)."""
    return jax.process_index() == 0
