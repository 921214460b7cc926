"""Image files <-> float32 RGB arrays of shape (H, W, 3) in [0, 1].

Reading accepts whatever Pillow opens and converts it: grayscale, palette, RGBA (composited
on white), CMYK, 16-bit; EXIF orientation is applied. Writing is atomic: the file appears
complete under its name or not at all.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import atomic_path, created
from .errors import ImageError


def load_image(source, size: int | None = None) -> np.ndarray:
    """Read ``source`` (path or array) as float32 RGB in [0, 1], resized so its longest
    side is ``size`` (None keeps it as it is)."""
    if isinstance(source, np.ndarray):
        image = _check_array(source)
    else:
        image = _read_file(Path(source))
    return resize_longest(image, size) if size else image


def resize_longest(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so that the longest side is ``size`` pixels."""
    return resize(image, *scaled_shape(image.shape[:2], size))


def scaled_shape(shape: tuple[int, int], size: int) -> tuple[int, int]:
    """(height, width) after scaling ``shape`` so its longest side is ``size``."""
    h, w = shape
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize(image: np.ndarray, height: int, width: int, method: str = "lanczos") -> np.ndarray:
    """Resize float (H, W, C) in [0, 1] to exactly ``height`` x ``width``, clipped to [0, 1].
    ``"lanczos"`` for pictures; ``"bilinear"`` for masks (no ringing at hard edges)."""
    if image.shape[:2] == (height, width):
        return image
    resample = {"lanczos": Image.Resampling.LANCZOS, "bilinear": Image.Resampling.BILINEAR}[method]
    channels = [Image.fromarray(np.ascontiguousarray(image[..., c], np.float32), mode="F").resize(
        (width, height), resample) for c in range(image.shape[-1])]
    return np.clip(np.stack([np.asarray(c) for c in channels], axis=-1), 0.0, 1.0)


def to_uint8(image) -> np.ndarray:
    """[0, 1] floats to uint8 RGB (rounded, clipped)."""
    return (np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# Formats that keep an RGB picture as it is (no palette, no vector wrapper).
OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def writable_extensions() -> list[str]:
    """The output extensions this Pillow can write."""
    registered = Image.registered_extensions()
    return [ext for ext in OUTPUT_EXTENSIONS if registered.get(ext) in Image.SAVE]


def check_writable(path: str | Path) -> Path:
    """Fail early, before any compute, if ``path`` cannot be written as an image. A
    missing directory is fine (it is created when the image is saved) as long as the
    nearest existing one above it is writable."""
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"cannot write {path}: it is a directory")
    if path.suffix.lower() not in writable_extensions():
        raise ImageError(f"cannot write {path}: unknown image extension {path.suffix!r} "
                         f"(use {', '.join(writable_extensions())})")
    check_directory(path.parent)
    return path


def check_directory(directory: str | Path) -> None:
    """Raise unless ``directory`` exists as a writable directory or can be created."""
    existing = Path(directory) if str(directory) else Path(".")
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ImageError(f"cannot write into {directory}: {existing} is not a directory")
    try:  # os.access says yes to root and on some mounts: try for real
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ImageError(f"cannot write into {directory}: {e.strerror or e} in {existing}") from None


def save_image(image, path: str | Path) -> Path:
    """Write atomically (a temp file in the same directory, then a rename), creating the
    directory if it is missing."""
    path = check_writable(path)
    fmt = Image.registered_extensions()[path.suffix.lower()]
    try:
        with created(path.parent), atomic_path(path) as tmp:
            Image.fromarray(to_uint8(image), mode="RGB").save(tmp, format=fmt)
    except OSError as e:
        raise ImageError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _read_file(path: Path) -> np.ndarray:
    if not path.exists():
        raise ImageError(f"no such file: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a directory, not an image")
    if not path.is_file():  # a FIFO or a device would be read forever
        raise ImageError(f"{path} is not a regular file")
    try:
        with warnings.catch_warnings():
            # Past MAX_IMAGE_PIXELS Pillow warns, past twice that it refuses (below): the
            # image is resized anyway, and the memory check sees the run's sizes.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb_float(img)
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path} is too large to open safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        raise ImageError(f"{path} is damaged or truncated ({e})") from None


def _to_rgb_float(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale
        gray = np.asarray(img, np.float32) / (65535.0 if img.mode != "I" or
                                               np.asarray(img).max() > 255 else 255.0)
        return np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("RGB"), np.float32) / 255.0


def _check_array(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, np.float32)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ImageError(f"an image array must be (H, W, 3), not {array.shape}")
    return np.clip(array[..., :3], 0.0, 1.0)


def contact_sheet(images, row_labels: list[str], col_labels: list[str], title: str = "") -> np.ndarray:
    """A labelled grid (rows x cols) of equally sized images, like the paper's figures."""
    from PIL import ImageDraw, ImageFont

    rows, cols = len(row_labels), len(col_labels)
    h, w = images[0].shape[:2]
    font = ImageFont.load_default(size=max(11, min(18, w // 12)))
    pad, top, left = 4, 26 + (22 if title else 0), max(90, 8 * max(map(len, row_labels), default=0))
    sheet = Image.new("RGB", (left + cols * (w + pad), top + rows * (h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill="black", font=font)
    for c, label in enumerate(col_labels):
        draw.text((left + c * (w + pad) + w // 2, top - 6), label, fill="black", font=font, anchor="ms")
    for r, label in enumerate(row_labels):
        draw.multiline_text((pad, top + r * (h + pad) + h // 2), label.replace(" ", "\n"),
                            fill="black", font=font, anchor="lm")
        for c in range(cols):
            sheet.paste(Image.fromarray(to_uint8(images[r * cols + c])), (left + c * (w + pad), top + r * (h + pad)))
    return np.asarray(sheet, np.float32) / 255.0
