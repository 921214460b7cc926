"""ICC colour profiles: the pixels of an image file in sRGB, the space the network was
trained in and every output is written in.

A file's embedded profile says what colours its numbers mean (Display P3, Adobe RGB, a
grey gamma, a press's CMYK); :func:`to_srgb` converts them with littleCMS (Pillow's
ImageCms) to the numbers an sRGB display needs to show the same colours, as a
colour-managed viewer does. A profile that is sRGB already changes nothing.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageCms

# Relative colorimetric: colours inside sRGB keep their exact appearance (white maps to
# white) and only those outside are clipped, as colour-managed viewers show a picture.
INTENT = ImageCms.Intent.RELATIVE_COLORIMETRIC

SPACES = {"L": "grey", "RGB": "RGB", "CMYK": "CMYK"}  # Pillow mode -> what the pixels are


# The ICC header's creation date (bytes 24-35: six big-endian uint16). littleCMS stamps
# the current time; a fixed one makes the same picture the same file bytes on every run.
PROFILE_DATE = (2026, 1, 1, 0, 0, 0)


@functools.cache
def srgb_profile() -> bytes:
    """littleCMS's sRGB profile as ICC bytes, dated :data:`PROFILE_DATE`: what every
    output embeds."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    data[24:36] = b"".join(v.to_bytes(2, "big") for v in PROFILE_DATE)
    return bytes(data)


def to_srgb(pixels: np.ndarray, mode: str, icc: bytes | None, name: str) -> tuple[np.ndarray, str | None]:
    """``pixels`` (H, W, C) in [0, 1], in Pillow ``mode`` "L", "RGB" or "CMYK", as
    described by the ICC profile ``icc`` (None: the file has none), converted to sRGB
    (H, W, 3); and a one-line note for the user (``name``: the file's name) when colours
    were converted or the profile could not be used, else None.

    Without a profile the pixels are taken as sRGB (CMYK by Pillow's plain formula). A
    damaged profile, or one that does not describe this kind of pixels, leaves the pixels
    as they are, with a note. A profile that maps every colour to within one 8-bit step
    of itself (an sRGB profile) leaves them as they are too, so 16-bit pixels keep their
    precision; any other conversion runs on 8 bits per channel, as Pillow's ImageCms does.
    """
    if not icc:
        return plain_rgb(pixels, mode), None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ImageCms.PyCMSError):
        return plain_rgb(pixels, mode), f"{name}: its colour profile is damaged; its colours are used as they are"
    label = describe(profile)
    try:
        transform = ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), mode, "RGB", INTENT)
    except ImageCms.PyCMSError:
        return plain_rgb(pixels, mode), (f"{name}: its colour profile{f' ({label})' if label else ''} cannot be "
                                      f"applied to its {SPACES[mode]} pixels; its colours are used as they are")
    if mode != "CMYK" and _is_identity(transform, mode):
        return plain_rgb(pixels, mode), None
    image = ImageCms.applyTransform(Image.fromarray(_to_uint8(pixels, mode), mode), transform)
    return np.asarray(image, np.float32) / 255.0, f"{name}: converted from {label or 'its colour profile'} to sRGB"


def describe(profile: ImageCms.ImageCmsProfile) -> str:
    """The profile's own name for itself ("Display P3"), or "" when it has none."""
    try:
        return " ".join(ImageCms.getProfileDescription(profile).split())
    except ImageCms.PyCMSError:
        return ""


def plain_rgb(pixels: np.ndarray, mode: str) -> np.ndarray:
    """The pixels as RGB without colour management: grey repeated, CMYK by Pillow's formula."""
    if mode == "CMYK":
        return np.asarray(Image.fromarray(_to_uint8(pixels, mode), mode).convert("RGB"), np.float32) / 255.0
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def _to_uint8(pixels: np.ndarray, mode: str) -> np.ndarray:
    values = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return values[..., 0] if mode == "L" else values


def _is_identity(transform: ImageCms.ImageCmsTransform, mode: str) -> bool:
    """Whether ``transform`` moves none of 4096 RGB colours (or 256 greys) by more than one 8-bit step."""
    levels = np.arange(0, 256, 17, dtype=np.uint8) if mode == "RGB" else np.arange(256, dtype=np.uint8)
    probe = (np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(64, 64, 3)
             if mode == "RGB" else levels.reshape(16, 16))
    out = np.asarray(ImageCms.applyTransform(Image.fromarray(probe, mode), transform), np.int16)
    want = probe if mode == "RGB" else np.repeat(probe[..., None], 3, axis=-1)
    return int(np.abs(out - want).max()) <= 1
