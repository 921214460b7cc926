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
import contextlib
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

from nst_jax.config import ADAM_ON_SUMMED_LOSS, LBFGS_NAMES, StyleConfig  # noqa: E402
from nst_jax.image import load_image  # noqa: E402
from nst_jax.inputs import prepare  # noqa: E402
from nst_jax.run import default_steps_per_call, drive  # noqa: E402
from nst_jax.step import init_state, make_optimizer, make_step  # noqa: E402
from nst_jax.sweeps import sweep  # noqa: E402
from nst_jax.vgg import conv_shapes, forward_flops  # noqa: E402
from nst_jax.weights import VGGWeights, load_embedded, load_weights  # noqa: E402
from torch_ref import FastNST, TutorialNST  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "nst_jax" / "samples"
GPU = torch.cuda.is_available()
TDEV = "cuda" if GPU else "cpu"


VGG16_SOURCE = "embedded"  # --vgg16: another file of the same weights (e.g. float16, to travel light)


def weights_for(arch: str) -> VGGWeights:
    if arch == "vgg16":
        return load_embedded() if VGG16_SOURCE == "embedded" else load_weights(VGG16_SOURCE)
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
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def torch_tf32(enabled: bool):
    """torch's TF32 switches (cuDNN convolutions and matmuls) set for a block, then restored."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


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


# What every implementation computes: the form the PyTorch references implement, whatever
# the CLI's defaults are.
BENCH = StyleConfig(**ADAM_ON_SUMMED_LOSS, log_every=10**6)


# ---------------------------------------------------------------- the three implementations


class JaxImpl:
    """nst-jax through its own driver: one call = ``k`` steps of one compiled program."""

    def __init__(self, weights, config, content, style, k: int = 1):
        self.run = prepare(content, style, config, weights)
        self.conv = self.run.objective.model.conv
        self.gram = self.run.objective.gram_precision
        self.opt = make_optimizer(config)
        self.step = make_step(self.run.objective, self.opt)
        self.compiled, self.k, self.compile_seconds = {}, k, 0.0
        self.reset()

    def reset(self):
        """Back to the first step, keeping the compiled step."""
        self.state = init_state(self.run.objective, self.opt, self.run.problem, self.run.start)
        self.i = 0

    @property
    def evals(self) -> int:
        return int(self.state.evals)

    def plan_mib(self) -> float:
        """Device memory XLA planned for one call (arguments, outputs, temporaries): on a
        GPU the allocator's own peak cannot be reset and includes compile-time autotuning."""
        m = max((c.memory_analysis() for c in self.compiled.values()),
                key=lambda m: m.temp_size_in_bytes, default=None)
        if m is None:
            return float("nan")
        return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                - m.alias_size_in_bytes) / 2**20

    def loss_at(self, image) -> float:
        return float(self.run.objective.value(self.run.problem, jnp.asarray(image)))

    def __call__(self):
        out = drive(self.step, self.state, self.run.problem, steps=self.i + self.k, start=self.i,
                    steps_per_call=self.k, log_every=10**9, compiled=self.compiled)
        self.compile_seconds += out.compile_seconds
        self.state, self.i = out.state, out.steps
        self.last_loss = float(out.trace.arrays["loss"][-1])
        return self.state.image


class TorchImpl:
    """``k`` Adam steps (forward, backward, update, clamp) of a torch reference per call."""

    def __init__(self, ref, content, lr, k: int = 1):
        self.ref, self.k = ref, k
        self.x = ref.to_tensor(content).clone().requires_grad_(True)
        self.opt = torch.optim.Adam([self.x], lr=lr)

    def loss_at(self, image) -> float:
        with torch.no_grad():
            return float(self.ref.loss(self.ref.to_tensor(image)))

    def __call__(self):
        for _ in range(self.k):
            self.opt.zero_grad(set_to_none=True)
            loss = self.ref.loss(self.x)
            loss.backward()
            self.opt.step()
            with torch.no_grad():
                self.x.clamp_(0, 1)
        return None


def build(name: str, arch: str, size: int, config: StyleConfig, compile_torch=False, k: int = 1,
          bf16: bool = False):
    config = config.replace(size=size)
    w = weights_for(arch)
    c, s = images(size)
    if name.startswith("jax"):  # "jax": the platform's defaults; "jax-lax", "jax-winograd": that
        variant = name.partition("-")[2]  # lowering; "jax-gram-float32": Grams at XLA's HIGHEST
        changes = ({"gram_precision": variant.partition("-")[2]} if variant.startswith("gram-")
                   else {"conv": variant or config.conv})
        return JaxImpl(w, config.replace(dtype="bfloat16" if bf16 else "float32", **changes), c, s, k)
    cls = TutorialNST if name == "torch-tutorial" else FastNST
    kwargs = {"compile": compile_torch, "bf16": bf16} if cls is FastNST else {}
    return TorchImpl(cls(w, config, c, s, device=TDEV, **kwargs), c, config.learning_rate or 0.02, k)


def forward_gflop(arch: str, h: int, w: int) -> float:
    return forward_flops(arch, h, w, ("relu5_1",)) / 1e9


# ---------------------------------------------------------------- measurements


def check_parity(config, arch="vgg16", size=128) -> dict:
    rng = np.random.default_rng(0)
    c, _ = images(size)
    probe = np.clip(c + rng.normal(0, 0.1, c.shape), 0, 1).astype(np.float32)
    # Formulas are compared at full float32: on GPUs both frameworks convolve in TF32 by
    # default (about 1e-4 apart), which is a speed setting, not a disagreement.
    with torch_tf32(False), jax.default_matmul_precision("highest"):
        # (an explicit Gram algorithm overrides the context's precision: set it float32 too)
        values = {n: build(n, arch, size, config.replace(gram_precision="float32")).loss_at(probe)
                  for n in ("jax", "torch-tutorial", "torch-fast")}
    ref = values["torch-tutorial"]
    rel = {k: abs(v - ref) / abs(ref) for k, v in values.items()}
    assert max(rel.values()) < 1e-4, f"implementations disagree: {values}"
    return {"values": values, "max_rel_diff": max(rel.values())}


def gram_accuracy(positions=(262144, 16384), channels=(64, 512)) -> dict:
    """Relative error of a style term sum (G - T)^2 with the Grams computed at each Gram
    precision this platform offers, against float64 (numpy): relu1_1's shape at 512 px and
    relu4_1's at 1024 px, features and target from two ReLU'd random fields."""
    from nst_jax.losses import gram, gram_precision

    usable = ["float32"] + (["tf32x3"] if gram_precision() == "tf32x3" else [])
    rng = np.random.default_rng(1)
    out = {}
    for n, c in zip(positions, channels):
        f, t = (np.maximum(rng.standard_normal((n, c), np.float32), 0) for _ in range(2))
        g64, t64 = (x.astype(np.float64).T @ x.astype(np.float64) for x in (f, t))
        exact = np.sum((g64 - t64) ** 2)
        for p in usable:
            try:
                g = np.asarray(jax.jit(gram, static_argnums=1)(jnp.asarray(f), p), np.float64)
            except Exception as e:  # noqa: BLE001 (an XLA without this algorithm: say so, go on)
                out[f"{p} {n}x{c}"] = {"error": (str(e).splitlines() or [type(e).__name__])[0][:200]}
                continue
            out[f"{p} {n}x{c}"] = {"gram": float(np.linalg.norm(g - g64) / np.linalg.norm(g64)),
                                   "style_term": float(abs(np.sum((g - t64) ** 2) - exact) / exact)}
    return out


def step_times(config, archs, sizes, repeats, compile_torch, k) -> list[dict]:
    """ms per Adam step; every implementation runs ``k`` steps per timed call (the JAX
    driver's steps per call on this platform) and is synchronised once per call. The
    implementations' timed calls are interleaved (a shared machine's load falls on all
    alike). ``jax`` runs the platform's defaults and the next row the one default that
    differs there, side by side: XLA's own convolutions on a CPU (where Winograd is the
    default; nst_jax.conv), float32 Grams on a GPU (where three TF32 passes are;
    nst_jax.losses.gram_precision). Peak memory: the resident high-water mark of building
    and warming one implementation, above the process before it (on GPU: XLA's plan and
    torch's allocator peak)."""
    rows = []
    names = ("jax", "jax-gram-float32" if GPU else "jax-lax", "torch-tutorial", "torch-fast")
    for arch in archs:
        for size in sizes:
            impls, firsts, peaks = {}, {}, {}
            for name in names:
                before = rss_mib()
                reset_peak()
                impl = build(name, arch, size, config, compile_torch and name == "torch-fast", k)
                t0 = time.perf_counter()
                sync(impl())
                firsts[name] = time.perf_counter() - t0
                sync(impl())  # one more warm-up
                peaks[name] = (impl.plan_mib() if GPU and name.startswith("jax") else
                               peak_mib("torch" if name.startswith("torch") else "jax") - (0 if GPU else before))
                impls[name] = impl
            times = {name: [] for name in names}
            for _ in range(repeats):
                for name, impl in impls.items():
                    t0 = time.perf_counter()
                    sync(impl())
                    times[name].append(time.perf_counter() - t0)
            h, w = images(size)[0].shape[:2]
            for name in names:
                ms = 1e3 * statistics.median(times[name]) / k
                rows.append({"impl": name, "arch": arch, "size": size, "hw": [h, w], "ms_per_step": ms,
                             "steps_per_call": k, "first_call_s": firsts[name],
                             "gflops": 2 * forward_gflop(arch, h, w) / (ms / 1e3), "peak_mib": peaks[name],
                             "conv": getattr(impls[name], "conv", "torch"),
                             "gram": getattr(impls[name], "gram", "torch")})
                print(f"  {arch} {size:>4}px {name:<15} {ms:9.1f} ms/step  first {firsts[name]:6.2f} s", flush=True)
            del impls
    return rows


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def steps_per_call_times(config, sizes, ks, repeats, arch="vgg16") -> list[dict]:
    """ms per step of the JAX driver against steps per compiled call (the measurement
    behind run.STEPS_PER_CALL)."""
    rows = []
    for size in sizes:
        for k in ks:
            impl = build("jax", arch, size, config, k=k)
            first, times = timed(impl, max(3, repeats // k))
            ms = 1e3 * statistics.median(times) / k
            rows.append({"arch": arch, "size": size, "steps_per_call": k, "ms_per_step": ms, "first_call_s": first})
            print(f"  steps/call {k:>3} {arch} {size:>4}px {ms:9.2f} ms/step", flush=True)
            del impl
    return rows


def bf16_times(config, archs, sizes, repeats, k) -> list[dict]:
    """ms per Adam step in bfloat16 (convolutions and activations; losses float32) against
    float32, for nst-jax and the fast PyTorch reference (autocast), with the loss change."""
    rows = []
    for arch in archs:
        for size in sizes:
            c, _ = images(size)
            for name in ("jax", "torch-fast"):
                out = {"arch": arch, "size": size, "impl": name}
                for bf16 in (False, True):
                    impl = build(name, arch, size, config, k=k, bf16=bf16)
                    _, times = timed(impl, repeats)
                    out["bf16_ms" if bf16 else "f32_ms"] = 1e3 * statistics.median(times) / k
                    out["bf16_loss" if bf16 else "f32_loss"] = impl.loss_at(c * 0.9 + 0.05)
                    del impl
                out["loss_rel_diff"] = abs(out["bf16_loss"] - out["f32_loss"]) / abs(out["f32_loss"])
                rows.append(out)
                print(f"  bf16 {arch} {size:>4}px {name:<10} f32 {out['f32_ms']:8.2f}  bf16 {out['bf16_ms']:8.2f} ms/step "
                      f" loss diff {out['loss_rel_diff']:.1e}", flush=True)
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
            loss = opt.step(closure)  # the loss at the iterate this call started from
            run_until.trace.append((count[0], float(loss.detach())))
        sync()
        with torch.no_grad():
            x.clamp_(0, 1)
            return float(ref.loss(x))

    run_until.trace = []  # (evaluations so far, loss) after each call of opt.step
    return run_until, count


def torch_trace(ref, content, method: str, max_evals: int, target: float | None = None,
                max_seconds: float = float("inf")) -> list[tuple[int, float, float]]:
    """(evaluation, seconds since the start, loss there) of every evaluation of a PyTorch
    anchor, until ``max_evals``, ``max_seconds`` or the first loss at or below ``target``.

    - ``"tutorial"``: torch.optim.LBFGS as the PyTorch tutorial drives it (lr 1, no line
      search, the image clamped inside the closure);
    - ``"strong-wolfe"``: torch.optim.LBFGS(line_search_fn="strong_wolfe"), what a careful
      user runs, clamped after each call of ``step`` (not inside the line search);
    - ``"adam"``: Adam, lr 0.02, clamped after each step (crowsonkb's optimizer)."""
    x = ref.to_tensor(content).clone().requires_grad_(True)
    trace, t0 = [], time.perf_counter()

    class Reached(Exception):
        pass

    def evaluate(clamp: bool):
        if clamp:
            with torch.no_grad():
                x.clamp_(0, 1)
        loss = ref.loss(x)
        value = float(loss.detach())  # the sync: the evaluation is done
        trace.append((len(trace) + 1, time.perf_counter() - t0, value))
        return loss, value

    def done() -> bool:
        last = trace[-1]
        return last[0] >= max_evals or last[1] >= max_seconds or (target is not None and last[2] <= target)

    if method == "adam":
        opt = torch.optim.Adam([x], lr=0.02)
        while not trace or not done():
            opt.zero_grad(set_to_none=True)
            loss, _ = evaluate(False)
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        return trace
    opt = torch.optim.LBFGS([x], line_search_fn="strong_wolfe" if method == "strong-wolfe" else None)

    def closure():
        opt.zero_grad()
        loss, _ = evaluate(method == "tutorial")
        loss.backward()
        if done():
            raise Reached  # stop inside the call: later evaluations are not needed
        return loss

    try:
        while True:
            opt.step(closure)
            if method == "strong-wolfe":
                with torch.no_grad():
                    x.clamp_(0, 1)
    except Reached:
        pass
    return trace


def first_reach(trace, target: float) -> tuple[int, float] | tuple[None, None]:
    """(evaluation, seconds) of the first entry at or below ``target``, else (None, None)."""
    return next(((e, s) for e, s, loss in trace if loss <= target), (None, None))


JAX_LBFGS = ("lbfgs", "lbfgs-fixed", "lbfgs-backtrack", "lbfgs-armijo")


def evaluation_costs(impl: JaxImpl, repeats: int = 5) -> dict:
    """Median ms of one value-only and one value+gradient evaluation at the top level."""
    run, x = impl.run, jnp.asarray(impl.run.start)
    value = jax.jit(run.objective.value)
    value_and_grad = jax.jit(jax.value_and_grad(run.objective.value, argnums=1))
    return {name: 1e3 * statistics.median(timed(lambda: fn(run.problem, x), repeats)[1])
            for name, fn in (("value_ms", value), ("value_grad_ms", value_and_grad))}


def lbfgs_rates(size, arch="vgg16", evals=40) -> dict:
    """Evaluations per second and the loss after ``evals`` evaluations. The JAX optimizers
    run interleaved, one step each in turn, so a shared machine's load falls on all alike."""
    c, s = images(size)
    w = weights_for(arch)
    out, impls = {"size": size}, {}
    for opt_name in JAX_LBFGS:
        cfg = BENCH.replace(size=size, optimizer=opt_name, steps=10**6)
        impls[opt_name] = impl = JaxImpl(w, cfg, c, s)
        sync(impl())  # compile
        impl.reset()
    out.update(evaluation_costs(impls["lbfgs-fixed"]))
    times = {k: [] for k in impls}
    while any(impl.evals < evals for impl in impls.values()):
        for opt_name, impl in impls.items():
            if impl.evals < evals:
                t0 = time.perf_counter()
                sync(impl())
                times[opt_name].append(time.perf_counter() - t0)
    for opt_name, impl in impls.items():
        out[f"jax-{opt_name}"] = {"steps": impl.i, "evals": impl.evals, "evals_per_s": impl.evals / sum(times[opt_name]),
                                  "s_per_step": statistics.median(times[opt_name]), "final_loss": impl.last_loss,
                                  "loss_after": impl.loss_at(np.clip(impl.state.image, 0, 1))}
    run_until, count = torch_lbfgs(TutorialNST(w, cfg, c, s, device=TDEV), c)
    t0 = time.perf_counter()
    torch_loss = run_until(evals)
    out["torch-tutorial"] = {"evals": count[0], "evals_per_s": count[0] / (time.perf_counter() - t0),
                             "final_loss": torch_loss, "loss_after": torch_loss}
    return out


def time_to_target(size, arch="vgg16", budget_evals=300, optimizers=(*JAX_LBFGS, "adam"),
                   corners=(BENCH.precondition,)) -> dict:
    """Time to one target loss, each implementation measured at the moment it first gets
    there (every evaluation traced, nothing interpolated), from the same start (the content).

    Target: the lowest loss the tutorial's L-BFGS reaches in ``budget_evals`` evaluations.
    PyTorch anchors (:func:`torch_trace`): the tutorial's L-BFGS, L-BFGS with a strong
    Wolfe line search, Adam; each stops when it reaches the target (Adam also after three
    times the tutorial's seconds). JAX rows count from before ``prepare`` to the end of
    the call whose loss reached the target: preparing and compiling included, the
    compile also shown apart. ``corners``: each L-BFGS optimizer runs with each of these
    config.precondition values (rows "jax-NAME f0=CORNER"; "jax-NAME" for 0).

    Single-scale only, as every anchor is: the default's coarse to fine is timed through
    ``stylize`` itself by bench/time_quality.py, on the judge's scores rather than a loss."""
    c, s = images(size)
    w = weights_for(arch)
    cfg = BENCH.replace(size=size, optimizer="lbfgs")
    tutorial = torch_trace(TutorialNST(w, cfg, c, s, device=TDEV), c, "tutorial", budget_evals)
    # Without a line search torch's loss can rise again: the target is the lowest it reached.
    target = min(loss for _, _, loss in tutorial)
    out = {"size": size, "target_loss": target, "budget_evals": budget_evals}
    for method in ("tutorial", "strong-wolfe", "adam"):
        trace = tutorial if method == "tutorial" else torch_trace(
            TutorialNST(w, cfg, c, s, device=TDEV), c, method, 4 * budget_evals, target,
            max_seconds=3 * tutorial[-1][1])
        evals, seconds = first_reach(trace, target)
        out[f"torch-{method}"] = {"seconds": seconds, "evals": evals, "evals_run": trace[-1][0],
                                  "seconds_run": trace[-1][1], "best_loss": min(l for _, _, l in trace),
                                  "trace": [t[1:] for t in trace]}
        print(f"  torch-{method}: {seconds} s, {evals} evaluations (target {target:.4g})", flush=True)

    def until_target(impl, max_evals, t0):
        best = float("inf")
        while impl.evals < max_evals:
            impl()  # last_loss: the loss at the iterate this step started from (its evaluation)
            best = min(best, impl.last_loss)
            if best <= target:
                return impl.i, time.perf_counter() - t0, best
        return None, None, best

    # JAX gets twice the evaluations (four times for Adam) to get there.
    runs = [(o, f) for o in optimizers for f in (corners if o in LBFGS_NAMES else corners[:1])]
    for opt_name, corner in runs:
        lr, max_evals = (0.02, 4 * budget_evals) if opt_name == "adam" else (None, 2 * budget_evals)
        corner = corner if opt_name in LBFGS_NAMES else None  # the others ignore it
        name = opt_name + (f" f0={corner:g}" if corner else "")
        run_cfg = cfg.replace(precondition=corner or 0.0, optimizer=opt_name, learning_rate=lr, steps=max_evals)
        t0 = time.perf_counter()
        impl = JaxImpl(w, run_cfg, c, s)
        reached, seconds, best = until_target(impl, max_evals, t0)
        out[f"jax-{name}"] = {"seconds": seconds, "compile_seconds": impl.compile_seconds,
                              "precondition": corner, "steps": reached, "evals": impl.evals,
                              "max_evals": max_evals, "best_loss": best}
        print(f"  jax-{name}: {out[f'jax-{name}']}", flush=True)
    return out


def sweep_scaling(config, size, batches, k) -> list[dict]:
    """Cell-steps per second of one vmapped sweep of B cells against one run at a time."""
    c, s = images(size)
    w = weights_for("vgg16")
    # Several calls: a GPU's cells take milliseconds, and the time after compiling includes
    # the first call's fixed costs, which 40 calls make small beside the steps.
    steps = 40 * k if GPU else max(6, 4 * k)
    cfg = config.replace(size=size, steps=steps, steps_per_call=k)
    rows = []
    single = JaxImpl(w, cfg, c, s, k)
    _, t_single = timed(single, max(3, steps // k))
    per_step_single = statistics.median(t_single) / k
    for b in batches:
        betas = list(np.logspace(4, 7, b))
        r = sweep(c, s, cfg, betas, weights=w)
        per_step = (r.seconds - r.compile_seconds) / steps
        rows.append({"batch": b, "size": size, "steps_per_call": k, "vmapped_s_per_step": per_step,
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
    # Both at the precision they convolve in: JAX's default and cuDNN's default are TF32 on
    # GPUs, torch's matmul default is not, so it is switched on for this product alone.
    with torch_tf32(True):
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
    p.add_argument("--target-optimizers", default=",".join((*JAX_LBFGS, "adam")),
                   help="JAX optimizers timed to the target")
    p.add_argument("--target-preconditions", default=f"{BENCH.precondition:g}",
                   help="L-BFGS corner frequencies timed to the target (config.precondition; 0: none)")
    p.add_argument("--sweep-batches", default="1,2,4,8")
    p.add_argument("--sweep-sizes", default=None, help="sizes of the sweep comparison (default: --target-size)")
    p.add_argument("--steps-per-call", default="1,4", help="steps per call to compare (VGG16, --sizes)")
    p.add_argument("--bf16", action="store_true", help="also time bfloat16 against float32")
    p.add_argument("--compile-torch", action="store_true", help="torch.compile the fast reference")
    p.add_argument("--skip", default="", help="comma list of: steps,calls,lbfgs,target,sweep")
    p.add_argument("--vgg16", default="embedded", help="VGG16 weights file (default: the embedded ones)")
    p.add_argument("--name", default=None, help="results file name (default: from the machine)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    global VGG16_SOURCE
    VGG16_SOURCE = args.vgg16
    torch.manual_seed(0)
    config = BENCH
    info = machine()
    name = args.name or ("gpu-" + info["gpu"] if GPU else f"cpu-{info['cores']}c").lower().replace(" ", "-")
    skip = set(args.skip.split(","))
    sizes = [int(s) for s in args.sizes.split(",")]
    k = default_steps_per_call()
    t_start = time.perf_counter()
    results = {"machine": info, "ceiling": ceiling(), "steps_per_call": k}
    print(f"machine: {info}\nceiling: {results['ceiling']}\nsteps per call: {k}", flush=True)
    results["gram_accuracy"] = gram_accuracy()
    print(f"gram accuracy: {results['gram_accuracy']}", flush=True)
    results["parity"] = check_parity(config)
    print(f"parity: {results['parity']}", flush=True)

    def save():  # after every section, so a run cut short still leaves its numbers
        print(f"section done at {time.perf_counter() - t_start:.0f} s", flush=True)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(results, indent=1))
        from report import write_report

        write_report(results, out, name)

    if "steps" not in skip:
        results["steps"] = step_times(config, args.archs.split(","), sizes, args.repeats, args.compile_torch, k)
        save()
    if "calls" not in skip:
        results["calls"] = steps_per_call_times(config, sizes, [int(x) for x in args.steps_per_call.split(",")],
                                                args.repeats)
        save()
    if args.bf16:
        results["bf16"] = bf16_times(config, args.archs.split(","), sizes, args.repeats, k)
        save()
    if "sweep" not in skip:
        batches = [int(b) for b in args.sweep_batches.split(",")]
        results["sweep"] = []
        for size in (args.sweep_sizes or str(args.target_size)).split(","):
            results["sweep"] += sweep_scaling(config, int(size), batches, k)
            save()
    if "lbfgs" not in skip:
        results["lbfgs"] = lbfgs_rates(args.target_size)
        print(f"lbfgs: {results['lbfgs']}", flush=True)
        save()
    if "target" not in skip:
        results["target"] = time_to_target(args.target_size, budget_evals=args.target_evals,
                                           optimizers=args.target_optimizers.split(","),
                                           corners=tuple(map(float, args.target_preconditions.split(","))))
        print(f"target: {results['target']}", flush=True)
        save()
    print(f"wrote {Path(args.out) / name}.json/.md", flush=True)


if __name__ == "__main__":
    main()
