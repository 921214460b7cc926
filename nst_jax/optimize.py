"""Optimisation of the image: optimizer by name, the single jitted step, ``stylize()``.

The image lives in RGB [0, 1]. Optimizers without a line search (Adam, SGD, ...,
``lbfgs-fixed``) are projected: after each update the image is clipped to [0, 1], so every
iterate is a valid picture (the PyTorch tutorial clamps the same way). ``lbfgs`` with its
zoom line search is left unconstrained (clipping between its trial points would break
the line search's conditions, as in Gatys et al.'s own code) and the result is clipped
once at the end.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .config import OPTIMIZER_DEFAULT_LR, StyleConfig, layer_names
from .errors import NstError
from .image import load_image, resize, scaled_shape
from .losses import LossTerms, LossWeights, Targets, gram, loss_terms, total_loss
from .vgg import VGG, activation_bytes, check_image_size
from .weights import VGGWeights, load_weights


class StepState(NamedTuple):
    """Everything that changes from step to step."""

    image: jax.Array
    opt_state: optax.OptState
    best_image: jax.Array  # lowest-loss iterate evaluated so far
    best_loss: jax.Array


class StepMetrics(NamedTuple):
    loss: jax.Array  # J at the image the step started from
    terms: LossTerms  # NaN where not recorded (L-BFGS between log steps)
    evals: jax.Array  # loss/gradient evaluations this step


class HistoryRow(NamedTuple):
    step: int
    total: float
    content: float
    style: float
    tv: float


@dataclass
class Result:
    """What a run produced. ``image`` is the last iterate, ``best_image`` the lowest-loss one."""

    image: np.ndarray
    best_image: np.ndarray
    best_loss: float
    history: list[HistoryRow]
    steps: int
    function_evals: int
    stopped: str  # "done", "nan" (loss became NaN/inf) or "interrupted"
    seconds: float
    compile_seconds: float
    config: StyleConfig = field(repr=False)


def make_optimizer(name: str, learning_rate: float | None = None):
    """An Optax optimizer by name: ``"adam"``, ``"lbfgs"`` or any ``optax.<name>`` factory."""
    key = name.lower().replace("-", "_")
    if key == "lbfgs":
        return optax.lbfgs(learning_rate=learning_rate)
    if key == "lbfgs_fixed":
        # L-BFGS directions with a unit step and no line search (torch.optim.LBFGS's
        # default, as the PyTorch tutorial runs it): one evaluation per step, all at the
        # top level of the jitted step (see bench/README.md for why that matters on CPU).
        return optax.lbfgs(learning_rate=learning_rate or 1.0, linesearch=None)
    factory = getattr(optax, key, None)
    if not callable(factory) or "learning_rate" not in inspect.signature(factory).parameters:
        raise NstError(f"unknown optimizer {name!r}: use adam, lbfgs, lbfgs-fixed, or any optax optimizer "
                       "taking a learning_rate (sgd, adamw, rmsprop, lion, ...)")
    if learning_rate is None:
        learning_rate = OPTIMIZER_DEFAULT_LR.get(key)
        if learning_rate is None:
            raise NstError(f"optimizer {name!r} needs a learning rate (--lr)")
    return factory(learning_rate=learning_rate)


def uses_linesearch(name: str) -> bool:
    return name.lower() == "lbfgs"


def build_model(weights: VGGWeights, config: StyleConfig) -> VGG:
    """The VGG truncated at the deepest content/style tap the config asks for."""
    taps = tuple(dict.fromkeys(config.content_layers + config.style_layers))
    unknown = [t for t in taps if t not in layer_names(weights.arch)]
    if unknown:
        raise NstError(f"unknown layer {', '.join(unknown)} for {weights.arch}; layers are named "
                       "conv1_1, relu1_1, ..., pool5 (e.g. relu4_2)")
    return VGG(arch=weights.arch, taps=taps, pooling=config.pooling,
               pixel_space=weights.pixel_space)


def loss_weights(config: StyleConfig) -> LossWeights:
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return LossWeights(f32(config.content_weight), f32(config.style_weight), f32(config.tv_weight),
                       f32(config.content_layer_weights), f32(config.style_layer_weights))


def compute_targets(model: VGG, variables, content: jax.Array, style: jax.Array,
                    config: StyleConfig) -> Targets:
    """Content features and style Grams, computed once, outside the step."""
    apply = jax.jit(model.apply)
    content_feats, style_feats = apply(variables, content), apply(variables, style)
    return Targets(tuple(content_feats[n] for n in config.content_layers),
                   tuple(gram(style_feats[n]) for n in config.style_layers))


def make_step(model: VGG, optimizer, config: StyleConfig) -> Callable:
    """The pure step ``(state, variables, targets, weights, i) -> (state, metrics)``.

    One call = loss and gradient over the image, optimizer update, apply (and projection
    to [0, 1] for first-order optimizers). Wrap it in ``jax.jit`` (one region per step)
    and, for sweeps, in ``jax.vmap`` over ``state`` and ``weights``. ``i`` is the step
    index as a traced int32, so it never recompiles; L-BFGS uses it to report the loss
    terms on log steps (one extra forward pass) and to know its first step.
    """
    layers = (config.content_layers, config.style_layers)
    linesearch = uses_linesearch(config.optimizer)

    def step(state: StepState, variables, targets: Targets, weights: LossWeights, i):
        def terms_fn(image):
            terms = loss_terms(model.apply(variables, image), image, targets, layers, weights,
                               config.style_norm)
            return total_loss(terms, weights), terms

        def value_fn(image):
            return terms_fn(image)[0]

        if linesearch:
            # The zoom line search leaves value and gradient at the accepted point in its
            # state; reuse them. Unlike optax.value_and_grad_from_state, branch on the step
            # index, which is not batched: under vmap its per-cell lax.cond would become a
            # select and pay a full extra evaluation on every step.
            first = i == 0
            value, grad = jax.lax.cond(
                first, lambda: jax.value_and_grad(value_fn)(state.image),
                lambda: (optax.tree_utils.tree_get(state.opt_state, "value"),
                         optax.tree_utils.tree_get(state.opt_state, "grad")))
            nan = jnp.full((), jnp.nan, jnp.float32)
            record = (i % config.log_every == 0) | (i == config.steps - 1)
            terms = jax.lax.cond(record, lambda: terms_fn(state.image)[1],
                                 lambda: LossTerms(nan, nan, nan))
            updates, opt_state = optimizer.update(grad, state.opt_state, state.image, value=value,
                                                  grad=grad, value_fn=value_fn)
            evals = optax.tree_utils.tree_get(opt_state, "num_linesearch_steps") + first.astype(jnp.int32)
            image = optax.apply_updates(state.image, updates)
        else:
            (value, terms), grad = jax.value_and_grad(terms_fn, has_aux=True)(state.image)
            updates, opt_state = optimizer.update(grad, state.opt_state, state.image)
            evals = jnp.ones((), jnp.int32)
            image = jnp.clip(optax.apply_updates(state.image, updates), 0.0, 1.0)
        better = jnp.isfinite(value) & (value < state.best_loss)
        best_image = jnp.where(better, state.image, state.best_image)
        best_loss = jnp.where(better, value, state.best_loss)
        metrics = StepMetrics(value, terms, jnp.asarray(evals, jnp.int32))
        return StepState(image, opt_state, best_image, best_loss), metrics

    return step


def init_state(image: jax.Array, optimizer) -> StepState:
    """The state before the first step. Weak types are made strong: Optax's line search
    starts with weakly typed scalars that its update returns strong, which would make
    the second step compile again."""
    image = jnp.asarray(image, jnp.float32)
    state = StepState(image, optimizer.init(image), image, jnp.asarray(jnp.inf, jnp.float32))
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), state)


def init_image(config: StyleConfig, content: np.ndarray, style: np.ndarray) -> np.ndarray:
    """The start image: content, noise, noisy-content, style, or an image file."""
    noise = np.random.default_rng(config.seed).uniform(size=content.shape).astype(np.float32)
    if config.init == "content":
        return content
    if config.init == "noise":
        return noise
    if config.init == "noisy-content":
        return (1.0 - config.init_noise) * content + config.init_noise * noise
    source = style if config.init == "style" else load_image(config.init)
    return resize(source, *content.shape[:2]).astype(np.float32)


# ---------------------------------------------------------------- memory


def estimate_bytes(arch: str, height: int, width: int, taps: tuple[str, ...], batch: int = 1) -> int:
    """Rough peak memory of one step: activations kept for the backward pass, their
    gradients and XLA's temporaries (a factor measured on CPU, see bench/README.md),
    plus the weights and a handful of image-sized optimizer buffers."""
    names = layer_names(arch)
    deepest = max(taps, key=names.index)
    per_image = 4 * activation_bytes(arch, height, width, deepest) + 16 * height * width * 3 * 4
    return batch * per_image + 160 * 2**20


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


def check_memory(arch: str, height: int, width: int, taps: tuple[str, ...], batch: int = 1) -> None:
    need, have = estimate_bytes(arch, height, width, taps, batch), available_bytes()
    if need > 0.9 * have:
        raise NstError(f"{width}x{height} px needs about {need / 2**30:.1f} GiB for {arch} "
                       f"(batch {batch}) but only {have / 2**30:.1f} GiB are available: "
                       "use a smaller --size")


# ---------------------------------------------------------------- the run


def prepare(content, style, config: StyleConfig, weights: VGGWeights | None = None):
    """Load everything a run needs; return (model, variables, targets, content, style).

    Sizes and memory are checked on the target dimensions before any resizing, so a
    ``--size`` that cannot fit fails at once with the estimate."""
    weights = weights or load_weights(config.weights)
    model = build_model(weights, config)
    images = []
    for source, longest in ((content, config.size), (style, config.size * config.style_scale)):
        raw = load_image(source)
        h, w = scaled_shape(raw.shape[:2], max(1, round(longest)))
        check_image_size(h, w, weights.arch, model.taps)
        if not images:
            check_memory(weights.arch, h, w, model.taps)
        images.append(resize(raw, h, w))
    variables = jax.device_put(weights.variables())
    targets = compute_targets(model, variables, images[0], images[1], config)
    return model, variables, targets, images[0], images[1]


def stylize(content, style, config: StyleConfig = StyleConfig(), *,
            weights: VGGWeights | None = None,
            callback: Callable[[int, StepMetrics, StepState], None] | None = None) -> Result:
    """Run Gatys et al.'s optimisation. ``content``/``style`` are paths or (H, W, 3) arrays.

    Stops early, keeping the best image, on a NaN/inf loss (``stopped="nan"``) or Ctrl-C
    (``stopped="interrupted"``). ``callback(step, metrics, state)`` runs after every step.
    """
    model, variables, targets, content_img, style_img = prepare(content, style, config, weights)
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    state = init_state(init_image(config, content_img, style_img), optimizer)
    step = jax.jit(make_step(model, optimizer, config))
    weights_tree = loss_weights(config)

    history: list[HistoryRow] = []
    evals, stopped, compile_seconds = 0, "done", 0.0
    start = time.perf_counter()
    try:
        for i in range(config.steps):
            t0 = time.perf_counter()
            state, metrics = step(state, variables, targets, weights_tree, jnp.asarray(i, jnp.int32))
            loss = float(metrics.loss)
            if i == 0:
                compile_seconds = time.perf_counter() - t0
            evals += int(metrics.evals)
            history.append(HistoryRow(i, loss, *(float(t) for t in metrics.terms)))
            if callback is not None:
                callback(i, metrics, state)
            if not math.isfinite(loss):
                stopped = "nan"
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
    best_loss = float(state.best_loss)
    return Result(np.clip(np.asarray(state.image), 0, 1), np.clip(np.asarray(state.best_image), 0, 1),
                  best_loss, history, len(history), evals, stopped, time.perf_counter() - start,
                  compile_seconds, config)


def nan_advice(config: StyleConfig) -> str:
    """What to lower when the loss blew up."""
    if config.optimizer.lower().startswith("lbfgs"):
        return "lower --style-weight (L-BFGS steps grow with the loss scale)"
    return f"lower --lr (now {config.learning_rate}) or --style-weight (now {config.style_weight:g})"

