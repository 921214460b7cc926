"""What ``stylize``, ``sweep`` and ``video`` add to a run to watch it: the live page and the
run record.

The options are declared once here and added to a command by :func:`with_watch_options`
(the command gets them as one :class:`WatchOptions`). Before its run the command calls
:meth:`WatchOptions.start`, which refuses a record path that would replace an input or an
output and starts the page; it then passes the :class:`Session`'s callbacks to the run and
calls :meth:`Session.finished` once the output is written. When the command ends, the
page stays up ``--live-linger`` seconds (Ctrl-C ends that sooner) unless the run was
interrupted.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from .errors import NstError
from .record import (CallTimes, check_record_path, command_line, record_path, run_record, sweep_record,
                     video_record, write_record)

# The options, by parameter name: (annotation, default).
WATCH_OPTIONS = {
    "live": (Annotated[bool, typer.Option(
        "--live", help="Watch the run in a browser: a page on 127.0.0.1 (a free port; the URL is printed) "
                       "shows the image, the losses and the settings as it goes.")], False),
    "live_port": (Annotated[Optional[int], typer.Option(
        "--live-port", help="The page's port (implies --live; default: a free one).")], None),
    "live_host": (Annotated[Optional[str], typer.Option(
        "--live-host", help="The address the page listens on (implies --live; default 127.0.0.1). Any "
                            "other than loopback lets others on the network watch.")], None),
    "live_linger": (Annotated[float, typer.Option(
        "--live-linger", help="Seconds the page stays up after the run (Ctrl-C ends it sooner).")], 600.0),
    "record": (Annotated[Optional[Path], typer.Option(
        "--record", help="Write the run record here (default: beside the output, NAME.json; in a sweep's "
                         "folder, or a folder of frames, record.json).")], None),
    "no_record": (Annotated[bool, typer.Option("--no-record", help="Write no run record.")], False),
}
# What the page says at the end of a run, by how it stopped.
ENDINGS = {"nan": "the loss became NaN/inf; saved the best image before it to", "interrupted": "interrupted; saved"}


@dataclass
class WatchOptions:
    live: bool = False
    live_port: int | None = None
    live_host: str | None = None
    live_linger: float = 600.0
    record: Path | None = None
    no_record: bool = False
    session: Session | None = field(default=None, init=False)  # what start() began

    def start(self, outputs: list[Path], *, written=(), read=(), say: Callable[[str], object] = print,
              kind: str = "stylize", folder: bool = False, distributed: bool = False) -> "Session":
        """Check the record paths (one per path of ``outputs``: beside it, or ``record``)
        against every path the run writes (``outputs``, ``written``) or reads (``read``)
        and start the page; any problem is one :class:`NstError`, before the run. ``kind``:
        stylize, sweep or video; ``folder``: the output is a folder (the record goes in it)."""
        from .live import LiveView

        live = self.live or self.live_port is not None or self.live_host is not None
        if live and distributed:  # its pictures would need every process to take part
            raise NstError("--live watches one-process sweeps only")
        if self.live_port is not None and not 0 <= self.live_port <= 65535:
            raise NstError(f"--live-port must be an integer in [0, 65535], not {self.live_port}")
        if not (math.isfinite(self.live_linger) and self.live_linger >= 0):
            raise NstError(f"--live-linger must be a number of seconds, 0 or more, not {self.live_linger}")
        if self.record is not None and self.no_record:
            raise NstError("give --record or --no-record, not both")
        if self.record is not None and len(outputs) > 1:
            raise NstError("--record takes one content image (a folder's records go beside each output)")
        records = {}
        for output in outputs:
            path = None if self.no_record else self.record or record_path(output, folder=folder)
            if path is not None:
                check_record_path(path, [*outputs, *written], read, beside=None if self.record else output)
            records[Path(output)] = path
        view = None
        if live:
            view = LiveView(self.live_host or "127.0.0.1", self.live_port or 0)
            say(f"live: {view.url}")
            if not view.loopback:
                say(f"warning: the live page listens on {view.host}, not only this machine: anyone who can "
                    "reach it can watch the run and its settings")
        self.session = Session(records, view, self.live_linger, say, kind)
        return self.session

    def close(self) -> None:
        """End what :meth:`start` began (see :meth:`Session.close`)."""
        if self.session is not None:
            self.session.close()


class Session:
    """One command's record writing and page; see the module's docstring."""

    def __init__(self, records: dict[Path, Path | None], view, linger: float, say, kind: str = "stylize") -> None:
        self.records, self.view, self.linger, self.say, self.kind = records, view, linger, say, kind
        self.times, self.plans, self.inputs, self.stay = CallTimes(), (), {}, False
        self.offset = self.total = 0  # a video's: steps of the frames before this one, and of the run

    def begin(self, config, *, title: str, inputs: dict, rows: int = 1, cols: int = 1,
              row_labels=(), col_labels=()) -> None:
        """A run starts (``inputs``: the files it reads, as the record lists them)."""
        settings = self._new_run(config, inputs)
        if self.view is not None:
            self.view.begin(kind=self.kind, title=title, settings=settings,
                            total=config.total_steps, sizes=config.sizes,
                            scale_ends=config.scale_ends, rows=rows, cols=cols,
                            row_labels=row_labels, col_labels=col_labels)

    def begin_video(self, config, video, *, title: str, inputs: dict, done: int, frames: int) -> None:
        """A video run starts with ``done`` of its ``frames`` finished by an earlier one; its
        steps are counted through the frames it makes, one after another."""
        from .video import frame_steps

        settings = self._new_run(config, inputs, video=dataclasses.asdict(video))
        self.offset, self.total = 0, sum(frame_steps(video, i) for i in range(done, frames))
        if self.view is not None:
            self.view.begin(kind="video", title=title, settings=settings, total=self.total, frames=(done, frames))

    def _new_run(self, config, inputs: dict, **more) -> dict:
        """Forget the last run's times and plans; the settings the page shows."""
        self.times, self.plans, self.inputs, self.stay = CallTimes(), (), inputs, False
        return {"config": dataclasses.asdict(config), **more, "command": command_line()}

    def frame(self, progress, eta: float | None) -> None:
        """A video's frame is finished (a :class:`~nst_jax.video.FrameProgress`)."""
        self.offset += progress.steps
        if self.view is not None:
            self.view.frame(progress.done, progress.total, progress.seconds, eta)

    def progress(self, progress, chunk: int = 0) -> None:
        """The run's callback: the call's time, and the page's references."""
        if self.kind == "video":  # its frames' steps, one after another
            progress = dataclasses.replace(progress, step=self.offset + progress.step, total=self.total)
        self.times(progress)
        if self.view is not None:
            self.view.progress(progress, chunk)

    def plan(self, plans) -> None:
        """The run's ``on_plan``."""
        from .memory import describe_plans

        self.plans = plans
        if self.view is not None:
            self.view.plan(describe_plans(plans))

    def finished(self, result, output: Path, images, inputs: dict | None = None, times=None,
                 plans=None, message: str | None = None) -> Path | None:
        """The run's output is written: write its record (returns its path, or None) and
        show ``images`` (what was saved) as the page's last state. ``inputs``, ``times``
        and ``plans``: this output's own, where a batch began with several; ``message``:
        the page's last words, where the usual ones would not be true."""
        path = self.records.get(Path(output))
        if path is not None:
            plans = self.plans if plans is None else plans
            make = {"sweep": sweep_record, "video": functools.partial(video_record, plans=plans)}.get(
                self.kind, functools.partial(run_record, plans=plans))
            write_record(make(result, command=command_line(), inputs=inputs or self.inputs, output=output,
                              times=self.times if times is None else times), path)
        if self.view is not None:
            status = result.stopped if result.stopped in ENDINGS else "done"
            saved = message or f"{ENDINGS.get(status, 'saved')} {output}"
            self.view.finish(status, saved + (f" and its record {path}" if path else ""), str(output), images)
        self.stay = result.stopped != "interrupted"
        return path

    def close(self) -> None:
        """The command's end: keep the page up ``linger`` seconds after a run that ended
        by itself, then stop serving."""
        view, self.view = self.view, None
        if view is None:
            return
        try:
            if self.stay and self.linger > 0:
                self.say(f"live: the page stays up at {view.url} for {self.linger:g} s (Ctrl-C to end)")
                view.wait(self.linger)
        except KeyboardInterrupt:
            pass
        finally:
            view.close()


def with_watch_options(command):
    """Add :data:`WATCH_OPTIONS` to a command, which receives them as ``watch``, and end
    the session it starts when it returns or raises."""
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "watch"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
             for name, (annotation, default) in WATCH_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(**kwargs):
        watch = WatchOptions(**{name: kwargs.pop(name) for name in WATCH_OPTIONS})
        try:
            return command(watch=watch, **kwargs)
        finally:  # however the command ends: the page lingers after a finished run, then stops
            watch.close()

    wrapper.__signature__ = inspect.Signature(own + added)
    del wrapper.__wrapped__  # typer must read the new signature, not the command's
    return wrapper
