"""The step: optimizers by name, the projection, L-BFGS priming, recording, tracing once."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CONTENT, STYLE, tiny
from nst_jax.errors import NstError
from nst_jax.inputs import prepare
from nst_jax.run import drive
from nst_jax.step import box, init_state, make_optimizer, make_step, optimizer_named


def setup(weights, **changes):
    config = tiny(**changes)
    run = prepare(CONTENT, STYLE, config, weights)
    opt = optimizer_named(config.optimizer, config.learning_rate)
    state = init_state(run.objective, opt, run.problem, run.start)
    return run, opt, state


@pytest.mark.parametrize("optimizer,k", [("adam", 1), ("lbfgs", 1), ("lbfgs-fixed", 1), ("adam", 3),
                                         ("lbfgs-backtrack", 1), ("lbfgs-armijo", 1), ("lbfgs-armijo", 3)])
@pytest.mark.slow
def test_the_step_is_traced_once(optimizer, k, vgg16_weights):
    run, opt, state = setup(vgg16_weights, optimizer=optimizer)
    chex.clear_trace_counter()
    step = chex.assert_max_traces(make_step(run.objective, opt), n=1)
    compiled = {}
    outcome = drive(step, state, run.problem, steps=2 * k, steps_per_call=k, compiled=compiled)
    outcome = drive(step, outcome.state, run.problem, steps=4 * k, start=2 * k, steps_per_call=k,
                    compiled=compiled)
    assert len(compiled) == 1 and outcome.steps == 4 * k
    assert np.isfinite(outcome.trace.arrays["loss"]).all()


def test_optimizers_by_name_and_their_errors():
    assert optimizer_named("adam").projection is box
    assert optimizer_named("lbfgs").linesearch and not optimizer_named("lbfgs-fixed").linesearch
    for name in ("lbfgs-backtrack", "lbfgs-armijo"):  # they evaluate at the step's image
        assert optimizer_named(name).name == name and not optimizer_named(name).linesearch
    assert optimizer_named("rmsprop", 0.01).name == "rmsprop"
    with pytest.raises(NstError, match="unknown optimizer 'nope'.*adam, lbfgs, lbfgs-fixed"):
        optimizer_named("nope", 0.1)
    with pytest.raises(NstError, match="'sgd' needs a learning rate"):
        optimizer_named("sgd", None)
    config = tiny(optimizer="LBFGS_Backtrack", precondition=0.2)  # the config's name, normalised once
    assert make_optimizer(config).name == "lbfgs-backtrack"
    with pytest.raises(TypeError, match=r"optimizer_named\('adam'\) builds one by name"):
        make_optimizer("adam")


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs-fixed", "sgd", "lbfgs-backtrack", "lbfgs-armijo"])
def test_an_explicit_learning_rate_of_zero_moves_nothing(optimizer, vgg16_weights):
    run, opt, state = setup(vgg16_weights, optimizer=optimizer, learning_rate=0.0)
    new, _ = jax.jit(make_step(run.objective, opt))(state, run.problem, True)
    np.testing.assert_array_equal(new.image, state.image)


def test_box_projection_keeps_every_iterate_a_picture(vgg16_weights):
    run, opt, state = setup(vgg16_weights, optimizer="sgd", learning_rate=1e3, init="noise")
    new, _ = jax.jit(make_step(run.objective, opt))(state, run.problem, True)
    image = np.asarray(new.image)
    assert image.min() == 0.0 and image.max() == 1.0  # pushed hard, clipped at both ends
    assert not np.array_equal(image, np.asarray(state.image))


def test_line_search_state_is_primed_at_the_start(vgg16_weights):
    import optax

    run, opt, state = setup(vgg16_weights, optimizer="lbfgs")
    value, grad = jax.value_and_grad(run.objective.value, argnums=1)(run.problem, jnp.asarray(run.start))
    assert float(optax.tree_utils.tree_get(state.opt_state, "value")) == pytest.approx(float(value), rel=1e-6)
    np.testing.assert_allclose(optax.tree_utils.tree_get(state.opt_state, "grad"), grad, rtol=1e-5, atol=1e-9)
    assert int(state.evals) == 1


def test_line_search_records_terms_only_when_asked(vgg16_weights):
    run, opt, state = setup(vgg16_weights, optimizer="lbfgs")
    step = jax.jit(make_step(run.objective, opt))
    _, quiet = step(state, run.problem, False)
    _, loud = step(state, run.problem, True)
    assert np.isnan(float(quiet.terms.style)) and np.isfinite(float(loud.terms.style))
    assert float(quiet.loss) == float(loud.loss)
    run_adam, opt_adam, state_adam = setup(vgg16_weights)
    _, free = jax.jit(make_step(run_adam.objective, opt_adam))(state_adam, run_adam.problem, False)
    assert np.isfinite(float(free.terms.style))  # first-order: the terms come with the gradient


class Quadratic:
    """J(x) = sum (x - 1)^2, NaN once the image's mean passes 0.5: a run that improves,
    then blows up, so the best image is a real intermediate iterate."""

    def __call__(self, problem, image):
        from nst_jax.losses import LossTerms

        value = jnp.sum((image - 1.0) ** 2)
        value = jnp.where(image.mean() > 0.5, jnp.nan, value)
        return value, LossTerms(value, value, value)

    def value(self, problem, image):
        return self(problem, image)[0]


def test_nan_stops_the_run_and_keeps_the_last_finite_iterate():
    objective, opt = Quadratic(), optimizer_named("sgd", 0.03)  # x: 0, 0.06, ..., 0.48, 0.54
    state = init_state(objective, opt, None, jnp.zeros((4, 4, 3)))
    outcome = drive(make_step(objective, opt), state, None, steps=50)
    losses = outcome.trace.arrays["loss"]
    assert outcome.stopped == "nan" and outcome.steps == len(losses) < 50
    assert np.isnan(losses[-1]) and np.isfinite(losses[:-1]).all()
    assert float(outcome.state.best_loss) == pytest.approx(losses[-2])  # the last finite one
    assert 0.4 < float(outcome.state.best_image.mean()) <= 0.5


def test_an_optimizer_name_in_any_spelling_is_the_same_config():
    """The name is made canonical once, so every part that asks "is this L-BFGS?" (the
    memory plan, resume, the advice) agrees with what make_optimizer builds."""
    import functools

    from nst_jax.config import StyleConfig
    from nst_jax.memory import plan_memory

    for spelling in ("LBFGS_Backtrack", "lbfgs_backtrack", "Lbfgs-Backtrack"):
        config = StyleConfig(optimizer=spelling)
        assert config == StyleConfig(optimizer="lbfgs-backtrack")
    assert StyleConfig(optimizer="ADAM").optimizer == "adam"
    assert StyleConfig(optimizer="sgd").optimizer == "sgd"
    plan = functools.partial(plan_memory, "vgg16", 256, 256, ("relu1_1",), budget=2 ** 40)
    assert plan(optimizer=StyleConfig(optimizer="LBFGS").optimizer).bytes > plan(optimizer="adam").bytes
