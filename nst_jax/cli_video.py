"""The ``nst-jax video`` command: options -> (StyleConfig, VideoConfig) -> video.stylize_video.

cli.py registers :func:`video` on its app; errors and exit codes are terminal.py's.
"""

import math
import time
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import interrupt
from .options import FLAGS, D, with_config_options
from .specs import config_from_options
from .terminal import EXIT_NAN, advice, err, explain, fail, format_seconds, out, print_plan, say, use_cache
from .clip import open_clip
from .errors import NstError
from .flow import PRESETS
from .image import load_image
from .video import VideoConfig, frame_name, frames_dir, is_folder, stylize_video
from .watch import WatchOptions, with_watch_options

V = VideoConfig()
LONG_TERM = (1, 2, 4)  # Ruder et al.'s J for long-term consistency (sec. 3.2)
VIDEO_FLAGS = {**FLAGS, "temporal_weight": "--temporal-weight", "first_steps": "--first-steps",
               "steps": "--steps", "start": "--start", "frames": "--frames", "flow": "--flow",
               "previous": "--long-term"}


def parse_start(spec: str, fps: Fraction) -> int:
    """A frame index (``120``) or a time in seconds (``4.8s``) as a frame index."""
    spec = spec.strip().lower()
    try:
        if spec.endswith("s"):
            seconds = float(spec[:-1])
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError
            return int(math.floor(seconds * fps + 1e-9))
        index = int(spec)
        if index < 0:
            raise ValueError
        return index
    except ValueError:
        raise NstError(f"--start takes a frame index (e.g. 120) or seconds (e.g. 4.8s), not {spec!r}") from None


@with_config_options(exclude=("scales", "detail", "steps", "coarse_steps"))
@with_watch_options
def video(
    source: Annotated[Path, typer.Argument(help="A video file (.mp4, .webm, .mov, .mkv, .gif) or a folder "
                                           "of frames.")],
    styles: Annotated[list[Path], typer.Argument(help="Style image(s); several are blended.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output video (.mp4, .mov, .mkv, .webm, .gif), "
                                         "or a folder for numbered PNG frames.")] = Path("out.mp4"),
    style_weight: Annotated[float, typer.Option("--style-weight", help="beta.")] = D.style_weight,
    temporal_weight: Annotated[float, typer.Option(
        "--temporal-weight", help="gamma: how strongly each frame holds to the earlier ones (0 = only the "
                                  "warped start).")] = V.temporal_weight,
    first_steps: Annotated[int, typer.Option("--first-steps", help="Steps for the first frame.")] = V.first_steps,
    steps: Annotated[int, typer.Option(help="Steps for each later frame (it starts from the previous "
                                       "result, warped).")] = V.steps,
    long_term: Annotated[bool, typer.Option(
        "--long-term/--short-term", help="Hold each frame to frames t-1, t-2 and t-4 (each pixel to the "
                                         "latest that saw it), or to t-1 only.")] = V.previous != (1,),
    flow: Annotated[str, typer.Option(help=f"Optical flow preset: {', '.join(PRESETS)}.")] = V.flow,
    start: Annotated[str, typer.Option(help="First frame: an index (120) or a time (4.8s).")] = "0",
    frames: Annotated[Optional[int], typer.Option(help="How many frames (default: to the end).")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Frame rate of a folder of frames (default 25).")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Discard the frames of an earlier run in the "
                                          "output's frame folder and start again.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an earlier run (the default whenever "
                                         "its settings match); fail if there is none.")] = False,
    options: dict = None,
    watch: WatchOptions = None,
) -> None:
    """Stylize a video (or a folder of frames) without flicker (Ruder et al. 2016)."""
    try:
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise NstError(f"--fps must be a positive number, not {fps!r}")
        rate = Fraction(fps).limit_denominator(1001) if fps is not None else None
        config = config_from_options({**options, "style_weight": style_weight, "steps": first_steps, "scales": "none",
                                      "detail": 0.0})
        if restart and resume:
            raise NstError("give --restart or --resume, not both")
        first = parse_start(start, open_clip(source, rate).fps if start.strip().lower().endswith("s") else 1)
        settings = VideoConfig(temporal_weight=temporal_weight, first_steps=first_steps, steps=steps,
                               previous=LONG_TERM if long_term else (1,), flow=flow, start=first, frames=frames)
        if source.exists() and output.exists() and source.resolve() == output.resolve():
            raise NstError(f"refusing to write into {output}: it is the input")
        session = watch.start([output], written=[frames_dir(output)], read=[source, *styles], say=say,
                              kind="video", folder=is_folder(output))
        use_cache()
        report = FrameReport(steps)

        def on_start(done: int, total: int) -> None:
            session.begin_video(config, settings, done=done, frames=total, inputs={
                "content": str(source), "styles": list(map(str, styles))},
                title=f"{source.name} in the style of {', '.join(s.name for s in styles)}")

        def on_step(p) -> None:
            report.step(p)
            session.progress(p)

        def on_frame(p) -> None:
            report(p)
            session.frame(p, report.eta)

        def on_plan(plans) -> None:
            print_plan(plans)
            session.plan(plans)

        result = stylize_video(source, styles if len(styles) > 1 else styles[0], output, config, settings,
                               fps=rate, restart=restart, resume=resume, callback=on_step, on_frame=on_frame,
                               on_plan=on_plan, on_start=on_start)
        last = result.frames_dir / frame_name(result.done - 1)
        ended = {"interrupted": "interrupted", "nan": "the loss became NaN/inf"}.get(result.stopped)
        record = session.finished(result, output, load_image(last) if result.done and last.is_file() else None,
                                  message=ended and f"{ended}; the finished frames are in {result.frames_dir}")
    except NstError as e:
        raise fail(explain(e, VIDEO_FLAGS)) from None
    for note in result.notes:
        err.print(f"note: {note}", highlight=False)
    where = f"the finished frames are in {result.frames_dir}"
    if result.stopped == "interrupted":
        err.print(f"interrupted after {result.done} of {result.total} frames; {where}; run the same command "
                  "again to continue", highlight=False)
        raise typer.Exit(interrupt.exit_code())
    if result.stopped == "nan":
        raise fail(f"the loss became NaN/inf at frame {result.done}; {where}; {advice(config, True)} "
                   "or --temporal-weight", EXIT_NAN)
    made = len(result.frame_seconds)
    rate_text = (f", {result.frame_seconds[0]:.1f} s for the first" if made and result.done == made else "")
    later = result.frame_seconds[1:] if result.done == made else result.frame_seconds
    out.print(f"{made} frames stylized{rate_text}"
              + (f", {sum(later) / len(later):.1f} s per frame after it" if later else "")
              + f" (compile {result.compile_seconds:.1f} s)\nwrote {result.output}"
              + (f" and its record {record}" if record else ""), highlight=False)


class FrameReport:
    """One line per finished frame on stderr: frames done, seconds per frame, ETA."""

    def __init__(self, later_steps: int) -> None:
        self.later_steps = later_steps
        self.times: list[tuple[int, float, int]] = []  # (index, seconds, steps) of each frame
        self.last = time.perf_counter()
        self.eta: float | None = None  # seconds the frames left should take

    def step(self, p) -> None:
        """Within a frame (the first one's steps may take minutes): a line every 10 seconds."""
        now = time.perf_counter()
        if now - self.last >= 10.0:
            self.last = now
            err.print(f"  step {p.step}/{p.total}  loss {float(p.loss):.4g}", highlight=False)

    def __call__(self, p) -> None:
        self.times.append((p.index, p.seconds, p.steps))
        self.last = time.perf_counter()
        # The first frame takes more steps than the rest: the ETA counts later frames, or
        # after the first alone, its seconds per step times the later frames' steps.
        later = [s for i, s, _ in self.times if i > 0]
        per = sum(later) / len(later) if later else p.seconds / max(p.steps, 1) * self.later_steps
        self.eta = (p.total - p.done) * per
        err.print(f"frame {p.done}/{p.total}  {p.steps} steps  loss {p.loss:.4g}  {p.seconds:.1f} s/frame  "
                  f"ETA {format_seconds(self.eta)}", highlight=False)
