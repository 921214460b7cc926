"""Masks -> guidance channels by hand; an all-ones mask is the unguided run exactly; end to
end, the masked-out region keeps the content."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from conftest import CONTENT, STYLE, tiny
from nst_jax.errors import NstError
from nst_jax.image import save_image
from nst_jax.inputs import prepare
from nst_jax.masks import erode_min, labelled_regions, layer_guides, load_regions, normalised_guides
from nst_jax.run import stylize
from nst_jax.sweeps import sweep


def test_layer_guides_by_hand():
    # 9x9 pixels, white on rows 0-2 x cols 0-4, plus (8, 8), which floor-mode pooling drops.
    mask = np.zeros((1, 9, 9), np.float32)
    mask[0, :3, :5] = 1.0
    mask[0, 8, 8] = 1.0
    relu1_1, relu2_1, relu3_1 = layer_guides(mask, "vgg16", ("relu1_1", "relu2_1", "relu3_1"))
    np.testing.assert_array_equal(relu1_1, mask)  # no pooling before relu1_1
    # 2x2 blocks: rows 0-1 are inside, row 2 half; cols 0-3 inside, 4-5 half, 6-7 outside
    np.testing.assert_allclose(relu2_1[0], [[1, 1, 0.5, 0], [0.5, 0.5, 0.25, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    # 4x4 blocks: 3 rows x 4 cols = 12/16 of the first, 3 rows x 1 col = 3/16 of the second
    np.testing.assert_allclose(relu3_1[0], [[0.75, 0.1875], [0, 0]])
    # eroded by one position: the minimum over each 3x3 neighbourhood (edges repeated)
    eroded = layer_guides(mask, "vgg16", ("relu2_1",), erode=1)[0]
    np.testing.assert_allclose(eroded[0], [[0.5, 0.25, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(erode_min(np.ones((1, 3, 4)), 2), np.ones((1, 3, 4)))


def test_normalised_guides():
    m = np.array([[[1.0, 0.5], [0.0, 0.0]]], np.float32)
    # squares (1, 0.25, 0, 0), mean 0.3125
    (t,) = normalised_guides((m,), ("relu1_1",), "mask")
    np.testing.assert_allclose(t, [[[3.2, 0.8], [0.0, 0.0]]], rtol=1e-6)
    (ones,) = normalised_guides((np.ones((1, 3, 5), np.float32),), ("relu1_1",), "mask")
    np.testing.assert_array_equal(ones, np.ones((1, 3, 5)))
    with pytest.raises(NstError, match="region of style 2 vanishes at relu5_1"):
        normalised_guides((np.stack([m[0], 0 * m[0]]),), ("relu5_1",), "mask")


def test_labelled_image_names_regions_brightest_first(tmp_path):
    image = np.zeros((4, 6, 3), np.float32)
    image[:, :2] = [1.0, 0.0, 0.0]  # red, luminance 0.299
    image[:, 2:4] = [1.0, 1.0, 1.0]  # white
    white, red = labelled_regions(image, 2, "labels.png")  # brightest first
    np.testing.assert_array_equal(white, np.repeat([[0, 0, 1, 1, 0, 0]], 4, axis=0))
    np.testing.assert_array_equal(red, np.repeat([[1, 1, 0, 0, 0, 0]], 4, axis=0))
    with pytest.raises(NstError, match="has 2 colours besides black for 3 style images"):
        labelled_regions(image, 3, "labels.png")


def test_masks_of_another_size_are_resized_with_a_note(tmp_path):
    save_image(np.ones((16, 14, 3)), tmp_path / "half.png")
    notes = []
    regions = load_regions([tmp_path / "half.png"], 1, (32, 28), (32, 28), "mask", notes)
    assert regions.shape == (1, 32, 28) and regions.min() == 1.0
    assert notes == ["the mask half.png is 14x16 px, its image 28x32: resized (stretched if the shapes differ)"]
    save_image(np.full((32, 28, 3), 0.4), tmp_path / "grey.png")
    with pytest.raises(NstError, match="grey.png has no white pixels"):
        load_regions([tmp_path / "grey.png"], 1, (32, 28), (32, 28), "mask", [])
    with pytest.raises(NstError, match="2 masks for 3 style images"):
        load_regions([tmp_path / "grey.png"] * 2, 3, (32, 28), (32, 28), "mask", [])


def test_an_all_ones_mask_is_the_unguided_run_exactly(tmp_path, vgg16_weights):
    save_image(np.ones((32, 28, 3)), tmp_path / "ones.png")
    save_image(np.ones((24, 32, 3)), tmp_path / "style_ones.png")
    config = tiny(size=32)
    plain = prepare(CONTENT, STYLE, config, vgg16_weights)
    masked = prepare(CONTENT, STYLE, config.replace(masks=(str(tmp_path / "ones.png"),),
                                                    style_masks=(str(tmp_path / "style_ones.png"),)),
                     vgg16_weights)
    assert plain.problem.targets.guides is None and masked.notes == []
    assert masked.problem.targets.keep is None  # every pixel is inside the mask: nothing to keep
    # unmasked: no guidance arrays in the traced data, so no cost in the compiled step
    assert len(jax.tree.leaves(plain.problem.targets)) == len(config.content_layers) + len(config.style_layers)
    for a, b in zip(plain.problem.targets.style, masked.problem.targets.style):
        np.testing.assert_array_equal(a, b)
    image = np.random.default_rng(0).uniform(size=plain.start.shape).astype(np.float32)
    j_plain = jax.jit(plain.objective.__call__)(plain.problem, image)
    j_masked = jax.jit(masked.objective.__call__)(masked.problem, image)
    assert float(j_plain[1].style) > 0
    assert jax.tree.map(lambda a, b: bool(a == b), j_plain, j_masked) == jax.tree.map(lambda a: True, j_plain)


def content_and_half_mask(tmp_path):
    rng = np.random.default_rng(3)
    content = np.clip(0.5 + 0.15 * rng.standard_normal((64, 64, 3)), 0, 1).astype(np.float32)
    style = rng.uniform(size=(64, 64, 3)).astype(np.float32)
    mask = np.zeros((64, 64, 3), np.float32)
    mask[:32] = 1.0  # the top half is styled
    save_image(mask, tmp_path / "top.png")
    return content, style, str(tmp_path / "top.png")


def test_the_masked_out_region_keeps_the_content(tmp_path, vgg16_weights):
    content, style, top = content_and_half_mask(tmp_path)
    config = tiny(size=64, steps=10, style_weight=1e4, content_weight=1e-3, masks=(top,))

    def change(result):  # mean |output - content| per row
        return np.abs(result.image - content).mean(axis=(1, 2))

    # the paper's guided Grams alone: the content loss holds the rest
    paper = change(stylize(content, style, config.replace(keep_unmasked=False), weights=vgg16_weights))
    masked_in, masked_out = paper[:32].mean(), paper[32:].mean()
    assert masked_in > 0.1 and masked_out < 0.3 * masked_in  # measured: 0.161 in, 0.030 out
    unmasked = change(stylize(content, style, config.replace(masks=()), weights=vgg16_weights))
    assert unmasked[32:].mean() > 0.1  # without the mask the bottom half is stylised too (0.160)
    # the default keeps the unmasked pixels exactly, and the styled half is as styled
    kept = stylize(content, style, config, weights=vgg16_weights)
    np.testing.assert_array_equal(kept.image[32:], content[32:])
    assert change(kept)[:32].mean() > 0.1


def test_kept_pixels_are_the_contents_in_a_luminance_run_too(tmp_path, vgg16_weights):
    mask = np.zeros((32, 28, 3), np.float32)
    mask[:16] = 1.0
    save_image(mask, tmp_path / "top.png")
    config = tiny(masks=(str(tmp_path / "top.png"),), colour="luminance")
    run = prepare(CONTENT, STYLE, config, vgg16_weights)
    free, kept = run.problem.targets.keep
    assert free.shape == (32, 28, 1) and kept.shape == (32, 28, 1)
    noise = np.random.default_rng(1).uniform(size=(32, 28, 1)).astype(np.float32)
    picture = np.asarray(run.objective.picture(run.problem, noise))
    assert picture.shape == (32, 28, 3)
    np.testing.assert_array_equal(picture[16:], run.content[16:])  # the content, grey
    np.testing.assert_array_equal(picture[:16, :, 1], noise[:16, :, 0])  # the iterate, as grey RGB
    free_run = prepare(CONTENT, STYLE, config.replace(keep_unmasked=False), vgg16_weights)
    assert free_run.problem.targets.keep is None


def test_a_masked_sweep_cell_equals_its_own_stylize(tmp_path, vgg16_weights):
    _, _, top = content_and_half_mask(tmp_path)
    other = np.random.default_rng(4).uniform(size=(20, 30, 3)).astype(np.float32)
    # two styles, each with the top half as its region; the blend weighs the two regions
    config = tiny(steps=3, masks=(top, top), style_weight=1e4, content_weight=1e-3)
    grid = sweep(CONTENT, [STYLE, other], config, blends=[(1, 0), (1, 3)], weights=vgg16_weights)
    assert grid.grid.compiles == 1
    for b, blend in enumerate([(1, 0), (1, 3)]):
        one = stylize(CONTENT, [STYLE, other], config.replace(style_blend=blend), weights=vgg16_weights)
        np.testing.assert_allclose(grid.images[b], one.image, atol=1e-5)
    assert np.abs(grid.images[0] - grid.images[1]).max() > 1e-3
