"""The CLI: options map to the config, and every user error is one line, no traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import icc_profiles
import nst_jax
from nst_jax import batch, inputs, run
from nst_jax.cli import app
from nst_jax.specs import parse_layers
from nst_jax.config import PAPER_CONTENT_LAYERS, PAPER_STYLE_LAYERS, StyleConfig
from nst_jax.image import load_image, save_image
from nst_jax.weights import VGGWeights, save
from conftest import made_result

SAMPLES = Path(nst_jax.__file__).parent / "samples"
ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def one_line_error(result, code=1):
    lines = result.output.strip().splitlines()
    assert result.exit_code == code, result.output
    assert lines[-1].startswith("error:") and len(lines) == 1, result.output
    return lines[-1]


@pytest.fixture
def captured(monkeypatch):
    """Replace the library call; record the config and arguments the command built."""
    seen = {"calls": []}

    def fake_stylize(content, style, config, callback=None, **kw):
        seen["config"], seen["style"], seen["kw"] = config, style, kw
        seen["calls"].append(Path(content).name)
        img = np.full((1, 8, 8, 3), 0.25, np.float32)
        return made_result(config, img, [2.0, 1.0], best_losses=seen.get("best", 1.0), evals=config.steps,
                           stopped=seen.get("stopped", "done"), steps=config.steps)

    monkeypatch.setattr(run, "stylize", fake_stylize)
    def fake_stylize_many(contents, style, config, callback=None, on_plan=None, **kw):
        if on_plan is not None:
            on_plan(0, list(range(len(contents))), ())
        return [fake_stylize(c, style, config) for c in contents]

    monkeypatch.setattr(batch, "stylize_many", fake_stylize_many)
    return seen


def test_options_map_to_the_config(tmp_path, captured):
    out = tmp_path / "o.png"
    init = tmp_path / "start.png"
    save_image(np.zeros((8, 8, 3)), init)
    r = invoke("stylize", SAMPLES / "content.jpg", SAMPLES / "style.jpg", SAMPLES / "content.jpg",
               "-o", out, "--size", 128, "--steps", 7, "--optimizer", "lbfgs", "--style-weight", 1e5,
               "--ratio", 1e-3, "--tv-weight", 0.5, "--content-layers", "relu3_1:2,relu4_2:1",
               "--style-layers", "relu1_1,relu2_1", "--style-norm", "mean", "--pooling", "avg",
               "--init-image", init, "--init-noise", 0.3, "--seed", 9, "--style-scale", 0.5,
               "--weights", "embedded", "--log-every", 2, "--steps-per-call", 3, "--blend", "3,7",
               "--scales", "32,64", "--detail", 0.5, "--precondition", 0.2, "--average", 0.9,
               "--content-norm", "sum", "--dtype", "bfloat16")
    assert r.exit_code == 0, r.output
    assert captured["config"] == StyleConfig(
        size=128, steps=7, optimizer="lbfgs", learning_rate=None, style_weight=1e5, content_weight=100.0,
        tv_weight=0.5, content_layers=("relu3_1", "relu4_2"), content_layer_weights=(2.0, 1.0),
        style_layers=("relu1_1", "relu2_1"), style_layer_weights=(0.5, 0.5), style_norm="mean",
        pooling="avg", init="image", init_image=str(init), init_noise=0.3, seed=9, style_scale=0.5,
        weights="embedded", log_every=2, steps_per_call=3, style_blend=(3.0, 7.0), scales=(32, 64, 128),
        detail=0.5, precondition=0.2, average=0.9, content_norm="sum", dtype="bfloat16")
    assert len(captured["style"]) == 2 and out.exists() and "wrote" in r.output


@pytest.mark.parametrize("flag", ["--colour", "--color"])
def test_colour_options(tmp_path, captured, flag):
    r = invoke("stylize", "a.jpg", "b.jpg", "-o", tmp_path / "o.png", flag, "histogram",
               "--colour-match", "monge_kantorovich")
    assert r.exit_code == 0, r.output
    assert captured["config"].colour == "histogram" and captured["config"].colour_match == "monge_kantorovich"


def test_mask_options(tmp_path, captured):
    r = invoke("stylize", "c.jpg", "a.jpg", "b.jpg", "-o", tmp_path / "o.png", "--mask", "sky.png",
               "--mask", "ground.png", "--style-mask", "a_sky.png", "--style-mask", "b_all.png",
               "--mask-erode", 2, "--blend", "1,3", "--free-unmasked")
    assert r.exit_code == 0, r.output
    config = captured["config"]
    assert config.masks == ("sky.png", "ground.png") and config.style_masks == ("a_sky.png", "b_all.png")
    assert config.mask_erode == 2 and config.style_blend == (1.0, 3.0) and not config.keep_unmasked


def test_memory_options(tmp_path, captured):
    r = invoke("stylize", "a.jpg", "b.jpg", "-o", tmp_path / "o.png", "--max-memory", 12.5, "--tile", 512)
    assert r.exit_code == 0, r.output
    assert captured["config"].max_memory == 12.5 and captured["config"].tile == 512
    assert invoke("stylize", "a.jpg", "b.jpg", "-o", tmp_path / "o.png", "--tile", "none").exit_code == 0
    assert captured["config"].tile == 0
    assert "--tile takes 'auto', 'none' or a size" in one_line_error(
        invoke("stylize", "a.jpg", "b.jpg", "-o", tmp_path / "o.png", "--tile", "big"))
    assert "--max-memory must be a number in (0, 1048576], not 0" in one_line_error(
        invoke("stylize", "a.jpg", "b.jpg", "-o", tmp_path / "o.png", "--max-memory", 0))


@pytest.mark.slow
def test_the_memory_plan_is_printed_once(tmp_path, vgg16_weights, monkeypatch):
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights)
    r = invoke("stylize", SAMPLES / "content.jpg", SAMPLES / "style.jpg", "-o", tmp_path / "o.png",
               "--size", 64, "--scales", "24,64", "--steps", 3, "--tile", 32,
               "--style-layers", "relu1_1,relu2_1,relu3_1", "--content-layers", "relu3_1")  # 10 px halos
    assert r.exit_code == 0, r.output
    plans = [l for l in r.output.splitlines() if l.startswith("memory: ")]
    assert len(plans) == 1, r.output
    assert re.fullmatch(r"memory: 64x\d+, vgg16, 4 tiles of 32x\d+ \+ 10 px halo: ~\d+\.\d+ GiB of "
                        r"\d+\.\d+ GiB \(1 of 2 scales whole\)", plans[0]), plans[0]


def test_defaults_are_the_paper_where_they_do_not_say_otherwise(tmp_path, captured):
    """Gatys et al. 2016: content at conv4_2 (our relu4_2: Caffe's in-place ReLU), style at
    conv1_1..conv5_1 with w_l = 1/5, Gram loss normalised by 4 N^2 M^2, no TV term, average
    pooling (its advice for synthesis). The commented departures (config.py) are the start
    image, the measure of the terms and their alpha/beta, the coarse-to-fine scales and the
    VGG16 weights; the optimizer is the paper's L-BFGS, with a backtracking line search."""
    assert invoke("stylize", "a.jpg", "b.jpg", "-o", tmp_path / "o.png").exit_code == 0
    config = captured["config"]
    assert config == StyleConfig()  # the CLI adds nothing of its own
    assert config.content_layers == ("relu4_2",) == PAPER_CONTENT_LAYERS
    assert config.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1") == PAPER_STYLE_LAYERS
    assert config.style_layer_weights == (0.2,) * 5 and config.content_layer_weights == (1.0,)
    assert config.style_norm == "paper" and config.tv_weight == 0.0 and config.pooling == "avg"
    assert config.optimizer.startswith("lbfgs")


def test_parse_layers():
    assert parse_layers("paper") == (PAPER_STYLE_LAYERS, (0.2,) * 5)
    assert parse_layers("relu1_1:0.3, relu2_1:0.7") == (("relu1_1", "relu2_1"), (0.3, 0.7))


@pytest.mark.parametrize("stopped,code,text", [("nan", 3, "NaN"), ("interrupted", 130, "interrupted")])
def test_nan_and_ctrl_c_save_the_best_image(tmp_path, captured, stopped, code, text):
    captured["stopped"] = stopped
    out = tmp_path / "o.png"
    r = invoke("stylize", "a.jpg", "b.jpg", "-o", out)
    assert r.exit_code == code and text in r.output and out.exists()


def test_weights_that_leave_nothing_to_optimise_are_refused_before_any_work(tmp_path, captured):
    out = tmp_path / "o.png"
    r = invoke("stylize", "a.jpg", "b.jpg", "-o", out, "--style-weight", 0, "--content-weight", 0)
    assert "--content-weight is 0, and so are the style and TV weights: nothing to optimise" in one_line_error(r)
    r = invoke("stylize", "a.jpg", "b.jpg", "-o", out, "--style-layers", "relu1_1:0,relu3_1:0")
    assert "--style-layers give every layer a weight of 0: give one a weight above 0" in one_line_error(r)
    assert captured["calls"] == [] and not out.exists()
    r = invoke("stylize", SAMPLES / "content.jpg", SAMPLES / "style.jpg", "-o", out, "--style-weight", 0,
               "--style-layers", "relu1_1:0")  # no style asked for: the layers' weights do not matter
    assert r.exit_code == 0 and captured["calls"] == ["content.jpg"]


def test_a_run_that_never_improved_writes_nothing(tmp_path, captured):
    captured["best"] = 2.0  # = the start loss: no step lowered it
    r = invoke("stylize", "a.jpg", "b.jpg", "-o", tmp_path / "o.png")  # L-BFGS by default
    assert "no step lowered the loss" in one_line_error(r, 4) and "lower --style-weight" in r.output
    assert not (tmp_path / "o.png").exists()
    r = invoke("stylize", "a.jpg", "b.jpg", "-o", tmp_path / "o.png", "--optimizer", "adam")
    assert "no step lowered the loss" in one_line_error(r, 4) and "change --lr (now 0.02)" in r.output
    assert not (tmp_path / "o.png").exists()
    r = invoke("stylize", "a.jpg", "b.jpg", "-o", tmp_path / "o.png", "--steps", 1)  # nothing scores that step
    assert "give --steps 2 or more" in one_line_error(r, 4)


@pytest.mark.parametrize("weights, named", [({}, "--style-weight (now 20)"),
                                            ({"content_weight": 3e38}, "--content-weight (now 3e+38)"),
                                            ({"tv_weight": 1e30, "style_weight": 40}, "--tv-weight (now 1e+30)"),
                                            ({"tv_weight": 1e-4}, "--style-weight (now 20)"),
                                            ({"style_weight": 0}, "--content-weight (now 1)")])
def test_the_advice_names_the_weight_raised_furthest(weights, named):
    from nst_jax.terminal import advice

    assert advice(nst_jax.StyleConfig(**weights), True) == f"lower {named} (L-BFGS steps grow with the loss scale)"


def test_a_missing_output_folder_is_created(tmp_path, captured):
    out = tmp_path / "new" / "deeper" / "o.webp"
    assert invoke("stylize", "a.jpg", "b.jpg", "-o", out).exit_code == 0 and out.exists()


def test_a_folder_of_content_images(tmp_path, captured):
    photos = tmp_path / "photos"
    for name in ("b.jpg", "a.png"):
        save_image(np.zeros((16, 16, 3)), photos / name)
    (photos / "notes.txt").write_text("not an image")
    r = invoke("stylize", photos, SAMPLES / "style.jpg", "-o", tmp_path / "results")
    assert r.exit_code == 0, r.output
    assert captured["calls"] == ["a.png", "b.jpg"]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["a.json", "a.png", "b.json", "b.png"]
    assert "results" in one_line_error(invoke("stylize", photos, "s.jpg", "-o", tmp_path / "x.png"))
    for flags in (["--checkpoint-every", 2], ["--checkpoint", tmp_path / "c.ckpt"]):  # one checkpoint, many photos
        r = invoke("stylize", photos, "s.jpg", "-o", tmp_path / "again", *flags)
        assert "take one content image, not a folder" in one_line_error(r)
    assert not (tmp_path / "again").exists()


@pytest.mark.slow
def test_a_folder_runs_as_batches_with_the_results_of_single_runs(tmp_path, vgg16_weights, monkeypatch):
    """Photos of one shape share one batch; each output is what a run of its own writes."""
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights)
    rng = np.random.default_rng(7)
    photos = tmp_path / "photos"
    for name, shape in [("a.png", (24, 32)), ("b.png", (24, 32)), ("c.png", (32, 24))]:
        save_image(rng.uniform(size=(*shape, 3)), photos / name)
    common = ["--size", 32, "--scales", "24,32", "--steps", 3, "--conv", "lax"]
    r = invoke("stylize", photos, SAMPLES / "style.jpg", "-o", tmp_path / "batch", *common)
    assert r.exit_code == 0, r.output
    assert "3 photos, 6 steps each" in r.output and "3 photos: " in r.output  # one progress line for all
    for name in ("a", "c"):  # a shares its batch with b; c has one of its own
        alone = invoke("stylize", photos / f"{name}.png", SAMPLES / "style.jpg", "-o", tmp_path / f"{name}.png",
                       *common)
        assert alone.exit_code == 0, alone.output
        together, single = (np.asarray(Image.open(p), np.float32) for p in (tmp_path / "batch" / f"{name}.png",
                                                                            tmp_path / f"{name}.png"))
        assert together.shape == single.shape and np.abs(together - single).max() <= 1, name  # 8-bit rounding
        record = json.loads((tmp_path / "batch" / f"{name}.json").read_text())
        single_record = json.loads((tmp_path / f"{name}.json").read_text())
        plans = [[(p["width"], p["height"], p["tiles"]) for p in r["memory"]["plans"]] for r in (record, single_record)]
        assert plans[0] == plans[1] and len(plans[0]) == 2, plans  # the photo's own plan, as a run of its own
        assert record["calls"]["step"] == single_record["calls"]["step"] == [1, 2, 3, 4, 5, 6]  # its own batch's calls
    save_image(rng.uniform(size=(32, 16, 3)), photos / "d.png")  # too narrow at 24 px: said before any run
    r = invoke("stylize", photos, SAMPLES / "style.jpg", "-o", tmp_path / "again", *common)
    assert "the content at the coarse scale of 24 px is 12x24 px" in one_line_error(r)
    assert not (tmp_path / "again").exists() or not any((tmp_path / "again").iterdir())


def test_an_interrupted_folder_keeps_the_photos_it_began(tmp_path, vgg16_weights, monkeypatch):
    """Ctrl-C in the first group's first step: its photos get their best image so far, the
    later group never starts; exit 130 and one line that says so."""
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights)
    real_drive = run.drive

    def interrupted(*args, callback=None, **kw):
        def stop(progress):
            raise KeyboardInterrupt
        return real_drive(*args, callback=stop, **kw)

    monkeypatch.setattr(run, "drive", interrupted)
    photos = tmp_path / "photos"
    for name, shape in [("a.png", (24, 32)), ("b.png", (24, 32)), ("c.png", (32, 24))]:
        save_image(np.random.default_rng(1).uniform(size=(*shape, 3)), photos / name)
    r = invoke("stylize", photos, SAMPLES / "style.jpg", "-o", tmp_path / "out", "--size", 32, "--scales", "none",
               "--steps", 3, "--conv", "lax")
    assert r.exit_code == 130, r.output
    assert r.output.strip().splitlines()[-1] == "interrupted; saved the best images of 2 of 3 photos"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json", "a.png", "b.json", "b.png"]


def test_bit_depth_reaches_the_files(tmp_path, captured):
    # (names of their own: o.png's record o.json is not o.tif's to replace)
    for name, args in [("o16.png", ["--bit-depth", 16]), ("o.tif", []), ("o8.tif", ["--bit-depth", 8])]:
        assert invoke("stylize", "a.jpg", "b.jpg", "-o", tmp_path / name, *args).exit_code == 0
    with Image.open(tmp_path / "o16.png") as png16, Image.open(tmp_path / "o.tif") as tif, \
            Image.open(tmp_path / "o8.tif") as tif8:
        assert png16.tile[0][3] == "RGB;16B"  # the PNG's raw mode: 16 bits per channel
        assert tif.tag_v2[258] == (16, 16, 16) and tif8.tag_v2[258] == (8, 8, 8)  # BitsPerSample


def test_a_bit_depth_the_output_cannot_hold_is_one_line_before_any_work(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(run, "stylize", lambda *args, **kw: started.append(args))
    out = tmp_path / "o.jpg"
    line = one_line_error(invoke("stylize", SAMPLES / "content.jpg", SAMPLES / "style.jpg", "-o", out,
                                 "--bit-depth", 16))
    assert line == (f"error: --bit-depth 16 cannot be written to {out}: .jpg holds 8 bits per channel "
                    "(16 bits: .png, .tif, .tiff)")
    assert "--bit-depth must be 8 or 16, not 12" in one_line_error(
        invoke("stylize", "a.jpg", "b.jpg", "-o", tmp_path / "o.png", "--bit-depth", 12))
    assert "--bit-depth must be 8 or 16, not 12" in one_line_error(
        invoke("sweep", "a.jpg", "b.jpg", "-o", tmp_path / "grid", "--bit-depth", 12))
    assert not started and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_colour_profile_note_reaches_the_user(tmp_path, vgg16_weights, monkeypatch):
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights)
    content = tmp_path / "content.png"
    p3 = icc_profiles.rgb_profile("Display P3", icc_profiles.P3_PRIMARIES, icc_profiles.SRGB_CURVE)
    with Image.open(SAMPLES / "content.jpg") as img:
        img.resize((48, 32)).save(content, icc_profile=p3)
    r = invoke("stylize", content, SAMPLES / "style.jpg", "-o", tmp_path / "o.png", "--size", 32, "--steps", 3,
               "--scales", "none")
    assert r.exit_code == 0, r.output
    assert r.output.count("note: content.png: converted from Display P3 to sRGB\n") == 1, r.output


def test_checkpoint_options_reach_the_library(tmp_path, captured):
    out = tmp_path / "o.png"
    assert invoke("stylize", "a.jpg", "b.jpg", "-o", out, "--checkpoint-every", 5).exit_code == 0
    assert captured["kw"]["checkpoint"] == tmp_path / "o.ckpt" and captured["kw"]["checkpoint_every"] == 5
    assert invoke("stylize", "a.jpg", "b.jpg", "-o", out, "--resume", tmp_path / "r.ckpt").exit_code == 0
    assert captured["kw"]["resume"] == tmp_path / "r.ckpt"


def test_version_and_help():
    r = invoke("--version")
    assert r.exit_code == 0 and r.output.strip() == f"nst-jax {nst_jax.__version__}"
    r = invoke("sweep", "--help")
    text = " ".join(r.output.split())
    assert "the first 1..5 of them, the article's Fig. 9" in text  # wrapped, never cut
    assert "adam|lbfgs|lbfgs-fixed|lbfgs-backtrack|lbfgs-armijo" in text
    assert "content|noise|noisy-content|style|recoloured|image" in text


def bad_inputs(tmp_path):
    notimg = tmp_path / "notimg.jpg"
    notimg.write_text("hello")
    trunc = tmp_path / "trunc.jpg"
    save_image(np.random.default_rng(0).uniform(size=(64, 64, 3)), trunc)
    trunc.write_bytes(trunc.read_bytes()[:500])
    tiny = tmp_path / "tiny.png"
    save_image(np.zeros((8, 8, 3)), tiny)
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}garbage")
    c, s = SAMPLES / "content.jpg", SAMPLES / "style.jpg"
    o = tmp_path / "o.png"
    black = tmp_path / "black.png"
    save_image(np.zeros((16, 16, 3)), black)
    panorama = tmp_path / "panorama.png"
    save_image(np.full((20, 200, 3), 0.5), panorama)
    return {
        "missing": ([tmp_path / "nope.jpg", s, "-o", o], "no such file"),
        "not an image": ([notimg, s, "-o", o], "not an image"),
        "truncated": ([trunc, s, "-o", o], "truncated"),
        "too small": ([c, s, "-o", o, "--size", 8], "needs at least 16 px"),
        "too big": ([c, s, "-o", o, "--size", 60000], "GiB"),
        "size zero": ([c, s, "-o", o, "--size", 0], "--size must be an integer in [1, 65535], not 0"),
        "negative steps": ([c, s, "-o", o, "--steps", -1], "--steps must be an integer in [0, 2147483647], not -1"),
        "not writable": ([c, s, "-o", "/proc/o.png"], "cannot write into /proc: creating a file in /proc fails"),
        "long name": ([c, s, "-o", tmp_path / ("n" * 300 + ".png")], "its name is too long"),
        "bad extension": ([c, s, "-o", tmp_path / "o.xyz"], "unknown image extension '.xyz' (use .png, .jpg"),
        "bad layer": ([c, s, "-o", o, "--style-layers", "relu9_9"], "unknown layer 'relu9_9'"),
        "bad optimizer": ([c, s, "-o", o, "--optimizer", "nope"], "'nope' is not one of 'adam'"),
        "bad init": ([c, s, "-o", o, "--init", "nosie"], "'nosie' is not one of 'content', 'noise'"),
        "ratio and alpha": ([c, s, "-o", o, "--ratio", 1, "--content-weight", 2], "not both"),
        "bad blend": ([c, s, s, "-o", o, "--blend", "1,2,3"], "3 blend weights for 2 style images"),
        "bad colour": ([c, s, "-o", o, "--colour", "sepia"], "'sepia' is not one of 'none', 'original'"),
        "black mask": ([c, s, "-o", o, "--size", 32, "--mask", black], "black.png has no white pixels"),
        "unreadable mask": ([c, s, "-o", o, "--size", 32, "--mask", notimg], "notimg.jpg is not an image"),
        "missing mask": ([c, s, "-o", o, "--size", 32, "--mask", tmp_path / "sky.png"], "no such file"),
        "masks per style": ([c, s, "-o", o, "--size", 32, "--mask", black, "--mask", black],
                            "2 masks for 1 style images"),
        "style masks per style": ([c, s, s, "-o", o, "--size", 32, "--style-mask", black],
                                  "1 style masks for 2 style images"),
        "negative erosion": ([c, s, "-o", o, "--mask-erode", -1], "--mask-erode must be an integer in [0, 2147483647]"),
        "bad weights": ([c, s, "-o", o, "--weights", notimg], "not a weights file"),
        "empty weights": ([c, s, "-o", o, "--weights", ""], "--weights must name weights: 'embedded', a file"),
        "tiny style": ([c, tiny, "-o", o, "--size", 64, "--style-scale", 0.1],
                       "the style image at this size is 6x6 px but relu5_1 needs at least 16 px on each side: "
                       "raise --style-scale"),
        "panorama": ([panorama, s, "-o", o, "--size", 256], "the content at the coarse scale of 128 px is 128x13 "
                     "px but relu5_1 needs at least 16 px on each side: start the scales higher with --scales"),
        "damaged checkpoint": ([c, s, "-o", o, "--size", 32, "--resume", damaged], "damaged"),
        "unknown option": ([c, s, "-o", o, "--sise", 3], "No such option: --sise"),
        "bad scales": ([c, s, "-o", o, "--scales", "64,32.5"], "--scales takes whole pixel sizes"),
        "bad average": ([c, s, "-o", o, "--average", 1.5], "--average must be a number in [0, 1), not 1.5"),
    }


BAD = ["missing", "not an image", "truncated", "too small", "too big", "size zero", "negative steps",
       "not writable", "long name", "bad extension", "bad layer", "bad optimizer", "bad init", "ratio and alpha",
       "bad blend", "bad colour", "black mask", "unreadable mask", "missing mask", "masks per style",
       "style masks per style", "negative erosion", "bad weights", "empty weights", "tiny style", "panorama", "damaged checkpoint",
       "unknown option", "bad scales", "bad average"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_clear_line(tmp_path, case, vgg16_weights, monkeypatch):
    real = inputs.load_weights
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights if spec == "embedded" else real(spec))
    args, message = bad_inputs(tmp_path)[case]
    r = invoke("stylize", *args, "--steps", 1) if case != "negative steps" else invoke("stylize", *args)
    assert message in one_line_error(r)
    assert not (tmp_path / "o.png").exists()


def test_a_resume_the_checkpoint_does_not_fit_is_one_line_before_any_work(tmp_path, vgg16_weights, monkeypatch):
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights)
    c, s, ckpt, out = SAMPLES / "content.jpg", SAMPLES / "style.jpg", tmp_path / "r.ckpt", tmp_path / "o.png"
    base = ("--size", 32, "--scales", "none", "--steps")
    assert invoke("stylize", c, s, "-o", out, *base, 3, "--checkpoint", ckpt, "--checkpoint-every", 3).exit_code == 0
    out.unlink()
    kept = ckpt.read_bytes()
    flipped = tmp_path / "flipped.png"
    save_image(load_image(c)[:, ::-1], flipped)
    for args, message in [((c, s, *base, 5, "--style-weight", 40), "was made with a different style_weight"),
                          ((flipped, s, *base, 5), "was made for other content/style images"),
                          ((c, s, *base, 2), "has made 3 steps, more than the 2 this run asks for")]:
        assert message in one_line_error(invoke("stylize", *args, "-o", out, "--resume", ckpt))
        assert not out.exists() and ckpt.read_bytes() == kept


@pytest.mark.skipif(jax.devices()[0].platform == "gpu", reason="a GPU may have TF32")
def test_tf32x3_grams_without_a_gpu_is_one_clear_line(tmp_path, vgg16_weights, monkeypatch):
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights)
    r = invoke("stylize", SAMPLES / "content.jpg", SAMPLES / "style.jpg", "-o", tmp_path / "o.png",
               "--size", 32, "--steps", 1, "--gram-precision", "tf32x3")
    assert "--gram-precision 'tf32x3' needs a GPU with TF32 tensor cores" in one_line_error(r)
    assert not (tmp_path / "o.png").exists()


def test_nan_end_to_end_writes_the_best_image(tmp_path, vgg16_weights, monkeypatch):
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights)
    out = tmp_path / "o.png"
    r = invoke("stylize", SAMPLES / "content.jpg", SAMPLES / "style.jpg", "-o", out, "--size", 32,
               "--steps", 5, "--style-weight", 1e38, "--content-weight", 1e38, "--init", "noise",
               "--optimizer", "adam", "--content-norm", "sum")
    assert r.exit_code == 3 and "lower --lr" in r.output and out.exists()


def test_progress_without_a_terminal_is_plain_lines(tmp_path, vgg16_weights, monkeypatch):
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights)
    r = invoke("stylize", SAMPLES / "content.jpg", SAMPLES / "style.jpg", "-o", tmp_path / "o.png",
               "--size", 32, "--steps", 3)
    assert r.exit_code == 0, r.output
    lines = [l for l in r.output.splitlines() if l.startswith("stylizing: step")]
    assert lines and lines[-1].startswith("stylizing: step 3/3  loss ") and "ETA" in lines[-1]


def test_checkout_without_dependencies_says_what_to_install():
    code = ("import sys, runpy; sys.modules['typer'] = None; sys.argv = ['cli.py', '--help']; "
            "runpy.run_path('cli.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "needs its dependencies (typer is missing): pip install -e ." in proc.stderr


def test_weights_commands(tmp_path, monkeypatch, vgg16_params):
    monkeypatch.chdir(tmp_path)
    src = save(VGGWeights("vgg16", "caffe", vgg16_params, "keras", "k.h5", "ab" * 32), tmp_path / "src.safetensors")
    r = invoke("weights", "convert", src, "-o", tmp_path / "weights" / "mine.safetensors")
    assert r.exit_code == 0 and "wrote" in r.output
    r = invoke("weights", "list")
    assert r.exit_code == 0 and "embedded" in r.output and "mine" in r.output and "weights download" in r.output
    r = invoke("weights", "info", tmp_path / "weights" / "mine.safetensors")
    assert r.exit_code == 0 and "caffe" in r.output and "keras" in r.output
    r = invoke("weights", "info", "embedded")
    assert r.exit_code == 0 and "vgg16" in r.output and "lpips" in r.output
    one_line_error(invoke("weights", "info", tmp_path / "nothing.pth"))
    assert "holds vgg16" in one_line_error(invoke("weights", "convert", src, "--arch", "vgg19"))
    assert "weights download vgg19" in one_line_error(invoke("weights", "info", "vgg19"))
