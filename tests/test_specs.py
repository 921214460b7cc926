"""The text forms of config values and the config they make (nst_jax.specs)."""

from pathlib import Path

import pytest

from nst_jax.config import StyleConfig
from nst_jax.errors import NstError
from nst_jax.specs import config_from_options, parse_layers, parse_scales, parse_tile


def test_options_set_fields_by_their_option_names():
    config = config_from_options({"lr": 0.05, "blend": "3,1", "content_layers": "relu3_1:2,relu4_2:1",
                                  "scales": "128,256", "size": 512, "tile": "none", "mask": [Path("m.png")],
                                  "optimizer": "adam"})
    assert config.learning_rate == 0.05 and config.style_blend == (3.0, 1.0)
    assert config.content_layers == ("relu3_1", "relu4_2") and config.scales == (128, 256, 512)
    assert config.tile == 0 and config.masks == ("m.png",)


def test_none_keeps_the_base_and_nothing_is_added():
    assert config_from_options({"content_weight": None, "lr": None, "init_image": None}) == StyleConfig()
    base = StyleConfig(size=64)
    assert config_from_options({"steps": 3}, base) == base.replace(steps=3)


def test_ratio_sets_alpha_from_beta():
    config = config_from_options({"ratio": 1e-3, "style_weight": 40.0})
    assert config.content_weight == pytest.approx(0.04)  # 1e-3 x 40, by hand
    with pytest.raises(NstError, match="not both"):
        config_from_options({"ratio": 1.0, "content_weight": 2.0})
    with pytest.raises(NstError, match="alpha"):
        config_from_options({"ratio": float("inf"), "style_weight": 1.0})


def test_a_start_image_alone_means_init_image():
    assert config_from_options({"init_image": Path("a.png")}).init == "image"
    # an explicit other start with a start image is the config's own error
    with pytest.raises(NstError, match="init_image"):
        config_from_options({"init_image": "a.png", "init": "noise"})


def test_text_forms():
    assert parse_layers("relu1_1,relu2_1") == (("relu1_1", "relu2_1"), (0.5, 0.5))
    assert parse_layers("relu1_1:3") == (("relu1_1",), (3.0,))
    assert parse_scales("auto", 512) == "auto" and parse_scales("none", 512) == ()
    assert parse_scales("100", 300) == (100, 300)
    assert parse_tile("auto") == "auto" and parse_tile("640") == 640
    for bad in ("relu1_1:x", "relu1_1:1,relu2_1"):
        with pytest.raises(NstError):
            parse_layers(bad)
    with pytest.raises(NstError):
        parse_scales("12.5", 64)


def test_a_colour_match_without_the_histogram_colour_is_refused_not_ignored():
    assert config_from_options({"colour": "histogram", "colour_match": "cholesky"}).colour_match == "cholesky"
    assert config_from_options({"colour_match": StyleConfig().colour_match}) == StyleConfig()  # the default: fine
    with pytest.raises(NstError, match="--colour-match .* --colour histogram"):
        config_from_options({"colour_match": "cholesky"})
    with pytest.raises(NstError, match="--colour-match"):
        config_from_options({"colour": "luminance", "colour_match": "principal_axes"})
