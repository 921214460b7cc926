"""The Flax VGG: named taps, truncation, pooling, size checks, and parity with PyTorch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.vgg import BLOCKS, layer_names
from nst_jax.errors import ImageError
from nst_jax.vgg import VGG, feature_shapes, min_image_side, normalize, param_shapes
from nst_jax.weights import VGGWeights


pytestmark = pytest.mark.usefixtures("strict_promotion")

def variables(params):
    return VGGWeights("x", "torchvision", params).variables()


def test_layer_names_follow_the_vgg_paper():
    names = layer_names("vgg19")
    assert names[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert names[-1] == "pool5" and "conv5_4" in names and len(names) == 16 * 2 + 5
    assert "conv5_4" not in layer_names("vgg16") and len(layer_names("vgg16")) == 13 * 2 + 5


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_param_shapes_are_the_models_own(arch):
    shapes = param_shapes(arch)
    if arch == "vgg19":
        assert shapes["conv1_1.kernel"] == (3, 3, 3, 64) and shapes["conv5_4.bias"] == (512,)
    assert len(shapes) == 2 * sum(BLOCKS[arch])
    declared = jax.eval_shape(VGG(arch=arch).init, jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    assert shapes == {f"{layer}.{kind}": tuple(leaf.shape)
                      for layer, sub in declared["params"].items() for kind, leaf in sub.items()}


def test_returns_exactly_the_taps_asked_and_stops_at_the_deepest(vgg16_params):
    model = VGG(arch="vgg16", taps=("relu1_1", "pool2"))
    shallow = {k: v for k, v in vgg16_params.items() if k.startswith(("conv1", "conv2"))}
    out = model.apply(variables(shallow), jnp.ones((20, 16, 3)))  # no deeper params needed
    assert set(out) == {"relu1_1", "pool2"}
    assert out["relu1_1"].shape == (20, 16, 64) and out["pool2"].shape == (5, 4, 128)
    assert feature_shapes("vgg16", 20, 16, ("pool2",))["pool2"].shape == (5, 4, 128)


def test_batched_input_matches_single(vgg16_params):
    model = VGG(arch="vgg16", taps=("relu3_1",))
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    batched = model.apply(variables(vgg16_params), x)["relu3_1"]
    single = model.apply(variables(vgg16_params), x[1])["relu3_1"]
    np.testing.assert_allclose(batched[1], single, rtol=1e-5, atol=1e-5)


def test_avg_pooling_is_a_switch(vgg16_params):
    x = jax.random.uniform(jax.random.key(1), (8, 8, 3))
    mx = VGG(arch="vgg16", taps=("pool1",)).apply(variables(vgg16_params), x)["pool1"]
    av = VGG(arch="vgg16", taps=("pool1",), pooling="avg").apply(variables(vgg16_params), x)["pool1"]
    relu = VGG(arch="vgg16", taps=("relu1_2",)).apply(variables(vgg16_params), x)["relu1_2"]
    np.testing.assert_allclose(av[0, 0], relu[:2, :2].mean(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(mx[0, 0], relu[:2, :2].max(axis=(0, 1)), rtol=1e-6)


def test_too_small_image_names_the_minimum(vgg16_params):
    assert min_image_side("vgg19", ("relu1_1", "relu5_1")) == 16
    assert min_image_side("vgg19", ("pool5",)) == 32
    with pytest.raises(ImageError, match="relu5_1 needs at least 16 px"):
        VGG(arch="vgg16", taps=("relu5_1",)).apply(variables(vgg16_params), jnp.ones((15, 40, 3)))


def test_pixel_spaces():
    x = jnp.asarray([[[0.485, 0.456, 0.406]]], jnp.float32)
    np.testing.assert_allclose(normalize(x, "torchvision"), 0.0, atol=1e-6)
    caffe = normalize(jnp.asarray([[[1.0, 0.0, 0.5]]], jnp.float32), "caffe")
    np.testing.assert_allclose(caffe[0, 0], [255 - 123.68, -116.779, 127.5 - 103.939], rtol=1e-5)


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_parity_with_pytorch_sequential(arch, vgg16_params, vgg19_params):
    """Same state_dict in a plain nn.Sequential VGG: activations agree to rtol 1e-4."""
    torch = pytest.importorskip("torch", reason="parity needs torch (pip install -e '.[dev]')")
    from test_weights import torchvision_state_dict

    params = {"vgg16": vgg16_params, "vgg19": vgg19_params}[arch]
    seq, index_of = [], {}
    c_in = 3
    for name in layer_names(arch):
        if name.startswith("conv"):
            c_out = params[f"{name}.bias"].shape[0]
            seq.append(torch.nn.Conv2d(c_in, c_out, 3, padding=1))
            c_in = c_out
        elif name.startswith("relu"):
            seq.append(torch.nn.ReLU())
        else:
            seq.append(torch.nn.MaxPool2d(2, 2))
        index_of[name] = len(seq) - 1
    features = torch.nn.Sequential(*seq).eval()
    sd = {k[len("features."):]: v for k, v in torchvision_state_dict(params, arch).items()
          if k.startswith("features.")}
    features.load_state_dict(sd)

    image = np.random.default_rng(2).uniform(size=(48, 40, 3)).astype(np.float32)
    taps = ("conv1_1", "relu2_2", "relu3_1", "relu4_2", "relu5_1", "pool5")
    ours = VGG(arch=arch, taps=taps).apply(variables(params), jnp.asarray(image))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(((image - mean) / std).astype(np.float32).transpose(2, 0, 1)[None])
    torch.set_num_threads(1)
    with torch.no_grad():
        for i, module in enumerate(features):
            x = module(x)
            for name in taps:
                if index_of[name] == i:
                    ref = x[0].numpy().transpose(1, 2, 0)
                    scale = float(np.abs(ref).max())
                    np.testing.assert_allclose(np.asarray(ours[name]), ref, rtol=1e-4,
                                               atol=1e-4 * scale, err_msg=name)



@pytest.mark.slow
def test_remat_gives_the_same_features_and_gradient(vgg16_params):
    taps = ("relu1_1", "relu3_1", "relu4_2")
    image = jax.random.uniform(jax.random.key(1), (36, 28, 3))

    def loss(model, x):
        out = model.apply(variables(vgg16_params), x)
        return sum(jnp.sum(out[t] ** 2) for t in taps)

    plain, remat = VGG(arch="vgg16", taps=taps), VGG(arch="vgg16", taps=taps, remat=True)
    g_plain = jax.jit(jax.grad(lambda x: loss(plain, x)))(image)
    g_remat = jax.jit(jax.grad(lambda x: loss(remat, x)))(image)
    np.testing.assert_allclose(g_remat, g_plain, rtol=1e-6, atol=1e-6 * float(jnp.abs(g_plain).max()))
    # the backward pass recomputes each block's forward: 9 more convolutions to relu4_2
    count = {m.remat: jax.jit(jax.grad(lambda x: loss(m, x))).lower(image).as_text().count("convolution")
             for m in (plain, remat)}
    assert count[True] == count[False] + 9
