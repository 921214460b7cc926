"""Reading every kind of image people have, and writing atomically, with an sRGB profile,
8 or 16 bits per channel."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps, JpegImagePlugin

from nst_jax.errors import ConfigError, ImageError
from nst_jax.image import (check_writable, load_image, output_bit_depth, read_image, resize_longest, save_image,
                           scaled_shape, to_uint8, to_uint16)

RGB = (np.arange(4 * 6 * 3).reshape(4, 6, 3) * 3 % 256).astype(np.uint8)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1", "I;16", "RGB"])
def test_every_mode_becomes_rgb_float(tmp_path, mode):
    img = Image.fromarray(RGB, "RGB")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L"), np.uint16) * np.uint16(257))
        assert img.mode == "I;16"
        suffix = ".png"
    else:
        img = img.convert(mode)
        suffix = ".tiff" if mode == "CMYK" else ".png"
    path = tmp_path / f"x{suffix}"
    img.save(path)
    out = load_image(path)
    assert out.shape == (4, 6, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    if mode in ("L", "I;16"):
        want = np.asarray(Image.fromarray(RGB).convert("L"), np.float32) / 255
        np.testing.assert_allclose(out[..., 0], want, atol=1e-3)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)  # fully transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    np.testing.assert_allclose(load_image(tmp_path / "t.png"), 1.0)
    assert read_image(tmp_path / "t.png")[1] == "t.png has transparent pixels: they are taken as on white"
    rgba[..., 3] = 255  # an alpha channel, every pixel opaque: nothing to say
    Image.fromarray(rgba, "RGBA").save(tmp_path / "o.png")
    assert read_image(tmp_path / "o.png")[1] is None


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(np.zeros((10, 20, 3), np.uint8))  # landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the photo is portrait
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (20, 10, 3)


def test_resize_longest_side():
    img = np.random.default_rng(0).uniform(size=(30, 60, 3)).astype(np.float32)
    assert resize_longest(img, 20).shape == (10, 20, 3)
    assert scaled_shape((30, 60), 20) == (10, 20)


@pytest.mark.parametrize("content,match", [(b"not an image at all", "not an image"),
                                           (None, "damaged or truncated")])
def test_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.jpg"
    if content is None:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:600])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=match):
        load_image(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_save_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "o.png"
    save_image(np.full((4, 4, 3), 0.5, np.float32), out)
    before = out.read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

    def broken_save(self, fp, format=None, **kw):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageError, match="No space left"):
        save_image(np.zeros((4, 4, 3), np.float32), out)
    assert out.read_bytes() == before  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]  # no temp file left


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "missing" / "o.png")  # created when saved
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError, match="is not a directory"):
        check_writable(tmp_path / "file" / "o.png")
    with pytest.raises(ImageError, match="unknown image extension '.xyz' \\(use .png, .jpg"):
        check_writable(tmp_path / "o.xyz")
    with pytest.raises(ImageError, match="cannot write"):
        check_writable("/proc/o.png")  # a directory nobody, root included, can create files in
    assert check_writable(tmp_path / "o.png") == tmp_path / "o.png"


# ---------------------------------------------------------------- 16 bits and EXIF orientation on reading


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_as_pillow_turns_it(tmp_path, orientation):
    img = Image.fromarray(RGB)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as saved:
        want = np.asarray(ImageOps.exif_transpose(saved), np.float32) / 255
    np.testing.assert_array_equal(load_image(tmp_path / "o.png"), want)
    deep = tmp_path / "o.tif"  # a 16-bit TIFF, which Pillow cannot turn at 16 bits
    tifffile.imwrite(deep, to_uint16(RGB / 255.0), photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    np.testing.assert_allclose(load_image(deep), want, atol=1e-6)


def test_sixteen_bit_alpha_and_planar_layouts(tmp_path):
    rng = np.random.default_rng(4)
    rgba = rng.integers(0, 65536, (5, 6, 4), dtype=np.uint16)
    png.from_array(rgba.reshape(5, -1), "RGBA;16").save(tmp_path / "a.png")
    colour, alpha = rgba[..., :3] / 65535.0, rgba[..., 3:] / 65535.0
    np.testing.assert_allclose(load_image(tmp_path / "a.png"), colour * alpha + 1 - alpha, atol=1e-6)
    rgb = rgba[..., :3]
    tifffile.imwrite(tmp_path / "p.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_allclose(load_image(tmp_path / "p.tif"), rgb / 65535.0, atol=1e-6)


def test_a_tiff_tifffile_cannot_decode_is_read_by_pillow(tmp_path, monkeypatch):
    path = tmp_path / "o.tif"
    tifffile.imwrite(path, to_uint16(RGB / 255.0), photometric="rgb")

    def no_codec(*args, **kwargs):
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile, "TiffFile", no_codec)
    np.testing.assert_allclose(load_image(path), RGB / 255.0, atol=1e-6)  # 8 bits from Pillow, still the picture


# ---------------------------------------------------------------- writing: sRGB profile, JPEG, bit depth


def embedded_profile(path) -> str:
    with Image.open(path) as img:
        icc = img.info.get("icc_profile")
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() if icc else ""


@pytest.mark.parametrize("name,depth", [("o.png", None), ("o.png", 16), ("o.jpg", None), ("o.jpeg", None),
                                        ("o.webp", None), ("o.tif", None), ("o.tiff", 8)])
def test_outputs_carry_an_srgb_profile(tmp_path, name, depth):
    path = save_image(RGB / 255.0, tmp_path / name, depth)
    assert embedded_profile(path) == "sRGB built-in"  # littleCMS's sRGB
    assert read_image(path)[1] is None  # read back as sRGB: nothing to convert


def test_bmp_has_no_place_for_a_profile(tmp_path):
    path = save_image(RGB / 255.0, tmp_path / "o.bmp")
    assert embedded_profile(path) == ""
    np.testing.assert_array_equal(load_image(path), RGB / np.float32(255))


@pytest.mark.parametrize("name,depth", [("o.png", 16), ("o.tif", None), ("o.tiff", 16)])
def test_sixteen_bits_round_trip(tmp_path, name, depth):
    image = np.random.default_rng(1).uniform(size=(7, 9, 3))
    image[0, :3] = [[0, 0, 0], [1, 1, 1], [0.5, 0.25, 1 / 65535]]
    path = save_image(image, tmp_path / name, depth)
    with Image.open(path) as img:  # Pillow reads these at 8 bits, but knows they hold 16
        assert img.tile[0][3] == "RGB;16B" if img.format == "PNG" else img.tag_v2[258] == (16, 16, 16)
    assert np.abs(load_image(path) - image).max() <= 1 / 65535
    assert np.abs(load_image(save_image(image, tmp_path / f"8{name}", 8)) - image).max() > 1 / 1000


def test_default_bit_depths_and_refusals(tmp_path):
    assert [output_bit_depth(tmp_path / n) for n in ("a.png", "a.jpg", "a.tif", "a.TIFF")] == [8, 8, 16, 16]
    assert output_bit_depth("a.tif", 8) == 8 and output_bit_depth("a.png", 16) == 16
    for name in ("a.jpg", "a.webp", "a.bmp"):
        with pytest.raises(ConfigError, match=f"bit_depth 16 cannot be written to .*{name}: {Path(name).suffix} "
                                              "holds 8 bits per channel \\(16 bits: .png, .tif, .tiff\\)"):
            check_writable(tmp_path / name, 16)
    with pytest.raises(ConfigError, match="bit_depth must be 8 or 16, not 12"):
        output_bit_depth("a.png", 12)


def test_jpeg_is_quality_95_without_chroma_subsampling(tmp_path):
    image = np.random.default_rng(2).uniform(size=(32, 48, 3))
    ours = save_image(image, tmp_path / "o.jpg")
    reference, default = tmp_path / "ref.jpg", tmp_path / "default.jpg"
    Image.fromarray(to_uint8(image)).save(reference, quality=95, subsampling=0)
    Image.fromarray(to_uint8(image)).save(default)
    with Image.open(ours) as img, Image.open(reference) as ref, Image.open(default) as plain:
        assert JpegImagePlugin.get_sampling(img) == 0 and JpegImagePlugin.get_sampling(plain) == 2  # 4:4:4, 4:2:0
        assert img.quantization == ref.quantization != plain.quantization


@pytest.mark.parametrize("name,writer", [("o.png", "write_chunks"), ("o.tif", "imwrite")])
def test_sixteen_bit_writes_are_atomic(tmp_path, monkeypatch, name, writer):
    module = png if writer == "write_chunks" else tifffile

    def half_written(target, *args, **kwargs):
        with open(target if isinstance(target, str) else target.name, "ab") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, writer, half_written)
    with pytest.raises(ImageError, match="No space left"):
        save_image(RGB / 255.0, tmp_path / name, 16)
    assert list(tmp_path.iterdir()) == []


def test_a_warning_while_reading_becomes_the_note(tmp_path, monkeypatch):
    """What Pillow warns about a file (damaged metadata) is said once, in the note, not as a
    stray line."""
    import warnings

    from PIL import Image as PILImage

    save_image(np.zeros((4, 4, 3)), tmp_path / "w.png")
    real = PILImage.Image.getexif

    def warns(self):
        warnings.warn("Corrupt EXIF data", UserWarning)
        return real(self)

    monkeypatch.setattr(PILImage.Image, "getexif", warns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning that escaped would fail here
        assert read_image(tmp_path / "w.png")[1] == "w.png: Corrupt EXIF data"
