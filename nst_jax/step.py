"""One optimisation step, built from (objective, optimizer, projection); the optimizers.

The step is a pure function ``step(state, problem, record) -> (state, metrics)``: one
jit region holding the loss, its gradient, the optimizer update and the projection.
Optimizers differ only in where the value and gradient at the current image come from:
first-order ones, and L-BFGS with the line searches of linesearch.py, differentiate the
objective there; L-BFGS with Optax's zoom line search reuses the value and gradient that
search already computed at the accepted point (the state is primed with them by
:func:`init_state`, so there is no first-step branch).

The box constraint x in [0, 1] is :func:`box`, applied to every iterate of optimizers
that take a step of their own choosing. Optax's zoom line search is left unconstrained:
projecting between its trial points would break its sufficient-decrease conditions (as in
Gatys et al.'s own code); the driver clips its result once at the end. The line searches
of linesearch.py project every trial point and test the projected condition instead.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .errors import NstError
from .linesearch import stepwise_armijo, unrolled_armijo
from .losses import LossTerms
from .objective import Objective, Problem
from .precondition import preconditioned

# Learning rates in [0, 1] pixel units where the optimizer has none of its own.
# Adam: 0.02 moves a pixel at most ~0.02 per step, enough to leave the content start
# within a few hundred steps without the overshoot that 0.05+ shows.
DEFAULT_LR = {"adam": 0.02}
# Trial steps of lbfgs-armijo along the L-BFGS direction (K = 2: fewer evaluations per
# step beat more candidates, measured in bench/README.md).
ARMIJO_STEPS = (1.0, 0.25)


class Optimizer(NamedTuple):
    """An Optax transformation and how the step must drive it."""

    name: str
    tx: optax.GradientTransformationExtraArgs
    linesearch: bool  # value and gradient come from the line search's state
    projection: Callable[[jax.Array], jax.Array]


def box(image: jax.Array) -> jax.Array:
    """The projection onto the valid pictures, [0, 1] per channel."""
    return optax.projections.projection_box(image, 0.0, 1.0)


def unconstrained(image: jax.Array) -> jax.Array:
    return image


def lbfgs(learning_rate: float | None, linesearch=None,
          precondition: float = 0.0) -> optax.GradientTransformationExtraArgs:
    """``optax.lbfgs``'s chain (its direction, the step scale, the line search), the
    direction preconditioned with the low-pass initial curvature of precondition.py
    (corner frequency ``precondition``; 0: optax.lbfgs itself)."""
    scaling = optax.scale(-1.0) if learning_rate is None else optax.scale_by_learning_rate(learning_rate)
    return optax.chain(preconditioned(optax.scale_by_lbfgs(), precondition), scaling,
                       optax.identity() if linesearch is None else linesearch)


def optimizer_named(name: str, learning_rate: float | None = None, precondition: float = 0.0) -> Optimizer:
    """An optimizer by name, as :func:`make_optimizer` builds a config's: ``"adam"``,
    ``"lbfgs"``, ``"lbfgs-fixed"``, ``"lbfgs-backtrack"``, ``"lbfgs-armijo"`` or any optax
    factory taking a ``learning_rate`` (which must then be given). ``precondition``: the
    L-BFGS optimizers' corner frequency (config.precondition; 0: plain L-BFGS); the others
    ignore it."""
    key = str(name).lower().replace("-", "_")
    if key == "lbfgs":
        return Optimizer("lbfgs", lbfgs(learning_rate, optax.scale_by_zoom_linesearch(
            max_linesearch_steps=20, initial_guess_strategy="one"), precondition), True, unconstrained)
    if key == "lbfgs_fixed":
        # L-BFGS directions with a unit step and no line search (torch.optim.LBFGS's
        # default, as the PyTorch tutorial runs it): one evaluation per step, all at the
        # top level of the jitted step (see bench/README.md for why that matters on CPU).
        lr = 1.0 if learning_rate is None else learning_rate
        return Optimizer("lbfgs-fixed", lbfgs(lr, None, precondition), False, box)
    if key in ("lbfgs_backtrack", "lbfgs_armijo"):
        # L-BFGS directions with a projected Armijo search that evaluates only at the top
        # level of the step (see linesearch.py): "backtrack" judges each step's own
        # evaluation and steps back when it fails; "armijo" tries ARMIJO_STEPS within the
        # step, value only. Both project their trial points; the step's box changes nothing.
        lr = 1.0 if learning_rate is None else learning_rate
        search = (stepwise_armijo(projection=box) if key == "lbfgs_backtrack"
                  else unrolled_armijo(ARMIJO_STEPS, projection=box))
        return Optimizer(key.replace("_", "-"), lbfgs(lr, search, precondition), False, box)
    with warnings.catch_warnings():  # optax warns on access to a name it moved (dpsgd...)
        warnings.simplefilter("ignore", DeprecationWarning)
        factory = getattr(optax, key, None) if key.isidentifier() else None
    params = inspect.signature(factory).parameters if callable(factory) else {}
    if "learning_rate" not in params:
        raise NstError(f"unknown optimizer {name!r}: use adam, lbfgs, lbfgs-fixed, lbfgs-backtrack, "
                       "lbfgs-armijo, or an optax optimizer taking a learning rate (sgd, adamw, "
                       "rmsprop, lion, ...)")
    more = [p.name for p in params.values() if p.name != "learning_rate" and p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if more:
        raise NstError(f"optimizer {name!r} needs more than a learning rate ({', '.join(more)}): use adam, "
                       "lbfgs, lbfgs-fixed, lbfgs-backtrack, lbfgs-armijo, or an optax optimizer that takes "
                       "only a learning rate (sgd, adamw, rmsprop, lion, ...)")
    if learning_rate is None:
        if key not in DEFAULT_LR:
            raise NstError(f"optimizer {name!r} needs a learning rate (pixel units, e.g. 0.01)")
        learning_rate = DEFAULT_LR[key]
    with warnings.catch_warnings():  # e.g. noisy_sgd's notice of a future key argument
        warnings.simplefilter("ignore")
        tx = optax.with_extra_args_support(factory(learning_rate=learning_rate))
    return Optimizer(str(name), tx, False, box)


def make_optimizer(config) -> Optimizer:
    """The optimizer a :class:`~nst_jax.config.StyleConfig` names, with its rate and preconditioner."""
    if isinstance(config, str):
        raise TypeError(f"make_optimizer takes a StyleConfig; optimizer_named({config!r}) builds one by name")
    return optimizer_named(config.optimizer, config.learning_rate, config.precondition)


class StepState(NamedTuple):
    """Everything that changes from step to step."""

    image: jax.Array
    opt_state: optax.OptState
    best_image: jax.Array  # lowest-loss iterate evaluated so far
    best_loss: jax.Array
    evals: jax.Array  # loss/gradient evaluations so far (int32)
    average: jax.Array  # exponential moving average of the iterates (not bias-corrected)
    average_weight: jax.Array  # 1 - decay^t: the bias correction of `average`


def averaged(state: StepState) -> jax.Array:
    """The bias-corrected iterate average, (sum_t (1-b) b^(T-t) x_t) / (1 - b^T); the
    current image while no step has been averaged yet."""
    weight = state.average_weight.reshape(state.average_weight.shape + (1, 1, 1))  # batches too
    return jnp.where(weight > 0, state.average / jnp.maximum(weight, jnp.finfo(jnp.float32).tiny),
                     state.image)


class StepMetrics(NamedTuple):
    loss: jax.Array  # J at the image the step started from
    terms: LossTerms  # NaN where not recorded (L-BFGS with a line search, record=False)
    evals: jax.Array  # evaluations this step


def init_state(objective: Objective, optimizer: Optimizer, problem: Problem,
               image: jax.Array) -> StepState:
    """The state before the first step (pure; jit it, and vmap it for a batch).

    A line-search optimizer's state is primed with the value and gradient at ``image``
    (one evaluation, counted). Weak types are made strong: Optax starts with weakly typed
    scalars that its update returns strong, which would compile the second step again.
    """
    image = jnp.asarray(image, jnp.float32)
    opt_state = optimizer.tx.init(image)
    evals = jnp.zeros((), jnp.int32)
    if optimizer.linesearch:
        value, grad = jax.value_and_grad(objective.value, argnums=1)(problem, image)
        opt_state = optax.tree_utils.tree_set(opt_state, value=value, grad=grad)
        evals = evals + 1
    state = StepState(image, opt_state, image, jnp.asarray(jnp.inf, jnp.float32), evals,
                      jnp.zeros_like(image), jnp.zeros((), jnp.float32))
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), state)


def make_step(objective: Objective, optimizer: Optimizer, average: float = 0.0) -> Callable:
    """The pure step ``(state, problem, record) -> (state, metrics)``.

    ``average``: decay b of the iterate average a_t = b a_(t-1) + (1 - b) x_t kept in the
    state beside its bias correction w_t = b w_(t-1) + (1 - b) (see :func:`averaged`).

    ``record`` (a traced bool) asks for the separate loss terms: free for first-order
    optimizers, one extra forward pass for a line-search optimizer. Wrap the step in
    ``jax.jit`` (one region per step, or a ``lax.scan`` of several) and, for sweeps, in
    ``jax.vmap`` over ``state`` and the loss weights.
    """
    nan = jnp.full((), jnp.nan, jnp.float32)

    def step(state: StepState, problem: Problem, record) -> tuple[StepState, StepMetrics]:
        def terms_at(image):
            return objective(problem, image)

        def value_fn(image):
            return objective.value(problem, image)

        if optimizer.linesearch:
            value = optax.tree_utils.tree_get(state.opt_state, "value")
            grad = optax.tree_utils.tree_get(state.opt_state, "grad")
            terms = jax.lax.cond(record, lambda: terms_at(state.image)[1],
                                 lambda: LossTerms(nan, nan, nan))
        else:
            (value, terms), grad = jax.value_and_grad(terms_at, has_aux=True)(state.image)
        updates, opt_state = optimizer.tx.update(grad, state.opt_state, state.image, value=value,
                                                 grad=grad, value_fn=value_fn)
        image = optimizer.projection(optax.apply_updates(state.image, updates))
        # The step's own evaluation (none where the line search supplied it), plus those
        # the optimizer made: its line search's trial points.
        evals = jnp.asarray(optax.tree_utils.tree_get(opt_state, "num_linesearch_steps", 0), jnp.int32)
        evals = evals + (0 if optimizer.linesearch else 1)
        better = jnp.isfinite(value) & (value < state.best_loss)
        best_image = jnp.where(better, state.image, state.best_image)
        best_loss = jnp.where(better, value, state.best_loss)
        new = StepState(image, opt_state, best_image, best_loss, state.evals + evals,
                        average * state.average + (1.0 - average) * image,
                        average * state.average_weight + (1.0 - average))
        return new, StepMetrics(value, terms, evals)

    return step
