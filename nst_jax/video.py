"""Stylized video without flicker: Ruder, Dosovitskiy & Brox's temporal consistency.

Stylizing each frame on its own flickers: the optimisation is chaotic, and two nearly equal
frames end in different local minima. Here frame t starts from the stylized frame t-1
warped along the optical flow between the content frames, and its objective adds

    gamma J_temporal = gamma / D sum_p c_p (x_p - w(x_{t-1})_p)^2

whose weights c (flow.consistency) are 0 where the warp cannot be trusted (disocclusions,
motion boundaries). With long-term consistency the earlier frames t-j of ``previous``
(e.g. 1, 2, 4) each hold the pixels they saw last (flow.later_frame_wins), folded into one
(target, weight) pair (flow.fold). The temporal term is data of the objective
(``Targets.temporal``, ``LossWeights.temporal``), so the one compiled step of the clip's
size serves every frame: one ``prepare`` per clip (network, style Grams, memory plan), and
per frame only the content targets, the temporal targets and the start image change.

Every finished frame is a file, written atomically: the raw picture the next frames are
held to is read back from it, so a run resumed after an interruption computes exactly what
an uninterrupted one does. Flows are cached beside the frames.

References:
  Ruder, Dosovitskiy & Brox, "Artistic style transfer for videos", GCPR 2016,
  arXiv:1604.08610, secs. 3.1-3.2; IJCV 126 (2018).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from fractions import Fraction
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import interrupt
from .atomic import atomic_path, created
from .clip import Clip, check_video_path, open_clip, read_frames, write_video
from .colour import before_run, luminance
from .config import Colour, StyleConfig
from .errors import ConfigError, VideoError
from .flow import FLOW_UPSCALE, PRESETS, check_flow, consistency, fold, later_frame_wins, optical_flow, warp
from .image import check_directory, load_image, resize, save_image
from .inputs import Prepared, content_features, prepare, resolve_weights, start_image
from .memory import budget_bytes
from .run import (HistoryRow, Progress, averaged_or_best, compile_clock, default_steps_per_call, drive, finished,
                  init_program, output_picture, pictures, step_made_of, with_picture)
from .step import averaged, make_optimizer, make_step
from .weights import VGGWeights

FORMAT = "nst-jax-video"
VERSION = "1"
META = ".nst-video"  # the run's record, flows and raw pictures, inside the frames folder


@dataclass(frozen=True)
class VideoConfig:
    """How a clip is made consistent (the losses themselves are the StyleConfig's)."""

    # gamma, the temporal term's weight against alpha J_content + beta J_style
    # (measured: docs/video.md#the-defaults-and-why).
    temporal_weight: float = 1e4
    # Steps of the first frame (from the config's init) and of each later one (from the
    # previous result warped, which starts near its optimum).
    first_steps: int = 100
    steps: int = 10
    # The earlier frames each frame is held to, nearest first: (1,) is short-term
    # consistency (Ruder et al. sec. 3.1), (1, 2, 4) their long-term set (sec. 3.2); ()
    # stylizes every frame on its own, from the config's init with first_steps (the
    # flickering baseline).
    previous: tuple[int, ...] = (1,)
    # OpenCV DIS preset of the optical flow (flow.PRESETS).
    flow: str = "medium"
    # The part of the clip: its first frame, and how many (None: to the end).
    start: int = 0
    frames: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.temporal_weight < float("inf"):
            raise ConfigError("temporal_weight", f"must be a finite number >= 0, not {self.temporal_weight!r}")
        for name in ("first_steps", "steps", "start"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(name, f"must be an integer >= 0, not {getattr(self, name)!r}")
        if self.frames is not None and (not isinstance(self.frames, int) or self.frames < 1):
            raise ConfigError("frames", f"must be a positive integer, not {self.frames!r}")
        if self.previous and (list(self.previous) != sorted(set(self.previous)) or self.previous[0] != 1):
            raise ConfigError("previous", "must be rising frame offsets starting at 1, e.g. 1,2,4, "
                                          f"not {self.previous}")
        if self.flow not in PRESETS:
            raise ConfigError("flow", f"must be one of {', '.join(PRESETS)}, not {self.flow!r}")


def frame_steps(video: VideoConfig, index: int) -> int:
    """Steps of frame ``index`` of the part: the first frame, and every frame when none is
    held to an earlier one, starts from the config's init."""
    return video.steps if video.previous and index > 0 else video.first_steps


@dataclass
class FrameProgress:
    """What a callback sees after each finished frame."""

    index: int  # the frame just finished, counting from the part's first
    done: int  # frames finished, earlier runs' included
    total: int
    seconds: float  # this frame's, flow and saving included
    loss: float  # its best loss
    steps: int


@dataclass
class VideoResult:
    output: Path
    frames_dir: Path  # where the finished frames are
    done: int  # frames finished
    total: int
    stopped: str  # "done", "nan" or "interrupted"
    config: StyleConfig
    video: VideoConfig
    made: list[FrameProgress] = field(default_factory=list)  # each frame this run finished
    # every step this run took, its frames one after another (an interrupted frame's too)
    history: list[HistoryRow] = field(default_factory=list)
    seconds: float = 0.0
    compile_seconds: float = 0.0  # of those, making programs (run.compile_clock)
    compiles: int = 0  # step programs compiled (1 per clip)
    notes: list[str] = field(default_factory=list)

    @property
    def frame_seconds(self) -> list[float]:
        return [f.seconds for f in self.made]


def frames_dir(output: Path) -> Path:
    """Where the finished frames go: the output folder itself, or for a video file a folder
    beside it (``out.mp4.frames``)."""
    return output if is_folder(output) else output.with_name(output.name + ".frames")


def is_folder(output: Path) -> bool:
    return output.is_dir() or not output.suffix


def frame_name(index: int) -> str:
    return f"{index:06d}.png"


def stylize_video(source, styles, output: str | Path, config: StyleConfig = StyleConfig(),
                  video: VideoConfig = VideoConfig(), *, weights: VGGWeights | None = None,
                  fps: Fraction | None = None, restart: bool = False, resume: bool = False,
                  callback: Callable[[Progress], object] | None = None,
                  on_frame: Callable[[FrameProgress], object] | None = None,
                  on_plan: Callable | None = None,
                  on_start: Callable[[int, int], object] | None = None) -> VideoResult:
    """Stylize the frames ``video.start`` .. of ``source`` (a video file or a folder of
    frames; ``fps`` a folder's rate) into ``output`` (a video file, or a folder of numbered
    frames), each frame held to the earlier ones by the temporal term.

    Frames finished by an earlier run of the same settings are kept and the run continues
    after them; an earlier run of other settings is refused unless ``restart`` (its frames
    are then removed); ``resume`` insists that there is a run to continue. ``callback``
    sees each compiled call's progress (as ``run.drive``'s), ``on_frame`` each finished
    frame (``callback`` counts each frame's steps from 0; its progress can make the frame's
    picture), ``on_start`` (frames finished before, frames in all) once the run knows them,
    then ``on_plan`` the memory plan of a frame, both before the first step. Ctrl-C
    stops after the last finished frame (``stopped="interrupted"``), and a
    video file is then not written.
    """
    t0, c0 = time.perf_counter(), compile_clock()
    output = Path(output)
    config = config.replace(scales=())  # one size: every frame after the first starts from its result
    clip = open_clip(source, fps)
    if video.start >= clip.frames:
        raise VideoError(f"--start is past the clip's end: frame {video.start} ({float(clip.seconds(video.start)):g} s "
                         f"at {float(clip.fps):g} fps) of a clip of {clip.frames} frames")
    total = clip.frames - video.start if video.frames is None else min(video.frames, clip.frames - video.start)
    if total > 1 and video.previous:
        check_flow()
    folder = frames_dir(output)
    if not is_folder(output):
        check_video_path(output)
        if output.exists() and not output.is_file():
            raise VideoError(f"cannot write {output}: it is not a file")
    elif output.exists() and not output.is_dir():
        raise VideoError(f"cannot write into {output}: it is a file")
    check_directory(folder)
    budget = budget_bytes(config.max_memory)
    weights = resolve_weights(config, weights)
    first = next(read_frames(clip, video.start, 1))
    run = prepare(first, styles, config, weights, budget=budget)
    record = run_record(clip, config, video, run.digest)
    done = previous_run(folder, record, restart, resume)
    if on_start is not None:
        on_start(done, total)
    if on_plan is not None:
        on_plan(run.plans)
    with created(folder):
        (folder / META).mkdir(exist_ok=True)
        _write_json(folder / META / "run.json", record)
    result = VideoResult(output, folder, done, total, "done", config, video, notes=list(run.notes))
    try:
        _frames(clip, run, config, video, folder, total, result, callback, on_frame)
    except KeyboardInterrupt:
        result.stopped = "interrupted"
    if result.stopped == "done" and not is_folder(output):
        frames = (load_image(folder / frame_name(i)) for i in range(total))
        result.notes += write_video(frames, output, clip.fps,
                                    (clip, video.start, total) if clip.audio else None)
    result.seconds, result.compile_seconds = time.perf_counter() - t0, compile_clock() - c0
    return result


def _frames(clip: Clip, run: Prepared, config: StyleConfig, video: VideoConfig, folder: Path, total: int,
            result: VideoResult, callback, on_frame) -> None:
    """The frames after those done, one at a time (see :func:`stylize_video`)."""
    objective, base = run.objective, run.problem
    optimizer = make_optimizer(config)
    step = make_step(objective, optimizer, config.average)
    init = init_program(config, optimizer)
    gamma = jnp.asarray(video.temporal_weight, jnp.float32)
    k = config.steps_per_call or default_steps_per_call()
    compiled, h, w = {}, *run.content.shape[:2]
    raw_dir = folder / META / "raw" if config.colour in (Colour.original, Colour.luminance) else folder
    flows = folder / META / f"flow-{video.flow}-x{FLOW_UPSCALE}-{w}x{h}"  # the estimate its name says
    recent = deque(maxlen=max(video.previous, default=0) + 1)  # the content frames the flows need
    for index, frame in enumerate(read_frames(clip, video.start, total)):
        colour_content = resize(frame, h, w)
        recent.append(colour_content)
        if index < result.done:
            continue
        interrupt.check()  # between two frames
        t0 = time.perf_counter()
        content = before_run(colour_content, [], config.colour, config.colour_match)[0]
        kept = content[..., :1] if objective.luminance else content
        earlier = [j for j in video.previous if index - j >= 0]
        pairs = [cached_flows(flows, video.start + index, video.start + index - j, recent[-1], recent[-1 - j],
                              video.flow) for j in earlier]
        earlier_pictures = [load_image(raw_dir / frame_name(index - j)) for j in earlier]
        temporal = temporal_targets(earlier_pictures, pairs, (h, w))
        targets = base.targets._replace(
            content=content_features(objective, base.variables, content), temporal=temporal,
            keep=None if base.targets.keep is None else (base.targets.keep[0], jnp.asarray(kept)))
        problem = base._replace(targets=targets, weights=base.weights._replace(temporal=gamma))
        start = (np.clip(warp(earlier_pictures[0], pairs[0][0]), 0.0, 1.0) if earlier
                 else own_start(config, content, run.styles[0]))
        start = start[..., :1] if objective.luminance and earlier else start
        steps = frame_steps(video, index)
        watched = callback and partial(with_picture, callback,
                                       partial(output_picture, objective, problem, config, colour_content))
        outcome = drive(step, init(objective, problem, start), problem, steps=steps,
                        steps_per_call=k, log_every=config.log_every, callback=watched, compiled=compiled,
                        kept=step_made_of(objective, config))
        result.compiles = len(compiled)
        result.history += outcome.trace.rows(len(result.history))
        if outcome.stopped != "done":
            result.stopped = "interrupted" if outcome.stopped in ("interrupted", "callback") else outcome.stopped
            return
        final = jax.device_get(outcome.state)
        image = averaged_or_best(np.asarray(averaged(final)) if config.average else None, final.best_image)
        picture = pictures(objective, problem, image)
        if raw_dir != folder:
            save_image(picture, raw_dir / frame_name(index))
        save_image(finished(picture, colour_content, config), folder / frame_name(index))
        result.done = index + 1
        result.made.append(FrameProgress(index, result.done, total, time.perf_counter() - t0,
                                         float(final.best_loss), steps))
        if on_frame is not None:
            on_frame(result.made[-1])


def own_start(config: StyleConfig, content: np.ndarray, style: np.ndarray) -> np.ndarray:
    """A frame's start from the config's init, as ``prepare`` makes the first frame's."""
    start = np.clip(start_image(config, content, style), 0.0, 1.0)
    return luminance(start)[..., None] if config.colour == Colour.luminance else start


def temporal_targets(pictures, pairs, shape) -> tuple[jax.Array, jax.Array]:
    """``Targets.temporal`` of a frame: the earlier results ``pictures`` (nearest first),
    warped along their (backward, forward) flow ``pairs``, with the later-frame-wins
    weights, folded into one (target, weight) pair; zeros for the first frame."""
    if not pictures:
        h, w = shape
        return jnp.zeros((h, w, 3), jnp.float32), jnp.zeros((h, w, 1), jnp.float32)
    warped = [jnp.clip(warp(p, backward), 0.0, 1.0) for p, (backward, _) in zip(pictures, pairs)]
    weights = later_frame_wins([consistency(backward, forward) for backward, forward in pairs])
    return fold(warped, weights)


def cached_flows(folder: Path, later: int, earlier: int, a: np.ndarray, b: np.ndarray,
                 preset: str) -> tuple[np.ndarray, np.ndarray]:
    """(backward ``a`` -> ``b``, forward ``b`` -> ``a``) for content frames ``later`` (``a``)
    and ``earlier`` (``b``) of the source, from ``folder`` or computed and saved there when
    it can be."""
    path = folder / f"{earlier:06d}-{later:06d}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if z["backward"].shape == a.shape[:2] + (2,):
                    return z["backward"], z["forward"]
        except (OSError, ValueError, KeyError):
            pass  # damaged: computed again
    backward, forward = optical_flow(a, b, preset), optical_flow(b, a, preset)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, backward=backward, forward=forward)
    except OSError:
        pass  # a cache: a full disk is said by the frame's own write, which names its file
    return backward, forward


def run_record(clip: Clip, config: StyleConfig, video: VideoConfig, digest: str) -> dict:
    """What the finished frames depend on: a later run continues them only when its record
    is equal (``frames`` may differ: a longer run extends a shorter one)."""
    settings = {k: v for k, v in dataclasses.asdict(video).items() if k != "frames"}
    return {"format": FORMAT, "version": VERSION, "digest": digest,
            "source": {"frames": clip.frames, "fps": str(clip.fps), "size": [clip.width, clip.height]},
            "config": json.loads(json.dumps(config.objective_fields())),
            "video": json.loads(json.dumps(settings))}


def previous_run(folder: Path, record: dict, restart: bool, resume: bool) -> int:
    """How many frames an earlier run with this ``record`` finished in ``folder`` (0 for
    none); an earlier run of other settings is refused, or with ``restart`` removed."""
    path = folder / META / "run.json"
    numbered = sorted(folder.glob("[0-9]" * 6 + ".png")) if folder.is_dir() else []
    if not path.exists():
        if numbered:
            raise VideoError(f"{folder} holds numbered frames that no nst-jax video run made: "
                             "give -o a new or empty folder")
        if resume:
            raise VideoError(f"nothing to resume in {folder}")
        return 0
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = None
    same = isinstance(saved, dict) and saved == record
    if restart or not same:
        if not restart:
            keys = sorted(k for k in ("digest", "source", "config", "video")
                          if not isinstance(saved, dict) or saved.get(k) != record[k])
            what = {"digest": "input images or weights", "source": "source clip", "config": "style settings",
                    "video": "video settings"}
            raise VideoError(f"{folder} holds frames of a run with other {', '.join(what[k] for k in keys)}: "
                             "run with --restart to discard them, or give another -o")
        for f in numbered:
            f.unlink()
        shutil.rmtree(folder / META, ignore_errors=True)
        return 0
    done = 0
    while (folder / frame_name(done)).is_file():
        done += 1
    return done


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1))
