"""The record of a run (an image, a sweep or a video): what was asked, on what machine, and
how it went, as one JSON file.

A record holds the command line and the config, the versions, the machine and its
devices, the memory plan, the scales, every step's losses (from the run's history) and
the time of every compiled call (from its callback), the stop reason and the compile and
run seconds. It is strict JSON (a NaN or infinite loss is ``null``) written atomically,
beside the output by default (``out.png`` -> ``out.json``, ``out.mp4`` -> ``out.json``; a
sweep's, or a video's written as frames, in its folder). :func:`plot_record` draws its loss
curves with matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import jax
import numpy as np

from .atomic import atomic_path, created, name_fits
from .errors import NstError
from .run import scale_span
from .sweeps import json_safe

FORMAT = "nst-jax run record"
VERSION = 1
LOSSES = ("loss", "content", "style", "tv")  # the history's columns, total first
MARKED_FRAMES = 40  # a plot marks where each frame begins up to this many
PACKAGES = ("nst-jax", "jax", "jaxlib", "flax", "optax", "numpy", "pillow")


class CallTimes:
    """A run callback's view of time: the steps completed after each compiled call and the
    seconds since this was made (the first call of each scale includes its compile)."""

    def __init__(self, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start  # a perf_counter() reading
        self.steps: list[int] = []
        self.seconds: list[float] = []

    def __call__(self, progress) -> None:
        self.steps.append(int(progress.step))
        self.seconds.append(time.perf_counter() - self.start)

    def as_dict(self) -> dict:
        return {"step": self.steps, "seconds": [round(s, 6) for s in self.seconds]}


def record_path(output: str | Path, folder: bool = False) -> Path:
    """Where the record of a run writing ``output`` goes by default: beside an image
    (``out.png`` -> ``out.json``), or into a sweep's ``folder`` (``grid/record.json``:
    beside it could be outside every place the command was told to write, as for ``-o .``)."""
    output = Path(os.path.abspath(output))
    return output / "record.json" if folder else output.with_suffix(".json")


def check_record_path(path: str | Path, outputs, inputs, beside: str | Path | None = None) -> Path:
    """Refuse, before the run, a record that would replace one of the run's ``outputs`` or
    ``inputs`` (paths; None is skipped), is a directory, or cannot be written; and, for the
    default record ``beside`` an output, one that is the record of another output still
    there (``out.jpg``'s run would take ``out.png``'s ``out.json``)."""
    from .files import same_path
    from .image import check_directory

    path = Path(path)
    if not name_fits(path):  # (before is_dir, which raises on such a name)
        raise NstError(f"cannot write the record {path}: its name is too long")
    if path.is_dir():
        raise NstError(f"cannot write the record {path}: it is a directory")
    for kind, paths in (("an output", outputs), ("an input", inputs)):
        for other in filter(None, paths):
            if same_path(path, Path(other)):
                raise NstError(f"refusing to write the record to {path}: it is {kind} of this run "
                               "(give another --record)")
    if path.is_file() and not is_record(path):
        raise NstError(f"refusing to write the record to {path}: it exists and is not a run record "
                       "(give another --record or --no-record, or move it)")
    if beside is not None and path.is_file():
        other = recorded_output(recorded(path), path)
        if other is not None and other.name != Path(beside).name and other.exists():
            raise NstError(f"refusing to write the record to {path}: it is the record of {other}, which is "
                           "still there (give another --record or --no-record, or move them)")
    check_directory(path.parent)
    return path


def is_record(path: Path) -> bool:
    """Whether ``path`` holds a run record (any version): one a new run may replace."""
    return recorded(path).get("format") == FORMAT


def recorded(path: Path) -> dict:
    """The JSON object in ``path``; empty when it cannot be read as one."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def environment() -> dict:
    """Versions, the machine and the devices the run used."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    devices = jax.devices()
    kinds: dict[str, int] = {}
    for d in devices:
        kinds[d.device_kind] = kinds.get(d.device_kind, 0) + 1
    machine = {"system": platform.platform(), "machine": platform.machine(), "cpu": _cpu_name(),
               "cpus": os.cpu_count(), "memory_bytes": _memory_bytes()}
    return {"versions": versions, "machine": machine,
            "devices": {"platform": devices[0].platform, "kinds": kinds, "processes": jax.process_count()}}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _plan(plan) -> dict:
    return {"width": plan.width, "height": plan.height, "arch": plan.arch, "remat": plan.remat,
            "tiles": plan.count, "tile": None if plan.tiles is None else plan.tiles.tile,
            "halo": None if plan.tiles is None else plan.tiles.halo, "bytes": plan.bytes, "budget": plan.budget}


def _common(result, *, command, inputs: dict, output, times: CallTimes | None) -> dict:
    config = result.config
    return {
        "format": FORMAT, "version": VERSION, "command": list(command), "inputs": inputs, "output": str(output),
        "config": dataclasses.asdict(config), **environment(),
        "scales": [dict(zip(("size", "first_step", "end_step"), (size, *scale_span(config, i))))
                   for i, size in enumerate(config.sizes)],
        # alpha, beta and the TV weight as the run used them (--ratio sets alpha from beta)
        "balance": {"content_weight": config.content_weight, "style_weight": config.style_weight,
                    "tv_weight": config.tv_weight,
                    "ratio": config.content_weight / config.style_weight if config.style_weight else None},
        "stopped": result.stopped, "seconds": result.seconds, "compile_seconds": result.compile_seconds,
        "calls": times.as_dict() if times is not None else {"step": [], "seconds": []},
        "notes": list(result.notes),
    }


def _history(rows) -> dict:
    """A single-image run's history (HistoryRow list) as columns."""
    rows = np.array([tuple(r) for r in rows], np.float64).reshape(-1, 5)
    return {"step": rows[:, 0].astype(int).tolist(), **{name: rows[:, i + 1].tolist() for i, name in enumerate(LOSSES)}}


def _memory(plans) -> dict:
    from .memory import describe_plans

    return {"plan": describe_plans(plans) if plans else None, "plans": [_plan(p) for p in plans]}


def run_record(result, *, command, inputs: dict, output, times: CallTimes | None = None, plans=()) -> dict:
    """The record of one ``stylize()`` :class:`~nst_jax.run.Result` (``plans``: the memory
    plans its ``on_plan`` saw)."""
    return json_safe({
        "kind": "stylize", **_common(result, command=command, inputs=inputs, output=output, times=times),
        "memory": _memory(plans), "steps": result.steps, "function_evals": result.function_evals,
        "best_loss": result.best_loss, "history": _history(result.history),
    })


def video_record(result, *, command, inputs: dict, output, times: CallTimes | None = None, plans=()) -> dict:
    """The record of one ``stylize_video()`` :class:`~nst_jax.video.VideoResult`: its
    history runs through the frames this run made, one after another; ``frames`` says
    where each began. Frames an earlier run finished are counted, not recorded."""
    firsts = np.cumsum([0] + [f.steps for f in result.made]).tolist()
    frames = [{"index": f.index, "first_step": first, "steps": f.steps, "seconds": f.seconds, "loss": f.loss}
              for f, first in zip(result.made, firsts)]
    return json_safe({
        "kind": "video", **_common(result, command=command, inputs=inputs, output=output, times=times),
        "scales": [],  # one size; the frames take their place
        "video": dataclasses.asdict(result.video), "memory": _memory(plans),
        "frames": frames, "frames_done": result.done, "frames_before": result.done - len(result.made),
        "frames_total": result.total, "frames_dir": str(result.frames_dir), "steps": len(result.history),
        "history": _history(result.history),
    })


def sweep_record(result, *, command, inputs: dict, output, times: CallTimes | None = None) -> dict:
    """The record of one ``sweep()`` :class:`~nst_jax.run.Result`: the history's
    columns hold one list per step, one value per cell (cells in ``result.cells()`` order)."""
    steps = len(result.trace["loss"])
    return json_safe({
        "kind": "sweep", **_common(result, command=command, inputs=inputs, output=output, times=times),
        "memory": {"chunks": result.grid.chunks, "devices": result.grid.devices, "compiles": result.grid.compiles},
        "grid": {"rows": result.grid.shape[0], "cols": result.grid.shape[1]}, "cells": result.cells(),
        "steps": steps,
        "history": {"step": list(range(steps)),
                    **{name: result.trace[name].tolist() for name in LOSSES}},
    })


def write_record(record: dict, path: str | Path) -> Path:
    """Write ``record`` as strict JSON to ``path`` atomically (its directory created)."""
    path = Path(path)
    text = json.dumps(json_safe(record), indent=1, allow_nan=False)
    try:
        with created(path.parent), atomic_path(path) as tmp:
            Path(tmp).write_text(text)
    except OSError as e:
        raise NstError(f"cannot write the record {path}: {e.strerror or e}") from None
    return path


def read_record(path: str | Path) -> dict:
    """A record written by :func:`write_record`; anything else is one :class:`NstError`."""
    path = Path(path)
    if not path.is_file():
        raise NstError(f"cannot read {path}: {'no such file' if not path.exists() else 'not a regular file'}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise NstError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError:  # not text, or not JSON
        record = None
    history = record.get("history") if isinstance(record, dict) else None
    if (not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(history, dict)
            or not all(isinstance(history.get(k), list) for k in ("step",) + LOSSES)):
        raise NstError(f"{path} is not an nst-jax run record")
    return record


def loss_curves(record: dict) -> dict[str, np.ndarray]:
    """The record's losses as float arrays (steps, cells); null is NaN."""
    history = record["history"]
    out = {}
    for name in LOSSES:
        values = [[np.nan if v is None else v for v in (row if isinstance(row, list) else [row])]
                  for row in history[name]]
        try:
            out[name] = np.array(values, np.float64).reshape(len(values), -1)
        except (ValueError, TypeError):
            raise NstError(f"the record's {name} history is not a table of numbers") from None
    return out


# What `nst-jax plot` writes (matplotlib knows more; these are the ones the command offers).
PLOT_FORMATS = (".png", ".pdf", ".svg")


def recorded_files(record: dict, path: str | Path) -> list[Path]:
    """The files a run record at ``path`` names: its inputs and :func:`recorded_output`."""
    names = []

    def collect(value):
        if isinstance(value, str):
            names.append(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                collect(v)
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)

    collect(record.get("inputs", {}))
    output = recorded_output(record, path)
    return [Path(n) for n in names] + ([] if output is None else [output])


def recorded_output(record: dict, path: str | Path) -> Path | None:
    """The picture (or folder) a run record at ``path`` was written for: a relative one
    beside the record, where a run puts it; None when the record names none."""
    output = record.get("output")
    if not isinstance(output, str) or not Path(output).name:
        return None
    return Path(output) if Path(output).is_absolute() else Path(path).parent / Path(output).name


def plot_record(record: dict, out: str | Path) -> Path:
    """Draw the record's loss curves, one panel per term with positive values (log axis),
    one line per cell, dotted lines where a scale (or a video's frame) begins; write ``out`` atomically (the
    format from its extension: png, pdf, svg...)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise NstError("plotting needs matplotlib: pip install \"nst-jax[plot]\"") from None
    out = Path(out)
    if out.suffix.lower() not in PLOT_FORMATS:
        raise NstError(f"cannot write {out}: unknown plot format {out.suffix!r} (use .png, .pdf or .svg)")
    curves = loss_curves(record)
    steps = np.asarray(record["history"]["step"], np.float64)
    panels = [(name, c) for name, c in curves.items() if (np.isfinite(c) & (c > 0)).any()]
    if not panels:
        raise NstError("the record holds no positive losses to plot")
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    cells = [f"r{c['row']}c{c['col']}" for c in record.get("cells", [])]
    for i, (name, values) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for cell in range(values.shape[1]):
            ok = np.isfinite(values[:, cell]) & (values[:, cell] > 0)  # terms are logged every few steps
            label = cells[cell] if cell < len(cells) else None
            ax.plot(steps[: len(values)][ok], values[ok, cell], lw=1.2, label=label)
        for first in _marks(record):
            ax.axvline(first, color="grey", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title("total" if name == "loss" else name)
        ax.grid(True, which="major", alpha=0.3)
        if i == 0 and 1 < len(cells) <= 12:
            ax.legend(fontsize="small")
    fig.suptitle(f"{record.get('kind', 'run')} {Path(str(record.get('output', ''))).name}: {record.get('stopped')}",
                 fontsize="medium")
    fmt = out.suffix.lower().lstrip(".")
    try:
        with created(out.parent), atomic_path(out) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120)
    except OSError as e:
        raise NstError(f"cannot write {out}: {e.strerror or e}") from None
    return out


def _marks(record: dict) -> list[int]:
    """Steps where a scale, or a video's frame, begins (frames only while few enough to read)."""
    starts = [s.get("first_step") for s in record.get("scales", [])[1:]]
    frames = record.get("frames", [])
    if not starts and 1 < len(frames) <= MARKED_FRAMES:
        starts = [f.get("first_step") for f in frames[1:]]
    return [x for x in starts if isinstance(x, (int, float))]


def command_line() -> list[str]:
    """This process's command line, the program by its file name."""
    return [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else []
