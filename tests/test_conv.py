"""Winograd F(4x4, 3x3) and im2col convolutions (conv.py): equal to lax.conv, forward and
input gradient, at every VGG layer shape; where they run; what the run's objective gets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.config import StyleConfig
from nst_jax.conv import (AT, BT, G, MIN_WORK, im2col_conv, kernel_transforms, lowering, resolve, uses_winograd,
                          winograd_conv)
from nst_jax.errors import ConfigError
from nst_jax.inputs import prepare
from nst_jax.memory import estimate_bytes, winograd_bytes
from nst_jax.vgg import VGG, conv_shapes, layer_sizes
from nst_jax.weights import VGGWeights
from conftest import tiny


def lax_conv(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_the_transforms_compute_a_1d_correlation_exactly():
    """F(4, 3) in one dimension by hand: A^T [(G g) . (B^T d)] = the 4 outputs of the
    3-tap correlation of the 6 inputs d, in float64 (the matrices, not their rounding)."""
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal(6), rng.standard_normal(3)
    expected = [d[i] * g[0] + d[i + 1] * g[1] + d[i + 2] * g[2] for i in range(4)]
    np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c_in,c_out", sorted(set(conv_shapes("vgg19").values()) - {(3, 64)}))
def test_equals_lax_forward_and_input_gradient_at_every_vgg_layer_shape(c_in, c_out):
    """9x11 px: neither side a multiple of the 4 px tile, so the padded tiles and the zero
    border are both exercised; 1e-4 relative (the observed error is ~1e-6)."""
    rng = np.random.default_rng(c_in + c_out)
    x = jnp.asarray(rng.standard_normal((2, 9, 11, c_in)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, c_in, c_out)) / np.sqrt(9 * c_in), jnp.float32)
    cot = jnp.asarray(rng.standard_normal((2, 9, 11, c_out)), jnp.float32)

    @jax.jit
    def both(x, kernel, cot):
        t = kernel_transforms(kernel)
        y, vjp = jax.vjp(lambda x: winograd_conv(x, t["u"], t["ut"]), x)
        y_ref, vjp_ref = jax.vjp(lambda x: lax_conv(x, kernel), x)
        return y, y_ref, vjp(cot)[0], vjp_ref(cot)[0]
    y, y_ref, dx, dx_ref = both(x, kernel, cot)
    assert rel(y, y_ref) < 1e-4
    assert rel(dx, dx_ref) < 1e-4


@pytest.mark.parametrize("h,w,c_in,c_out", [(2, 4, 512, 512), (1, 1, 256, 512), (1, 5, 64, 128), (3, 2, 3, 64),
                                           (5, 7, 128, 256)])
def test_im2col_equals_lax_forward_and_input_gradient(h, w, c_in, c_out):
    """Narrow inputs, 1-3 px a side, where every tap but the centre reads the zero border."""
    rng = np.random.default_rng(h * w + c_in)
    x = jnp.asarray(rng.standard_normal((2, h, w, c_in)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, c_in, c_out)) / np.sqrt(9 * c_in), jnp.float32)
    cot = jnp.asarray(rng.standard_normal((2, h, w, c_out)), jnp.float32)
    y, vjp = jax.vjp(lambda x: im2col_conv(x, kernel), x)
    y_ref, vjp_ref = jax.vjp(lambda x: lax_conv(x, kernel), x)
    assert rel(y, y_ref) < 1e-5
    assert rel(vjp(cot)[0], vjp_ref(cot)[0]) < 1e-5
    if h * w > 1:  # and it can fail: the kernel read in another order is another convolution
        assert rel(im2col_conv(x, jnp.swapaxes(kernel, 0, 1)), y_ref) > 0.1


@pytest.mark.slow
def test_small_layers_run_as_im2col_in_the_cpu_mode_only():
    assert lowering(2, 4, 512, 512, "winograd") == "im2col"  # conv5_1 of a 64x42 picture
    assert lowering(2, 4096, 512, 512, "winograd") == "im2col" and not uses_winograd(2, 4096, 512, 512)
    assert lowering(11, 16, 512, 512, "winograd") == "im2col"  # conv4_x of a 128x85 picture
    assert lowering(12, 16, 512, 512, "winograd") == "winograd"  # conv5_1 at 256 px
    assert lowering(48, 64, 64, 128, "winograd") == "winograd"
    assert lowering(48, 64, 64, 64, "winograd") == "lax"  # the first block
    assert lowering(2, 4, 512, 512, "lax") == "lax"  # --conv lax: XLA's own everywhere
    variables = VGGWeights("vgg19", "torchvision", {
        f"{n}.{k}": (np.random.default_rng(0).standard_normal((3, 3, i, o)) / np.sqrt(9 * i)).astype(np.float32)
        if k == "kernel" else np.zeros(o, np.float32)
        for n, (i, o) in conv_shapes("vgg19").items() for k in ("kernel", "bias")}).variables()
    x = jnp.asarray(np.random.default_rng(5).uniform(size=(42, 64, 3)), jnp.float32)
    outs = {conv: jax.jit(jax.value_and_grad(lambda x, conv=conv: jnp.sum(
        VGG(arch="vgg19", taps=("relu5_1",), conv=conv).apply(variables, x)["relu5_1"] ** 2)))(x)
        for conv in ("winograd", "lax")}
    (v0, g0), (v1, g1) = outs["lax"], outs["winograd"]
    assert abs(float(v1 - v0)) / float(v0) < 1e-4 and rel(g1, g0) < 1e-4


def test_a_wrong_transform_is_caught():
    """The equality above can fail: the transforms of another kernel differ by O(1)."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((1, 8, 8, 64)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 64, 128)), jnp.float32)
    t = kernel_transforms(jnp.flip(k, 0))
    assert rel(jax.jit(winograd_conv)(x, t["u"], t["ut"]), lax_conv(x, k)) > 0.5


def test_which_layers_run_as_winograd():
    assert not uses_winograd(1024, 1024, 3, 64) and not uses_winograd(1024, 1024, 64, 64)  # the first block
    assert uses_winograd(48, 64, 64, 128)  # conv2_1 at 128 px
    assert not uses_winograd(24, 32, 64, 128)  # conv2_1 at 64 px: below MIN_WORK
    assert uses_winograd(16, 16, 256, 256) and 16 * 16 * 256 * 256 == MIN_WORK
    assert not uses_winograd(11, 4096, 512, 512)  # under MIN_SIDE: im2col
    at_64 = [l for l, h, w in layer_sizes("vgg19", 48, 64, ("relu5_1",))
             if l.kind == "conv" and uses_winograd(h, w, l.c_in, l.c_out)]
    assert at_64 == []  # the unit tests' sizes compile as fast as lax


def test_auto_is_winograd_on_cpu_in_float32_only():
    assert resolve("auto", "float32", "cpu") == "winograd"
    assert resolve("auto", "float32", "gpu") == "lax" and resolve("auto", "bfloat16", "cpu") == "lax"
    assert resolve("lax", "float32", "cpu") == "lax"
    with pytest.raises(ConfigError, match="float32"):
        StyleConfig(conv="winograd", dtype="bfloat16")
    with pytest.raises(ConfigError):
        StyleConfig(conv="fft")


@pytest.mark.slow
def test_the_objective_matches_lax_and_keeps_the_transforms(vgg16_weights):
    """Loss and gradient of the whole objective at 128 px (where four VGG16 layers run as
    Winograd) within 1e-4 of lax's; the transforms are prepared once, in the variables."""
    rng = np.random.default_rng(2)
    content = rng.uniform(size=(96, 128, 3)).astype(np.float32)
    style = rng.uniform(size=(128, 96, 3)).astype(np.float32)
    out = {}
    for conv in ("lax", "winograd"):
        # from noise: at the content image the content term's gradient F - P is a difference
        # of equal features, all rounding, whatever computes them
        config = tiny(size=128, conv=conv, style_layers=("relu1_1", "relu3_1"), init="noise",
                                  content_layers=("relu3_2",))
        run = prepare(content, style, config, vgg16_weights)
        assert run.objective.model.conv == conv and ("winograd" in run.problem.variables) == (conv == "winograd")
        out[conv] = jax.jit(jax.value_and_grad(lambda p, x: run.objective(p, x)[0], argnums=1))(
            run.problem, jnp.asarray(run.start))
    used = [l.name for l, h, w in layer_sizes("vgg16", 96, 128, ("relu3_2",))
            if l.kind == "conv" and uses_winograd(h, w, l.c_in, l.c_out)]
    assert used == ["conv2_1", "conv2_2", "conv3_1", "conv3_2"]
    assert sorted(run.problem.variables["winograd"]) == sorted(used)
    (v0, g0), (v1, g1) = out["lax"], out["winograd"]
    assert abs(float(v1 - v0)) / float(v0) < 1e-4
    assert rel(g1, g0) < 1e-4


@pytest.mark.slow
def test_a_tiled_run_prepares_the_transforms_its_crops_use(vgg16_weights):
    """Tiles run the network on crops, where fewer layers have the work for Winograd than
    on the whole picture: the run keeps the transforms of the crops' layers, those the
    memory plan counted."""
    rng = np.random.default_rng(4)
    content = rng.uniform(size=(96, 128, 3)).astype(np.float32)
    config = tiny(size=128, conv="winograd", tile=32, style_layers=("relu1_1", "relu3_1"),
                              content_layers=("relu3_2",))
    run = prepare(content, content, config, vgg16_weights)
    assert run.plans[-1].count == 12 and run.plans[-1].crop == (64, 64)
    # by hand at 64x64: conv2_2 32*32*128*128 = 2^24 and conv3_2 16*16*256*256 = 2^24 reach
    # MIN_WORK; conv2_1 and conv3_1 (2^23) do, only on the whole 96x128 picture
    assert sorted(run.problem.variables["winograd"]) == ["conv2_2", "conv3_2"]


def test_without_prepared_transforms_the_model_computes_them(vgg16_params):
    variables = VGGWeights("vgg16", "torchvision", vgg16_params).variables()
    x = jnp.asarray(np.random.default_rng(3).uniform(size=(96, 128, 3)), jnp.float32)
    a = jax.jit(VGG(arch="vgg16", taps=("relu2_2",), conv="winograd").apply)(variables, x)["relu2_2"]
    b = jax.jit(VGG(arch="vgg16", taps=("relu2_2",)).apply)(variables, x)["relu2_2"]
    assert rel(a, b) < 1e-4


def test_the_memory_estimate_counts_the_transforms_and_temporaries():
    taps = ("relu4_2", "relu5_1")
    lax = estimate_bytes("vgg19", 384, 512, taps)
    wino = estimate_bytes("vgg19", 384, 512, taps, conv="winograd")
    kernels, temps = winograd_bytes("vgg19", 384, 512, taps)
    # by hand: conv2_2's temporaries, 192x256 px, 128 -> 128 channels, (1.5 + 2.25 + 2.25) x 4 bytes
    assert temps == 192 * 256 * 128 * 6 * 4
    assert wino - lax == kernels + temps
    # 8x each float32 kernel but the first block's (vgg19 up to conv5_1)
    assert kernels == 8 * 4 * 9 * sum(i * o for n, (i, o) in conv_shapes("vgg19").items()
                                      if "conv2_1" <= n <= "conv5_1")


def test_vmapped_gradient_equals_lax():
    """A sweep vmaps the step over its cells: the custom VJP batches like lax.conv."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((3, 1, 8, 12, 64)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 64, 128)) / 24, jnp.float32)
    t = kernel_transforms(kernel)
    scale = jnp.asarray([0.5, 1.0, 2.0], jnp.float32)

    def grads(conv):
        loss = lambda x, s: s * jnp.sum(jnp.square(jax.nn.relu(conv(x))))  # noqa: E731
        return jax.jit(jax.vmap(jax.grad(loss)))(x, scale)
    assert rel(grads(lambda x: winograd_conv(x, t["u"], t["ut"])), grads(lambda x: lax_conv(x, kernel))) < 1e-4
