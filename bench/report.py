"""Markdown table and matplotlib plots from a bench/run.py results dict."""

from __future__ import annotations

from pathlib import Path


def ms(x: float) -> str:
    """Milliseconds with three significant figures at most (GPU steps take a few ms)."""
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def write_report(r: dict, out: Path, name: str) -> None:
    m = r["machine"]
    lines = [f"# Benchmark: {name}", "",
             f"Machine: {m.get('gpu', m['cpu'])} ({m['cores']} CPU cores); jax {m['jax']}, torch {m['torch']}; {m['date']}.",
             f"Matmul ceiling ({r['ceiling']['n']}^2 f32): JAX {r['ceiling']['jax_gflops']:.0f} GFLOP/s, "
             f"torch {r['ceiling']['torch_gflops']:.0f} GFLOP/s.",
             f"Loss parity before timing: max relative difference {r['parity']['max_rel_diff']:.1e}.", ""]
    if "gram_accuracy" in r:
        lines += ["Gram precision: relative error against float64 of the Gram and of a style term "
                  "sum (G - T)^2 (random ReLU features, relu1_1's shape at 512 px and relu4_1's at 1024 px):", "",
                  "| precision, positions x channels | Gram | style term |", "|---|---|---|"]
        lines += [f"| {k} | " + (f"{v['gram']:.1e} | {v['style_term']:.1e} |" if "error" not in v
                                 else f"failed: {v['error']} | |") for k, v in r["gram_accuracy"].items()]
        lines.append("")
    lines += [f"Note: {note}" for note in r.get("notes", [])] + ([""] if r.get("notes") else [])
    if "steps" in r:
        # Runs with a second JAX row (the platform's other choice: jax-lax on a CPU,
        # jax-winograd or jax-gram-float32 on a GPU) interleave the implementations in one
        # process, where a per-implementation peak cannot be read: they show compile time.
        alt = next((x["impl"] for x in r["steps"] if x["impl"].startswith("jax-")), None)
        other = ((f"{alt.removeprefix('jax-gram-')} Grams" if alt.startswith("jax-gram-")
                  else f"{alt.removeprefix('jax-')} convs") if alt else "")
        lines += ["## Adam step (forward + backward + update), median ms", "",
                  "| arch | px | jax | " + (f"jax, {other} | " if alt else "") + "torch tutorial | torch fast | "
                  "jax / tutorial | jax / fast | jax GFLOP/s (% of matmul) | "
                  + (f"first call s, jax / {other} |" if alt else "peak MiB jax / tut / fast |"),
                  "|---|---|---|---|---|---|---|---|---|" + ("---|" if alt else "")]
        by = {(x["arch"], x["size"], x["impl"]): x for x in r["steps"]}
        for arch, size in dict.fromkeys((x["arch"], x["size"]) for x in r["steps"]):
            j, t, f = (by[(arch, size, k)] for k in ("jax", "torch-tutorial", "torch-fast"))
            pct = 100 * j["gflops"] / max(r["ceiling"]["jax_gflops"], r["ceiling"]["torch_gflops"])
            plain = by.get((arch, size, alt))
            last = (f"{j['first_call_s']:.1f} / " + (f"{plain['first_call_s']:.1f}" if plain else "-") if alt else
                    f"{j['peak_mib']:.0f} / {t['peak_mib']:.0f} / {f['peak_mib']:.0f}")
            lines.append(f"| {arch} | {size} | {ms(j['ms_per_step'])} | "
                         + ((f"{ms(plain['ms_per_step'])} | " if plain else "- | ") if alt else "")
                         + f"{ms(t['ms_per_step'])} | {ms(f['ms_per_step'])} | "
                         f"{j['ms_per_step'] / t['ms_per_step']:.2f} | {j['ms_per_step'] / f['ms_per_step']:.2f} | "
                         f"{j['gflops']:.0f} ({pct:.0f}%) | {last} |")
        conv = next((x.get("conv") for x in r["steps"] if x["impl"] == "jax"), None)
        gram = next((x.get("gram", "float32") for x in r["steps"] if x["impl"] == "jax"), None)
        what = {"lax": "XLA's own convolutions", "winograd": "Winograd F(4x4, 3x3) convolutions",
                "float32 Grams": "Grams at float32 (XLA's HIGHEST)"}
        lines += ["", f"Ratios below 1 mean JAX is faster. Every implementation ran {r.get('steps_per_call', 1)} "
                  "step(s) per timed call (nst-jax's steps per compiled call on this platform), "
                  "synchronised once per call" + (", the implementations' calls interleaved" if alt else "") + ". "
                  + (f"`jax` ran the platform's defaults ({conv} convolutions, {gram} Grams); `jax, {other}` "
                     + what.get(other.removesuffix(" convs"), other) + " (nst_jax/conv.py, nst_jax/losses.py). "
                     "GFLOP/s count the direct convolution's work (Winograd does less, "
                     "so above 100% of the matmul ceiling is possible). First call: compile and one step. "
                     if alt else "First-call (compile) seconds are in the JSON.")
                  , ""]
    if "calls" in r:
        lines += ["## Steps per compiled call (nst-jax, VGG16), ms per step", "",
                  "| px | " + " | ".join(f"{k} per call" for k in dict.fromkeys(x["steps_per_call"] for x in r["calls"])) + " |",
                  "|---|" + "---|" * len(dict.fromkeys(x["steps_per_call"] for x in r["calls"]))]
        for size in dict.fromkeys(x["size"] for x in r["calls"]):
            row = [x for x in r["calls"] if x["size"] == size]
            lines.append(f"| {size} | " + " | ".join(f"{x['ms_per_step']:.2f}" for x in row) + " |")
        lines.append("")
    if "bf16" in r:
        lines += ["## bfloat16 against float32, ms per Adam step", "",
                  "| arch | px | impl | float32 | bfloat16 | speed-up | loss change |", "|---|---|---|---|---|---|---|"]
        for x in r["bf16"]:
            lines.append(f"| {x['arch']} | {x['size']} | {x['impl']} | {x['f32_ms']:.2f} | {x['bf16_ms']:.2f} | "
                         f"{x['f32_ms'] / x['bf16_ms']:.2f} | {x['loss_rel_diff']:.1e} |")
        lines.append("")
    if "lbfgs" in r:
        lb = r["lbfgs"]
        lines += ["## L-BFGS function evaluations per second", "",
                  f"At {lb['size']} px, VGG16, from the content image:", "",
                  "| implementation | evals/s | evals | steps | loss after |", "|---|---|---|---|---|"]
        for k in ("jax-lbfgs", "jax-lbfgs-fixed", "jax-lbfgs-backtrack", "jax-lbfgs-armijo", "torch-tutorial"):
            if k in lb:  # results from before lbfgs-backtrack/-armijo lack them
                v = lb[k]
                loss = v.get("loss_after", v["final_loss"])
                lines.append(f"| {k} | {v['evals_per_s']:.2f} | {v['evals']} | {v.get('steps', '-')} | {loss:.4g} |")
        if "value_ms" in lb:
            lines += ["", f"One evaluation at the top level: value only {lb['value_ms']:.0f} ms, value and "
                      f"gradient {lb['value_grad_ms']:.0f} ms."]
        lines += ["", "jax-lbfgs: Optax L-BFGS with its zoom line search (evaluations run inside a while "
                  "loop); jax-lbfgs-fixed: Optax L-BFGS with a unit step, no line search, like "
                  "torch-tutorial (torch.optim.LBFGS defaults, max_iter 20 per call); "
                  "jax-lbfgs-backtrack: unit steps checked by the Armijo condition at the next step; "
                  "jax-lbfgs-armijo: two value-only trial steps per step. Loss after: at the last "
                  "iterate, clipped to [0, 1].", ""]
    if "target" in r and "torch-tutorial" in r["target"]:
        t = r["target"]
        anchors = {k: v for k, v in t.items() if k.startswith("torch-") and v["seconds"] is not None}
        best = min(anchors.items(), key=lambda kv: kv[1]["seconds"]) if anchors else None
        lines += ["## Time to reach the tutorial's loss", "",
                  f"Target: loss {t['target_loss']:.4g}, the lowest the PyTorch tutorial's L-BFGS reaches in "
                  f"{t['budget_evals']} evaluations at {t['size']} px. Every row is the moment that "
                  "implementation's loss first reached the target, from the same start (the content image); "
                  "JAX rows include preparing and compiling (compile also shown apart)."
                  + (f" Ratios against the fastest PyTorch anchor, {best[0]} ({best[1]['seconds']:.1f} s)."
                     if best else ""), "",
                  "| implementation | seconds to target | x fastest torch | compile s | evaluations | best loss |",
                  "|---|---|---|---|---|---|"]
        for k, v in t.items():
            if not k.startswith(("torch-", "jax-")):
                continue
            if v["seconds"] is None:
                limit = (f"{v['evals_run']} evaluations, {v['seconds_run']:.0f} s" if "evals_run" in v
                         else f"{v['max_evals']} evaluations")
                secs, ratio = f"not reached in {limit}", "-"
            else:
                secs = f"{v['seconds']:.1f}"
                ratio = f"{v['seconds'] / best[1]['seconds']:.2f}x" if best else "-"
            evals = f"{v['coarse_evals']} + {v['evals']}" if "coarse_evals" in v else v["evals"]
            compile_s = f"{v['compile_seconds']:.1f}" if "compile_seconds" in v else "-"
            lines.append(f"| {k} | {secs} | {ratio} | {compile_s} | {evals or '-'} | {v['best_loss']:.4g} |")
        lines.append("\ntorch-tutorial: torch.optim.LBFGS as the PyTorch tutorial drives it (lr 1, no line "
                     "search, clamped in the closure); torch-strong-wolfe: line_search_fn='strong_wolfe', "
                     "clamped after each call; torch-adam: lr 0.02, clamped after each step. f0: "
                     "config.precondition (precondition.py); rows without f0: plain L-BFGS.")
        if t.get("ladder_steps"):
            lines.append(f"\n*-c2f: coarse-to-fine, {t['ladder_steps']} steps at each smaller size of the sqrt(2) "
                         "ladder from 128 px, then steps at full size until the target; evaluations: coarse + "
                         "full size.")
        lines.append("")
    if "sweep" in r:
        lines += ["## vmapped sweep vs sequential runs (VGG16)", "",
                  "| cells | px | vmapped cell-steps/s | sequential cell-steps/s | speed-up |", "|---|---|---|---|---|"]
        for x in r["sweep"]:
            lines.append(f"| {x['batch']} | {x['size']} | {x['cell_steps_per_s_vmapped']:.2f} | "
                         f"{x['cell_steps_per_s_sequential']:.2f} | {x['speedup']:.2f} |")
        lines.append("")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    _plots(r, out, name)


def _plots(r: dict, out: Path, name: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    if "steps" in r:
        keys = list(dict.fromkeys((x["arch"], x["size"]) for x in r["steps"]))
        impls = ["jax", "torch-tutorial", "torch-fast"]
        by = {(x["arch"], x["size"], x["impl"]): x["ms_per_step"] for x in r["steps"]}
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for i, impl in enumerate(impls):
            ax.bar([k + 0.27 * (i - 1) for k in range(len(keys))], [by[(a, s, impl)] for a, s in keys], 0.27, label=impl)
        ax.set_xticks(range(len(keys)), [f"{a}\n{s}px" for a, s in keys])
        ax.set_ylabel("ms per Adam step (median)")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"{name}-steps.png", dpi=100)
        plt.close(fig)
    if "sweep" in r:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for size in dict.fromkeys(x["size"] for x in r["sweep"]):
            rows = [x for x in r["sweep"] if x["size"] == size]
            b = [x["batch"] for x in rows]
            line, = ax.plot(b, [x["cell_steps_per_s_vmapped"] for x in rows], "o-", label=f"vmapped sweep, {size} px")
            ax.plot(b, [x["cell_steps_per_s_sequential"] for x in rows], "s--", color=line.get_color(),
                    label=f"sequential runs, {size} px")
        ax.set_xlabel("cells")
        ax.set_ylabel("cell-steps per second")
        ax.set_xscale("log", base=2)
        ax.set_title(name)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"{name}-sweep.png", dpi=100)
        plt.close(fig)
