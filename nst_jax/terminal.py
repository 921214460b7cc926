"""What the commands print: the one-line errors and exit codes, notes and advice, and the
progress of a run (a bar on a terminal, plain lines in a log)."""

import math
import sys
import time
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text
from typer.core import TyperGroup

from . import interrupt
from .config import StyleConfig
from .errors import ConfigError, NstError
from .options import FLAGS

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



def say(message: str) -> None:
    """One line of our own on stderr (no markup: paths may hold brackets)."""
    err.print(message, highlight=False, markup=False)


# The main command's --no-cache, for the commands that run.
CACHE = {"off": False}


def use_cache() -> None:
    """Compiled programs from the persistent cache (cache.py) unless turned off; before
    the first compile of a command that runs."""
    from .cache import cache_off, enable_cache

    if not (CACHE["off"] or cache_off()):
        enable_cache(notify=lambda message: err.print(f"note: {message}", highlight=False))


def print_plan(plans) -> None:
    """The memory plan of a run, one line before its first step."""
    from .memory import describe_plans

    err.print(f"memory: {describe_plans(plans)}", highlight=False, markup=False)


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun``, with an s unless there is one."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def heaviest(config: StyleConfig) -> str:
    """The loss weight furthest above its default, as its flag and value: what a blow-up
    asks to lower (when none was raised, --style-weight, or the first in use). A weight
    whose default is 0 (TV) counts from 1e-3."""
    default = StyleConfig()
    weights = {name: (getattr(config, name), max(getattr(default, name), 1e-3))
               for name in ("style_weight", "content_weight", "tv_weight")}
    name = max(weights, key=lambda n: weights[n][0] / weights[n][1])
    if weights[name][0] <= weights[name][1]:  # none raised: the one weighing most of those in use
        name = "style_weight" if config.style_weight else "content_weight" if config.content_weight else "tv_weight"
    return f"--{name.replace('_', '-')} (now {getattr(config, name):g})"


def advice(config: StyleConfig, blew_up: bool) -> str:
    """What to change when the loss blew up (``blew_up``) or never fell."""
    lbfgs = config.is_lbfgs
    lr = 0.02 if config.learning_rate is None else config.learning_rate
    if blew_up:
        return (f"lower {heaviest(config)} (L-BFGS steps grow with the loss scale)" if lbfgs
                else f"lower --lr (now {lr:g}) or {heaviest(config)}")
    if config.learning_rate == 0:
        return "raise --lr (0 moves nothing)"
    if config.steps == 1:
        return "give --steps 2 or more (a step is scored by the evaluation that starts the next one)"
    if not lbfgs:
        return f"change --lr (now {lr:g}): lower if the loss rose, higher if it barely moved"
    return f"lower {heaviest(config)} (L-BFGS steps grow with the loss scale) or give more --steps"


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


def end_of_batch(config: StyleConfig, *, stopped: str, where: str, items: str, every: str, stale: list[str],
                 stale_kept: str, blown: list[str], interrupted: str) -> None:
    """The end of a batch's report (a sweep's cells, a folder's photos; ``items`` names them,
    e.g. "in cell(s)"): every one blown up is an error (exit 3; ``every`` says it, e.g. "in
    every cell"), an interruption exit 130 after the line ``interrupted``; otherwise one
    warning names those whose loss blew up, one those whose loss never fell (``stale_kept``:
    what became of their pictures)."""
    if stopped == "nan":
        raise fail(f"the loss became NaN/inf {every}; saved the best images to {where}; {advice(config, True)}",
                   EXIT_NAN)
    if stopped == "interrupted":
        err.print(interrupted, highlight=False)
        raise typer.Exit(interrupt.exit_code())
    if blown:
        err.print(f"warning: the loss became NaN/inf {items} {', '.join(blown)} (their images are the best "
                  f"before that): {advice(config, True)}", highlight=False)
    if stale:
        err.print(f"warning: no step lowered the loss {items} {', '.join(stale)} ({stale_kept}): "
                  f"{advice(config, False)}", highlight=False)
