"""Shared fixtures: fabricated VGG weights in canonical form, and numeric strictness."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# One compilation cache for the session and the processes it starts: tests build the same
# programs again in fresh closures (every CLI run, every resume), and a unit test is
# mostly its compiles. A cache hit is the same executable, so nothing a test checks changes.
_CACHE = tempfile.mkdtemp(prefix="nst-jax-tests-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("NST_JAX_CACHE_DIR", _CACHE)  # the CLI's own cache (nst_jax/cache.py): the same one
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nst_jax.config import ADAM_ON_SUMMED_LOSS, StyleConfig  # noqa: E402
from nst_jax.vgg import conv_shapes  # noqa: E402
from nst_jax.weights import VGGWeights  # noqa: E402

# Tiny random content and style images of different shapes (content 32x28, style 24x32).
_RNG = np.random.default_rng(1234)  # not 0: init="noise" draws from default_rng(seed=0)
CONTENT = _RNG.uniform(size=(32, 28, 3)).astype(np.float32)
STYLE = _RNG.uniform(size=(24, 32, 3)).astype(np.float32)


@pytest.fixture
def strict_promotion():
    """Our own code must not rely on implicit dtype promotion (Optax's Adam does, so the
    optimizer tests cannot use this)."""
    with jax.numpy_dtype_promotion("strict"):
        yield


def random_params(arch: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Canonical HWIO params with He-scaled random values (activations stay O(1))."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, (c_in, c_out) in conv_shapes(arch).items():
        std = np.sqrt(2.0 / (9 * c_in))
        params[f"{name}.kernel"] = (rng.standard_normal((3, 3, c_in, c_out)) * std).astype(np.float32)
        params[f"{name}.bias"] = (rng.standard_normal(c_out) * 0.05).astype(np.float32)
    return params


@pytest.fixture(scope="session")
def vgg19_params() -> dict[str, np.ndarray]:
    return random_params("vgg19", seed=19)


@pytest.fixture(scope="session")
def vgg16_params() -> dict[str, np.ndarray]:
    return random_params("vgg16", seed=16)


@pytest.fixture(scope="session")
def vgg16_weights(vgg16_params) -> VGGWeights:
    return VGGWeights("vgg16", "torchvision", vgg16_params, "test", "random", "")


def tiny(**changes) -> StyleConfig:
    """A configuration small enough for unit tests on a CPU, on
    :data:`~nst_jax.config.ADAM_ON_SUMMED_LOSS` (tests of the defaults themselves use
    ``StyleConfig``). XLA's own convolutions: a unit test is mostly its compile, and the CPU
    mode's im2col layers compile 2-3 s slower at 32 px (tests/test_conv.py covers that mode)."""
    base = dict(ADAM_ON_SUMMED_LOSS, size=32, steps=4, log_every=1, style_layers=("relu1_1", "relu2_1"),
                style_layer_weights=(0.5, 0.5), content_layers=("relu2_1",), conv="lax")
    return StyleConfig(**{**base, **changes})


def made_result(config, images, totals, *, best_losses=1.0, evals=1, stopped="done", steps=None, grid=None):
    """A run.Result as a replaced library call returns it: ``images`` (B, H, W, 3) as both
    the last and the best, ``totals`` the loss at each step ((steps, B); the terms 0)."""
    from nst_jax.run import TERMS, Result

    images = np.asarray(images, np.float32)
    loss = np.asarray(totals, np.float64).reshape(-1, len(images))
    trace = {k: loss.copy() if k == "loss" else np.zeros_like(loss) for k in TERMS}
    cells = np.ones(len(images))
    return Result(images, images, cells * best_losses, trace, cells * evals, len(loss) if steps is None else steps,
                  stopped, 0.1, 0.05, config, grid=grid)
