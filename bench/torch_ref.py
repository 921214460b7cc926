"""The PyTorch side of the benchmarks: the same work as nst-jax, from the same weights.

Two references, both computing the losses exactly as ``nst_jax.losses`` does (1/2 sum of
squares for content; 1/(4 N^2 M^2) for style, or the tutorial's N^2 (N M)^2 with
``style_norm="mean"``; the squared total variation times ``tv_weight``), so their loss
values can be checked against ours before anything is timed:

- ``TutorialNST``: the structure of the official PyTorch neural-style tutorial and of
  Gatys et al.'s notebook: loss modules spliced into an ``nn.Sequential`` after the chosen
  layers, the network cut after the last one, ``torch.optim.LBFGS`` with a closure that
  clamps the image, or Adam.
- ``FastNST``: the fastest honest PyTorch we could write: a plain function over conv
  weights (no module bookkeeping), truncated at the deepest tap, frozen weights,
  channels_last, optional ``torch.compile`` and bf16 autocast on GPU.

Weights come from our canonical safetensors (HWIO -> OIHW); pixel space handled the same way.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nst_jax.vgg import PIXEL_SPACES, layer_names


def torch_convs(weights) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{conv name: (OIHW weight, bias)}`` from canonical HWIO params."""
    convs = {}
    for key, value in weights.params.items():
        name, kind = key.split(".")
        w, b = convs.get(name, (None, None))
        if kind == "kernel":
            w = torch.from_numpy(np.ascontiguousarray(value.transpose(3, 2, 0, 1)))
        else:
            b = torch.from_numpy(np.ascontiguousarray(value))
        convs[name] = (w, b)
    return convs


def normalizer(pixel_space: str, device) -> tuple[float, torch.Tensor, torch.Tensor]:
    scale, mean, std = PIXEL_SPACES[pixel_space]
    as_t = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1)  # noqa: E731
    return scale, as_t(mean), as_t(std)


def gram(f: torch.Tensor) -> torch.Tensor:
    c = f.shape[1]
    flat = f.reshape(c, -1)
    return flat @ flat.t()


def style_norm(f: torch.Tensor, kind: str = "paper") -> float:
    _, c, h, w = f.shape
    return (2.0 * h * w * c) ** 2 if kind == "paper" else float(c) ** 2 * (c * h * w) ** 2


def style_target(style_feature: torch.Tensor, output_feature: torch.Tensor) -> torch.Tensor:
    """The style Gram scaled to the output's number of positions (as nst_jax.inputs does)."""
    return gram(style_feature) * (output_feature.shape[2] * output_feature.shape[3]) / (
        style_feature.shape[2] * style_feature.shape[3])


def tv(x: torch.Tensor) -> torch.Tensor:
    """Squared total variation of an NCHW image."""
    return torch.sum((x[:, :, 1:] - x[:, :, :-1]) ** 2) + torch.sum((x[..., 1:] - x[..., :-1]) ** 2)


# ---------------------------------------------------------------- tutorial style


class ContentLoss(nn.Module):
    def __init__(self, target, weight):
        super().__init__()
        self.target, self.weight, self.loss = target.detach(), weight, 0.0

    def forward(self, x):
        self.loss = self.weight * 0.5 * torch.sum((x - self.target) ** 2)
        return x


class StyleLoss(nn.Module):
    def __init__(self, target, weight, norm):
        super().__init__()
        self.target, self.weight, self.norm, self.loss = target.detach(), weight, norm, 0.0

    def forward(self, x):
        self.loss = self.weight * torch.sum((gram(x) - self.target) ** 2) / style_norm(x, self.norm)
        return x


class Normalization(nn.Module):
    def __init__(self, pixel_space, device):
        super().__init__()
        self.scale, self.mean, self.std = normalizer(pixel_space, device)

    def forward(self, x):
        return (x * self.scale - self.mean) / self.std


class TutorialNST:
    """Loss modules spliced into an nn.Sequential, as the PyTorch tutorial builds it."""

    def __init__(self, weights, config, content, style, device="cpu"):
        self.config, self.device = config, device
        convs = torch_convs(weights)
        taps = config.content_layers + config.style_layers
        last = max(layer_names(weights.arch).index(t) for t in taps)
        modules = [("normalize", Normalization(weights.pixel_space, device))]
        for name in layer_names(weights.arch)[: last + 1]:
            if name.startswith("conv"):
                w, b = convs[name]
                module = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
                module.weight.data.copy_(w)
                module.bias.data.copy_(b)
            elif name.startswith("relu"):
                module = nn.ReLU(inplace=False)
            else:
                module = nn.MaxPool2d(2, 2) if config.pooling == "max" else nn.AvgPool2d(2, 2)
            modules.append((name, module.to(device)))
        # Targets first (content and style images may differ in size), then splice in the losses.
        c_feats, s_feats = self.run(modules, self.to_tensor(content)), self.run(modules, self.to_tensor(style))
        self.content_losses, self.style_losses = [], []
        model = nn.Sequential()
        for name, module in modules:
            model.add_module(name, module)
            if name in config.content_layers:
                i = config.content_layers.index(name)
                loss = ContentLoss(c_feats[name], config.content_weight * config.content_layer_weights[i])
                model.add_module(f"content_loss_{name}", loss)
                self.content_losses.append(loss)
            if name in config.style_layers:
                i = config.style_layers.index(name)
                loss = StyleLoss(style_target(s_feats[name], c_feats[name]),
                                 config.style_weight * config.style_layer_weights[i], config.style_norm)
                model.add_module(f"style_loss_{name}", loss)
                self.style_losses.append(loss)
        self.model = model.eval().requires_grad_(False)

    def to_tensor(self, image):
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(self.device)

    @staticmethod
    @torch.no_grad()
    def run(modules, x):
        out = {}
        for name, module in modules:
            x = out[name] = module(x)
        return out

    def loss(self, x):
        self.model(x)
        total = sum(l.loss for l in self.content_losses) + sum(l.loss for l in self.style_losses)
        return total + self.config.tv_weight * tv(x) if self.config.tv_weight else total


# ---------------------------------------------------------------- optimised


class FastNST:
    """Functional VGG over frozen conv weights, truncated, channels_last."""

    def __init__(self, weights, config, content, style, device="cpu", compile=False, bf16=False):
        self.config, self.device, self.bf16 = config, device, bf16
        self.names = layer_names(weights.arch)
        taps = config.content_layers + config.style_layers
        self.last = max(self.names.index(t) for t in taps)
        fmt = torch.channels_last
        self.convs = {k: (w.to(device).contiguous(memory_format=fmt), b.to(device))
                      for k, (w, b) in torch_convs(weights).items()}
        self.scale, self.mean, self.std = normalizer(weights.pixel_space, device)
        with torch.no_grad():
            cf, sf = self.features(self.to_tensor(content)), self.features(self.to_tensor(style))
            self.content_targets = [cf[n] for n in config.content_layers]
            self.style_targets = [style_target(sf[n], cf[n]) for n in config.style_layers]
        self.loss = torch.compile(self._loss) if compile else self._loss

    def to_tensor(self, image):
        t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(self.device)
        return t.contiguous(memory_format=torch.channels_last)

    def features(self, x):
        x = (x * self.scale - self.mean) / self.std
        out = {}
        wanted = set(self.config.content_layers + self.config.style_layers)
        for name in self.names[: self.last + 1]:
            if name.startswith("conv"):
                x = F.conv2d(x, *self.convs[name], padding=1)
            elif name.startswith("relu"):
                x = F.relu(x)
            else:
                x = F.max_pool2d(x, 2) if self.config.pooling == "max" else F.avg_pool2d(x, 2)
            if name in wanted:
                out[name] = x
        return out

    def _loss(self, x):
        c = self.config
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.bf16):
            feats = self.features(x)
        content = sum(w * 0.5 * torch.sum((feats[n].float() - t) ** 2)
                      for n, w, t in zip(c.content_layers, c.content_layer_weights, self.content_targets))
        style = sum(w * torch.sum((gram(feats[n].float()) - t) ** 2) / style_norm(feats[n], c.style_norm)
                    for n, w, t in zip(c.style_layers, c.style_layer_weights, self.style_targets))
        total = c.content_weight * content + c.style_weight * style
        return total + c.tv_weight * tv(x) if c.tv_weight else total

