"""Flax VGG16/VGG19 feature extractor (conv part only) returning named taps.

The module holds no weights: params are a plain pytree ``{"params": {"conv1_1":
{"kernel": HWIO, "bias": O}, ...}}`` passed to ``apply``. Input is RGB in [0, 1], NHWC or
HWC; the normalisation of the pixel space the weights were trained in is applied inside:

- ``"torchvision"``: ``(x - mean) / std`` with ImageNet mean/std, RGB.
- ``"caffe"``: ``255 x - mean_rgb`` (Caffe, Keras and MatConvNet weights). Weights that
  expected BGR input have their first layer's input channels flipped at conversion, so
  every converted file takes RGB.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from .config import conv_shapes, layer_names, pools_before
from .errors import ImageError

PIXEL_SPACES = {
    # name: (scale, mean, std) applied as (scale * x - mean) / std, RGB order
    "torchvision": (1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "caffe": (255.0, (123.68, 116.779, 103.939), (1.0, 1.0, 1.0)),
}


def normalize(image: jax.Array, pixel_space: str) -> jax.Array:
    """Map RGB in [0, 1] to the input space of weights trained in ``pixel_space``."""
    if pixel_space not in PIXEL_SPACES:
        raise ValueError(f"unknown pixel space {pixel_space!r}; known: {', '.join(PIXEL_SPACES)}")
    scale, mean, std = PIXEL_SPACES[pixel_space]
    return (image * scale - jnp.asarray(mean, image.dtype)) / jnp.asarray(std, image.dtype)


def pool2x2(x: jax.Array, kind: str = "max") -> jax.Array:
    """2x2 stride-2 max or average pooling over (..., H, W, C); an odd last row or
    column is dropped, as in Caffe/PyTorch's floor mode."""
    *lead, h, w, c = x.shape
    x = x[..., : h // 2 * 2, : w // 2 * 2, :].reshape(*lead, h // 2, 2, w // 2, 2, c)
    return x.max(axis=(-4, -2)) if kind == "max" else x.mean(axis=(-4, -2))


def min_image_side(arch: str, taps: tuple[str, ...]) -> int:
    """Smallest height/width for which every tap in ``taps`` is at least 1x1."""
    return 2 ** max(pools_before(arch, t) for t in taps)


def check_image_size(height: int, width: int, arch: str, taps: tuple[str, ...]) -> None:
    """Raise :class:`ImageError` naming the minimum size if the image is too small."""
    need = min_image_side(arch, taps)
    if height < need or width < need:
        deepest = max(taps, key=lambda t: layer_names(arch).index(t))
        raise ImageError(
            f"image is {width}x{height} px but {deepest} needs at least {need} px on each "
            f"side: use a larger --size or a larger image")


class VGG(nn.Module):
    """VGG conv stack that computes up to the deepest requested tap and returns a dict.

    Attributes:
      arch: ``"vgg16"`` or ``"vgg19"``.
      taps: names to return, e.g. ``("relu1_1", "relu4_2")``; empty means every layer.
      pooling: ``"max"`` (as trained) or ``"avg"`` (Gatys et al.'s recommendation).
      pixel_space: see the module docstring.
    """

    arch: str = "vgg19"
    taps: tuple[str, ...] = ()
    pooling: str = "max"
    pixel_space: str = "torchvision"

    @nn.compact
    def __call__(self, image: jax.Array) -> dict[str, jax.Array]:
        names = layer_names(self.arch)
        taps = self.taps or names
        unknown = [t for t in taps if t not in names]
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown} for {self.arch}")
        check_image_size(image.shape[-3], image.shape[-2], self.arch, tuple(taps))
        last = max(names.index(t) for t in taps)
        widths = {name: c_out for name, (_, c_out) in conv_shapes(self.arch).items()}

        x = normalize(image, self.pixel_space)
        out = {}
        for name in names[: last + 1]:
            if name.startswith("conv"):
                x = nn.Conv(widths[name], (3, 3), padding=1, name=name)(x)
            elif name.startswith("relu"):
                x = nn.relu(x)
            else:
                x = pool2x2(x, self.pooling)
            if name in taps:
                out[name] = x
        return out


def param_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Flat ``{"conv1_1.kernel": shape, ...}`` of the full model, from ``jax.eval_shape``."""
    model = VGG(arch=arch)
    variables = jax.eval_shape(model.init, jax.random.key(0),
                               jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    return {f"{layer}.{kind}": tuple(leaf.shape)
            for layer, sub in variables["params"].items() for kind, leaf in sub.items()}


def feature_shapes(arch: str, height: int, width: int, taps: tuple[str, ...] = ()) -> dict:
    """Shapes of the taps for an HxW image, without computing anything."""
    model = VGG(arch=arch, taps=taps)
    params = {"params": {name: {"kernel": jax.ShapeDtypeStruct((3, 3, i, o), jnp.float32),
                                "bias": jax.ShapeDtypeStruct((o,), jnp.float32)}
                         for name, (i, o) in conv_shapes(arch).items()}}
    image = jax.ShapeDtypeStruct((height, width, 3), jnp.float32)
    return jax.eval_shape(model.apply, params, image)


def activation_bytes(arch: str, height: int, width: int, deepest: str) -> int:
    """Bytes of float32 activations the forward pass produces up to ``deepest``."""
    names = layer_names(arch)
    total, h, w, c = 0, height, width, 3
    widths = {name: c_out for name, (_, c_out) in conv_shapes(arch).items()}
    for name in names[: names.index(deepest) + 1]:
        if name.startswith("pool"):
            h, w = h // 2, w // 2
        else:
            c = widths.get(name, c)
        total += h * w * c * 4
    return total

