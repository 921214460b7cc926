"""How fast is each way of computing VGG's 3x3 convolutions on this machine?

For every distinct conv shape of VGG19 at a given input size, times one conv + ReLU
forward and its input gradient (what a style-transfer step needs: the weights are frozen)
for several lowerings, side by side in one run, median of repeats after warm-up:

- ``lax``: XLA's own convolution (what flax.linen.Conv runs);
- ``shifts``: nine shifted (H W, C_in) x (C_in, C_out) matmuls, summed;
- ``im2col``: one (H W, 9 C_in) x (9 C_in, C_out) matmul over gathered patches;
- ``winograd``: nst_jax.conv's F(4x4, 3x3), kernel transforms computed beforehand (once
  per run, as the library does); the RGB first layer shows "-"; the column "library"
  says how nst_jax computes the layer at this size in its CPU mode (conv.lowering);
- ``torch``: PyTorch's conv2d, channels_last (oneDNN on CPU), for reference.

    python bench/conv_lowering.py --size 256 --out bench/results/conv-lowering-cpu.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nst_jax.conv import kernel_transforms, lowering, winograd_conv  # noqa: E402
from nst_jax.vgg import layer_sizes  # noqa: E402


def conv_lax(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_shifts(x, w):
    h, wd = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(jnp.einsum("nhwc,cd->nhwd", xp[:, i:i + h, j:j + wd], w[i, j]) for i in range(3) for j in range(3))


def conv_im2col(x, w):
    h, wd = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([xp[:, i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=-1)
    return jnp.einsum("nhwk,kd->nhwd", patches, w.reshape(-1, w.shape[-1]))


def conv_winograd(x, w, transforms=None):
    t = transforms or kernel_transforms(w)
    return winograd_conv(x, t["u"], t["ut"])


LOWERINGS = {"lax": conv_lax, "shifts": conv_shifts, "im2col": conv_im2col, "winograd": conv_winograd}


def timed(fn, repeats):
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def jax_case(conv, x, w):
    if conv is conv_winograd:  # the transforms are the step's arguments, not computed in it
        t = jax.jit(kernel_transforms)(w)
        step = jax.jit(jax.value_and_grad(lambda x, t: jnp.sum(jax.nn.relu(conv_winograd(x, w, t)) * 1e-3)))
        return lambda: jax.block_until_ready(step(x, t))

    def loss(x):
        return jnp.sum(jax.nn.relu(conv(x, w)) * 1e-3)
    step = jax.jit(jax.value_and_grad(loss))
    return lambda: jax.block_until_ready(step(x))


def torch_case(x, w):
    import torch

    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).contiguous(
        memory_format=torch.channels_last).requires_grad_(True)
    wt = torch.from_numpy(np.asarray(w).transpose(3, 2, 0, 1).copy()).contiguous(memory_format=torch.channels_last)

    def run():
        xt.grad = None
        y = torch.nn.functional.conv2d(xt, wt, padding=1).relu_().sum() * 1e-3
        y.backward()
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256, help="longest side of the 4:3 input image")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None)
    p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args()
    h, w = args.size * 3 // 4, args.size
    shapes = list(dict.fromkeys((hh, ww, l.c_in, l.c_out) for l, hh, ww in
                                layer_sizes("vgg19", h, w, ("relu5_1",)) if l.kind == "conv"))
    rng = np.random.default_rng(0)
    rows = []
    names = list(LOWERINGS) + (["torch"] if args.torch else [])
    for hh, ww, ci, co in shapes:
        x = jnp.asarray(rng.standard_normal((1, hh, ww, ci)), jnp.float32)
        k = jnp.asarray(rng.standard_normal((3, 3, ci, co)) / np.sqrt(9 * ci), jnp.float32)
        ref = jax.grad(lambda x: jnp.sum(jax.nn.relu(conv_lax(x, k))))(x)
        row = {"shape": (hh, ww, ci, co)}
        for name in names:
            if name == "winograd" and ci == 3:
                row[name], row[f"{name}_err"] = float("inf"), 0.0
                continue
            if name == "torch":
                row[name] = timed(torch_case(x, k), args.repeats)
                continue
            g = jax.grad(lambda x: jnp.sum(jax.nn.relu(LOWERINGS[name](x, k))))(x)
            row[f"{name}_err"] = float(jnp.linalg.norm(g - ref) / jnp.linalg.norm(ref))
            row[name] = timed(jax_case(LOWERINGS[name], x, k), args.repeats)
        rows.append(row)
        print(f"{hh:>4}x{ww:<4} {ci:>3}->{co:<3} " + "  ".join(f"{n} {row[n]:7.2f}" for n in names), flush=True)
    lines = [f"# 3x3 conv + ReLU, forward and input gradient, ms (median of {args.repeats})", "",
             f"{jax.devices()[0].device_kind}; input {w}x{h}; jax {jax.__version__}.", "",
             "| H x W | C_in -> C_out | H W C_in C_out / 2^20 | " + " | ".join(names)
             + " | best | library | max rel. grad error |",
             "|---|---|---|" + "---|" * len(names) + "---|---|---|"]
    for row in rows:
        hh, ww, ci, co = row["shape"]
        best = min(names, key=lambda n: row[n])
        err = max(row[f"{n}_err"] for n in LOWERINGS)
        lines.append(f"| {hh}x{ww} | {ci} -> {co} | {hh * ww * ci * co / 2**20:.0f} | "
                     + " | ".join("-" if row[n] == float("inf") else f"{row[n]:.1f}" for n in names)
                     + f" | {best} | {lowering(hh, ww, ci, co, 'winograd')} | {err:.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
