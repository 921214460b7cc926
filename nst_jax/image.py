"""Image files <-> float32 sRGB arrays of shape (H, W, 3) in [0, 1].

Reading accepts whatever Pillow opens and converts it: grayscale, palette, RGBA (composited
on white), CMYK, 16-bit (colour PNG and TIFF through pypng and tifffile, which keep the bits
Pillow reads at 8); EXIF orientation is applied, and colours described by an embedded ICC
profile are converted to sRGB (icc.py). Writing embeds an sRGB profile, 8 or 16 bits per
channel, and is atomic: the file appears complete under its name or not at all.
"""

from __future__ import annotations

import io
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import png
import tifffile
from PIL import ExifTags, Image, UnidentifiedImageError

from .atomic import atomic_path, created, name_fits
from .errors import ConfigError, ImageError
from .icc import srgb_profile, to_srgb


def read_image(source) -> tuple[np.ndarray, str | None]:
    """``source`` (path or array) as float32 sRGB in [0, 1], (H, W, 3); and a one-line note
    for the user when its colour profile asked for a conversion or could not be used
    (``"photo.jpg: converted from Display P3 to sRGB"``), else None."""
    if isinstance(source, np.ndarray):
        return _check_array(source), None
    return _read_file(Path(source))


def load_image(source, size: int | None = None) -> np.ndarray:
    """Read ``source`` (path or array) as float32 sRGB in [0, 1] (see :func:`read_image`),
    resized so its longest side is ``size`` (None keeps it as it is)."""
    image = read_image(source)[0]
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


def to_uint16(image) -> np.ndarray:
    """[0, 1] floats to uint16 RGB (rounded, clipped)."""
    return (np.clip(np.asarray(image, np.float64), 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)


# Formats that keep an RGB picture as it is (no palette, no vector wrapper).
OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
SIXTEEN_BIT_EXTENSIONS = (".png", ".tif", ".tiff")  # those also written with 16 bits per channel
# JPEG at quality 95 with the colours at full resolution (4:4:4, no chroma subsampling): a
# stylized picture's colour texture is as fine as its brightness's.
SAVE_OPTIONS = {"JPEG": {"quality": 95, "subsampling": 0}}


def writable_extensions() -> list[str]:
    """The output extensions this Pillow can write."""
    registered = Image.registered_extensions()
    return [ext for ext in OUTPUT_EXTENSIONS if registered.get(ext) in Image.SAVE]


def output_bit_depth(path: str | Path, bit_depth: int | None = None) -> int:
    """The bits per channel ``path`` is written with: ``bit_depth`` (8 or 16), by default
    16 for TIFF (a format for editing, where the extra precision is kept) and 8 for the
    others. Raises :class:`ConfigError` for a depth the format cannot hold."""
    suffix = Path(path).suffix.lower()
    if bit_depth is None:
        return 16 if suffix in (".tif", ".tiff") else 8
    if bit_depth not in (8, 16):
        raise ConfigError("bit_depth", f"must be 8 or 16, not {bit_depth}")
    if bit_depth == 16 and suffix not in SIXTEEN_BIT_EXTENSIONS:
        raise ConfigError("bit_depth", f"16 cannot be written to {path}: {suffix or 'it'} holds 8 bits per "
                                       f"channel (16 bits: {', '.join(SIXTEEN_BIT_EXTENSIONS)})")
    return bit_depth


def check_writable(path: str | Path, bit_depth: int | None = None) -> Path:
    """Fail early, before any compute, if ``path`` cannot be written as an image (with
    ``bit_depth`` bits per channel, see :func:`output_bit_depth`). A missing directory is
    fine (it is created when the image is saved) as long as the nearest existing one
    above it is writable."""
    path = Path(path)
    if not name_fits(path):  # (before is_dir, which raises on such a name)
        raise ImageError(f"cannot write {path}: its name is too long")
    if path.is_dir():
        raise ImageError(f"cannot write {path}: it is a directory")
    if path.suffix.lower() not in writable_extensions():
        raise ImageError(f"cannot write {path}: unknown image extension {path.suffix!r} "
                         f"(use {', '.join(writable_extensions())})")
    output_bit_depth(path, bit_depth)
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
        raise ImageError(f"cannot write into {directory}: creating a file in {existing} fails "
                         f"({e.strerror or e})") from None


def save_image(image, path: str | Path, bit_depth: int | None = None) -> Path:
    """Write ``image`` (H, W, 3) in [0, 1] as sRGB with ``bit_depth`` bits per channel
    (see :func:`output_bit_depth`) and an sRGB ICC profile embedded (BMP has no place for
    one), atomically (a temp file in the same directory, then a rename), creating the
    directory if it is missing."""
    path = check_writable(path, bit_depth)
    fmt = Image.registered_extensions()[path.suffix.lower()]
    try:
        with created(path.parent), atomic_path(path) as tmp:
            if output_bit_depth(path, bit_depth) == 16:
                _write_16_bit(to_uint16(image), tmp, fmt)
            else:
                Image.fromarray(to_uint8(image), mode="RGB").save(tmp, format=fmt, icc_profile=srgb_profile(),
                                                                  **SAVE_OPTIONS.get(fmt, {}))
    except OSError as e:
        raise ImageError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _write_16_bit(pixels: np.ndarray, path: str, fmt: str) -> None:
    """uint16 RGB, which Pillow writes for grey pictures only: PNG by pypng, with the sRGB
    profile as an iCCP chunk after the header; TIFF by tifffile, Deflate-compressed."""
    height, width = pixels.shape[:2]
    if fmt == "PNG":
        encoded = io.BytesIO()
        png.Writer(width, height, greyscale=False, bitdepth=16).write(encoded, pixels.reshape(height, -1))
        header, *rest = png.Reader(bytes=encoded.getvalue()).chunks()
        with open(path, "wb") as f:
            png.write_chunks(f, [header, (b"iCCP", b"sRGB\0\0" + zlib.compress(srgb_profile())), *rest])
    else:
        tifffile.imwrite(path, pixels, photometric="rgb", compression="zlib", iccprofile=srgb_profile(),
                         metadata=None)


def _read_file(path: Path) -> tuple[np.ndarray, str | None]:
    if not path.exists():
        raise ImageError(f"no such file: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a directory, not an image")
    if not path.is_file():  # a FIFO or a device would be read forever
        raise ImageError(f"{path} is not a regular file")
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            with Image.open(path) as img:
                pixels, mode, transparent = _sixteen_bit(img, path) or _pixels(img)
                orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
                icc = img.info.get("icc_profile")
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path} is too large to open safely ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt data
        raise ImageError(f"{path} is damaged or truncated ({e})") from None
    image, note = to_srgb(pixels, mode, icc, path.name)
    # Past MAX_IMAGE_PIXELS Pillow warns, past twice that it refuses (above): the image is
    # resized anyway, and the memory check sees the run's sizes. Other warnings (damaged
    # metadata) become part of the note rather than stray lines.
    said = [f"{path.name}: {w.message}" for w in warned if issubclass(w.category, UserWarning)]
    if transparent:
        said.append(f"{path.name} has transparent pixels: they are taken as on white")
    note = "; ".join(dict.fromkeys(filter(None, [note, *said]))) or None
    return np.ascontiguousarray(upright(image, orientation), np.float32), note


def _pixels(img: Image.Image) -> tuple[np.ndarray, str, bool]:
    """The pixels as float (H, W, C) in [0, 1], any transparency composited on white;
    their mode: "L" (C = 1), "RGB" or "CMYK"; and whether any pixel was transparent."""
    img.load()
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale
        grey = np.asarray(img, np.float32) / (65535.0 if img.mode != "I" or
                                               np.asarray(img).max() > 255 else 255.0)
        return np.clip(grey, 0, 1)[..., None], "L", False
    if img.mode == "CMYK":
        return np.asarray(img, np.float32) / 255.0, "CMYK", False
    mode = "L" if img.mode in ("1", "L", "LA", "La", "F") else "RGB"
    alpha = img.has_transparency_data
    values = np.asarray(img.convert(mode + "A" if alpha else mode), np.float32) / 255.0
    pixels, transparent = on_white(values if values.ndim == 3 else values[..., None], alpha)
    return pixels, mode, transparent


def _sixteen_bit(img: Image.Image, path: Path) -> tuple[np.ndarray, str] | None:
    """A 16-bit colour PNG or TIFF with all its bits (Pillow reads those at 8), as
    :func:`_pixels` returns them; None for other files, and for one that pypng or
    tifffile cannot decode (a TIFF compression tifffile lacks a codec for): Pillow reads it."""
    try:
        if img.format == "PNG" and img.tile and img.tile[0][3] in ("RGB;16B", "RGBA;16B", "LA;16B"):  # raw mode
            with open(path, "rb") as f:
                width, height, rows, info = png.Reader(file=f).asDirect()
                values = np.vstack([np.asarray(row, np.float32) for row in rows]) / (2 ** info["bitdepth"] - 1)
            pixels, transparent = on_white(values.reshape(height, width, info["planes"]), info["alpha"])
            return pixels, "L" if info["greyscale"] else "RGB", transparent
        if img.format == "TIFF" and img.mode in ("RGB", "RGBA") and set(img.tag_v2.get(258, ())) == {16}:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                values = page.asarray()
                if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
                    values = np.moveaxis(values, 0, -1)
            channels = 4 if img.mode == "RGBA" else 3
            pixels, transparent = on_white(values[..., :channels].astype(np.float32) / 65535.0, channels == 4)
            return pixels, "RGB", transparent
    except Exception:  # whatever these two cannot decode, Pillow reads (at 8 bits) or reports
        return None
    return None


def on_white(values: np.ndarray, alpha: bool) -> tuple[np.ndarray, bool]:
    """(H, W, C) with, when ``alpha``, the last channel an opacity: composited on white;
    and whether any pixel was less than opaque."""
    if not alpha:
        return values, False
    colour, opacity = values[..., :-1], values[..., -1:]
    return colour * opacity + (1.0 - opacity), bool((opacity < 1.0).any())


# EXIF orientation -> the turn that makes the stored pixels upright (as Pillow's
# ImageOps.exif_transpose, for arrays of any bit depth).
UPRIGHT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` turned as EXIF ``orientation`` (1-8) says; other values leave it as it is."""
    return UPRIGHT.get(orientation, lambda a: a)(image)


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
