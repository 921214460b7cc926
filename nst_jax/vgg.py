"""THE layer layout of VGG16/VGG19, and the Flax feature extractor built from it.

Everything that needs to know what the network looks like iterates :func:`layout`: the
model below, weight conversion (torchvision's ``features`` indices), memory estimates,
FLOP counts in the benchmarks and the PyTorch references. Layer names follow the VGG
paper and Gatys et al.: ``conv{block}_{i}``, ``relu{block}_{i}``, ``pool{block}``.

One departure in the *defaults* (see config.py), shared by every serious implementation:
the authors ran Caffe, whose ReLU works in place, so the blob their paper calls
``conv4_2`` holds the ReLU output. Our ``relu4_2`` is that tensor; ``conv4_2`` here is
the pre-activation and can still be asked for by name.

The module holds no weights: params are a plain pytree ``{"params": {"conv1_1":
{"kernel": HWIO, "bias": O}, ...}}`` passed to ``apply``. Input is RGB in [0, 1], NHWC or
HWC; the normalisation of the pixel space the weights were trained in is applied inside:

- ``"torchvision"``: ``(x - mean) / std`` with ImageNet mean/std, RGB.
- ``"caffe"``: ``255 x - mean_rgb`` (Caffe, Keras and MatConvNet weights). Weights that
  expected BGR input have their first layer's input channels flipped at conversion, so
  every converted file takes RGB.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from .conv import COLLECTION, im2col_conv, kernel_transforms, lowering, winograd_conv
from .errors import ImageError, NstError

# Convolutions per block, and the channel width of each block (Simonyan & Zisserman, table 1).
BLOCKS: dict[str, tuple[int, ...]] = {
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
WIDTHS = (64, 128, 256, 512, 512)

PIXEL_SPACES = {
    # name: (scale, mean, std) applied as (scale * x - mean) / std, RGB order
    "torchvision": (1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "caffe": (255.0, (123.68, 116.779, 103.939), (1.0, 1.0, 1.0)),
}


class Layer(NamedTuple):
    """One entry of the layout. ``index`` is the position in forward order, which is
    also the index of the layer in torchvision's ``vgg.features`` Sequential."""

    index: int
    name: str
    kind: str  # "conv", "relu" or "pool"
    c_in: int
    c_out: int
    pools: int  # 2x2 poolings the input has passed at this layer's output


@cache
def layout(arch: str) -> tuple[Layer, ...]:
    """Every layer of ``arch`` in forward order: conv, relu per layer, a pool per block."""
    if arch not in BLOCKS:
        raise NstError(f"unknown architecture {arch!r}; known: {', '.join(BLOCKS)}")
    layers: list[Layer] = []
    c_in = 3
    for block, (n_convs, width) in enumerate(zip(BLOCKS[arch], WIDTHS), start=1):
        for i in range(1, n_convs + 1):
            for kind, c in (("conv", c_in), ("relu", width)):
                layers.append(Layer(len(layers), f"{kind}{block}_{i}", kind, c, width, block - 1))
            c_in = width
        layers.append(Layer(len(layers), f"pool{block}", "pool", width, width, block))
    return tuple(layers)


def layer_names(arch: str) -> tuple[str, ...]:
    """Every tap of ``arch`` in forward order."""
    return tuple(layer.name for layer in layout(arch))


def conv_shapes(arch: str) -> dict[str, tuple[int, int]]:
    """``{conv name: (in_channels, out_channels)}`` in forward order."""
    return {l.name: (l.c_in, l.c_out) for l in layout(arch) if l.kind == "conv"}


def check_layers(arch: str, names) -> tuple[str, ...]:
    """The one validator of layer names: returns them, or raises one error listing the
    unknown ones and how layers are named."""
    known = layer_names(arch)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise NstError(f"unknown layer {', '.join(map(repr, unknown))} for {arch}; layers are "
                       f"named conv1_1, relu1_1, ..., pool5 (e.g. relu4_2)")
    return tuple(names)


def deepest(arch: str, taps) -> Layer:
    """The last layer the network must compute to produce every tap."""
    by_name = {l.name: l for l in layout(arch)}
    return max((by_name[n] for n in check_layers(arch, taps)), key=lambda l: l.index)


def min_image_side(arch: str, taps) -> int:
    """Smallest height/width for which every tap in ``taps`` is at least 1x1."""
    return 2 ** deepest(arch, taps).pools


def check_image_size(height: int, width: int, arch: str, taps, what: str = "image",
                     advice: str = "use a larger size or a larger image") -> None:
    """Raise :class:`ImageError` naming the minimum size if the image is too small
    (``what``: which image it is; ``advice``: what to change)."""
    need = min_image_side(arch, taps)
    if height < need or width < need:
        raise ImageError(
            f"{what} is {width}x{height} px but {deepest(arch, taps).name} needs at least {need} "
            f"px on each side: {advice}")


def layer_sizes(arch: str, height: int, width: int, taps) -> list[tuple[Layer, int, int]]:
    """(layer, output height, output width) of every layer up to the deepest tap."""
    out = []
    for layer in layout(arch)[: deepest(arch, taps).index + 1]:
        if layer.kind == "pool":
            height, width = height // 2, width // 2
        out.append((layer, height, width))
    return out


def activation_bytes(arch: str, height: int, width: int, taps, itemsize: int = 4) -> int:
    """Bytes of the activations the forward pass produces up to the deepest tap."""
    return sum(h * w * l.c_out * itemsize for l, h, w in layer_sizes(arch, height, width, taps))


def forward_flops(arch: str, height: int, width: int, taps) -> int:
    """Multiply-adds x 2 of the forward convolutions up to the deepest tap."""
    return sum(2 * 9 * l.c_in * l.c_out * h * w
               for l, h, w in layer_sizes(arch, height, width, taps) if l.kind == "conv")


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


class ConvParams(nn.Module):
    """Holds one conv layer's kernel (HWIO) and bias under ``params/<name>/``; the
    computation itself is the pure :func:`features`."""

    c_in: int
    c_out: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, self.c_in, self.c_out))
        return kernel, self.param("bias", nn.initializers.zeros_init(), (self.c_out,))


def conv3x3(x: jax.Array, kernel: jax.Array, bias: jax.Array, how: str = "lax",
            transforms: dict | None = None) -> jax.Array:
    """3x3 convolution, stride 1, zero padding 1 ("SAME"), NHWC or HWC input, HWIO kernel,
    computed ``how`` (conv.lowering): ``"winograd"`` with the kernel's ``transforms``,
    ``"im2col"``, or ``"lax"``, XLA's own."""
    x4 = x.reshape((-1,) + x.shape[-3:])
    if how == "winograd":
        y = winograd_conv(x4, transforms["u"], transforms["ut"])
    elif how == "im2col":
        y = im2col_conv(x4, kernel)
    else:
        y = jax.lax.conv_general_dilated(x4, kernel.astype(x.dtype), (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y.reshape(x.shape[:-1] + (kernel.shape[-1],)) + bias.astype(x.dtype)


def features(params: dict, x: jax.Array, layers: tuple[Layer, ...], taps, pooling: str = "max",
             remat: bool = False) -> dict[str, jax.Array]:
    """Run ``layers`` on the normalised image ``x``; return the ``taps`` in float32.

    ``params``: per conv layer ``(kernel, bias, how, transforms)``: how it is computed
    (conv.lowering; :class:`VGG` decides) and, for Winograd, the kernel's transforms.

    ``remat``: wrap each block (its convs, ReLUs and pool) in ``jax.checkpoint``, so the
    backward pass keeps only block outputs and recomputes the inside of one block at a
    time: less memory for about one more forward pass.
    """
    def block(x, group):
        out = {}
        for layer in group:
            if layer.kind == "conv":  # (kernel, bias, how, transforms or None)
                x = conv3x3(x, *params[layer.name])
            elif layer.kind == "relu":
                x = jax.nn.relu(x)
            else:
                x = pool2x2(x, pooling)
            if layer.name in taps:
                out[layer.name] = x.astype(jnp.float32)
        return x, out

    out: dict[str, jax.Array] = {}
    blocks: dict[int, list[Layer]] = {}
    for layer in layers:
        blocks.setdefault(layer.pools - (layer.kind == "pool"), []).append(layer)
    for group in blocks.values():
        run = jax.checkpoint(block, static_argnums=1) if remat else block
        x, taps_out = run(x, tuple(group))
        out.update(taps_out)
    return out


class VGG(nn.Module):
    """VGG conv stack that computes up to the deepest requested tap and returns a dict.

    Attributes:
      arch: ``"vgg16"`` or ``"vgg19"``.
      taps: names to return, e.g. ``("relu1_1", "relu4_2")``; empty means every layer.
      pooling: ``"max"`` (as trained) or ``"avg"`` (Gatys et al.'s recommendation).
      pixel_space: see the module docstring.
      dtype: computation dtype of the convolutions and activations (``"float32"`` or
        ``"bfloat16"``); taps are returned in float32 either way, so Gram matrices and
        losses are always float32.
      remat: rematerialise each block in the backward pass (see :func:`features`).
      conv: ``"lax"`` or ``"winograd"`` (conv.py; resolve ``"auto"`` with conv.resolve
        first): the Winograd layers read their kernel transforms from the variables'
        ``"winograd"`` collection (conv.with_transforms), else compute them in the call.
    """

    arch: str = "vgg19"
    taps: tuple[str, ...] = ()
    pooling: str = "max"
    pixel_space: str = "torchvision"
    dtype: str = "float32"
    remat: bool = False
    conv: str = "lax"

    @nn.compact
    def __call__(self, image: jax.Array) -> dict[str, jax.Array]:
        if self.conv not in ("lax", "winograd"):
            raise ValueError(f"conv must be 'lax' or 'winograd' (conv.resolve turns 'auto' into one), not {self.conv!r}")
        taps = check_layers(self.arch, self.taps or layer_names(self.arch))
        check_image_size(image.shape[-3], image.shape[-2], self.arch, taps)
        layers = layout(self.arch)[: deepest(self.arch, taps).index + 1]
        params = {}
        for l, h, w in layer_sizes(self.arch, image.shape[-3], image.shape[-2], taps):
            if l.kind == "conv":  # how each layer is computed: decided here, at this image's size
                kernel, bias = ConvParams(l.c_in, l.c_out, name=l.name)()
                how, transforms = lowering(h, w, l.c_in, l.c_out, self.conv), None
                if how == "winograd":
                    kept = self.get_variable(COLLECTION, l.name)
                    transforms = kernel_transforms(kernel) if kept is None else kept
                params[l.name] = (kernel, bias, how, transforms)
        x = normalize(image, self.pixel_space).astype(jnp.dtype(self.dtype))
        return features(params, x, layers, frozenset(taps), self.pooling, self.remat)


def param_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Flat ``{"conv1_1.kernel": shape, ...}`` of the full model (HWIO kernels), from the
    layout, as the model declares them (tested against its ``init``)."""
    return {f"{name}.{kind}": shape for name, (c_in, c_out) in conv_shapes(arch).items()
            for kind, shape in (("kernel", (3, 3, c_in, c_out)), ("bias", (c_out,)))}


def feature_shapes(arch: str, height: int, width: int, taps: tuple[str, ...] = ()) -> dict:
    """Shapes of the taps for an HxW image, without computing anything."""
    model = VGG(arch=arch, taps=taps)
    params = {"params": {name: {"kernel": jax.ShapeDtypeStruct((3, 3, i, o), jnp.float32),
                                "bias": jax.ShapeDtypeStruct((o,), jnp.float32)}
                         for name, (i, o) in conv_shapes(arch).items()}}
    image = jax.ShapeDtypeStruct((height, width, 3), jnp.float32)
    return jax.eval_shape(model.apply, params, image)
