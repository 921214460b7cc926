"""The files a command reads and writes: a folder of photos as jobs, and refusing to write
over one of a run's own inputs (links and other spellings of a path resolved)."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Optional

from .config import StyleConfig
from .errors import NstError


def same_file(a: Optional[Path], b: Optional[Path]) -> bool:
    """Whether ``a`` and ``b`` are one existing file (links and spellings resolved)."""
    return a is not None and b is not None and Path(a).is_file() and Path(b).is_file() and os.path.samefile(a, b)


def same_path(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file, existing or not."""
    return same_file(a, b) or Path(os.path.abspath(a)) == Path(os.path.abspath(b))


def run_inputs(config: StyleConfig, contents: list[Path], styles: list[Path]) -> list[Path]:
    """Every file a run reads: its images, masks, start image and weights."""
    named = (config.init_image, config.weights, *config.masks, *config.style_masks)
    return [*contents, *styles, *(Path(p) for p in named if p)]


def check_clashes(written: list[Optional[Path]], read: list[Optional[Path]]) -> None:
    """One error if a file the run would write is one it reads."""
    for path in written:
        if path is not None and any(same_file(p, path) for p in read):
            raise NstError(f"refusing to overwrite {path}: it is an input of this run (give another "
                           "output, or --force)")


def check_snapshots(outputs: list[Path], read: list[Optional[Path]]) -> None:
    """One error if an input bears a name --save-every would write (OUTPUT_NNNN.ext)."""
    for output in outputs:
        pattern = re.compile(rf"{re.escape(output.stem)}_\d{{4,}}{re.escape(output.suffix)}")
        for p in read:
            if p is not None and pattern.fullmatch(Path(p).name) and same_path(Path(p).parent, output.parent):
                raise NstError(f"refusing to run: --save-every would write over {p}, an input of this run "
                               "(give another output, or --force)")


def content_jobs(content: Path, output: Path) -> list[tuple[Path, Path]]:
    """(content image, output file) pairs: one, or one per image in a content folder."""
    from .image import writable_extensions  # Pillow's plugins: only when a folder is given

    if not content.is_dir():
        return [(content, output)]
    if output.suffix and not output.is_dir():  # a folder may have a dot in its name
        raise NstError(f"{content} is a folder: give -o a folder for the results, not {output}")
    readable = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
    photos = sorted(p for p in content.iterdir() if p.is_file() and p.suffix.lower() in readable)
    if not photos:
        raise NstError(f"{content} holds no images ({', '.join(sorted(readable))})")
    ext = ".png" if ".png" in writable_extensions() else writable_extensions()[0]
    jobs = [(p, output / f"{p.stem}{ext}") for p in photos]
    by_output = {}  # by name as macOS and Windows disks compare them: Cat.png is cat.png there
    for photo, out in jobs:
        key = unicodedata.normalize("NFC", out.name).lower()
        if key in by_output:
            first, first_out = by_output[key]
            where = out if first_out == out else f"{first_out} and {out}, one file on a disk that ignores case"
            raise NstError(f"{first} and {photo} would both be written to {where}: rename one of them")
        by_output[key] = photo, out
    return jobs


def sweep_files(output: Path, rows: int, cols: int) -> list[Path]:
    """The files ``write_sweep`` writes into ``output``."""
    return [output / "contact_sheet.png", output / "losses.json",
            *(output / f"cell_r{r}_c{c}.png" for r in range(rows) for c in range(cols))]
