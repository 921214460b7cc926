"""The ``nst-jax`` command: a thin Typer layer over the library.

Each command collects options, builds one :class:`StyleConfig` (the options shared by
``stylize`` and ``sweep`` are declared once, in ``CONFIG_OPTIONS``) and calls one library
function. Every user error is one line on stderr and a non-zero exit, never a traceback:
1 = bad input or option, 3 = the loss became NaN/inf (best image saved), 4 = no step
lowered the loss (nothing written), 130 = interrupted (best image saved; 143 on SIGTERM, 129 on SIGHUP).
"""

import functools
import inspect
import math
import sys
import time
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text
from typer.core import TyperGroup

from .config import (Balance, Colour, ColourMatch, ContentNorm, Conv, DType, GramPrecision, Init,
                     OptimizerName, Pooling, StyleConfig, StyleNorm)
from . import interrupt
from .errors import ConfigError, NstError
from .files import check_clashes, check_snapshots, content_jobs, run_inputs, same_file, same_path, sweep_files
from .specs import FIELD_OF, LAYER_WEIGHTS, config_from_options, parse_blend_grid, parse_layer_sets, parse_numbers
from .watch import WatchOptions, with_watch_options

EXIT_USER, EXIT_NAN, EXIT_NO_PROGRESS = 1, 3, 4

# No markup in what is printed: file names may hold brackets ("[/b]" would be a tag).
err = Console(stderr=True, soft_wrap=True, markup=False)
out = Console(soft_wrap=True, markup=False)


class OneLineErrors(TyperGroup):
    """Usage errors (unknown option, bad choice, missing argument) as one line too."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except typer.exceptions.TyperException as e:
            if type(e).__name__ == "NoArgsIsHelpError":
                out.print(e.format_message(), highlight=False, markup=False)
                sys.exit(0)
            fail(e.format_message())
            sys.exit(EXIT_USER)
        except typer.Abort:
            sys.exit(EXIT_USER)
        interrupt.leave(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        """Run the command with SIGINT, SIGTERM and SIGHUP noted (:mod:`.interrupt`), so a
        run stops at its next safe point and saves what it has; an interruption that gets
        here came before there was anything to save."""
        with interrupt.installed():
            try:
                interrupt.check()
                return super().invoke(ctx)
            except KeyboardInterrupt:
                err.print("interrupted; nothing more was saved", highlight=False)
                raise typer.Exit(interrupt.exit_code()) from None


app = typer.Typer(cls=OneLineErrors, help="Neural style transfer (Gatys, Ecker & Bethge) in JAX.",
                  no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_show_locals=False)
weights_app = typer.Typer(cls=OneLineErrors, help="List, inspect, convert and download VGG weights.",
                          no_args_is_help=True, rich_markup_mode=None)
app.add_typer(weights_app, name="weights")


def fail(message: str, code: int = EXIT_USER) -> typer.Exit:
    """Print ``message`` as the one ``error:`` line (a newline in it, say in a file name,
    is shown as \\n) and return the exit to raise."""
    one_line = message.replace("\r", "\\r").replace("\n", "\\n")
    err.print(Text("error:", style="bold red"), one_line, highlight=False)
    return typer.Exit(code)


def explain(e: NstError, flags: dict[str, str] | None = None) -> str:
    """A library error in the command's words: a :class:`ConfigError` names the option
    (``flags``: config field -> option, default ``FLAGS``) instead of the config field."""
    if isinstance(e, ConfigError):
        return f"{(flags or FLAGS).get(e.field, e.field)} {e.problem}"
    return str(e)


def version_callback(value: bool) -> None:
    if value:
        from . import __version__

        out.print(f"nst-jax {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(version: Annotated[bool, typer.Option("--version", callback=version_callback,
                                                       is_eager=True, help="Print the version.")] = False,
                 no_cache: Annotated[bool, typer.Option(
                     "--no-cache", help="Compile every program afresh instead of reusing the persistent "
                     "compilation cache (also NST_JAX_NO_CACHE=1; the folder: NST_JAX_CACHE_DIR, default "
                     "~/.cache/nst-jax/xla).")] = False):
    """Neural style transfer (Gatys, Ecker & Bethge) in JAX."""
    CACHE["off"] = no_cache


CACHE = {"off": False}


def use_cache() -> None:
    """Compiled programs from the persistent cache (cache.py) unless turned off; before
    the first compile of a command that runs."""
    from .cache import cache_off, enable_cache

    if not (CACHE["off"] or cache_off()):
        enable_cache(notify=lambda message: err.print(f"note: {message}", highlight=False))


# ---------------------------------------------------------------- options -> config

D = StyleConfig()
# The options stylize and sweep share, by parameter name: (annotation, default).
CONFIG_OPTIONS = {
    "size": (Annotated[int, typer.Option(help="Longest side of the output in pixels.")], D.size),
    "steps": (Annotated[int, typer.Option(help="Optimizer steps.")], D.steps),
    "optimizer": (Annotated[OptimizerName, typer.Option(
        help="adam; lbfgs (zoom line search); lbfgs-fixed (unit step, no line search); "
             "lbfgs-backtrack (unit steps, Armijo backtracking: lbfgs-fixed's speed, with a "
             "safeguard; the L-BFGS for CPU); lbfgs-armijo (two trial steps per step).")],
        OptimizerName(D.optimizer)),
    "lr": (Annotated[Optional[float], typer.Option(
        "--lr", help="Learning rate in [0,1] pixel units (adam: 0.02; L-BFGS: none needed).")], None),
    "precondition": (Annotated[float, typer.Option(
        help="L-BFGS: low-pass its directions above this frequency in cycles per pixel, so coarse "
             "structure moves as fast as texture (0 = plain L-BFGS; others ignore it).")], D.precondition),
    "content_weight": (Annotated[Optional[float], typer.Option(
        "--content-weight", help=f"alpha (default {D.content_weight:g}).")], None),
    "ratio": (Annotated[Optional[float], typer.Option(
        help="alpha/beta: sets alpha = ratio x beta (instead of --content-weight).")], None),
    "tv_weight": (Annotated[float, typer.Option("--tv-weight", help="Total-variation weight (0 = off).")],
                  D.tv_weight),
    "content_layers": (Annotated[str, typer.Option("--content-layers",
                                                   help="NAME[:W],... e.g. relu4_2.")], "relu4_2"),
    "style_layers": (Annotated[str, typer.Option("--style-layers", help="NAME[:W],... or 'paper' "
                                                 "(relu1_1..relu5_1, 0.2 each).")], "paper"),
    "style_norm": (Annotated[StyleNorm, typer.Option("--style-norm", help="paper: 1/(4 N^2 M^2); "
                                                     "mean: the PyTorch tutorial's; relative: over |G_S|^2.")], StyleNorm(D.style_norm)),
    "content_norm": (Annotated[ContentNorm, typer.Option(
        "--content-norm", help="sum: the paper's 1/2 sum (grows with size); mean: per element; relative: "
                               "over 1/2 sum P^2, the same at every size and for every photo.")],
        ContentNorm(D.content_norm)),
    "balance": (Annotated[Balance, typer.Option(
        help="gap: beta weighs the style term as a fraction of the photo's own distance from the painting "
             "(1 at the photo), the same trade for every pair and size; fixed: the style term as it is "
             "(the paper).")], Balance(D.balance)),
    "per_channel": (Annotated[float, typer.Option(
        "--per-channel", help="A style layer keeps its whole weight when its Gram averages this many "
                              "positions per channel, less below (deep layers of small pictures, which "
                              "otherwise copy the painting's objects); 0 = the paper.")], D.per_channel),
    "scales": (Annotated[str, typer.Option(help="Coarse to fine: 'auto' (from 128 px in sqrt(2) steps), "
                                           "'none', or sizes like 256,512 (--steps at each).")],
               D.scales if isinstance(D.scales, str) else ",".join(map(str, D.scales)) or "none"),
    "detail": (Annotated[float, typer.Option(help="Coarse to fine: how much of the start image's fine "
                                             "detail each scale gets back on upsampling, 0 to 1 (0 for "
                                             "--init noise).")], D.detail),
    "average": (Annotated[float, typer.Option(help="Iterate averaging: EMA decay, e.g. 0.99 (0 = off).")],
                D.average),
    "pooling": (Annotated[Pooling, typer.Option(help="max (as trained) or avg (the paper's advice).")],
                Pooling(D.pooling)),
    "init": (Annotated[Init, typer.Option(help="Start image; 'image' takes --init-image.")], Init(D.init)),
    "init_image": (Annotated[Optional[Path], typer.Option("--init-image", help="Start image file.")], None),
    "init_noise": (Annotated[float, typer.Option("--init-noise", help="Noise fraction for noisy-content.")],
                   D.init_noise),
    "seed": (Annotated[int, typer.Option(help="Random seed (same seed, same result).")], D.seed),
    "style_scale": (Annotated[float, typer.Option("--style-scale", help="Style image size relative "
                                                  "to --size.")], D.style_scale),
    "blend": (Annotated[Optional[str], typer.Option(help="Weights of several style images, e.g. 3,7 "
                                                  "(default: equal).")], None),
    "colour": (Annotated[Colour, typer.Option(
        "--colour", "--color", help="original: keep the content's colours (after the run); luminance: "
                                    "transfer luminance only; histogram: match the style's colours to the "
                                    "content's first.")], Colour(D.colour)),
    "colour_match": (Annotated[ColourMatch, typer.Option(
        "--colour-match", "--color-match", help="The colour map of --colour histogram (image_analogies: "
                                                "the paper's code).")], ColourMatch(D.colour_match)),
    "mask": (Annotated[Optional[list[Path]], typer.Option(
        "--mask", help="Where the style goes (white; black keeps the content): one per style image, or "
                       "one image with a flat colour per style (brightest = first).")], None),
    "style_mask": (Annotated[Optional[list[Path]], typer.Option(
        "--style-mask", help="One per style image: the part of it to take the style from (white).")], None),
    "mask_erode": (Annotated[int, typer.Option("--mask-erode", help="Shrink the masks by N positions at "
                                               "every style layer (0 = off).")], D.mask_erode),
    "keep_unmasked": (Annotated[bool, typer.Option(
        "--keep-unmasked/--free-unmasked", help="Outside the masks: keep the content's pixels, or let "
                                                "only the content loss hold them (the paper).")], D.keep_unmasked),
    "weights": (Annotated[str, typer.Option(help="'embedded' (VGG16), vgg19, a weights file, or a "
                                            "name from `nst-jax weights list`.")], D.weights),
    "log_every": (Annotated[int, typer.Option("--log-every", help="Record the separate loss terms "
                                              "every N steps.")], D.log_every),
    "dtype": (Annotated[DType, typer.Option(help="Network compute dtype (losses stay float32); "
                                            "bfloat16 is for GPUs/TPUs.")], DType(D.dtype)),
    "conv": (Annotated[Conv, typer.Option(help="How convolutions run: auto (winograd on CPU in float32, "
                                          "else lax), lax (XLA's own) or winograd (fewer multiplies; "
                                          "layers under 12 px as one matmul).")],
             Conv(D.conv)),
    "gram_precision": (Annotated[GramPrecision, typer.Option(
        help="The Gram matrices' matmul: auto (tf32x3 on GPUs with TF32, else float32), float32, or "
             "tf32x3 (three TF32 passes, about float32's accuracy; GPUs only).")], GramPrecision(D.gram_precision)),
    "remat": (Annotated[bool, typer.Option("--remat/--no-remat", help="Recompute each VGG block in the "
                                           "backward pass: less memory, about one more forward.")], D.remat),
    "max_memory": (Annotated[Optional[float], typer.Option(
        "--max-memory", help="GiB a step may use (default: 90% of the memory available); a step that "
                             "does not fit whole runs in tiles, with the same result.")], D.max_memory),
    "tile": (Annotated[str, typer.Option(help="Tile side in px: 'auto' (tiles only when the step does not "
                                         "fit), 'none' (never), or N.")], str(D.tile)),
    "steps_per_call": (Annotated[Optional[int], typer.Option(
        "--steps-per-call", help="Steps per compiled call (default: 1 on CPU, 10 on GPU).")], None),
}


def option_flag(name: str, annotation) -> str:
    """The command-line spelling of a declared option: its own name, else its first ``--`` one."""
    plain = "--" + name.replace("_", "-")
    info = typing.get_args(annotation)[1]  # in Annotated, typer takes a first "--name" as a name, not a default
    decls = [d.split("/")[0] for d in (info.default, *info.param_decls) if isinstance(d, str) and d.startswith("--")]
    return plain if not decls or plain in decls else decls[0]


# Config field -> the option that sets it (errors name the option).
FLAGS = {FIELD_OF.get(name, name): option_flag(name, annotation) for name, (annotation, _) in CONFIG_OPTIONS.items()}
FLAGS.update({weights: FLAGS[layers] for layers, weights in LAYER_WEIGHTS.items()},
             style_weight="--style-weight", bit_depth="--bit-depth")

# Not a config option (it changes only how results are written), shared by stylize and sweep.
BitDepth = Annotated[Optional[int], typer.Option(
    "--bit-depth", help="Bits per channel of the images written: 8, or 16 for .png and .tif (default: 16 "
                        "for .tif, 8 otherwise).")]


def with_config_options(exclude: tuple[str, ...] = (), **defaults):
    """Add ``CONFIG_OPTIONS`` (minus ``exclude``, with other ``defaults``) to a command's
    options; the command receives them as one ``options`` dict (specs.config_from_options)."""

    def decorate(command):
        own = [p for p in inspect.signature(command).parameters.values() if p.name != "options"]
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                    default=defaults.get(name, default))
                  for name, (annotation, default) in CONFIG_OPTIONS.items() if name not in exclude]

        @functools.wraps(command)
        def wrapper(**kwargs):
            options = {p.name: kwargs.pop(p.name) for p in shared}
            return command(options=options, **kwargs)

        wrapper.__signature__ = inspect.Signature(own + shared)
        del wrapper.__wrapped__  # typer must read the new signature, not the command's
        return wrapper

    return decorate


# ---------------------------------------------------------------- progress


@contextmanager
def progress_report(total: int, label: str = "stylizing"):
    """A progress bar on a terminal; plain lines every few seconds otherwise (log files).

    Yields ``update(done, loss, where="")``, ``where`` e.g. the scale. Speed and ETA count
    from the first update (a resumed run's first step too), so the first compile is not in them.
    """
    last, since = [0.0], []

    def speed_and_eta(done: int) -> tuple[str, str]:
        now = time.perf_counter()
        if not since:
            since.append((now, done))
        t0, d0 = since[0]
        speed = (done - d0) / (now - t0) if now > t0 else 0.0
        rate = f"{speed:.2f} it/s" if speed >= 1 else f"{1 / speed:.1f} s/it" if speed > 0 else ""
        return rate, format_seconds((total - done) / speed) if speed > 0 else "-"

    if err.is_terminal:
        bar = Progress(TextColumn(f"[bold]{escape(label)}"), TextColumn("{task.fields[where]}"), BarColumn(),
                       MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
                       TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"), console=err)
        with bar:
            task = bar.add_task(label, total=total, loss="-", rate="", where="", eta="-")

            def update(done: int, loss: float, where: str = "") -> None:
                rate, eta = speed_and_eta(done)
                bar.update(task, completed=done, loss=f"{loss:.4g}", rate=rate, eta=eta, where=escape(where))

            yield update
        return

    def update(done: int, loss: float, where: str = "") -> None:
        rate, eta = speed_and_eta(done)
        now = time.perf_counter()
        if now - last[0] >= 5.0 or done == total:
            last[0] = now
            err.print(f"{label}: {where + '  ' if where else ''}step {done}/{total}  loss {loss:.4g}  {rate}"
                      f"  ETA {eta}", highlight=False)

    yield update


def scale_text(config: StyleConfig, step: int) -> str:
    """Where step ``step`` (1-based) runs: "256 px, scale 3/5"."""
    from .run import scale_of

    if len(config.sizes) < 2:
        return ""
    index = scale_of(config, step)
    return f"{config.sizes[index]} px, scale {index + 1}/{len(config.sizes)}"


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes}m{s:02d}s" if minutes else f"{s}s"


# ---------------------------------------------------------------- stylize


@app.command()
@with_config_options()
@with_watch_options
def stylize(
    content: Annotated[Path, typer.Argument(help="Content image, or a folder of them.")],
    styles: Annotated[list[Path], typer.Argument(help="Style image(s); several are blended.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output image (.png, .jpg, .webp, "
                                         ".tiff), or a folder when CONTENT is one.")] = Path("out.png"),
    style_weight: Annotated[float, typer.Option("--style-weight", help="beta.")] = D.style_weight,
    save_every: Annotated[int, typer.Option("--save-every", help="Also save every N steps (0 = off).")] = 0,
    save_best: Annotated[bool, typer.Option("--best/--last", help="Save the output (the iterate average "
                                            "with --average, else the lowest-loss iterate) or the last "
                                            "iterate.")] = True,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Write the run state every N "
                                                  "steps (and on Ctrl-C) to --checkpoint.")] = 0,
    checkpoint: Annotated[Optional[Path], typer.Option(help="Checkpoint file (default: OUTPUT with "
                                                       ".ckpt).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run saved in this checkpoint.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write the output even over one of the run's "
                                        "input files.")] = False,
    bit_depth: BitDepth = None,
    options: dict = None,
    watch: WatchOptions = None,
) -> None:
    """Stylize CONTENT in the style of STYLE(S) and write the result to -o."""
    from . import image

    try:
        config = config_from_options({**options, "style_weight": style_weight})
        if save_every < 0 or checkpoint_every < 0:
            raise NstError("--save-every and --checkpoint-every take 0 (off) or a positive number")
        jobs = content_jobs(content, output)
        for _, out_path in jobs:
            image.check_writable(out_path, bit_depth)
        if len(jobs) > 1 and (resume or checkpoint):
            raise NstError("--resume and --checkpoint take one content image, not a folder")
        ckpt = checkpoint or (output.with_suffix(".ckpt") if checkpoint_every or resume else None)
        if ckpt is not None:
            image.check_directory(Path(ckpt).parent)
        inputs = run_inputs(config, [c for c, _ in jobs], styles)
        outputs = [o for _, o in jobs]
        if ckpt is not None and any(same_path(ckpt, o) for o in outputs):
            raise NstError(f"--checkpoint {ckpt} is the output's name: give the checkpoint another one")
        if not force:
            check_clashes(outputs, inputs + [resume])
            check_clashes([ckpt], inputs)
            if save_every:
                check_snapshots(outputs, inputs + [resume, ckpt])
        session = watch.start([o for _, o in jobs], written=[ckpt], read=inputs + [resume], say=say)
    except NstError as e:
        raise fail(explain(e)) from None
    use_cache()
    for content_path, out_path in jobs:
        stylize_one(content_path, styles, out_path, config, save_every, save_best, ckpt,
                    checkpoint_every, resume, label=content_path.name if len(jobs) > 1 else "stylizing",
                    bit_depth=bit_depth, session=session)


def stylize_one(content: Path, styles: list[Path], output: Path, config: StyleConfig, save_every: int,
                save_best: bool, checkpoint: Optional[Path], checkpoint_every: int,
                resume: Optional[Path], label: str, session, bit_depth: Optional[int] = None) -> None:
    from . import image, run
    from .colour import as_rgb

    try:
        session.begin(config, title=f"{content.name} in the style of {', '.join(s.name for s in styles)}",
                      inputs={"content": str(content), "styles": list(map(str, styles))})
        snapshots = []
        with progress_report(config.steps * len(config.sizes), label) as update:
            def on_progress(p: run.Progress) -> None:
                update(p.step, float(p.loss), scale_text(config, p.step))
                session.progress(p)
                if save_every and p.step % save_every == 0:
                    snapshots.append(image.save_image(as_rgb(p.state.image),
                                                      output.with_stem(f"{output.stem}_{p.step:04d}"), bit_depth))

            def on_plan(plans) -> None:
                print_plan(plans)
                session.plan(plans)

            result = run.stylize(content, styles if len(styles) > 1 else styles[0], config,
                                 callback=on_progress, resume=resume, checkpoint=checkpoint,
                                 checkpoint_every=checkpoint_every, on_plan=on_plan)
        for note in result.notes:
            err.print(f"note: {note}", highlight=False)
        if result.improved is False and result.stopped == "done":  # no picture worth keeping
            for path in snapshots:
                path.unlink(missing_ok=True)
            kept = (f" (the run state is in {checkpoint}: --resume it with more --steps)"
                    if checkpoint and checkpoint_every and Path(checkpoint).exists() else "")
            raise fail(f"no step lowered the loss ({result.history[0].total:.4g} at the start): "
                       f"{advice(config, False)}; {output} was not written{kept}", EXIT_NO_PROGRESS)
        picture = result.output if save_best or result.stopped != "done" else result.finish(result.image)
        image.save_image(picture, output, bit_depth)
        record = session.finished(result, output, picture)
    except NstError as e:
        raise fail(explain(e)) from None
    if result.stopped == "nan":
        raise fail(f"the loss became NaN/inf at step {result.steps - 1}; saved the best image "
                   f"to {output}; {advice(config, True)}", EXIT_NAN)
    if result.stopped == "interrupted":
        saved = f" and the run state to {checkpoint}" if checkpoint and checkpoint_every else ""
        h, w = picture.shape[:2]
        smaller = f" (at {w}x{h} px: it stopped before the last scale)" if max(h, w) != config.size else ""
        err.print(f"interrupted after {result.steps} steps; saved the best image{smaller} to {output}{saved}",
                  highlight=False)
        raise typer.Exit(interrupt.exit_code())
    best = "-" if not math.isfinite(result.best_loss) else f"{result.best_loss:.4g}"
    out.print(f"{result.steps} steps, {result.function_evals} loss evaluations in {result.seconds:.1f} s "
              f"(compile {result.compile_seconds:.1f} s); best loss {best}\nwrote {output}"
              + (f" and its record {record}" if record else ""), highlight=False)


def say(message: str) -> None:
    """One line of our own on stderr (no markup: paths may hold brackets)."""
    err.print(message, highlight=False, markup=False)


def print_plan(plans) -> None:
    """The memory plan of a run, one line before its first step."""
    from .memory import describe_plans

    err.print(f"memory: {describe_plans(plans)}", highlight=False, markup=False)


def advice(config: StyleConfig, blew_up: bool) -> str:
    """What to change when the loss blew up (``blew_up``) or never fell."""
    lbfgs = config.is_lbfgs
    lr = 0.02 if config.learning_rate is None else config.learning_rate
    if not (config.content_weight or config.style_weight or config.tv_weight):
        return "every loss weight is 0: give --content-weight or --style-weight above 0"
    if blew_up:
        return ("lower --style-weight (L-BFGS steps grow with the loss scale)" if lbfgs
                else f"lower --lr (now {lr:g}) or --style-weight (now {config.style_weight:g})")
    if config.learning_rate == 0:
        return "raise --lr (0 moves nothing)"
    if config.steps == 1:
        return "give --steps 2 or more (a step is scored by the evaluation that starts the next one)"
    if not lbfgs:
        return f"change --lr (now {lr:g}): lower if the loss rose, higher if it barely moved"
    return "lower --style-weight (L-BFGS steps grow with the loss scale) or give more --steps"


# ---------------------------------------------------------------- sweep


@app.command()
@with_config_options(exclude=("ratio",), size=256)
@with_watch_options
def sweep(
    content: Annotated[Path, typer.Argument(help="Content image.")],
    styles: Annotated[list[Path], typer.Argument(help="Style image(s); several are blended.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output directory (created if "
                                         "missing).")] = Path("sweep-out"),
    style_weights: Annotated[str, typer.Option("--style-weight", help="Comma-separated betas: the "
                                               "columns.")] = "5,20,80",
    layers: Annotated[str, typer.Option(help="Rows: '' (one row, the --style-layers), 'paper' "
                                        "(the first 1..5 of them, the article's Fig. 9) or sets "
                                        "'NAME[:W],...;NAME[:W],...'.")] = "",
    blend_grid: Annotated[Optional[str], typer.Option(
        "--blend-grid", help="More rows: blends of the style images. Two styles: the second's share, "
                             "e.g. 0,0.25,0.5,0.75,1; any number: weight vectors 'a,b,c;d,e,f'.")] = None,
    max_chunk: Annotated[Optional[int], typer.Option("--max-chunk", help="At most this many cells at once.")] = None,
    distributed: Annotated[bool, typer.Option(
        help="Run as one process of a multi-process (multi-host) sweep: start every process with the "
             "same command (its own --process-id); the coordinator, process count and id come from the "
             "options below or from a cluster JAX detects (SLURM, Open MPI, Kubernetes, Cloud TPU).")] = False,
    coordinator: Annotated[Optional[str], typer.Option(
        help="HOST:PORT where process 0 listens (implies --distributed).")] = None,
    num_processes: Annotated[Optional[int], typer.Option(
        "--num-processes", help="How many processes take part (implies --distributed).")] = None,
    process_id: Annotated[Optional[int], typer.Option(
        "--process-id", help="This process's number, 0 to N-1; 0 writes the results.")] = None,
    bit_depth: BitDepth = None,
    options: dict = None,
    watch: WatchOptions = None,
) -> None:
    """Stylize a whole grid of style weights x layer sets in one vmapped program."""
    from . import image
    from .sweep import is_writer, start_distributed, sweep as run_sweep, write_sweep

    try:
        betas = parse_numbers(style_weights, "--style-weight")
        config = config_from_options({**options, "style_weight": betas[0]})
        union, sets, row_labels = parse_layer_sets(layers, config.style_layers, config.style_layer_weights)
        config = config.replace(style_layers=union, style_layer_weights=sets[0])
        blends, blend_labels = [config.style_blend], [""]
        if blend_grid is not None:
            if config.style_blend:
                raise NstError("give --blend or --blend-grid, not both")
            blends, blend_labels = parse_blend_grid(blend_grid, len(styles))
            row_labels = [f"{r} {b}" for r in row_labels for b in blend_labels]
        if output.exists() and not output.is_dir():
            raise NstError(f"{output} exists and is not a directory")
        image.check_directory(output)
        image.output_bit_depth(output / "cell.png", bit_depth)
        if max_chunk is not None and max_chunk < 1:
            raise NstError(f"--max-chunk must be a positive integer, not {max_chunk}")
        several = distributed or (coordinator, num_processes, process_id) != (None, None, None)
        files, inputs = sweep_files(output, len(row_labels), len(betas)), run_inputs(config, [content], styles)
        check_clashes(files, inputs)
        session = watch.start([output], written=files, read=inputs, say=say, sweep=True, distributed=several)
        if several:
            start_distributed(coordinator, num_processes, process_id, notify=lambda m: err.print(
                f"note: {m}", highlight=False))
        use_cache()
        session.begin(config, title=f"sweep: {content.name} in the style of {', '.join(s.name for s in styles)}",
                      inputs={"content": str(content), "styles": list(map(str, styles))}, rows=len(row_labels),
                      cols=len(betas), row_labels=row_labels, col_labels=[f"beta {b:g}" for b in betas])

        def on_progress(chunk: int, p) -> None:
            update(p.step, float(p.loss.mean()), scale_text(config, p.step))
            session.progress(p, chunk)

        with progress_report(config.steps * len(config.sizes), "sweep") as update:
            result = run_sweep(content, styles if len(styles) > 1 else styles[0], config, betas, sets,
                               blends=blends, max_chunk=max_chunk, callback=on_progress)
        for note in result.notes:
            err.print(f"note: {note}", highlight=False)
        cells = result.cells()
        stale = [f"r{c['row']}c{c['col']}" for c in cells if not c["improved"]] if len(result.history) else []
        if result.stopped == "done" and len(stale) == len(cells):
            raise fail(f"no step lowered the loss in any cell: {advice(config, False)}; {output} was not "
                       "written", EXIT_NO_PROGRESS)
        record = None
        if is_writer():
            write_sweep(result, output, row_labels, bit_depth)
            record = session.finished(result, output, result.outputs)
    except NstError as e:
        raise fail(explain(e, {**FLAGS, "style_layer_weights": "--layers" if layers.strip() else "--style-layers",
                               "style_blend": "--blend" if blend_grid is None else "--blend-grid",
                               "coordinator": "--coordinator", "num_processes": "--num-processes",
                               "process_id": "--process-id"})) from None
    if result.stopped == "nan":
        raise fail(f"the loss became NaN/inf in every cell; saved the best images to {output}; "
                   f"{advice(config, True)}", EXIT_NAN)
    if result.stopped == "interrupted":
        err.print(f"interrupted after {len(result.history)} steps; saved the best images to {output}",
                  highlight=False)
        raise typer.Exit(interrupt.exit_code())
    blown = [f"r{c['row']}c{c['col']}" for c in cells if c["final_loss"] is not None
             and not math.isfinite(c["final_loss"])]
    if blown:
        err.print(f"warning: the loss became NaN/inf in cell(s) {', '.join(blown)} (their images are the best "
                  f"before that): {advice(config, True)}", highlight=False)
    if stale:
        err.print(f"warning: no step lowered the loss in cell(s) {', '.join(stale)} (their images are the "
                  f"start image): {advice(config, False)}", highlight=False)
    out.print(f"{len(cells)} cells ({result.shape[0]} x {result.shape[1]}) in {result.chunks} "
              f"chunk(s) on {result.devices} device(s), {result.seconds:.1f} s (compile "
              f"{result.compile_seconds:.1f} s)" + (f"\nwrote {output}/contact_sheet.png, cell_r*_c*.png, losses.json"
                                                     if is_writer() else "")
              + (f"\nwrote the record {record}" if record else ""), highlight=False)


# ---------------------------------------------------------------- plot


@app.command()
def plot(
    record: Annotated[Path, typer.Argument(help="A run record (NAME.json, written beside each output).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The picture: .png, .pdf or .svg.")] = Path(
        "losses.png"),
) -> None:
    """Draw a run record's loss curves (needs matplotlib: pip install "nst-jax[plot]")."""
    from .record import plot_record, read_record

    try:
        if same_file(record, output) or record.resolve() == output.resolve():
            raise NstError(f"refusing to overwrite {output}: it is the record to plot")
        path = plot_record(read_record(record), output)
    except NstError as e:
        raise fail(explain(e)) from None
    out.print(f"wrote {path}", highlight=False)


# ---------------------------------------------------------------- weights


@weights_app.command("list")
def weights_list() -> None:
    """Weights available: the embedded VGG16 and converted files in the weights dirs."""
    from .weights import list_available, weights_dirs

    try:
        entries = list_available()
    except NstError as e:
        raise fail(explain(e)) from None
    for e in entries:
        out.print(f"{e['name']:<28} {e['arch']:<6} {e['pixel_space']:<12} {e['source_format']:<12} "
                  f"{e['path']}", highlight=False, markup=False)
    out.print(f"(searched {', '.join(str(d) for d in weights_dirs())}; more: `nst-jax weights download "
              f"vgg19` or `nst-jax weights convert FILE`)", style="dim", highlight=False, markup=False)


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
        raise fail(explain(e)) from None
    out.print(f"wrote {path}", highlight=False, markup=False)


@weights_app.command("info")
def weights_info(spec: Annotated[str, typer.Argument(
        help="A weights file, 'embedded', or a name from `nst-jax weights list`.")]) -> None:
    """Architecture, pixel space and provenance of weights."""
    from .weights import describe

    try:
        info = describe(spec)
    except NstError as e:
        raise fail(explain(e)) from None
    for k, v in info.items():
        out.print(f"{k:<14} {v}", highlight=False, markup=False)


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
        raise fail(explain(e)) from None
    out.print(f"wrote {path}", highlight=False, markup=False)


# ---------------------------------------------------------------- video

from . import cli_video  # noqa: E402,F401  (registers `nst-jax video` on app)


if __name__ == "__main__":  # pragma: no cover
    from .console import main

    main()
