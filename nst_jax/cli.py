"""The ``nst-jax`` command: a thin Typer layer over the library.

Each command collects options, builds one :class:`StyleConfig` (or a weights call) and
forwards it to one library function. User errors print one line and exit non-zero:
1 = bad input, 3 = the loss became NaN/inf (best image saved), 130 = interrupted
(best image saved).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .config import PAPER_STYLE_LAYERS, StyleConfig
from .errors import NstError

app = typer.Typer(help="Neural style transfer (Gatys, Ecker & Bethge) in JAX.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
weights_app = typer.Typer(help="List, convert, inspect and download VGG weights.",
                          no_args_is_help=True)
app.add_typer(weights_app, name="weights")
err = Console(stderr=True)
out = Console()

EXIT_USER, EXIT_NAN, EXIT_INTERRUPTED = 1, 3, 130


def fail(message: str, code: int = EXIT_USER) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def parse_layers(spec: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """``"relu1_1,relu2_1"`` (equal weights summing to 1), ``"relu1_1:0.5,relu2_1:0.5"``,
    or ``"paper"`` (the paper's five style layers, 0.2 each)."""
    if spec.strip() == "paper":
        return PAPER_STYLE_LAYERS, (0.2,) * 5
    names, weights = [], []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, w = item.partition(":")
        names.append(name)
        try:
            weights.append(float(w) if w else None)
        except ValueError:
            raise NstError(f"bad layer weight in {item!r}: expected NAME or NAME:WEIGHT") from None
    if not names:
        raise NstError(f"no layers in {spec!r}")
    if any(w is None for w in weights):
        if not all(w is None for w in weights):
            raise NstError(f"give a weight for every layer or for none: {spec!r}")
        weights = [1.0 / len(names)] * len(names)
    return tuple(names), tuple(weights)


def build_config(*, size: int, steps: int, optimizer: str, lr: Optional[float], content_weight: float,
                 style_weight: float, ratio: Optional[float], tv_weight: float, content_layers: str,
                 style_layers: str, style_norm: str, pooling: str, init: str, init_noise: float,
                 seed: int, style_scale: float, weights: str, log_every: int) -> StyleConfig:
    """Options -> the one frozen config. ``ratio`` = alpha/beta overrides content_weight."""
    c_names, c_weights = parse_layers(content_layers)
    s_names, s_weights = parse_layers(style_layers)
    if lr is None and not optimizer.lower().startswith("lbfgs"):
        lr = StyleConfig.learning_rate
    if ratio is not None:
        content_weight = ratio * style_weight
    try:
        return StyleConfig(weights=weights, size=size, style_scale=style_scale,
                           content_layers=c_names, content_layer_weights=c_weights,
                           style_layers=s_names, style_layer_weights=s_weights,
                           content_weight=content_weight, style_weight=style_weight,
                           tv_weight=tv_weight, style_norm=style_norm, pooling=pooling,
                           optimizer=optimizer, learning_rate=lr, steps=steps, init=init,
                           init_noise=init_noise, seed=seed, log_every=log_every)
    except ValueError as e:
        raise NstError(str(e)) from None


# Options shared by stylize and sweep, declared once.
D = StyleConfig()
Size = Annotated[int, typer.Option(help="Longest side of the output in pixels.")]
Steps = Annotated[int, typer.Option(help="Optimizer steps.")]
Optim = Annotated[str, typer.Option("--optimizer", help="adam, lbfgs (zoom line search), lbfgs-fixed (unit step, no line search), or any optax optimizer by name.")]
Lr = Annotated[Optional[float], typer.Option("--lr", help="Learning rate in [0,1] pixel units "
                                             "(default 0.02; L-BFGS: line search).")]
ContentW = Annotated[float, typer.Option("--content-weight", help="alpha.")]
StyleW = Annotated[float, typer.Option("--style-weight", help="beta.")]
Ratio = Annotated[Optional[float], typer.Option(help="alpha/beta; sets alpha = ratio * beta.")]
TvW = Annotated[float, typer.Option("--tv-weight", help="Total-variation weight (0 = off).")]
CLayers = Annotated[str, typer.Option("--content-layers", help="NAME[:W],... e.g. relu4_2.")]
SLayers = Annotated[str, typer.Option("--style-layers", help="NAME[:W],... or 'paper'.")]
Norm = Annotated[str, typer.Option("--style-norm", help="paper (1/(4N^2M^2)) or mean.")]
Pool = Annotated[str, typer.Option(help="max or avg pooling.")]
Init = Annotated[str, typer.Option(help="content, noise, noisy-content, style, or an image path.")]
InitNoise = Annotated[float, typer.Option("--init-noise", help="Noise fraction for noisy-content.")]
Seed = Annotated[int, typer.Option(help="Random seed (same seed, same result).")]
StyleScale = Annotated[float, typer.Option("--style-scale", help="Style image size relative to --size.")]
Weights = Annotated[str, typer.Option(help="'embedded' (VGG16), a weights file, or a name "
                                      "from `nst-jax weights list`.")]
LogEvery = Annotated[int, typer.Option("--log-every", help="Record separate loss terms every N steps.")]


@app.command()
def stylize(
    content: Annotated[Path, typer.Argument(help="Content image.")],
    style: Annotated[Path, typer.Argument(help="Style image.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output image (.png, .jpg).")] = Path("out.png"),
    size: Size = D.size, steps: Steps = D.steps, optimizer: Optim = D.optimizer, lr: Lr = None,
    content_weight: ContentW = D.content_weight, style_weight: StyleW = D.style_weight,
    ratio: Ratio = None, tv_weight: TvW = D.tv_weight, content_layers: CLayers = "relu4_2",
    style_layers: SLayers = "paper", style_norm: Norm = D.style_norm, pooling: Pool = D.pooling,
    init: Init = D.init, init_noise: InitNoise = D.init_noise, seed: Seed = D.seed,
    style_scale: StyleScale = D.style_scale, weights: Weights = D.weights,
    log_every: LogEvery = D.log_every,
    save_every: Annotated[int, typer.Option("--save-every", help="Also save every N steps (0 = off).")] = 0,
    save_best: Annotated[bool, typer.Option("--best/--last", help="Save the lowest-loss or the last image.")] = True,
) -> None:
    """Stylize CONTENT in the style of STYLE and write the result to -o."""
    from . import image, optimize

    try:
        config = build_config(size=size, steps=steps, optimizer=optimizer, lr=lr,
                              content_weight=content_weight, style_weight=style_weight, ratio=ratio,
                              tv_weight=tv_weight, content_layers=content_layers,
                              style_layers=style_layers, style_norm=style_norm, pooling=pooling,
                              init=init, init_noise=init_noise, seed=seed, style_scale=style_scale,
                              weights=weights, log_every=log_every)
        image.check_writable(output)
        with progress_bar(config.steps) as (progress, task):
            def on_step(i, metrics, state):
                progress.update(task, advance=1, loss=float(metrics.loss))
                if save_every and (i + 1) % save_every == 0:
                    image.save_image(state.image, output.with_stem(f"{output.stem}_{i + 1:04d}"))

            result = optimize.stylize(content, style, config, callback=on_step)
        picture = result.best_image if save_best or result.stopped != "done" else result.image
        image.save_image(picture, output)
    except NstError as e:
        raise fail(str(e)) from None
    summary = (f"{result.steps} steps, {result.function_evals} loss evaluations in "
               f"{result.seconds:.1f} s (compile {result.compile_seconds:.1f} s); "
               f"best loss {result.best_loss:.4g}")
    if result.stopped == "nan":
        raise fail(f"the loss became NaN/inf at step {result.steps - 1}; saved the best image "
                   f"to {output}; {optimize.nan_advice(config)}", EXIT_NAN)
    if result.stopped == "interrupted":
        err.print(f"interrupted after {result.steps} steps; saved the best image to {output}")
        raise typer.Exit(EXIT_INTERRUPTED)
    out.print(f"{summary}\nwrote {output}", highlight=False)


@app.command()
def sweep(
    content: Annotated[Path, typer.Argument(help="Content image.")],
    style: Annotated[Path, typer.Argument(help="Style image.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output directory.")] = Path("sweep-out"),
    style_weights: Annotated[str, typer.Option("--style-weight", help="Comma-separated betas: the columns.")] = "1e5,1e6,1e7",
    layers: Annotated[str, typer.Option(help="Rows: 'paper' (conv1_1, +conv2_1, ... +conv5_1, the "
                                        "article's Fig. 9) or sets 'NAME[:W],...;NAME[:W],...'.")] = "paper",
    size: Size = 256, steps: Steps = 200, optimizer: Optim = D.optimizer, lr: Lr = None,
    content_weight: ContentW = D.content_weight, tv_weight: TvW = D.tv_weight,
    content_layers: CLayers = "relu4_2", style_norm: Norm = D.style_norm, pooling: Pool = D.pooling,
    init: Init = D.init, init_noise: InitNoise = D.init_noise, seed: Seed = D.seed,
    style_scale: StyleScale = D.style_scale, weights: Weights = D.weights,
    log_every: LogEvery = D.log_every,
    max_chunk: Annotated[Optional[int], typer.Option("--max-chunk", help="At most this many cells at once.")] = None,
    distributed: Annotated[bool, typer.Option(help="Call jax.distributed.initialize() (multi-host).")] = False,
) -> None:
    """Stylize a whole grid of style weights x layer sets in one vmapped program."""
    import json

    from . import image
    from .sweep import is_writer, sweep as run_sweep

    try:
        betas = [float(b) for b in style_weights.split(",") if b.strip()]
    except ValueError:
        raise fail(f"--style-weight takes numbers separated by commas, not {style_weights!r}") from None
    try:
        union, sets, row_labels = parse_layer_sets(layers)
        config = build_config(size=size, steps=steps, optimizer=optimizer, lr=lr,
                              content_weight=content_weight, style_weight=betas[0], ratio=None,
                              tv_weight=tv_weight, content_layers=content_layers,
                              style_layers=",".join(f"{n}:{w}" for n, w in zip(union, sets[0])),
                              style_norm=style_norm, pooling=pooling, init=init, init_noise=init_noise,
                              seed=seed, style_scale=style_scale, weights=weights, log_every=log_every)
        if distributed:
            import jax

            jax.distributed.initialize()
        if output.exists() and not output.is_dir():
            raise NstError(f"{output} exists and is not a directory")
        output.mkdir(parents=True, exist_ok=True)
        image.check_writable(output / "contact_sheet.png")
        with progress_bar(config.steps) as (progress, task):
            def on_step(chunk, i, metrics):
                progress.update(task, completed=i + 1, loss=float(metrics.loss.mean()),
                                description=f"chunk {chunk + 1}")

            result = run_sweep(content, style, config, betas, sets, max_chunk=max_chunk,
                                     callback=on_step)
        if is_writer():
            cols = [f"beta {b:g}" for b in betas]
            for cell in result.cells():
                b = cell["row"] * len(betas) + cell["col"]
                image.save_image(result.best_images[b], output / f"cell_r{cell['row']}_c{cell['col']}.png")
            sheet = image.contact_sheet(result.best_images, row_labels, cols,
                                        title=f"rows: style layers; columns: style weight beta (alpha {config.content_weight:g}, {steps} steps)")
            image.save_image(sheet, output / "contact_sheet.png")
            (output / "losses.json").write_text(json.dumps(
                {"config": {k: v for k, v in vars(config).items()}, "cells": result.cells(),
                 "chunks": result.chunks, "devices": result.devices, "seconds": result.seconds,
                 "compile_seconds": result.compile_seconds}, indent=1))
    except NstError as e:
        raise fail(str(e)) from None
    out.print(f"{len(result.cells())} cells ({result.shape[0]} x {result.shape[1]}) in {result.chunks} "
              f"chunk(s) on {result.devices} device(s), {result.seconds:.1f} s (compile "
              f"{result.compile_seconds:.1f} s)\nwrote {output}/contact_sheet.png, cell_r*_c*.png, losses.json",
              highlight=False)


def parse_layer_sets(spec: str) -> tuple[tuple[str, ...], list[tuple[float, ...]], list[str]]:
    """Rows of a sweep: (union of layer names, one weight vector per row, row labels)."""
    from .sweep import paper_layer_sets

    if spec.strip() == "paper":
        union = PAPER_STYLE_LAYERS
        sets = paper_layer_sets(union)
        return union, sets, [f"{union[0]}" if k == 1 else f"{union[0]}..{union[k - 1]}"
                             for k in range(1, len(union) + 1)]
    rows = [parse_layers(part) for part in spec.split(";") if part.strip()]
    union = tuple(dict.fromkeys(n for names, _ in rows for n in names))
    sets = [tuple(dict(zip(names, ws)).get(n, 0.0) for n in union) for names, ws in rows]
    labels = [",".join(names) for names, _ in rows]
    return union, sets, labels


@contextmanager
def progress_bar(total: int):
    """A rich progress bar with step, loss and steps/s on stderr (hidden when not a TTY)."""
    progress = Progress(TextColumn("[bold]stylizing"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4g}"), TextColumn("{task.speed} it/s"),
                        TimeElapsedColumn(), console=err, disable=not err.is_terminal)
    with progress:
        yield progress, progress.add_task("stylize", total=total, loss=float("nan"))


@weights_app.command("list")
def weights_list() -> None:
    """Weights available: the embedded VGG16 and converted files in the weights dirs."""
    from .weights import list_available, weights_dirs

    try:
        entries = list_available()
    except NstError as e:
        raise fail(str(e)) from None
    for e in entries:
        out.print(f"{e['name']:<28} {e['arch']:<6} {e['pixel_space']:<12} "
                  f"{e['source_format']:<12} {e['path']}", highlight=False)
    out.print(f"(searched {', '.join(str(d) for d in weights_dirs())})", style="dim")


@weights_app.command("convert")
def weights_convert(
    src: Annotated[Path, typer.Argument(help="A .pth, .h5, .mat, .ckpt or .safetensors file.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output .safetensors.")] = None,
    arch: Annotated[Optional[str], typer.Option(help="vgg16 or vgg19 (default: from the file).")] = None,
) -> None:
    """Convert a checkpoint (format sniffed from its content) to nst-jax safetensors."""
    from .weights import convert

    try:
        path = convert(src, output, arch)
    except NstError as e:
        raise fail(str(e)) from None
    out.print(f"wrote {path}", highlight=False)


@weights_app.command("info")
def weights_info(file: Annotated[Path, typer.Argument(help="Any supported weights file.")]) -> None:
    """Architecture, pixel space and provenance of a weights file."""
    from .weights import describe

    try:
        info = describe(file)
    except NstError as e:
        raise fail(str(e)) from None
    for k, v in info.items():
        out.print(f"{k:<14} {v}", highlight=False)


@weights_app.command("download")
def weights_download(
    arch: Annotated[str, typer.Argument(help="vgg19 or vgg16.")] = "vgg19",
    dest: Annotated[Optional[Path], typer.Option(help="Directory (default ./weights).")] = None,
) -> None:
    """Download torchvision's VGG weights (sha256-checked) and convert them."""
    from .weights import TORCHVISION_URLS, download

    if arch not in TORCHVISION_URLS:
        raise fail(f"unknown architecture {arch!r}: vgg16 or vgg19")
    try:
        path = download(arch, dest)
    except NstError as e:
        raise fail(str(e)) from None
    out.print(f"wrote {path}", highlight=False)


def main() -> None:  # pragma: no cover - the console script
    app(prog_name="nst-jax")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
