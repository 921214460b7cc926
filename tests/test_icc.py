"""Embedded ICC profiles: files come out in the colours an ICC-aware viewer shows.

References: littleCMS's own conversion of the same file (ImageCms.profileToProfile, to
1e-2) and, for the matrix/TRC and grey profiles, the colorimetry by hand: decode the
tone curve, RGB -> XYZ -> sRGB by the primaries' matrices, encode (icc_profiles.py).
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import png
import pytest
from PIL import Image, ImageCms

import icc_profiles as icc
from nst_jax.icc import srgb_profile
from nst_jax.image import read_image, to_uint16

SRGB = ImageCms.createProfile("sRGB")
P3 = icc.rgb_profile("Display P3", icc.P3_PRIMARIES, icc.SRGB_CURVE)
ADOBE = icc.rgb_profile("Adobe RGB (1998)", icc.ADOBE_PRIMARIES, icc.GAMMA_22)
GREY = icc.grey_profile("Gray Gamma 1.8", icc.GAMMA_18)
CMYK = icc.cmyk_profile("Test Press CMYK")
RNG = np.random.default_rng(3)
# Random colours, the primaries at full strength (outside sRGB from P3 and Adobe RGB: clipped) and greys.
PIXELS = np.concatenate([RNG.integers(0, 256, (6, 8, 3)),
                         np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255],
                                    [0, 0, 0], [128, 128, 128], [64, 200, 30], [250, 240, 10]]])]).astype(np.uint8)


def imagecms(path, profile: bytes, intent=ImageCms.Intent.RELATIVE_COLORIMETRIC) -> np.ndarray:
    """littleCMS's conversion of the file's pixels from ``profile`` to sRGB, as floats."""
    with Image.open(path) as img:
        out = ImageCms.profileToProfile(img, ImageCms.ImageCmsProfile(io.BytesIO(profile)), SRGB,
                                        renderingIntent=intent, outputMode="RGB")
    return np.asarray(out, np.float32) / 255.0


def sixteen_bit_png(path, values: np.ndarray, profile: bytes) -> None:
    """A 16-bit RGB PNG (written by pypng) with ``profile`` as its iCCP chunk."""
    encoded = io.BytesIO()
    png.from_array(values.reshape(len(values), -1), "RGB;16").write(encoded)
    header, *rest = png.Reader(bytes=encoded.getvalue()).chunks()
    with open(path, "wb") as f:
        png.write_chunks(f, [header, (b"iCCP", b"embedded\0\0" + zlib.compress(profile)), *rest])


def decoded(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img, np.float32) / 255.0


@pytest.mark.parametrize("profile,name,suffix,to_linear,primaries", [
    (P3, "Display P3", ".jpg", icc.srgb_decode, icc.P3_PRIMARIES),
    (ADOBE, "Adobe RGB (1998)", ".png", lambda v: v ** icc.GAMMA_22, icc.ADOBE_PRIMARIES),
])
def test_rgb_with_other_primaries_is_converted_to_srgb(tmp_path, profile, name, suffix, to_linear, primaries):
    path = tmp_path / f"content{suffix}"
    Image.fromarray(PIXELS).save(path, icc_profile=profile, **({"quality": 100} if suffix == ".jpg" else {}))
    image, note = read_image(path)
    assert note == f"content{suffix}: converted from {name} to sRGB"
    np.testing.assert_allclose(image, imagecms(path, profile), atol=1e-2)
    # By hand: the two profiles share the D65 white, so the D50 adaptation cancels out.
    matrix = np.linalg.inv(icc.rgb_to_xyz(icc.SRGB_PRIMARIES)) @ icc.rgb_to_xyz(primaries)
    np.testing.assert_allclose(image, icc.srgb_encode(to_linear(decoded(path)) @ matrix.T), atol=1e-2)
    assert np.abs(image - decoded(path)).max() > 0.2  # the numbers as they were are far from it


def test_display_p3_matrix_by_its_published_numbers():
    """The test's own colorimetry against the published Display P3 -> sRGB matrix."""
    published = np.array([[1.2249401, -0.2249404, 0.0], [-0.0420569, 1.0420571, 0.0],
                          [-0.0196376, -0.0786361, 1.0982735]])
    ours = np.linalg.inv(icc.rgb_to_xyz(icc.SRGB_PRIMARIES)) @ icc.rgb_to_xyz(icc.P3_PRIMARIES)
    np.testing.assert_allclose(ours, published, atol=1e-6)


@pytest.mark.parametrize("depth", [8, 16])
def test_grey_with_a_grey_profile(tmp_path, depth):
    ramp = np.linspace(0, 1, 64).reshape(8, 8)
    path = tmp_path / "grey.png"
    pixels = (ramp * 255 + 0.5).astype(np.uint8) if depth == 8 else to_uint16(ramp)
    Image.fromarray(pixels).save(path, icc_profile=GREY)
    image, note = read_image(path)
    assert note == "grey.png: converted from Gray Gamma 1.8 to sRGB"
    want = icc.srgb_encode(ramp ** icc.GAMMA_18)  # the grey's luminance, as sRGB
    np.testing.assert_allclose(image, np.repeat(want[..., None], 3, axis=-1), atol=1e-2)
    if depth == 8:
        np.testing.assert_allclose(image, imagecms(path, GREY), atol=1e-2)
    assert np.abs(image[..., 0] - ramp).max() > 0.05


def test_a_cmyk_jpeg_with_its_profile(tmp_path):
    inks = RNG.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    inks[0, :4] = [[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255], [0, 255, 255, 0]]  # paper, cyan, black, red
    path = tmp_path / "print.jpg"
    Image.fromarray(inks, "CMYK").save(path, icc_profile=CMYK, quality=100)
    image, note = read_image(path)
    assert note == "print.jpg: converted from Test Press CMYK to sRGB"
    np.testing.assert_allclose(image, imagecms(path, CMYK), atol=1e-2)
    # The intent is relative colorimetric: this profile's perceptual table differs.
    assert np.abs(image - imagecms(path, CMYK, ImageCms.Intent.PERCEPTUAL)).max() > 0.02
    with Image.open(path) as img:
        plain = np.asarray(img.convert("RGB"), np.float32) / 255.0  # Pillow's formula, no profile
    assert np.abs(image - plain).max() > 0.1
    np.testing.assert_allclose(image[0, 0], 1.0, atol=1e-2)  # the paper is white (relative colorimetric)


@pytest.mark.parametrize("profile", [srgb_profile(), icc.rgb_profile("sRGB IEC61966-2.1", icc.SRGB_PRIMARIES,
                                                                      icc.SRGB_CURVE)])
def test_an_srgb_profile_changes_nothing(tmp_path, profile):
    path = tmp_path / "s.png"
    Image.fromarray(PIXELS).save(path, icc_profile=profile)
    image, note = read_image(path)
    assert note is None
    np.testing.assert_array_equal(image, PIXELS / np.float32(255))
    wide = tmp_path / "s16.png"  # a 16-bit file keeps its 16 bits
    values = RNG.integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    sixteen_bit_png(wide, values, profile)
    image, note = read_image(wide)
    assert note is None
    np.testing.assert_allclose(image, values / 65535.0, atol=1e-7)


@pytest.mark.parametrize("profile,what", [(b"not a profile", "is damaged"), (P3[:200], "is damaged"),
                                          (P3[:len(P3) // 2], "cannot be applied to its RGB pixels")])
def test_a_damaged_profile_leaves_the_pixels_and_says_so(tmp_path, profile, what):
    path = tmp_path / "bad.png"
    Image.fromarray(PIXELS).save(path, icc_profile=profile)
    image, note = read_image(path)
    assert note.startswith(f"bad.png: its colour profile {what}") and note.endswith("used as they are")
    np.testing.assert_array_equal(image, PIXELS / np.float32(255))


def test_a_profile_of_another_kind_of_pixels(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(PIXELS[..., 0]).save(path, icc_profile=P3)  # an RGB profile on grey pixels
    image, note = read_image(path)
    assert note == ("grey.png: its colour profile (Display P3) cannot be applied to its grey pixels; its "
                    "colours are used as they are")
    np.testing.assert_array_equal(image, np.repeat(PIXELS[..., :1], 3, axis=-1) / np.float32(255))


def test_sixteen_bit_rgb_with_a_profile_is_converted(tmp_path):
    sixteen_bit_png(tmp_path / "p3.png", to_uint16(PIXELS / 255.0), P3)
    image, note = read_image(tmp_path / "p3.png")
    assert note == "p3.png: converted from Display P3 to sRGB"
    eight = tmp_path / "p3-8.png"
    Image.fromarray(PIXELS).save(eight, icc_profile=P3)
    np.testing.assert_allclose(image, imagecms(eight, P3), atol=1e-2)


def test_the_output_profile_is_the_same_bytes_in_every_process():
    """littleCMS dates the profiles it makes; ours carries a fixed date, so the same picture
    written by two processes (a sweep's cells) is the same file."""
    import subprocess
    import sys
    code = "import sys; from nst_jax.icc import srgb_profile; sys.stdout.buffer.write(srgb_profile())"
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] == srgb_profile()
    assert srgb_profile()[24:36] == bytes([0x07, 0xEA, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0])  # 2026-01-01 00:00:00
    profile = ImageCms.ImageCmsProfile(io.BytesIO(srgb_profile()))
    assert "sRGB" in ImageCms.getProfileDescription(profile)
