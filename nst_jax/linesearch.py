"""Line searches without control flow, for L-BFGS on XLA:CPU.

Optax's zoom line search evaluates the loss inside a ``while_loop``; on XLA:CPU every
convolution there runs slower than at the top level of the program (bench/README.md,
"Convolutions inside control flow"). Both searches here evaluate only at the top level of
the step and choose with ``jnp.where``, so ``jax.vmap`` batches them without turning a
branch into both branches, and a ``lax.scan`` of steps holds no nested loop:

- :func:`unrolled_armijo`: K trial steps along the direction, evaluated (value only) as
  straight-line code within one update; the largest satisfying the Armijo condition wins.
- :func:`stepwise_armijo`: one trial per update, evaluated by the step itself (the value
  and gradient it computes anyway); a trial that fails the condition is replaced at the
  next update by a shorter step from the last accepted point.

Both project every trial point (a projected Armijo rule, Bertsekas 1976) and never accept
an increase: the sufficient decrease is ``c1 * min(0, g.(x_t - x))``, which implies the
projected rule's ``c1 * g.(x_t - x)`` and differs from it only where a projected
quasi-Newton step is not a descent step (where that rule would allow a small increase).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax


def sufficient_decrease(value: jax.Array, start_value: jax.Array, start_grad, start, point,
                        c1: float) -> jax.Array:
    """Whether f(point) <= f(start) + c1 min(0, g(start).(point - start)); False for NaN."""
    slope = optax.tree.vdot(start_grad, optax.tree.sub(point, start))
    return value <= start_value + c1 * jnp.minimum(0.0, slope)


class UnrolledArmijoState(NamedTuple):
    """What the last update chose (for the step's metrics and for tests)."""

    step_size: jax.Array  # the trial step t taken (0 before the first update)
    trial_value: jax.Array  # f at the point taken, as the search measured it
    accepted: jax.Array  # whether that point satisfied the sufficient-decrease condition
    num_linesearch_steps: jax.Array  # value-only evaluations per update: K (int32)


def unrolled_armijo(step_sizes: Sequence[float] = (1.0, 0.25), c1: float = 1e-4,
                    projection: Callable = lambda x: x) -> optax.GradientTransformationExtraArgs:
    r"""Projected Armijo search over K fixed trial steps, unrolled as straight-line code.

    Given the direction :math:`d` (the incoming updates) at :math:`x` (``params``) with
    value :math:`f(x)` and gradient :math:`g`, evaluates for every trial step :math:`t_k`

    .. math::

      x_k = P(x + t_k d), \qquad
      f(x_k) \le f(x) + c_1 \min(0,\; g^\top (x_k - x)),

    and moves to the :math:`x_k` of the largest :math:`t_k` satisfying the condition. If
    none does, it moves to the trial of lowest value, even when that is not below
    :math:`f(x)` (L-BFGS then still learns the curvature along :math:`d`, which rescales
    its next direction; a zero step would teach it nothing). Every trial is evaluated
    whether or not a larger one succeeds: K value-only evaluations per update, each
    cheaper than a value-and-gradient one but not free, so per evaluation and per second
    it fell behind L-BFGS with unit steps (bench/README.md, "Line searches without
    control flow"); :func:`stepwise_armijo` does not.

    Args:
      step_sizes: the trial steps :math:`t_k` (positive; order does not matter).
      c1: the sufficient-decrease constant.
      projection: the feasible set's projection :math:`P`, applied to every trial point.

    Returns:
      A :class:`optax.GradientTransformationExtraArgs` whose ``update`` takes ``params``
      and the extra arguments ``value``, ``grad`` and ``value_fn`` (:math:`f`); its
      updates lead to the point taken.

    References:
      Armijo, `Minimization of functions having Lipschitz continuous first partial
      derivatives <https://doi.org/10.2140/pjm.1966.16.1>`_, 1966.

      Bertsekas, `On the Goldstein-Levitin-Polyak gradient projection method
      <https://doi.org/10.1109/TAC.1976.1101194>`_, 1976.
    """
    steps = tuple(sorted(float(t) for t in step_sizes))  # smallest first
    if not steps or steps[0] <= 0:
        raise ValueError(f"step_sizes must be positive and not empty, not {step_sizes!r}")

    def init_fn(params) -> UnrolledArmijoState:
        del params
        return UnrolledArmijoState(jnp.zeros((), jnp.float32), jnp.full((), jnp.inf, jnp.float32),
                                   jnp.zeros((), bool), jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None, *, value, grad, value_fn, **extra_args):
        del state, extra_args
        if params is None:
            raise ValueError("unrolled_armijo needs params, the point the direction starts from")
        points = [projection(optax.tree.add_scale(params, t, updates)) for t in steps]
        values = [jnp.asarray(value_fn(p), jnp.float32) for p in points]
        ok = [sufficient_decrease(v, value, grad, params, p, c1) for p, v in zip(points, values)]
        trials = [(p, v, jnp.float32(t)) for p, v, t in zip(points, values, steps)]
        taken = trials[0]  # the fallback: the lowest trial (a NaN trial is never lower)
        for trial in trials[1:]:
            taken = optax.tree.where(trial[1] < taken[1], trial, taken)
        for trial, good in zip(trials, ok):  # then the largest step that decreases enough
            taken = optax.tree.where(good, trial, taken)
        point, point_value, t_taken = taken
        new_state = UnrolledArmijoState(t_taken, point_value, jnp.any(jnp.stack(ok)),
                                        jnp.asarray(len(steps), jnp.int32))
        return optax.tree.sub(point, params), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class StepwiseArmijoState(NamedTuple):
    """The last accepted point and the trial step taken from it."""

    anchor: optax.Params  # x_a, the last accepted point
    anchor_value: jax.Array  # f(x_a); inf before the first update
    anchor_grad: optax.Params  # the gradient at x_a
    direction: optax.Params  # d_a, the direction taken from x_a
    step_size: jax.Array  # t of the trial P(x_a + t d_a) the next update judges
    accepted: jax.Array  # whether the last update accepted the point it judged


def stepwise_armijo(c1: float = 1e-4, shrink: float = 0.5, min_step_size: float = 1e-3,
                    projection: Callable = lambda x: x) -> optax.GradientTransformationExtraArgs:
    r"""Projected Armijo backtracking spread over updates: one trial point per update.

    Each update judges the point it is given, :math:`x = P(x_a + t d_a)`, with the value
    and gradient there (``value``, ``grad``: what the optimisation step evaluates anyway):

    .. math::

      f(x) \le f(x_a) + c_1 \min(0,\; g_a^\top (x - x_a)).

    If it holds (or :math:`t \le` ``min_step_size``, so that a direction that is not a
    descent direction cannot stall the run; or at the first update) :math:`x` becomes the
    anchor and the next point is :math:`P(x + d)` with the incoming direction :math:`d`,
    a unit step. If not, the next point is :math:`P(x_a + \beta t d_a)`, :math:`\beta` =
    ``shrink``: the backtracking step of Armijo's rule, taken one update later. When unit
    steps are accepted (most L-BFGS steps) this is L-BFGS with a unit step, and costs
    exactly what it costs: no evaluation of its own.

    Unlike a search inside one update, a rejected trial is an iterate of the run: its
    value shows in the step's loss (the best iterate is kept apart), and the L-BFGS memory
    records the secant pair through it, as through every evaluated point.

    Args:
      c1: the sufficient-decrease constant.
      shrink: the backtracking factor :math:`\beta` in (0, 1).
      min_step_size: the step below which a trial is accepted whatever its value.
      projection: the feasible set's projection :math:`P`, applied to every trial point.

    Returns:
      A :class:`optax.GradientTransformationExtraArgs` whose ``update`` takes ``params``
      and the extra arguments ``value`` and ``grad`` at ``params``.

    References:
      Armijo, `Minimization of functions having Lipschitz continuous first partial
      derivatives <https://doi.org/10.2140/pjm.1966.16.1>`_, 1966.

      Bertsekas, `On the Goldstein-Levitin-Polyak gradient projection method
      <https://doi.org/10.1109/TAC.1976.1101194>`_, 1976.
    """
    if not 0.0 < shrink < 1.0:
        raise ValueError(f"shrink must be in (0, 1), not {shrink}")

    def init_fn(params) -> StepwiseArmijoState:
        zeros = optax.tree.zeros_like(params)
        return StepwiseArmijoState(zeros, jnp.full((), jnp.inf, jnp.float32), zeros, zeros,
                                   jnp.ones((), jnp.float32), jnp.zeros((), bool))

    def update_fn(updates, state, params=None, *, value, grad, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("stepwise_armijo needs params, the point to judge")
        first = jnp.isinf(state.anchor_value)
        accept = (first | (state.step_size <= min_step_size)
                  | sufficient_decrease(value, state.anchor_value, state.anchor_grad, state.anchor, params, c1))
        judged = (params, jnp.asarray(value, jnp.float32), grad, updates)
        kept = (state.anchor, state.anchor_value, state.anchor_grad, state.direction)
        anchor, anchor_value, anchor_grad, direction = optax.tree.where(accept, judged, kept)
        step_size = jnp.where(accept, 1.0, shrink * state.step_size).astype(jnp.float32)
        new_state = StepwiseArmijoState(anchor, anchor_value, anchor_grad, direction, step_size, accept)
        point = projection(optax.tree.add_scale(anchor, step_size, direction))
        return optax.tree.sub(point, params), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
