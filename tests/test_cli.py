"""The CLI: options map to the config, and every user error is one line, no traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import nst_jax
from nst_jax import optimize
from nst_jax.cli import app, parse_layers
from nst_jax.config import StyleConfig
from nst_jax.image import save_image
from nst_jax.weights import VGGWeights, save

SAMPLES = Path(nst_jax.__file__).parent / "samples"
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture
def captured(monkeypatch):
    """Replace the library call; record the config the command built."""
    seen = {}

    def fake_stylize(content, style, config, callback=None, **kw):
        seen["config"] = config
        img = np.full((8, 8, 3), 0.25, np.float32)
        return optimize.Result(img, img, 1.0, [], config.steps, config.steps, seen.get("stopped", "done"),
                               0.1, 0.05, config)

    monkeypatch.setattr(optimize, "stylize", fake_stylize)
    return seen


def test_options_map_to_the_config(tmp_path, captured):
    out = tmp_path / "o.png"
    r = invoke("stylize", SAMPLES / "content.jpg", SAMPLES / "style.jpg", "-o", out, "--size", 128,
               "--steps", 7, "--optimizer", "lbfgs", "--style-weight", 1e5, "--ratio", 1e-3,
               "--tv-weight", 0.5, "--content-layers", "relu3_1:2,relu4_2:1",
               "--style-layers", "relu1_1,relu2_1", "--style-norm", "mean", "--pooling", "avg",
               "--init", "noisy-content", "--init-noise", 0.3, "--seed", 9, "--style-scale", 0.5,
               "--weights", "embedded", "--log-every", 2)
    assert r.exit_code == 0, r.output
    assert captured["config"] == StyleConfig(
        size=128, steps=7, optimizer="lbfgs", learning_rate=None, style_weight=1e5, content_weight=100.0,
        tv_weight=0.5, content_layers=("relu3_1", "relu4_2"), content_layer_weights=(2.0, 1.0),
        style_layers=("relu1_1", "relu2_1"), style_layer_weights=(0.5, 0.5), style_norm="mean",
        pooling="avg", init="noisy-content", init_noise=0.3, seed=9, style_scale=0.5,
        weights="embedded", log_every=2)
    assert out.exists() and "wrote" in r.output


def test_defaults_are_the_paper(tmp_path, captured):
    assert invoke("stylize", "a.jpg", "b.jpg", "-o", tmp_path / "o.png").exit_code == 0
    assert captured["config"] == StyleConfig()


def test_parse_layers():
    assert parse_layers("paper") == (StyleConfig().style_layers, (0.2,) * 5)
    assert parse_layers("relu1_1:0.3, relu2_1:0.7") == (("relu1_1", "relu2_1"), (0.3, 0.7))


@pytest.mark.parametrize("stopped,code,text", [("nan", 3, "NaN"), ("interrupted", 130, "interrupted")])
def test_nan_and_ctrl_c_save_the_best_image(tmp_path, captured, stopped, code, text):
    captured["stopped"] = stopped
    out = tmp_path / "o.png"
    r = invoke("stylize", "a.jpg", "b.jpg", "-o", out)
    assert r.exit_code == code and text in r.output and out.exists()


def bad_inputs(tmp_path):
    notimg = tmp_path / "notimg.jpg"
    notimg.write_text("hello")
    trunc = tmp_path / "trunc.jpg"
    save_image(np.random.default_rng(0).uniform(size=(64, 64, 3)), trunc)
    trunc.write_bytes(trunc.read_bytes()[:500])
    tiny = tmp_path / "tiny.png"
    save_image(np.zeros((8, 8, 3)), tiny)
    c, s = SAMPLES / "content.jpg", SAMPLES / "style.jpg"
    o = tmp_path / "o.png"
    return {
        "missing": ([tmp_path / "nope.jpg", s, "-o", o], "no such file"),
        "not an image": ([notimg, s, "-o", o], "not an image"),
        "truncated": ([trunc, s, "-o", o], "truncated"),
        "too small": ([c, s, "-o", o, "--size", 8], "needs at least 16 px"),
        "too big": ([c, s, "-o", o, "--size", 60000], "GiB"),
        "missing dir": ([c, s, "-o", tmp_path / "no" / "o.png"], "does not exist"),
        "not writable": ([c, s, "-o", "/proc/o.png"], "cannot write"),
        "bad extension": ([c, s, "-o", tmp_path / "o.txt"], "unknown image extension"),
        "bad layer": ([c, s, "-o", o, "--style-layers", "relu9_9"], "unknown layer"),
        "bad optimizer": ([c, s, "-o", o, "--optimizer", "nope"], "unknown optimizer"),
        "bad weights": ([c, s, "-o", o, "--weights", notimg], "not a weights file"),
        "tiny style": ([c, tiny, "-o", o, "--size", 64, "--style-scale", 0.1], "needs at least"),
    }


@pytest.mark.parametrize("case", ["missing", "not an image", "truncated", "too small", "too big",
                                  "missing dir", "not writable", "bad extension", "bad layer",
                                  "bad optimizer", "bad weights", "tiny style"])
def test_bad_input_is_one_clear_line(tmp_path, case, vgg16_weights, monkeypatch):
    real = optimize.load_weights
    monkeypatch.setattr(optimize, "load_weights",
                        lambda spec: vgg16_weights if spec == "embedded" else real(spec))
    args, message = bad_inputs(tmp_path)[case]
    r = invoke("stylize", *args, "--steps", 1)
    assert r.exit_code == 1, r.output
    assert message in r.output
    assert r.output.strip().startswith("error:") and len(r.output.strip().splitlines()) <= 3
    assert not (tmp_path / "o.png").exists()


def test_nan_end_to_end_writes_the_best_image(tmp_path, vgg16_weights, monkeypatch):
    monkeypatch.setattr(optimize, "load_weights", lambda spec: vgg16_weights)
    out = tmp_path / "o.png"
    r = invoke("stylize", SAMPLES / "content.jpg", SAMPLES / "style.jpg", "-o", out, "--size", 32,
               "--steps", 5, "--style-weight", 1e38, "--content-weight", 1e38, "--init", "noise")
    assert r.exit_code == 3 and "lower --lr" in r.output and out.exists()


def test_weights_commands(tmp_path, monkeypatch, vgg16_params):
    monkeypatch.chdir(tmp_path)
    src = save(VGGWeights("vgg16", "caffe", vgg16_params, "keras", "k.h5", "ab" * 32), tmp_path / "src.safetensors")
    r = invoke("weights", "convert", src, "-o", tmp_path / "weights" / "mine.safetensors")
    assert r.exit_code == 0 and "wrote" in r.output
    r = invoke("weights", "list")
    assert r.exit_code == 0 and "embedded" in r.output and "mine" in r.output
    r = invoke("weights", "info", tmp_path / "weights" / "mine.safetensors")
    assert r.exit_code == 0 and "caffe" in r.output and "keras" in r.output
    r = invoke("weights", "info", tmp_path / "nothing.pth")
    assert r.exit_code == 1 and r.output.startswith("error:")
    r = invoke("weights", "convert", src, "--arch", "vgg19")
    assert r.exit_code == 1 and "holds vgg16" in r.output
