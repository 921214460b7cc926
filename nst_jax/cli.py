"""The ``nst-jax`` command: a thin Typer layer over the library.

Each command collects options, builds one :class:`StyleConfig` (the options shared by
``stylize``, ``sweep`` and ``video`` are declared once, in options.py) and calls one library
function; what it prints is terminal.py's. Every user error is one line on stderr and a
non-zero exit, never a traceback: 1 = bad input or option, 3 = the loss became NaN/inf
(best image saved), 4 = no step lowered the loss (nothing written), 130 = interrupted (best
image saved; 143 on SIGTERM, 129 on SIGHUP).
"""

import math
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import cli_video, cli_weights, interrupt
from .config import StyleConfig
from .errors import NstError
from .files import check_clashes, check_snapshots, content_jobs, run_inputs, same_file, same_path, sweep_files
from .options import FLAGS, BitDepth, D, with_config_options
from .record import CallTimes
from .specs import config_from_options, parse_blend_grid, parse_layer_sets, parse_numbers
from .terminal import (CACHE, EXIT_NAN, EXIT_NO_PROGRESS, OneLineErrors, advice, end_of_batch, err, explain, fail,
                       out, plural, print_plan, progress_report, say, scale_text, use_cache)
from .watch import WatchOptions, with_watch_options


app = typer.Typer(cls=OneLineErrors, help="Neural style transfer (Gatys, Ecker & Bethge) in JAX.",
                  no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_show_locals=False)


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
        if len(jobs) > 1 and (resume or checkpoint or checkpoint_every):
            raise NstError("--resume, --checkpoint and --checkpoint-every take one content image, not a folder")
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
    if len(jobs) > 1 and not save_every and session.view is None:
        return stylize_folder(jobs, styles, config, save_best, bit_depth, session)
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
        with progress_report(config.total_steps, label) as update:
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
        err.print(f"interrupted after {plural(result.steps, 'step')}; saved the best image{smaller} to {output}{saved}",
                  highlight=False)
        raise typer.Exit(interrupt.exit_code())
    best = "-" if not math.isfinite(result.best_loss) else f"{result.best_loss:.4g}"
    out.print(f"{result.steps} steps, {result.function_evals} loss evaluations in {result.seconds:.1f} s "
              f"(compile {result.compile_seconds:.1f} s); best loss {best}\nwrote {output}"
              + (f" and its record {record}" if record else ""), highlight=False)


def stylize_folder(jobs: list[tuple[Path, Path]], styles: list[Path], config: StyleConfig, save_best: bool,
                   bit_depth: Optional[int], session) -> None:
    """A folder's photos, those of one shape batched (batch.stylize_many); a photo whose
    loss never fell is not written, one that blew up keeps its best image."""
    from . import image
    from .batch import stylize_many

    total, chunks = config.total_steps, {}  # chunks: (group, chunk) -> its photos, as they ran
    times, memory, place, last_call = {}, {}, {}, [time.perf_counter()]  # per chunk, per group, per photo
    style_names = list(map(str, styles))
    try:
        session.begin(config, title=f"{len(jobs)} photos in the style of {', '.join(s.name for s in styles)}",
                      inputs={"content": [str(c) for c, _ in jobs], "styles": style_names})
        with progress_report(total * len(jobs), f"{len(jobs)} photos") as update:
            def on_plan(group: int, photos: list[int], plans) -> None:
                memory[group] = plans
                place.update((photo, (group, k)) for k, photo in enumerate(photos))

            def on_progress(group: int, chunk: int, p) -> None:
                chunks.setdefault((group, chunk), len(p.loss))
                before = total * sum(n for key, n in chunks.items() if key != (group, chunk))
                update(before + p.step * len(p.loss), float(p.loss.mean()), scale_text(config, p.step))
                times.setdefault((group, chunk), CallTimes(start=last_call[0]))(p)  # from the chunk's start
                last_call[0] = time.perf_counter()
                session.progress(p)

            results = stylize_many([c for c, _ in jobs], styles if len(styles) > 1 else styles[0], config,
                                   callback=on_progress, on_plan=on_plan)
        written, stale, blown = [], [], []
        for i, ((content, output), result) in enumerate(zip(jobs, results)):
            if result is None:  # an interrupted batch: its later photos never ran
                continue
            for note in result.notes:
                err.print(f"note: {content.name}: {note}", highlight=False)
            if result.improved is False and result.stopped == "done":
                stale.append(content.name)
                continue
            blown += [content.name] * (result.stopped == "nan")
            picture = result.output if save_best or result.stopped != "done" else result.finish(result.image)
            image.save_image(picture, output, bit_depth)
            group, k = place[i]
            session.finished(result, output, picture, inputs={"content": str(content), "styles": style_names},
                             times=times.get((group, k // chunks.get((group, 0), 1))), plans=memory[group])
            written.append(output)
    except NstError as e:
        raise fail(explain(e)) from None
    if stale and not written:
        raise fail(f"no step lowered the loss of any photo: {advice(config, False)}; nothing was written",
                   EXIT_NO_PROGRESS)
    interrupted = any(r is not None and r.stopped == "interrupted" for r in results)
    every_blown = blown and len(blown) == len(written) and not stale
    end_of_batch(config, stopped="interrupted" if interrupted else "nan" if every_blown else "done",
                 where=str(jobs[0][1].parent), items="of", every="for every photo", stale=stale,
                 stale_kept="not written", blown=blown,
                 interrupted=f"interrupted; saved the best images of {len(written)} of {len(jobs)} photos")
    seconds = sum(r.seconds for r in results)  # each photo holds its share of its chunk's time
    compile_seconds = sum(r.compile_seconds for r in results)
    out.print(f"{len(written)} photos, {total} steps each, in {seconds:.1f} s (compile {compile_seconds:.1f} s)"
              f"\nwrote {len(written)} images to {jobs[0][1].parent}", highlight=False)


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
    from .sweeps import is_writer, start_distributed, sweep as run_sweep, write_sweep

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
        session = watch.start([output], written=files, read=inputs, say=say, kind="sweep", folder=True,
                              distributed=several)
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

        with progress_report(config.total_steps, "sweep") as update:
            result = run_sweep(content, styles if len(styles) > 1 else styles[0], config, betas, sets,
                               blends=blends, max_chunk=max_chunk, callback=on_progress)
        for note in result.notes:
            err.print(f"note: {note}", highlight=False)
        cells = result.cells()
        stale = [f"r{c['row']}c{c['col']}" for c in cells if not c["improved"]] if len(result.trace["loss"]) else []
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
    blown = [f"r{c['row']}c{c['col']}" for c in cells if c["final_loss"] is not None
             and not math.isfinite(c["final_loss"])]
    end_of_batch(config, stopped=result.stopped, where=str(output), items="in cell(s)", every="in every cell",
                 stale=stale, stale_kept="their images are the start image", blown=blown,
                 interrupted=f"interrupted after {plural(len(result.trace['loss']), 'step')}; saved the best images to "
                             f"{output}")
    out.print(f"{len(cells)} cells ({result.grid.shape[0]} x {result.grid.shape[1]}) in {result.grid.chunks} "
              f"chunk(s) on {result.grid.devices} device(s), {result.seconds:.1f} s (compile "
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
    from .record import plot_record, read_record, recorded_files

    try:
        if same_file(record, output) or record.resolve() == output.resolve():
            raise NstError(f"refusing to overwrite {output}: it is the record to plot")
        run = read_record(record)
        for kept in recorded_files(run, record):
            if same_path(output, kept):
                raise NstError(f"refusing to overwrite {output}: the record names it, as the run's output or an input")
        path = plot_record(run, output)
    except NstError as e:
        raise fail(explain(e)) from None
    out.print(f"wrote {path}", highlight=False)


# ---------------------------------------------------------------- video and weights (their own modules)

app.command()(cli_video.video)
app.add_typer(cli_weights.weights_app, name="weights")
