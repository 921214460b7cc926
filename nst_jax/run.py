"""The one driver and the one runner: compiled chunks of steps, NaN stop, Ctrl-C, history,
checkpoints; coarse to fine.

:func:`drive` runs any step ``(state, problem, record) -> (state, metrics)`` -- one image
or a vmapped batch of them -- for a number of steps, ``steps_per_call`` of them per call
of one compiled program (a ``lax.scan`` when more than one), with one host sync per call.
:func:`run_cells` takes cells coarse to fine through it: one picture (:func:`stylize`),
or a chunk of a sweep's grid or of a folder's photos on a leading batch axis (batch.py's
lanes). Compile time is measured as compile time (``lower().compile()``).
"""

from __future__ import annotations

import gc
import itertools
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import interrupt
from .checkpoint import check_checkpoint, checkpoint_step, load_checkpoint, save_checkpoint
from .cache import LOAD_EVENT, kept_or_jitted, kept_program
from .colour import after_run
from .config import StyleConfig, scale_index
from .errors import NstError
from .inputs import prepare, resolve_weights
from .losses import LossTerms, Targets
from .memory import MemoryPlan, budget_bytes
from .objective import Problem
from .schedule import carry_state, next_start
from .step import StepMetrics, StepState, averaged, init_state, make_optimizer, make_step
from .weights import VGGWeights

# Steps per compiled call when the config leaves it open, by platform. CPU: 1, since XLA:CPU
# runs convolutions inside a loop body (the scan) slower than at the top level, and a step
# of a second hides the host round trip. GPU: a step is milliseconds, and the per-step sync
# and dispatch are what a scan removes; 10 takes most of the gain and keeps progress lines
# and Ctrl-C responsive. Measured: docs/defaults.md#steps_per_call.
STEPS_PER_CALL = {"cpu": 1, "gpu": 10, "tpu": 10}
TERMS = ("loss", "content", "style", "tv", "evals")


# The events of making a program: JAX's tracing, lowering to MLIR and XLA's compile (or the
# persistent cache's load), and loading a kept one. Their sum is what a run spends on compiles,
# its preparation's included.
COMPILE_EVENTS = frozenset({"/jax/core/compile/jaxpr_trace_duration",
                            "/jax/core/compile/jaxpr_to_mlir_module_duration",
                            "/jax/core/compile/backend_compile_duration", LOAD_EVENT})
_compiling = [0.0]


def _count_compile(event: str, seconds: float, **_) -> None:
    if event in COMPILE_EVENTS:
        _compiling[0] += seconds


jax.monitoring.register_event_duration_secs_listener(_count_compile)


def compile_clock() -> float:
    """Seconds this process has spent making programs (tracing, lowering, compiling or
    loading them): a run's compile time is the clock's difference over the run."""
    return _compiling[0]


def default_steps_per_call(platform: str | None = None) -> int:
    return STEPS_PER_CALL.get(platform or jax.default_backend(), 1)


class HistoryRow(NamedTuple):
    step: int
    total: float
    content: float  # NaN where not recorded
    style: float
    tv: float


@dataclass
class Trace:
    """Per-step numbers of a run, each an array of shape (steps,) + batch shape."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.arrays["loss"]) if self.arrays else 0

    def extend(self, metrics) -> None:
        new = {"loss": metrics.loss, "evals": metrics.evals, **metrics.terms._asdict()}
        for k in TERMS:
            v = np.asarray(new[k])
            self.arrays[k] = np.concatenate([self.arrays[k], v]) if k in self.arrays else v

    def truncate(self, n: int) -> None:
        self.arrays = {k: v[:n] for k, v in self.arrays.items()}

    def rows(self, start: int = 0) -> list[HistoryRow]:
        """One row per step (single-image runs)."""
        a = self.arrays
        return [HistoryRow(start + i, *(float(a[k][i]) for k in TERMS[:4])) for i in range(len(self))]


@dataclass
class Progress:
    """What a callback sees after each compiled call."""

    step: int  # steps completed, counting from the run's first step (resumed ones too)
    total: int
    loss: np.ndarray  # J at the start of the last step (one value per image)
    seconds: float  # since the driver started, compile included
    state: StepState
    metrics: StepMetrics | None = None  # this call's, on the host, stacked over its steps
    # () -> what the run would save if it stopped now (see output_picture); a device transfer
    picture: Callable[[], np.ndarray] | None = None
    # () -> such a picture maker that stays valid after the callback (the next call may reuse
    # the state's buffers): the pictures' arrays copied on the device, brought over when asked
    hold: Callable[[], Callable[[], np.ndarray]] | None = None


@dataclass
class Outcome:
    state: StepState
    trace: Trace  # this run's steps only
    steps: int  # steps completed in total (start + this run)
    stopped: str  # "done", "nan", "interrupted" or "callback"
    seconds: float
    compile_seconds: float


def compile_chunk(step: Callable, k: int, state, problem, jit_kwargs: dict, kept: tuple | None = None):
    """``k`` steps as one compiled program ``(state, problem, records[k]) -> (state,
    metrics stacked over k)``: the step itself for k = 1, else a ``lax.scan`` over it.
    ``jit_kwargs`` go to ``jax.jit`` (``donate_argnums=0``: the new state reuses the old one's buffers).
    ``kept``: what a :func:`~nst_jax.step.make_step` step is made of, to keep its compiled
    program between processes (cache.kept_program; not for a sharded batch's)."""
    if k == 1:
        def chunk(state, problem, records):
            state, metrics = step(state, problem, records[0])
            return state, jax.tree.map(lambda x: x[None], metrics)
    else:
        def chunk(state, problem, records):
            return jax.lax.scan(lambda s, r: step(s, problem, r), state, records)
    records = jnp.zeros((k,), bool)
    collecting = gc.isenabled()
    gc.disable()  # tracing makes thousands of short-lived objects: no full collections meanwhile
    try:
        if kept is not None and set(jit_kwargs) <= {"donate_argnums"}:
            out_tree = jax.tree.structure((state, StepMetrics(0, LossTerms(0, 0, 0), 0)))
            program = kept_program(("chunk", k, kept), chunk, (state, problem, records), out_tree,
                                   jit_kwargs.get("donate_argnums"))
            if program is not None:
                return program
        return jax.jit(chunk, **jit_kwargs).lower(state, problem, records).compile()
    finally:
        if collecting:
            gc.enable()


def step_made_of(objective, config: StyleConfig) -> tuple:
    """What ``make_step(objective, make_optimizer(config), config.average)`` closes over, as
    cache.kept_program keys it (the code itself is in the key)."""
    return (objective, config.optimizer, config.learning_rate, config.precondition, config.average)


def init_program(config: StyleConfig, optimizer) -> Callable:
    """``(objective, problem, image) -> init_state(objective, optimizer, problem, image)``
    jitted, each program kept between runs (cache.kept_or_jitted; with L-BFGS it evaluates
    the loss and gradient: a whole pass of the network)."""
    init = jax.jit(init_state, static_argnums=(0, 1))

    def start(objective, problem, image) -> StepState:
        return kept_or_jitted(("init", step_made_of(objective, config)), partial(init, objective, optimizer),
                              (problem, image))
    return start


def drive(step: Callable, state: StepState, problem, *, steps: int, start: int = 0,
          steps_per_call: int = 1, log_every: int = 10,
          callback: Callable[[Progress], object] | None = None,
          checkpoint: Callable[[StepState, int, Trace], None] | None = None,
          checkpoint_every: int = 0, jit_kwargs: dict | None = None,
          compiled: dict | None = None, fetch: Callable = jax.device_get,
          total: int | None = None, kept: tuple | None = None) -> Outcome:
    """Run ``step`` from step index ``start`` up to ``steps`` (exclusive).

    Stops early on a NaN/inf loss in every image (``"nan"``; each image's best iterate is
    kept in the state), on Ctrl-C (``"interrupted"``, the last completed state kept) or
    when ``callback(progress)`` returns a true value (``"callback"``). ``checkpoint(state,
    steps_done, trace)`` is called every ``checkpoint_every`` steps and on Ctrl-C.
    Step i records the separate loss terms when i % log_every == 0 or it is the last.
    ``compiled`` caches the compiled programs by steps per call (pass one dict to several
    drives of the same shapes to compile once); ``fetch`` brings metrics to the host;
    ``total`` is what progress reports count to (default ``steps``); ``kept``: see
    :func:`compile_chunk`.

    Where no signal can interrupt a call (:func:`interrupt.only_at_safe_points`: the command
    line) and the state lives in this process, each call's state is donated: the step writes
    the new state over the old one's buffers instead of holding both. ``state`` itself is
    copied first and stays valid; a callback's ``progress.state`` is valid during the
    callback only (``progress.hold`` outlives it).
    """
    compiled = {} if compiled is None else compiled
    trace, stopped, done = Trace(), "done", start
    compile_seconds, t_start = 0.0, time.perf_counter()
    donate = interrupt.only_at_safe_points() and all(  # not across processes: no local copy of those
        getattr(x, "is_fully_addressable", True) for x in jax.tree.leaves(state))
    if donate:
        state = jax.device_put(state, may_alias=False)  # its own buffers: the caller's stay valid
        jit_kwargs = {**(jit_kwargs or {}), "donate_argnums": 0}
    try:
        while done < steps:
            k = min(steps_per_call, steps - done)
            if checkpoint_every:
                k = min(k, checkpoint_every - done % checkpoint_every)
            if (k, donate) not in compiled:
                t0 = time.perf_counter()
                compiled[k, donate] = compile_chunk(step, k, state, problem, jit_kwargs or {}, kept)
                compile_seconds += time.perf_counter() - t0
            idx = np.arange(done, done + k)
            records = jnp.asarray((idx % log_every == 0) | (idx == steps - 1))
            new_state, metrics = compiled[k, donate](state, problem, records)
            metrics = fetch(metrics)  # the one host sync of the call
            state, done = new_state, done + k
            trace.extend(metrics)
            finite = np.isfinite(trace.arrays["loss"]).reshape(len(trace), -1).any(axis=1)
            if not finite[-k:].all():
                stopped = "nan"
                first_bad = len(trace) - k + int(np.argmin(finite[-k:]))
                done -= len(trace) - first_bad - 1
                trace.truncate(first_bad + 1)
                break
            if checkpoint and checkpoint_every and done % checkpoint_every == 0:
                checkpoint(state, done, trace)
            if callback and callback(Progress(done, total or steps, metrics.loss[-1],
                                              time.perf_counter() - t_start, state, metrics)):
                stopped = "callback"
                break
            interrupt.check()  # a safe point: nothing is in flight
    except KeyboardInterrupt:
        stopped = "interrupted"
        if checkpoint and done > start:  # else the state is a new scale's start, not a step of it
            checkpoint(state, done, trace)
    return Outcome(state, trace, done, stopped, time.perf_counter() - t_start, compile_seconds)


class RunState(NamedTuple):
    """Where a run stands: what a checkpoint holds, and what ``stylize(resume=...)`` takes."""

    state: StepState
    step: int  # steps completed, over all scales
    history: dict[str, np.ndarray]  # Trace arrays of those steps


def scale_span(config: StyleConfig, index: int) -> tuple[int, int]:
    """(first, end) global step indices of scale ``index`` (``config.scale_steps``); a
    single-scale run's end is ``config.steps``, so it can be resumed with more steps."""
    ends = config.scale_ends
    return ends[index - 1] if index else 0, ends[index]


def scale_of(config: StyleConfig, done: int) -> int:
    """The scale whose size the state holds after ``done`` steps."""
    return scale_index(config.scale_ends, done)


@dataclass
class Grid:
    """A sweep's cells, row-major: rows = layer sets x blends (the blend varying fastest),
    cols = style weights; and how they ran."""

    style_weights: list[float]
    layer_weight_sets: list[tuple[float, ...]]
    blends: list[tuple[float, ...]]  # normalised weights of the style images
    chunks: int
    devices: int
    compiles: int  # compiled step programs (1: the whole grid shares one)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.layer_weight_sets) * len(self.blends), len(self.style_weights)


@dataclass
class Result:
    """What a run produced, for each of its cells on a leading batch axis of B: a picture
    (``stylize``, each photo of ``stylize_many``) is a batch of one, a sweep a cell per point
    of its ``grid``. ``images`` are the last iterates, ``best_images`` the lowest-loss ones
    (of the last scale), ``average_images`` the iterate averages (None when off), each the RGB
    picture the losses saw (``Objective.picture``: grey for a luminance-only transfer, the
    content outside kept masks); ``outputs`` is what to show. The singular names (``output``,
    ``best_loss``, ``history``, ...) read a batch of one. A run continues from ``state``,
    never from ``trace``."""

    images: np.ndarray  # (B, H, W, 3)
    best_images: np.ndarray  # (B, H, W, 3)
    best_losses: np.ndarray  # (B,)
    trace: dict[str, np.ndarray]  # TERMS -> (steps, B): every step, resumed ones included
    evals: np.ndarray  # (B,) loss evaluations in total
    steps: int  # steps completed in total
    stopped: str  # "done", "nan" (every cell), "interrupted" or "callback"
    seconds: float  # the whole call's, preparation and compiles included
    compile_seconds: float  # of those, making programs (compile_clock)
    config: StyleConfig = field(repr=False)
    state: RunState | None = field(default=None, repr=False)  # to continue the run (a picture's: no batch axis)
    notes: list[str] = field(default_factory=list)  # things the user should know
    average_images: np.ndarray | None = None  # (B, H, W, 3)
    last_scale_start: int = 0  # trace index where the last scale began
    colour_content: np.ndarray | None = field(default=None, repr=False)  # content colours, result's size
    grid: Grid | None = None  # a sweep's cells

    @property
    def outputs(self) -> np.ndarray:
        """What to show per cell: the average when averaging is on (and finite), else the
        best, finished by :meth:`finish`."""
        return self.finish(averaged_or_best(self.average_images, self.best_images))

    def finish(self, images: np.ndarray) -> np.ndarray:
        """Images as pictures: the colour control that acts after the run (config.colour
        "original" or "luminance": the content's chroma back) applied."""
        return finished(images, self.colour_content, self.config)

    @property
    def cells_improved(self) -> np.ndarray:
        """(B,) whether any step of the last scale lowered each cell's loss below its start."""
        loss = self.trace["loss"]
        if len(loss) <= self.last_scale_start:
            return np.zeros(len(self.best_losses), bool)
        return self.best_losses < loss[self.last_scale_start]

    @property
    def final_terms(self) -> dict[str, np.ndarray]:
        """(B,) content, style and TV terms at the last step (NaN without steps)."""
        return {k: self.trace[k][-1] if len(self.trace[k]) else np.full(len(self.best_losses), np.nan)
                for k in ("content", "style", "tv")}

    def cells(self) -> list[dict]:
        """A sweep's cells: each one's settings and final numbers (what ``write_sweep`` saves)."""
        if self.grid is None:
            raise ValueError("not a sweep's result: it has no grid of cells")
        out, grid, improved, last = [], self.grid, self.cells_improved, self.final_terms
        for b, (r, c) in enumerate(itertools.product(range(grid.shape[0]), range(grid.shape[1]))):
            layer_set, blend = divmod(r, len(grid.blends))
            out.append({"row": r, "col": c, "style_weight": grid.style_weights[c],
                        "style_layer_weights": dict(zip(self.config.style_layers, grid.layer_weight_sets[layer_set])),
                        "blend": list(grid.blends[blend]),
                        "content_weight": self.config.content_weight,
                        "final_loss": float(self.trace["loss"][-1, b]) if len(self.trace["loss"]) else None,
                        "best_loss": float(self.best_losses[b]), "improved": bool(improved[b]),
                        **{f"final_{k}": float(v[b]) for k, v in last.items()}})
        return out

    # a batch of one
    def _one(self, batched):
        if len(self.best_losses) != 1:
            raise ValueError(f"a result of {len(self.best_losses)} cells: read its batch (images, outputs, ...)")
        return None if batched is None else batched[0]

    image = property(lambda self: self._one(self.images))
    best_image = property(lambda self: self._one(self.best_images))
    average_image = property(lambda self: self._one(self.average_images))
    output = property(lambda self: self._one(self.outputs))
    best_loss = property(lambda self: float(self._one(self.best_losses)))
    function_evals = property(lambda self: int(self._one(self.evals)))

    @property
    def history(self) -> list[HistoryRow]:
        """Every step of a batch of one."""
        self._one(self.best_losses)
        return Trace({k: v[:, 0] for k, v in self.trace.items()}).rows()

    @property
    def improved(self) -> bool | None:
        """Whether any step of the last scale of a batch of one lowered the loss below its
        start (None: no steps)."""
        improved = self._one(self.cells_improved)
        return None if len(self.trace["loss"]) <= self.last_scale_start else bool(improved)


def traced(arrays: dict[str, np.ndarray], cells: int) -> dict[str, np.ndarray]:
    """Trace arrays as (steps, cells) for every term; ``arrays`` may be empty or a picture's (steps,)."""
    return {k: np.asarray(arrays[k], np.float64).reshape(len(arrays[k]), cells) if arrays else np.zeros((0, cells))
            for k in TERMS}


def averaged_or_best(average: np.ndarray | None, best: np.ndarray) -> np.ndarray:
    """What a run shows: the iterate average, image by image (..., H, W, C) where it is
    finite (a run that blew up averaged its NaN iterate in), else the best iterate."""
    if average is None:
        return best
    return np.where(np.isfinite(average).all(axis=(-3, -2, -1), keepdims=True), average, best)


def pictures(objective, problem, images) -> np.ndarray:
    """The RGB pictures the losses saw (``Objective.picture``) of one image or of a batch on
    a leading axis, on the host, clipped to [0, 1]."""
    picture = objective.picture if images.ndim == 3 else jax.vmap(objective.picture, in_axes=(None, 0))
    return np.clip(np.asarray(picture(problem, images)), 0, 1)


def finished(images: np.ndarray, colour_content, config: StyleConfig) -> np.ndarray:
    """Pictures with the colour control that acts after the run applied (config.colour
    "original" or "luminance": the content's chroma back; nothing otherwise)."""
    return images if colour_content is None else after_run(images, colour_content, config.colour)


def final_pictures(run, config: StyleConfig, state: StepState):
    """(last, best, average) pictures of a run's state at prepared scale ``run``, the
    average None when averaging is off; what a ``Result`` holds."""
    image, best, average = jax.device_get((state.image, state.best_image,
                                           averaged(state) if config.average else None))
    return (pictures(run.objective, run.problem, image), pictures(run.objective, run.problem, best),
            None if average is None else pictures(run.objective, run.problem, average))


def output_picture(objective, problem, config: StyleConfig, colour_content, state: StepState) -> np.ndarray:
    """What a run would save if it stopped at ``state`` (one image, or a batch on a leading
    axis), as ``Result.outputs`` makes it. Brings those images from the device."""
    best, average = jax.device_get((state.best_image, averaged(state) if config.average else None))
    average = None if average is None else pictures(objective, problem, average)
    return finished(averaged_or_best(average, pictures(objective, problem, best)), colour_content, config)


def with_picture(callback: Callable[[Progress], object], picture: Callable, progress: Progress):
    """``callback(progress)``, the progress able to make its picture: ``picture(state)``
    bound to its state, computed only if the callback asks (``hold``: bound to a copy)."""
    return callback(replace(progress, picture=partial(picture, progress.state),
                            hold=partial(held_picture, picture, progress.state)))


def held_picture(picture: Callable, state: StepState) -> Callable[[], np.ndarray]:
    """``picture`` bound to a device copy of what it reads of ``state`` (all but the
    optimizer's state): valid whatever later steps do with ``state``'s buffers."""
    return partial(picture, jax.device_put(state._replace(opt_state=None), may_alias=False))


@dataclass
class Climb:
    """Where a coarse-to-fine run ended (see :func:`run_cells`)."""

    state: StepState | None
    steps: int  # steps completed in total
    stopped: str  # "done", "nan", "interrupted" or "callback"
    traces: list[dict[str, np.ndarray]]  # each driven scale's Trace arrays
    seconds: float  # the run's, each scale's preparation included
    compile_seconds: float  # of those, making programs (compile_clock)


class Scale(NamedTuple):
    """A runner's cells at one scale: their objective, problem, and start image(s)."""

    objective: object  # objective.Objective
    problem: object  # objective.Problem
    start: jax.Array  # (H, W, C), or (B, H, W, C) one per cell of a batch


@dataclass(frozen=True)
class Lanes:
    """How a runner's cells meet its programs. :func:`one_lane`: one picture, the step on
    its own state, every program kept between runs; batch.py's: cells on a leading axis of
    the state, the step vmapped and sharded over devices."""

    init: Callable  # (objective, problem, start) -> the cells' first state
    vectorise: Callable = lambda step: step  # make_step's step -> the step of the cells
    place: Callable = lambda index, scale: scale  # scale ``index``'s Scale on the devices
    put: Callable = lambda state: state  # a resumed state (from the host) on the devices
    mend: Callable = lambda state: state  # before a scale change: schedule.mended where cells go on past a NaN
    jit_kwargs: dict = field(default_factory=dict)
    fetch: Callable = jax.device_get  # metrics to the host
    platform: str | None = None  # whose default steps per call (None: the default device's)


def one_lane(config: StyleConfig) -> Lanes:
    """The lanes of a single picture (``stylize``)."""
    return Lanes(init_program(config, make_optimizer(config)))


def run_cells(config: StyleConfig, lanes: Lanes, scale_at: Callable[[int], Scale], *,
              state: StepState | None = None, steps: int = 0, resumed: bool = False,
              restore: Callable[[int, StepState], StepState] | None = None,
              picture_at: Callable[[int], Callable] | None = None,
              callback: Callable[[Progress], object] | None = None,
              checkpoint: Callable | None = None, checkpoint_every: int = 0,
              compiled: dict | None = None, traces: list | None = None,
              interrupted: Callable[[StepState, int], object] | None = None) -> Climb:
    """The one coarse-to-fine runner: cells (one picture, a chunk of a batch) through
    ``lanes``' programs, scale by scale of ``config.sizes`` from the one ``steps`` reached
    (``resumed``: ``state`` is that run's) or the first.

    ``scale_at(index)`` -> the cells' :class:`Scale` there. The first state is
    ``lanes.init``'s (then ``restore(index, it)``'s when given: a checkpoint read into its
    shapes); each next scale starts from :func:`schedule.next_start` of the last, with its
    state carried over. ``picture_at(index)`` -> a function of a state making what the run
    would save (the callback's ``progress.picture``); ``checkpoint(index, state, steps,
    trace)`` every ``checkpoint_every`` steps; ``compiled``: each scale's step programs by
    index, shared by the chunks of a batch; each driven scale's trace is appended to
    ``traces`` (a list the caller may read meanwhile). Stops after a scale that did not
    finish; Ctrl-C between two scales keeps the last scale's state (``interrupted(state,
    steps)`` is told)."""
    if resumed and steps > config.total_steps:  # it would end where it stands, an earlier picture
        raise NstError(f"the run to resume has made {steps} steps, more than the {config.total_steps} this run "
                       f"asks for: ask for {steps} or more to go on from it")
    optimizer = make_optimizer(config)
    k = config.steps_per_call or default_steps_per_call(lanes.platform)
    compiled = {} if compiled is None else compiled
    traces = [] if traces is None else traces
    state = None if state is None else lanes.put(state)
    current = scale_of(config, steps) if resumed else None
    stopped, entered = "done", False
    t_start, c_start = time.perf_counter(), compile_clock()
    for index in range(len(config.sizes)):
        if current is not None and index < current:
            continue
        try:
            moved = state is not None and current != index
            if moved:  # a safe point between two scales
                interrupt.check()
            scale = lanes.place(index, scale_at(index))
            if state is None:
                state = lanes.init(scale.objective, scale.problem, scale.start)
                state = state if restore is None else restore(index, state)
            elif moved:
                state = lanes.mend(state)
                fresh = lanes.init(scale.objective, scale.problem, next_start(state, scale.start, config.detail))
                state = carry_state(state, fresh, optimizer)
        except KeyboardInterrupt:
            if not entered:  # no scale began: nothing to keep
                raise
            stopped = "interrupted"
            if interrupted is not None:
                interrupted(state, steps)
            break
        current, entered = index, True
        first, end = scale_span(config, index)
        if steps >= end:
            continue
        report = callback
        if callback and picture_at:
            report = partial(with_picture, callback, picture_at(index))
        outcome = drive(lanes.vectorise(make_step(scale.objective, optimizer, config.average)), state,
                        scale.problem, steps=end, start=max(first, steps), steps_per_call=k,
                        log_every=config.log_every, callback=report,
                        checkpoint=checkpoint and partial(checkpoint, index),
                        checkpoint_every=checkpoint_every if checkpoint else 0, jit_kwargs=lanes.jit_kwargs,
                        compiled=compiled.setdefault(index, {}), fetch=lanes.fetch,
                        total=config.total_steps, kept=step_made_of(scale.objective, config))
        state, steps, stopped = outcome.state, outcome.steps, outcome.stopped
        traces.append(outcome.trace.arrays)
        if stopped != "done":
            break
    return Climb(state, steps, stopped, traces, time.perf_counter() - t_start, compile_clock() - c_start)


def cell_result(config: StyleConfig, run, state: StepState, arrays: dict[str, np.ndarray], steps: int,
                stopped: str, seconds: float, compile_seconds: float, notes: list[str]) -> Result:
    """The :class:`Result` (a batch of one) of one picture whose ``state`` (on the host) is at
    its prepared scale ``run`` after ``steps``, ``arrays`` its whole Trace."""
    image, best, average = final_pictures(run, config, state)
    return Result(image[None], best[None], np.asarray(state.best_loss).reshape(1), traced(arrays, 1),
                  np.asarray(state.evals).reshape(1), steps, stopped, seconds, compile_seconds, config,
                  RunState(state, steps, arrays), notes, None if average is None else average[None],
                  scale_span(config, scale_of(config, steps))[0], run.colour_content)


def stylize(content, style, config: StyleConfig = StyleConfig(), *,
            weights: VGGWeights | None = None,
            callback: Callable[[Progress], object] | None = None,
            resume: str | Path | RunState | None = None,
            checkpoint: str | Path | None = None, checkpoint_every: int = 0,
            on_plan: Callable[[tuple[MemoryPlan, ...]], object] | None = None) -> Result:
    """Run Gatys et al.'s optimisation. ``content`` is a path or an (H, W, 3) array;
    ``style`` one such or a list of them (blended by ``config.style_blend``).

    With several ``config.sizes`` (``config.scales``) the run goes coarse to fine, ``config.steps`` steps at each
    size (see schedule.py). Stops early, keeping the best image, on a NaN/inf loss
    (``stopped="nan"``) or Ctrl-C (``stopped="interrupted"``). ``resume``: a checkpoint file
    or a :class:`RunState` (e.g. ``result.state`` of an earlier run) to continue from.
    ``checkpoint``: a file written every ``checkpoint_every`` steps and on Ctrl-C.
    ``on_plan(plans)`` is called once before the first step with the memory plan of each
    size (memory.describe_plans makes one line of them); the budget they share is read
    once, at the start. The run is :func:`run_cells`' with one cell.
    """
    t_start, c_start = time.perf_counter(), compile_clock()
    budget = budget_bytes(config.max_memory)
    weights = resolve_weights(config, weights)
    state, done, history = None, 0, {}
    if isinstance(resume, RunState):
        state, done, history = resume
    elif resume is not None:
        done = checkpoint_step(resume)
    runs, notes, saved = {}, [], [history]  # runs: prepared scales by index; saved: a resume's steps
    climbed = []  # the traces of the scales driven in this call (run_cells appends them)

    def scale_at(index):
        nonlocal on_plan
        run = runs[index] = prepare(content, style, config, weights, size=config.sizes[index], budget=budget)
        if resume is not None and not isinstance(resume, RunState) and not runs.keys() - {index}:
            check_checkpoint(resume, config, run.digest)  # refused before the plan is told: one line
        for earlier in [i for i in runs if i < index]:  # the state leaves them: free their inputs
            runs[earlier] = light(runs[earlier])
        if on_plan is not None:
            on_plan(run.plans)
            on_plan = None  # once
        notes.extend(n for n in run.notes if n not in notes)
        return Scale(run.objective, run.problem, run.start)

    def restore(index, template):  # a checkpoint file, made at this scale
        state, _, saved[0] = load_checkpoint(resume, template, config, runs[index].digest, TERMS)
        return state

    def picture_at(index):
        run = runs[index]
        return partial(output_picture, run.objective, run.problem, config, run.colour_content)

    def save(index, state, steps_done, trace):
        save_checkpoint(checkpoint, state, steps_done, join_traces(saved + climbed + [trace.arrays]), config,
                        runs[index].digest)

    def interrupted(state, steps_done):  # between scales: saved with the scale it was made at
        run = prepared_at(runs.values(), state)
        save(next(i for i in runs if runs[i] is run), state, steps_done, Trace())

    result = run_cells(config, one_lane(config), scale_at, state=state, steps=done, resumed=resume is not None,
                       restore=restore if resume is not None and state is None else None, picture_at=picture_at,
                       callback=callback, checkpoint=save if checkpoint is not None else None,
                       checkpoint_every=checkpoint_every, traces=climbed,
                       interrupted=interrupted if checkpoint is not None else None)
    final = jax.device_get(result.state)
    return cell_result(config, prepared_at(runs.values(), final), final, join_traces(saved + climbed), result.steps,
                       result.stopped, time.perf_counter() - t_start, compile_clock() - c_start, notes)


def prepared_at(runs, state: StepState):
    """The prepared scale (inputs.prepare, or its :func:`light` copy) whose size ``state``'s images have."""
    return next(r for r in runs if r.colour_content.shape[:2] == state.image.shape[-3:-1])


def light(run):
    """Of a prepared scale, what a Result needs (the objective, the pixels masks keep, on
    the host; the content's colours; the notes; the digest): the network's weights and
    the targets on the device are let go."""
    keep = None if run.problem.targets.keep is None else tuple(np.asarray(x) for x in run.problem.targets.keep)
    return replace(run, problem=Problem(None, Targets((), (), keep=keep), None), styles=[], content=None,
                   start=None)


def join_traces(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Trace arrays of consecutive stretches of a run as one (empty stretches skipped)."""
    parts = [p for p in parts if p and len(p.get("loss", ()))]
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in TERMS}
