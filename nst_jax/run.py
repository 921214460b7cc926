"""The one driver: compiled chunks of steps, NaN stop, Ctrl-C, history, checkpoints.

:func:`drive` runs any step ``(state, problem, record) -> (state, metrics)`` -- one image
or a vmapped batch of them -- for a number of steps, ``steps_per_call`` of them per call
of one compiled program (a ``lax.scan`` when more than one), with one host sync per call.
:func:`stylize` is prepare -> init -> drive -> result, and ``sweep()`` and the benchmarks
drive the same way. Compile time is measured as compile time (``lower().compile()``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .config import StyleConfig
from .inputs import prepare
from .step import StepState, init_state, make_optimizer, make_step
from .weights import VGGWeights

# Steps per compiled call when the config leaves it open, by platform. CPU: 1, because
# XLA:CPU runs convolutions inside a loop body (the scan) ~2.7x slower than at the top
# level (bench/README.md), and a 1 s step hides the ~0.1 ms host round trip anyway.
# GPU: a step is milliseconds and the per-step sync and dispatch are what a scan removes
# (measured in bench/README.md, "steps per call").
STEPS_PER_CALL = {"cpu": 1, "gpu": 10, "tpu": 10}
TERMS = ("loss", "content", "style", "tv", "evals")


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


@dataclass
class Outcome:
    state: StepState
    trace: Trace  # this run's steps only
    steps: int  # steps completed in total (start + this run)
    stopped: str  # "done", "nan", "interrupted" or "callback"
    seconds: float
    compile_seconds: float


def compile_chunk(step: Callable, k: int, state, problem, jit_kwargs: dict):
    """``k`` steps as one compiled program ``(state, problem, records[k]) -> (state,
    metrics stacked over k)``: the step itself for k = 1, else a ``lax.scan`` over it."""
    if k == 1:
        def chunk(state, problem, records):
            state, metrics = step(state, problem, records[0])
            return state, jax.tree.map(lambda x: x[None], metrics)
    else:
        def chunk(state, problem, records):
            return jax.lax.scan(lambda s, r: step(s, problem, r), state, records)
    records = jnp.zeros((k,), bool)
    return jax.jit(chunk, **jit_kwargs).lower(state, problem, records).compile()


def drive(step: Callable, state: StepState, problem, *, steps: int, start: int = 0,
          steps_per_call: int = 1, log_every: int = 10,
          callback: Callable[[Progress], object] | None = None,
          checkpoint: Callable[[StepState, int, Trace], None] | None = None,
          checkpoint_every: int = 0, jit_kwargs: dict | None = None,
          compiled: dict | None = None, fetch: Callable = jax.device_get) -> Outcome:
    """Run ``step`` from step index ``start`` up to ``steps`` (exclusive).

    Stops early on a NaN/inf loss in every image (``"nan"``; each image's best iterate is
    kept in the state), on Ctrl-C (``"interrupted"``, the last completed state kept) or
    when ``callback(progress)`` returns a true value (``"callback"``). ``checkpoint(state,
    steps_done, trace)`` is called every ``checkpoint_every`` steps and on Ctrl-C.
    Step i records the separate loss terms when i % log_every == 0 or it is the last.
    ``compiled`` caches the compiled programs by steps per call (pass one dict to several
    drives of the same shapes to compile once); ``fetch`` brings metrics to the host.
    """
    compiled = {} if compiled is None else compiled
    trace, stopped, done = Trace(), "done", start
    compile_seconds, t_start = 0.0, time.perf_counter()
    try:
        while done < steps:
            k = min(steps_per_call, steps - done)
            if checkpoint_every:
                k = min(k, checkpoint_every - done % checkpoint_every)
            if k not in compiled:
                t0 = time.perf_counter()
                compiled[k] = compile_chunk(step, k, state, problem, jit_kwargs or {})
                compile_seconds += time.perf_counter() - t0
            idx = np.arange(done, done + k)
            records = jnp.asarray((idx % log_every == 0) | (idx == steps - 1))
            new_state, metrics = compiled[k](state, problem, records)
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
            if callback and callback(Progress(done, steps, metrics.loss[-1],
                                              time.perf_counter() - t_start, state)):
                stopped = "callback"
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
        if checkpoint:
            checkpoint(state, done, trace)
    return Outcome(state, trace, done, stopped, time.perf_counter() - t_start, compile_seconds)


class RunState(NamedTuple):
    """Where a run stands: what a checkpoint holds, and what ``stylize(resume=...)`` takes."""

    state: StepState
    step: int  # steps completed
    history: dict[str, np.ndarray]  # Trace arrays of those steps


@dataclass
class Result:
    """What a run produced. ``image`` is the last iterate, ``best_image`` the lowest-loss one."""

    image: np.ndarray
    best_image: np.ndarray
    best_loss: float
    history: list[HistoryRow]  # every step of the run, resumed ones included
    steps: int  # steps completed in total
    function_evals: int
    stopped: str  # "done", "nan", "interrupted" or "callback"
    seconds: float
    compile_seconds: float
    config: StyleConfig = field(repr=False)
    state: RunState | None = field(default=None, repr=False)  # to continue the run
    notes: list[str] = field(default_factory=list)  # things the user should know

    @property
    def improved(self) -> bool | None:
        """Whether any step lowered the loss below the start image's (None: no steps)."""
        if not self.history:
            return None
        return self.best_loss < self.history[0].total


def stylize(content, style, config: StyleConfig = StyleConfig(), *,
            weights: VGGWeights | None = None,
            callback: Callable[[Progress], object] | None = None,
            resume: str | Path | RunState | None = None,
            checkpoint: str | Path | None = None, checkpoint_every: int = 0) -> Result:
    """Run Gatys et al.'s optimisation. ``content`` is a path or an (H, W, 3) array;
    ``style`` one such or a list of them (blended by ``config.style_blend``).

    Stops early, keeping the best image, on a NaN/inf loss (``stopped="nan"``) or Ctrl-C
    (``stopped="interrupted"``). ``resume``: a checkpoint file or a :class:`RunState`
    (e.g. ``result.state`` of an earlier run) to continue from. ``checkpoint``: a file
    written every ``checkpoint_every`` steps and on Ctrl-C.
    """
    run = prepare(content, style, config, weights)
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    state = jax.jit(init_state, static_argnums=(0, 1))(run.objective, optimizer, run.problem, run.start)
    start, history = 0, {}
    if isinstance(resume, (str, Path)):
        resume = RunState(*load_checkpoint(resume, state, config, run.digest))
    if resume is not None:
        state, start, history = resume
    saver = None
    if checkpoint is not None:
        def saver(state, done, trace):
            save_checkpoint(checkpoint, state, done, _joined(history, trace), config, run.digest)

    outcome = drive(make_step(run.objective, optimizer), state, run.problem, steps=config.steps,
                    start=start, steps_per_call=config.steps_per_call or default_steps_per_call(),
                    log_every=config.log_every, callback=callback, checkpoint=saver,
                    checkpoint_every=checkpoint_every if checkpoint is not None else 0)
    final = jax.device_get(outcome.state)
    joined = _joined(history, outcome.trace)
    rows = Trace(joined).rows() if joined else []
    return Result(np.clip(final.image, 0, 1), np.clip(final.best_image, 0, 1), float(final.best_loss),
                  rows, outcome.steps, int(final.evals), outcome.stopped, outcome.seconds,
                  outcome.compile_seconds, config, RunState(final, outcome.steps, joined), run.notes)


def _joined(history: dict[str, np.ndarray], trace: Trace) -> dict[str, np.ndarray]:
    if not history:
        return dict(trace.arrays)
    if not len(trace):
        return dict(history)
    return {k: np.concatenate([history[k], trace.arrays[k]]) for k in TERMS}

