"""Throughput of nst-jax versus PyTorch, measured side by side in one run.

    python bench/run.py                       # CPU defaults (256 and 512 px)
    python bench/run.py --sizes 256,512,1024  # what bench/gpu.sh runs on a GPU

Writes bench/results/<machine>.json, <machine>.md and <machine>-*.png. Every timing
warms up first (compile/first-call time reported apart), waits for the device
(block_until_ready / cuda.synchronize) and reports the median. Loss values of the three
implementations are checked to agree (1e-4 relative) before anything is timed.

VGG16 runs on the embedded pretrained weights; VGG19 on He-initialised weights of the
right shapes (no pretrained VGG19 ships with the project; speed does not depend on values).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nst_jax.config import StyleConfig, conv_shapes, layer_names  # noqa: E402
from nst_jax.image import load_image  # noqa: E402
from nst_jax.optimize import init_state, loss_weights, make_optimizer, make_step, prepare  # noqa: E402
from nst_jax.sweep import sweep  # noqa: E402
from nst_jax.weights import VGGWeights, load_embedded  # noqa: E402
from torch_ref import FastNST, TutorialNST  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "nst_jax" / "samples"
GPU = torch.cuda.is_available()
TDEV = "cuda" if GPU else "cpu"


def weights_for(arch: str) -> VGGWeights:
    if arch == "vgg16":
        return load_embedded()
    rng = np.random.default_rng(19)
    params = {}
    for name, (c_in, c_out) in conv_shapes(arch).items():
        params[f"{name}.kernel"] = (rng.standard_normal((3, 3, c_in, c_out)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
        params[f"{name}.bias"] = np.zeros(c_out, np.float32)
    return VGGWeights(arch, "torchvision", params, "random", "he-init", "")


def images(size: int):
    return load_image(SAMPLES / "content.jpg", size), load_image(SAMPLES / "style.jpg", size)


def sync(x=None):
    if x is not None:
        jax.block_until_ready(x)
    if GPU:
        torch.cuda.synchronize()


def reset_peak() -> None:
    if GPU:
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) on Linux
    except OSError:
        pass


def peak_mib(kind: str) -> float:
    if GPU and kind == "torch":
        return torch.cuda.max_memory_allocated() / 2**20
    if GPU and kind == "jax":
        return (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use", 0) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    """(first call seconds, steady-state seconds per call for `repeats` calls)."""
    t0 = time.perf_counter()
    sync(fn())
    first = time.perf_counter() - t0
    sync(fn())  # one more warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - t0)
    return first, times


# ---------------------------------------------------------------- the three implementations


class JaxImpl:
    def __init__(self, weights, config, content, style):
        self.model, self.vars, self.targets, c, s = prepare(content, style, config, weights)
        self.opt = make_optimizer(config.optimizer, config.learning_rate)
        self.step = jax.jit(make_step(self.model, self.opt, config))
        self.start = c
        self.w = loss_weights(config)
        self.config = config
        self.reset()

    def reset(self):
        """Back to the first step, keeping the compiled step."""
        self.state, self.i, self.evals = init_state(self.start, self.opt), 0, 0

    def loss_at(self, image) -> float:
        from nst_jax.losses import loss_terms, total_loss

        layers = (self.config.content_layers, self.config.style_layers)
        feats = self.model.apply(self.vars, jnp.asarray(image))
        terms = loss_terms(feats, jnp.asarray(image), self.targets, layers, self.w, self.config.style_norm)
        return float(total_loss(terms, self.w))

    def __call__(self):
        self.state, metrics = self.step(self.state, self.vars, self.targets, self.w,
                                        jnp.asarray(self.i, jnp.int32))
        self.i += 1
        self.evals += int(metrics.evals)
        return metrics.loss


class TorchImpl:
    """One Adam step (forward, backward, update, clamp) of a torch reference."""

    def __init__(self, ref, content, lr):
        self.ref = ref
        self.x = ref.to_tensor(content).clone().requires_grad_(True)
        self.opt = torch.optim.Adam([self.x], lr=lr)

    def loss_at(self, image) -> float:
        with torch.no_grad():
            return float(self.ref.loss(self.ref.to_tensor(image)))

    def __call__(self):
        self.opt.zero_grad(set_to_none=True)
        loss = self.ref.loss(self.x)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            self.x.clamp_(0, 1)
        return None


def build(name: str, arch: str, size: int, config: StyleConfig, compile_torch=False):
    config = config.replace(size=size)
    w = weights_for(arch)
    c, s = images(size)
    if name == "jax":
        return JaxImpl(w, config, c, s)
    cls = TutorialNST if name == "torch-tutorial" else FastNST
    kwargs = {"compile": compile_torch} if cls is FastNST else {}
    return TorchImpl(cls(w, config, c, s, device=TDEV, **kwargs), c, config.learning_rate or 1.0)


def forward_gflop(arch: str, h: int, w: int, deepest: str) -> float:
    flop, names = 0.0, layer_names(arch)
    shapes = conv_shapes(arch)
    for name in names[: names.index(deepest) + 1]:
        if name.startswith("pool"):
            h, w = h // 2, w // 2
        elif name.startswith("conv"):
            c_in, c_out = shapes[name]
            flop += 2 * 9 * c_in * c_out * h * w
    return flop / 1e9


# ---------------------------------------------------------------- measurements


def check_parity(config, arch="vgg16", size=128) -> dict:
    rng = np.random.default_rng(0)
    c, _ = images(size)
    probe = np.clip(c + rng.normal(0, 0.1, c.shape), 0, 1).astype(np.float32)
    values = {n: build(n, arch, size, config).loss_at(probe) for n in ("jax", "torch-tutorial", "torch-fast")}
    ref = values["torch-tutorial"]
    rel = {k: abs(v - ref) / abs(ref) for k, v in values.items()}
    assert max(rel.values()) < 1e-4, f"implementations disagree: {values}"
    return {"values": values, "max_rel_diff": max(rel.values())}


def step_times(config, archs, sizes, repeats, compile_torch) -> list[dict]:
    rows = []
    for arch in archs:
        for size in sizes:
            for name in ("jax", "torch-tutorial", "torch-fast"):
                reset_peak()
                impl = build(name, arch, size, config, compile_torch and name == "torch-fast")
                first, times = timed(impl, repeats)
                h, w = images(size)[0].shape[:2]
                fwd = forward_gflop(arch, h, w, "relu5_1")
                ms = 1e3 * statistics.median(times)
                rows.append({"impl": name, "arch": arch, "size": size, "hw": [h, w], "ms_per_step": ms,
                             "first_call_s": first, "gflops": 2 * fwd / (ms / 1e3),
                             "peak_mib": peak_mib("jax" if name == "jax" else "torch")})
                print(f"  {arch} {size:>4}px {name:<15} {ms:9.1f} ms/step  first {first:6.2f} s", flush=True)
                del impl
    return rows


def torch_lbfgs(ref, content):
    """torch.optim.LBFGS as the tutorial drives it: closure clamps, counts evaluations."""
    x = ref.to_tensor(content).clone().requires_grad_(True)
    opt, count = torch.optim.LBFGS([x]), [0]

    def closure():
        with torch.no_grad():
            x.clamp_(0, 1)
        opt.zero_grad()
        loss = ref.loss(x)
        loss.backward()
        count[0] += 1
        return loss

    def run_until(evals):
        while count[0] < evals:
            opt.step(closure)
        sync()
        with torch.no_grad():
            x.clamp_(0, 1)
            return float(ref.loss(x))

    return run_until, count


def lbfgs_rates(size, arch="vgg16", evals=40) -> dict:
    c, s = images(size)
    w = weights_for(arch)
    out = {"size": size}
    for opt_name in ("lbfgs", "lbfgs-fixed"):
        cfg = StyleConfig(size=size, optimizer=opt_name, learning_rate=None, steps=10**6, log_every=10**6)
        impl = JaxImpl(w, cfg, c, s)
        sync(impl())  # compile
        impl.reset()
        t0 = time.perf_counter()
        while impl.evals < evals:
            loss = impl()
        sync(loss)
        seconds = time.perf_counter() - t0
        out[f"jax-{opt_name}"] = {"steps": impl.i, "evals": impl.evals, "evals_per_s": impl.evals / seconds,
                                  "final_loss": float(loss)}
    run_until, count = torch_lbfgs(TutorialNST(w, cfg, c, s, device=TDEV), c)
    t0 = time.perf_counter()
    torch_loss = run_until(evals)
    out["torch-tutorial"] = {"evals": count[0], "evals_per_s": count[0] / (time.perf_counter() - t0),
                             "final_loss": torch_loss}
    return out


def time_to_target(size, arch="vgg16", budget_evals=300) -> dict:
    """Target: the loss the tutorial-style torch L-BFGS reaches after `budget_evals` evaluations."""
    c, s = images(size)
    w = weights_for(arch)
    cfg = StyleConfig(size=size, optimizer="lbfgs", learning_rate=None, log_every=10**6)
    run_until, count = torch_lbfgs(TutorialNST(w, cfg, c, s, device=TDEV), c)
    t0 = time.perf_counter()
    target = run_until(budget_evals)
    out = {"size": size, "target_loss": target,
           "torch-tutorial-lbfgs": {"seconds": time.perf_counter() - t0, "evals": count[0]}}
    # JAX gets twice the evaluations (four times for Adam) to get there.
    for opt_name, lr, max_evals in (("lbfgs", None, 2 * budget_evals), ("lbfgs-fixed", None, 2 * budget_evals),
                                    ("adam", 0.02, 4 * budget_evals)):
        impl = JaxImpl(w, cfg.replace(optimizer=opt_name, learning_rate=lr, steps=max_evals), c, s)
        sync(impl())  # compile
        impl.reset()
        t0, reached, best = time.perf_counter(), None, float("inf")
        while impl.evals < max_evals:
            # the loss of the iterate this step started from; L-BFGS iterates are unclipped
            best = min(best, float(impl()))
            if best <= target:
                reached = impl.i
                break
        out[f"jax-{opt_name}"] = {"seconds": time.perf_counter() - t0 if reached else None,
                                  "steps": reached, "evals": impl.evals, "max_evals": max_evals, "best_loss": best}
    return out


def sweep_scaling(size, batches, steps=6) -> list[dict]:
    c, s = images(size)
    w = weights_for("vgg16")
    cfg = StyleConfig(size=size, steps=steps)
    rows = []
    single = JaxImpl(w, cfg, c, s)
    _, t_single = timed(single, steps)
    per_step_single = statistics.median(t_single)
    for b in batches:
        betas = list(np.logspace(4, 7, b))
        r = sweep(c, s, cfg, betas, weights=w)
        per_step = (r.seconds - r.compile_seconds) / (steps - 1)  # the first step holds the compile
        rows.append({"batch": b, "size": size, "vmapped_s_per_step": per_step,
                     "sequential_s_per_step": b * per_step_single,
                     "cell_steps_per_s_vmapped": b / per_step, "cell_steps_per_s_sequential": 1 / per_step_single,
                     "speedup": b * per_step_single / per_step})
        print(f"  sweep B={b}: vmapped {b / per_step:.2f} cell-steps/s, sequential {1 / per_step_single:.2f}", flush=True)
    return rows


def ceiling() -> dict:
    n = 4096 if GPU else 2048
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    _, t = timed(lambda: mm(a), 5)
    ta = torch.randn(n, n, device=TDEV)
    _, tt = timed(lambda: ta @ ta, 5)
    flop = 2 * n**3 / 1e9
    return {"n": n, "jax_gflops": flop / statistics.median(t), "torch_gflops": flop / statistics.median(tt)}


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import os

    info = {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__, "torch": torch.__version__,
            "jax_device": str(jax.devices()[0].device_kind), "date": date.today().isoformat()}
    if GPU:
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--archs", default="vgg16,vgg19")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--target-size", type=int, default=256)
    p.add_argument("--target-evals", type=int, default=300)
    p.add_argument("--sweep-batches", default="1,2,4,8")
    p.add_argument("--compile-torch", action="store_true", help="torch.compile the fast reference")
    p.add_argument("--skip", default="", help="comma list of: steps,lbfgs,target,sweep")
    p.add_argument("--name", default=None, help="results file name (default: from the machine)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    torch.manual_seed(0)
    config = StyleConfig(style_weight=1e6)
    info = machine()
    name = args.name or ("gpu-" + info["gpu"] if GPU else f"cpu-{info['cores']}c").lower().replace(" ", "-")
    skip = set(args.skip.split(","))
    results = {"machine": info, "ceiling": ceiling()}
    print(f"machine: {info}\nceiling: {results['ceiling']}", flush=True)
    results["parity"] = check_parity(config)
    print(f"parity: {results['parity']}", flush=True)
    if "steps" not in skip:
        results["steps"] = step_times(config, args.archs.split(","), [int(s) for s in args.sizes.split(",")],
                                      args.repeats, args.compile_torch)
    if "lbfgs" not in skip:
        results["lbfgs"] = lbfgs_rates(args.target_size)
        print(f"lbfgs: {results['lbfgs']}", flush=True)
    if "target" not in skip:
        results["target"] = time_to_target(args.target_size, budget_evals=args.target_evals)
        print(f"target: {results['target']}", flush=True)
    if "sweep" not in skip:
        results["sweep"] = sweep_scaling(args.target_size, [int(b) for b in args.sweep_batches.split(",")])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=1))
    from report import write_report

    write_report(results, out, name)
    print(f"wrote {out / name}.json/.md", flush=True)


if __name__ == "__main__":
    main()
