"""Fuzz: every bad input is one clean error, every interruption loses nothing.

Whatever the options and files, a command exits with a documented code (0, 1, 3, 4, 130; 143 and 129 for SIGTERM and SIGHUP),
never shows a traceback or a Python warning, says what is wrong in one ``error:`` line,
leaves its inputs untouched, and leaves no temporary file, empty directory or (unless it
saved a best image on purpose) output behind: :func:`fuzz_corpus.check_outcome`. The
properties draw option values, file names and weights files (hypothesis); the corpus
(fuzz_corpus.py) holds malformed images, weights files of every format, damaged
checkpoints and output paths; signals go to real processes. Runs that optimise use 32-40
px images and 0-2 steps (the signal tests stop theirs after the first step).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st
from typer.testing import CliRunner

import fuzz_corpus as corpus
import importlib

from nst_jax import inputs, run
from nst_jax.cli import app
from nst_jax.config import StyleConfig
from nst_jax.errors import ConfigError, NstError, WeightsError
from nst_jax.image import load_image, save_image
from nst_jax.inputs import normalised_blend, start_image
from nst_jax.objective import loss_weights
from nst_jax.precondition import lowpass
from nst_jax.step import make_optimizer
from nst_jax.weights import VGGWeights, read_checkpoint, save
from conftest import made_result, tiny

sweep_module = importlib.import_module("nst_jax.sweeps")
real_atomic = importlib.import_module("nst_jax.atomic").atomic_path
runner = CliRunner()


def fuzz(examples: int) -> settings:
    """``examples`` drawn per property, the same ones on every run (a few minutes for the
    whole suite on 2 cores); FUZZ_N=500 searches afresh, with that many per property."""
    return settings(max_examples=int(os.environ.get("FUZZ_N", examples)), derandomize="FUZZ_N" not in os.environ,
                    deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


TINY_LAYERS = ["--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def images(tmp_path):
    """A 40x32 content and a 32x40 style image."""
    rng = np.random.default_rng(5)
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    save_image(rng.uniform(size=(40, 32, 3)), content)
    save_image(rng.uniform(size=(32, 40, 3)), style)
    return content, style


@pytest.fixture
def fabricated(monkeypatch, vgg16_weights):
    """Runs load the small fabricated VGG16 (conftest) for every weights name but files."""
    real = inputs.load_weights
    monkeypatch.setattr(inputs, "load_weights", lambda spec: real(spec) if Path(str(spec)).exists()
                        else vgg16_weights)
    return vgg16_weights


def fresh_dir(root: Path) -> Path:
    """A new directory per hypothesis example (function fixtures are shared by examples)."""
    return Path(tempfile.mkdtemp(dir=root))


# ---------------------------------------------------------------- option values

# Text an option value can be: numbers of every kind, and what is not a number.
NUMBER_TEXT = st.one_of(
    st.integers(-2**70, 2**70).map(str),
    st.integers(-3, 70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-2.0, 2.0).map(repr),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e40", "-1e40", "1e38", "3.5e38", "1e-320", "-0",
                     "0", "1e308", "1e309", "", " ", "1_0", "0x10", "1e", "--", "½", "1,2", "none"]),
)
LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_2", "conv1_1", "relu9_9", "paper", "", " "]
LAYER_ITEM = st.one_of(st.sampled_from(LAYERS), st.builds(lambda n, w: f"{n}:{w}", st.sampled_from(LAYERS),
                                                          NUMBER_TEXT))
LAYER_SPEC = st.one_of(st.lists(LAYER_ITEM, max_size=4).map(",".join), st.sampled_from(["paper", ",,", ":", ":-1"]))
LIST_TEXT = st.one_of(st.lists(NUMBER_TEXT, max_size=4).map(",".join), st.sampled_from(["auto", "none", ";"]))

INT_OPTIONS = ["--size", "--steps", "--seed", "--log-every", "--steps-per-call", "--mask-erode", "--tile"]
FLOAT_OPTIONS = ["--lr", "--content-weight", "--tv-weight", "--style-weight", "--average", "--init-noise",
                 "--style-scale", "--max-memory"]
LIST_OPTIONS = {"--content-layers": LAYER_SPEC, "--style-layers": LAYER_SPEC, "--blend": LIST_TEXT,
                "--scales": LIST_TEXT}
STYLIZE_ONLY = {"--ratio": NUMBER_TEXT, "--save-every": NUMBER_TEXT, "--checkpoint-every": NUMBER_TEXT,
                "--bit-depth": NUMBER_TEXT}


def option_values(options: dict) -> st.SearchStrategy:
    """1-3 of ``options`` (flag -> strategy of its text), as ``--flag=value`` arguments."""
    return st.lists(st.sampled_from(sorted(options)), min_size=1, max_size=3, unique=True).flatmap(
        lambda flags: st.tuples(*[options[f].map(lambda v, f=f: f"{f}={v}") for f in flags]))


SHARED = {**{f: NUMBER_TEXT for f in INT_OPTIONS + FLOAT_OPTIONS}, **LIST_OPTIONS}


# ---------------------------------------------------------------- what an accepted config promises


def in_domain(config: StyleConfig) -> None:
    """The promises of an accepted config: numbers finite and in range, so that a run
    either changes the image or says why (docs/errors.md)."""
    floats = [config.style_scale, config.content_weight, config.style_weight, config.tv_weight,
              config.init_noise, config.average, config.detail, config.precondition, *config.content_layer_weights,
              *config.style_layer_weights, *config.style_blend]
    assert all(math.isfinite(v) for v in floats), config
    assert config.learning_rate is None or 0 <= config.learning_rate < math.inf, config
    assert min(config.content_weight, config.style_weight, config.tv_weight) >= 0, config
    assert 0 <= config.detail <= 1, config
    assert config.precondition == 0 or 1e-3 <= config.precondition <= 1, config
    assert min(config.content_layer_weights + config.style_layer_weights + config.style_blend,
               default=0) >= 0, config
    assert config.seed >= 0 and config.size >= 1 and config.steps >= 0 and config.style_scale > 0, config
    assert config.max_memory is None or 0 < config.max_memory < math.inf, config
    assert config.tile == "auto" or (type(config.tile) is int and 0 <= config.tile <= 65535), config


def consume(config: StyleConfig, n_styles: int = 1) -> None:
    """What a run does with the config's numbers before its first step, on tiny arrays:
    nothing may fail but with an NstError, and nothing may warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_optimizer(config)
        if config.precondition:  # the filter and its inverse stay finite
            assert np.isfinite(lowpass(jnp.ones((4, 4, 3)), config.precondition, inverse=True)).all()
        loss_weights(config, normalised_blend(config.style_blend, n_styles))
        if config.init not in ("image",):
            start_image(config, np.zeros((4, 4, 3), np.float32), np.ones((4, 4, 3), np.float32))
        assert config.sizes and config.sizes[-1] == config.size
        json.dumps(dataclasses.asdict(config), allow_nan=False)  # checkpoints and losses.json hold it


# ---------------------------------------------------------------- the config constructor

CONFIG_NUMBERS = st.one_of(st.integers(-2**70, 2**70), st.integers(-2, 66),
                           st.floats(allow_nan=True, allow_infinity=True), st.floats(-2.0, 2.0),
                           st.sampled_from([0, 1, -1, 0.0, -0.0, 1e40, 3.5e38, 1e-320, math.nan, math.inf]))
NUMERIC_FIELDS = ["size", "steps", "seed", "log_every", "steps_per_call", "mask_erode", "learning_rate",
                  "content_weight", "style_weight", "tv_weight", "average", "init_noise", "style_scale",
                  "max_memory", "tile", "detail", "precondition"]


# Optimizer names: ours, optax factories taking a learning rate (dpsgd needs more), others.
OPTIMIZERS = ["adam", "lbfgs", "lbfgs-fixed", "sgd", "adamw", "dpsgd", "noisy_sgd", "polyak_sgd", "sam",
              "contrib.sam", "Adam", "softmax_cross_entropy", "scale", "nope", ""]


@fuzz(200)
@given(changes=st.dictionaries(st.sampled_from(NUMERIC_FIELDS), CONFIG_NUMBERS, min_size=1, max_size=3),
       layer_weights=st.none() | st.lists(CONFIG_NUMBERS, min_size=2, max_size=2),
       blend=st.none() | st.lists(CONFIG_NUMBERS, min_size=1, max_size=3),
       optimizer=st.sampled_from(OPTIMIZERS))
@example(changes={"seed": -1}, layer_weights=None, blend=None, optimizer="adam")  # the cases
@example(changes={"learning_rate": 0.1}, layer_weights=None, blend=None, optimizer="dpsgd")
@example(changes={"style_scale": math.nan}, layer_weights=None, blend=None, optimizer="adam")
@example(changes={"learning_rate": math.inf}, layer_weights=None, blend=None, optimizer="adam")
@example(changes={"style_weight": 1e40}, layer_weights=None, blend=None, optimizer="adam")
@example(changes={"size": 32}, layer_weights=[1.0, -1.0], blend=None, optimizer="adam")
@example(changes={"size": 32}, layer_weights=[1.0, math.nan], blend=None, optimizer="adam")
def test_config_accepts_only_what_a_run_can_use(changes, layer_weights, blend, optimizer):
    changes["optimizer"] = optimizer
    if layer_weights is not None:
        changes["style_layer_weights"] = tuple(layer_weights)
    if blend is not None:
        changes["style_blend"] = tuple(blend)
    try:
        config = tiny(**changes)
    except ConfigError as e:
        assert e.field in {*changes, "scales"} and "--" not in str(e), e  # names the field, no CLI flag
        return
    in_domain(config)
    try:
        consume(config, len(config.style_blend) or 1)
    except NstError:
        pass


# ---------------------------------------------------------------- options through the CLI


def fake_stylize(content, style, config, callback=None, **kw):
    """The library run, replaced: the content is read, the config's numbers are consumed,
    one 8x8 image returned."""
    load_image(content)
    consume(config, len(style) if isinstance(style, list) else 1)
    img = np.full((1, 8, 8, 3), 0.25, np.float32)
    return made_result(config, img, [2.0, 1.0], evals=config.steps, steps=config.steps)


@fuzz(60)
@given(args=option_values({**SHARED, **STYLIZE_ONLY}))
@example(args=("--style-scale=nan",))  # the cases
@example(args=("--seed=-1",))
@example(args=("--optimizer=dpsgd",))
@example(args=("--lr=-1",))
@example(args=("--lr=inf",))
@example(args=("--style-weight=-1e6",))
@example(args=("--tv-weight=-1e9",))
@example(args=("--style-layers=relu1_1:-1",))
@example(args=("--style-layers=relu1_1:nan",))
@example(args=("--style-weight=1e40",))
@example(args=("--init-noise=nan", "--init=noisy-content"))
@example(args=("--ratio=1e30", "--style-weight=1e30"))
def test_stylize_options(tmp_path, images, monkeypatch, args):
    seen = []
    monkeypatch.setattr(run, "stylize", lambda content, style, config, **kw: seen.append(config) or
                        fake_stylize(content, style, config, **kw))
    root = fresh_dir(tmp_path)
    out = root / "o.png"
    before = corpus.snapshot(tmp_path)
    r = invoke("stylize", *images, "-o", out, *args)
    code = corpus.check_outcome(r, before, tmp_path, [out], codes={0, 1})
    event(f"exit {code}")
    if code == 0:
        in_domain(seen[-1])
        assert out.exists()


def fake_sweep(content, style, config, style_weights=None, layer_weight_sets=None, *, blends=None, **kw):
    """The library sweep, replaced: the grid is checked and consumed, 8x8 images returned."""
    sweep_module.check_grid(config, style_weights, layer_weight_sets, blends)
    for beta in style_weights:
        consume(config.replace(style_weight=beta))
    n = len(style_weights) * len(layer_weight_sets) * len(blends or [()])
    img = np.full((n, 8, 8, 3), 0.25, np.float32)
    return made_result(config, img, [[2.0] * n, [1.0] * n],
                       grid=run.Grid(list(style_weights), list(layer_weight_sets), list(blends or [()]), 1, 1, 1))


SWEEP_ONLY = {"--style-weight": LIST_TEXT, "--layers": st.one_of(
    st.lists(LAYER_SPEC, max_size=3).map(";".join), st.sampled_from(["", "paper", ";;;", ";", " ; "])),
    "--max-chunk": NUMBER_TEXT, "--blend-grid": st.one_of(LIST_TEXT, st.lists(LIST_TEXT, max_size=3).map(";".join)),
    "--bit-depth": NUMBER_TEXT}


@fuzz(60)
@given(args=option_values({**{k: v for k, v in SHARED.items() if k != "--style-weight"}, **SWEEP_ONLY}),
       two_styles=st.booleans())
@example(args=("--style-weight=",), two_styles=False)  # the cases
@example(args=("--layers=;;;",), two_styles=False)
@example(args=("--style-weight=1e5,nan",), two_styles=False)
@example(args=("--style-weight=1e5,-1",), two_styles=False)
@example(args=("--layers=relu1_1:1;relu2_1:nan",), two_styles=False)
@example(args=("--blend-grid=0,nan",), two_styles=True)
@example(args=("--blend-grid=1,0;nan,1",), two_styles=True)
def test_sweep_options(tmp_path, images, monkeypatch, args, two_styles):
    monkeypatch.setattr(sweep_module, "sweep", fake_sweep)
    root = fresh_dir(tmp_path)
    out = root / "grid"
    before = corpus.snapshot(tmp_path)
    styles = [images[1]] * (2 if two_styles else 1)
    r = invoke("sweep", images[0], *styles, "-o", out, *args)
    code = corpus.check_outcome(r, before, tmp_path, [out], codes={0, 1})
    event(f"exit {code}")
    if code == 0:
        report = json.loads((out / "losses.json").read_text())
        in_domain(StyleConfig(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in report["config"].items()}))


# ---------------------------------------------------------------- file names

NAMES = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), min_size=1,
                max_size=12).filter(lambda n: not n.startswith("/") and all(
                    part not in ("", ".", "..") for part in n.split("/")))


@fuzz(40)
@given(name=NAMES, exists=st.booleans())
@example(name="a[/b]", exists=False)  # rich markup: "closing tag '[/b]' doesn't match any open tag"
@example(name="a[/b]", exists=True)
@example(name="new\nline", exists=False)
def test_any_file_name(tmp_path, images, monkeypatch, name, exists):
    monkeypatch.setattr(run, "stylize", fake_stylize)
    root = fresh_dir(tmp_path)
    content, out = root / f"{name}.png", root / f"out-{name}.png"
    if exists:
        content.parent.mkdir(parents=True, exist_ok=True)
        content.write_bytes(images[0].read_bytes())
    before = corpus.snapshot(tmp_path)
    r = invoke("stylize", content, images[1], "-o", out)
    assert corpus.check_outcome(r, before, tmp_path, [out]) == (0 if exists else 1)
    if name.isprintable():  # (a tab is shown as spaces)
        assert (str(out) in r.stdout) if exists else (str(content) in r.stderr)


# ---------------------------------------------------------------- images

SLOTS = ["content", "style", "--init-image", "--mask", "--style-mask"]
USABLE_SMALL = {"one-pixel.png", "thin.png"}  # upscaled, with a note


def image_args(slot: str, bad: Path, content: Path, style: Path) -> list:
    if slot == "content":
        return [bad, style]
    if slot == "style":
        return [content, bad]
    return [content, style, slot, bad, *(["--init", "image"] if slot == "--init-image" else [])]


@pytest.mark.parametrize("slot", SLOTS)
def test_bad_images(tmp_path, images, fabricated, slot):
    root = tmp_path / "corpus"
    root.mkdir()
    cases = corpus.bad_images(root)
    out = tmp_path / "o.png"
    written = [out, out.with_suffix(".json")]  # the picture and its run record
    for name, bad in cases.items():
        before = corpus.snapshot(tmp_path)
        with corpus.never_opened(cases["fifo.png"]):
            r = invoke("stylize", *image_args(slot, bad, *images), "-o", out, "--size", 32, "--steps", 0,
                       "--scales", "none", *TINY_LAYERS)
        code = corpus.check_outcome(r, before, tmp_path, written, codes={0, 1})
        assert code == 1 or name in USABLE_SMALL, (name, r.stderr)
        for path in written:
            path.unlink(missing_ok=True)


def test_a_large_image_is_no_warning(tmp_path, images, fabricated, monkeypatch):
    """Pillow warns (DecompressionBombWarning) between MAX_IMAGE_PIXELS and twice that."""
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 40x32 images are past it
    out = tmp_path / "o.png"
    before = corpus.snapshot(tmp_path)
    r = invoke("stylize", *images, "-o", out, "--size", 32, "--steps", 0, "--scales", "none", *TINY_LAYERS)
    assert corpus.check_outcome(r, before, tmp_path, [out]) == 0


def test_style_scale_past_memory_fails_before_any_work(tmp_path, images, fabricated, monkeypatch):
    """The memory check covers every image the network sees, the style image too."""
    from nst_jax import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)  # the 32 px step fits
    out = tmp_path / "o.png"
    before = corpus.snapshot(tmp_path)
    r = invoke("stylize", *images, "-o", out, "--size", 32, "--steps", 1, "--scales", "none",
               "--style-scale", 100, *TINY_LAYERS)
    assert corpus.check_outcome(r, before, tmp_path, [out]) == 1
    assert "GiB" in r.stderr and "style" in r.stderr


# ---------------------------------------------------------------- weights files

@pytest.fixture(scope="module")
def weights_corpus(tmp_path_factory):
    """The corpus, made from conv1_1 and conv1_2 (small files; none is a whole VGG)."""
    from conftest import random_params

    root = tmp_path_factory.mktemp("weights")
    return root, corpus.bad_weights(root, dict(list(random_params("vgg16", seed=3).items())[:4]))


@pytest.mark.parametrize("command", ["info", "convert", "stylize"])
def test_bad_weights_files(tmp_path, weights_corpus, images, command):
    root, cases = weights_corpus
    files = corpus.snapshot(root)
    out = tmp_path / "converted.safetensors"
    for name, path in cases.items():
        args = {"info": ["weights", "info", path], "convert": ["weights", "convert", path, "-o", out],
                "stylize": ["stylize", *images, "-o", tmp_path / "o.png", "--weights", path, "--size", 32,
                            "--steps", 0, "--scales", "none", *TINY_LAYERS]}[command]
        before = corpus.snapshot(tmp_path)
        with corpus.never_opened(cases["fifo"]):
            r = invoke(*args)
        assert corpus.check_outcome(r, before, tmp_path, [out, tmp_path / "o.png"]) == 1, (name, r.stderr)
    assert corpus.snapshot(root) == files


def test_weights_list_skips_special_files(tmp_path, monkeypatch):
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    os.mkfifo(weights_dir / "pipe.safetensors")
    (weights_dir / "folder.safetensors").mkdir()
    (weights_dir / "garbage.safetensors").write_bytes(b"\x00" * 20)
    monkeypatch.setenv("NST_JAX_WEIGHTS", str(weights_dir))
    monkeypatch.chdir(tmp_path)
    before = corpus.snapshot(tmp_path)
    with corpus.never_opened(weights_dir / "pipe.safetensors"):
        r = invoke("weights", "list")
    assert corpus.check_outcome(r, before, tmp_path) == 0 and "embedded" in r.stdout


SAFETENSORS_DTYPES = ["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64", "I32", "I16", "I8", "U8",
                      "BOOL", "C64", "X"]
SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2,
         "I8": 1, "U8": 1, "BOOL": 1, "C64": 8, "X": 1}
KEYS = st.sampled_from(["conv1_1.kernel", "conv1_1.bias", "features.0.weight", "features.0.bias",
                        "features.99999999999999999999.weight", "VGG16_0/Conv_0/kernel", "", "x", "conv9_9.bias"])
TEXT = st.text(max_size=8)


@fuzz(40)
@given(tensors=st.dictionaries(KEYS, st.tuples(st.sampled_from(SAFETENSORS_DTYPES),
                                               st.lists(st.integers(-1, 70), max_size=4)), max_size=4),
       metadata=st.none() | st.dictionaries(st.sampled_from(["format", "arch", "pixel_space", "source_format",
                                                             "x"]), st.sampled_from(
           ["nst-jax", "vgg16", "vgg19", "vgg99", "torchvision", "caffe", "", "None"]) | TEXT, max_size=4),
       arch=st.sampled_from([None, "vgg16", "vgg19", "vgg99"]))
def test_any_safetensors_file_is_read_or_one_weights_error(tmp_path, tensors, metadata, arch):
    spec = {k: (d, s, bytes(SIZES[d] * math.prod(max(0, n) for n in s))) for k, (d, s) in tensors.items()}
    path = corpus.safetensors_file(fresh_dir(tmp_path) / "w.safetensors", spec, metadata)
    try:
        read_checkpoint(path, arch)
    except WeightsError as e:
        assert "\n" not in str(e)


VALID_FORMATS = ["safetensors", "pth", "ckpt", "h5", "mat"]


@pytest.fixture(scope="module")
def small_weights_files(tmp_path_factory):
    """One small file per format: two arrays each, the way their producers write them."""
    import pickle

    import h5py
    import scipy.io
    import torch
    from safetensors.numpy import save_file

    root = tmp_path_factory.mktemp("small")
    a = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    files = {}
    files["safetensors"] = root / "w.safetensors"
    save_file({"conv1_1.kernel": a, "conv1_1.bias": a[0, 0, 0]}, str(files["safetensors"]),
              metadata={"format": "nst-jax", "arch": "vgg16", "pixel_space": "caffe"})
    files["pth"] = root / "w.pth"
    torch.save({"features.0.weight": torch.from_numpy(a), "features.0.bias": torch.zeros(4)}, files["pth"])
    files["ckpt"] = root / "w.ckpt"
    files["ckpt"].write_bytes(pickle.dumps({"VGG16_0": {"Conv_0": {"kernel": a, "bias": a[0, 0, 0]}}}, protocol=2))
    files["h5"] = root / "w.h5"
    with h5py.File(files["h5"], "w") as f:
        f.attrs["layer_names"] = np.array([b"block1_conv1"])
        g = f.create_group("block1_conv1")
        g.attrs["weight_names"] = np.array([b"block1_conv1/kernel:0"])
        g.create_dataset("block1_conv1/kernel:0", data=a)
    files["mat"] = root / "w.mat"
    layers = np.empty((1, 1), dtype=object)
    pair = np.empty((1, 2), dtype=object)
    pair[0, 0], pair[0, 1] = a, np.zeros((4, 1), np.float32)
    layers[0, 0] = {"name": "conv1_1", "type": "conv", "weights": pair}
    scipy.io.savemat(files["mat"], {"layers": layers})
    return {k: v.read_bytes() for k, v in files.items()}


@fuzz(30)
@given(fmt=st.sampled_from(VALID_FORMATS), cut=st.integers(0, 4000), flips=st.lists(
    st.tuples(st.integers(0, 4000), st.integers(1, 255)), max_size=4))
def test_any_damaged_weights_file_is_one_weights_error(tmp_path, small_weights_files, fmt, cut, flips):
    data = bytearray(small_weights_files[fmt])
    for at, mask in flips:
        data[at % len(data)] ^= mask
    path = fresh_dir(tmp_path) / f"w.{fmt}"
    path.write_bytes(bytes(data[: max(cut, len(data) // 2)] if cut < len(data) else data))
    with pytest.raises(WeightsError) as e:  # two arrays are never a whole VGG
        read_checkpoint(path)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- output paths

def output_cases(root: Path, content: Path, style: Path) -> dict:
    """Name -> (extra stylize arguments, expected exit code)."""
    folder = root / "folder.png"
    folder.mkdir()
    a_file = root / "file"
    a_file.write_text("x")
    return {
        "a directory": (["-o", folder], 1),
        "under a file": (["-o", a_file / "o.png"], 1),
        "unwritable": (["-o", "/proc/o.png"], 1),
        "no extension": (["-o", root / "o"], 1),
        "the content": (["-o", content], 1),
        "the style": (["-o", style], 1),
        "the content, forced": (["-o", content, "--force"], 0),
        "checkpoint over the content": (["-o", root / "o.png", "--checkpoint-every", 1, "--checkpoint", content], 1),
        "checkpoint under a file": (["-o", root / "o.png", "--checkpoint-every", 1, "--checkpoint",
                                     a_file / "c.ckpt"], 1),
        "new folders": (["-o", root / "new" / "deeper" / "o.png"], 0),
    }


@pytest.mark.parametrize("case", ["a directory", "under a file", "unwritable", "no extension", "the content",
                                  "the style", "the content, forced", "checkpoint over the content",
                                  "checkpoint under a file", "new folders"])
def test_stylize_output_paths(tmp_path, images, monkeypatch, case):
    monkeypatch.setattr(run, "stylize", fake_stylize)
    args, expected = output_cases(tmp_path, *images)[case]
    before = corpus.snapshot(tmp_path)
    r = invoke("stylize", *images, *args)
    outputs = [images[0]] if case == "the content, forced" else [tmp_path / "new"]
    assert corpus.check_outcome(r, before, tmp_path, outputs) == expected, r.stderr


@pytest.mark.parametrize("case", ["a file", "under a file", "unwritable", "the content"])
def test_sweep_output_paths(tmp_path, images, monkeypatch, case):
    monkeypatch.setattr(sweep_module, "sweep", fake_sweep)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    out = {"a file": a_file, "under a file": a_file / "grid", "unwritable": Path("/proc/grid"),
           "the content": images[0]}[case]
    before = corpus.snapshot(tmp_path)
    r = invoke("sweep", *images, "-o", out)
    assert corpus.check_outcome(r, before, tmp_path) == 1


@pytest.mark.parametrize("earlier", [False, True])
def test_a_sweep_that_cannot_write_everything_leaves_nothing(tmp_path, images, monkeypatch, earlier):
    """A full disk at the last file: a new folder is not left; an earlier sweep's files
    in the folder are kept as they were."""
    monkeypatch.setattr(sweep_module, "sweep", fake_sweep)
    out = tmp_path / "new" / "grid"
    if earlier:
        out.mkdir(parents=True)
        for name in ("cell_r0_c0.png", "contact_sheet.png", "losses.json"):
            (out / name).write_text("an earlier sweep's")
    real_write = Path.write_text

    def full_at_losses(self, *args, **kwargs):
        if self.name == "losses.json" and self.parent != out:
            raise OSError(28, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_at_losses)
    before = corpus.snapshot(tmp_path)
    r = invoke("sweep", *images, "-o", out, "--style-weight", "1,2")
    assert corpus.check_outcome(r, before, tmp_path) == 1 and "No space left" in r.stderr
    assert (tmp_path / "new").exists() == earlier


@pytest.mark.parametrize("input_name", ["cell_r0_c1.png", "contact_sheet.png"])
def test_a_sweep_never_writes_over_its_inputs(tmp_path, images, monkeypatch, input_name):
    monkeypatch.setattr(sweep_module, "sweep", fake_sweep)
    out = tmp_path / "grid"
    out.mkdir()
    content = out / input_name
    content.write_bytes(images[0].read_bytes())
    before = corpus.snapshot(tmp_path)
    r = invoke("sweep", content, images[1], "-o", out, "--style-weight", "1,2")
    assert corpus.check_outcome(r, before, tmp_path) == 1 and "input of this run" in r.stderr


def test_output_names_that_collide(tmp_path, images, monkeypatch):
    """--checkpoint that is the output, and --save-every snapshots over an input, are refused."""
    monkeypatch.setattr(run, "stylize", fake_stylize)
    out = tmp_path / "o.png"
    snapshot = tmp_path / "o_0001.png"
    snapshot.write_bytes(images[0].read_bytes())
    for args, words in [(["--checkpoint", out, "--checkpoint-every", 1], "the output's name"),
                        (["--save-every", 1], "--save-every would write over")]:
        before = corpus.snapshot(tmp_path)
        r = invoke("stylize", snapshot, images[1], "-o", out, *args)
        assert corpus.check_outcome(r, before, tmp_path) == 1 and words in r.stderr, r.stderr


def test_a_content_folder_skips_special_files(tmp_path, images, monkeypatch):
    monkeypatch.setattr(run, "stylize", fake_stylize)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(images[0].read_bytes())
    os.mkfifo(photos / "b.png")
    (photos / "c.png").mkdir()
    before = corpus.snapshot(tmp_path)
    with corpus.never_opened(photos / "b.png"):
        r = invoke("stylize", photos, images[1], "-o", tmp_path / "results")
    assert corpus.check_outcome(r, before, tmp_path, [tmp_path / "results"]) == 0
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["a.json", "a.png"]  # the image, its record


def test_a_failed_sweep_leaves_no_directory(tmp_path, images, fabricated):
    out = tmp_path / "new" / "grid"
    before = corpus.snapshot(tmp_path)
    r = invoke("sweep", images[0], tmp_path / "missing.png", "-o", out, "--size", 32, "--steps", 1)
    assert corpus.check_outcome(r, before, tmp_path) == 1 and not (tmp_path / "new").exists()


@pytest.mark.parametrize("case", ["a directory", "under a file", "unwritable", "the source", "new folders"])
def test_convert_output_paths(tmp_path, vgg16_weights, case):
    src = save(vgg16_weights, tmp_path / "src.safetensors")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    (tmp_path / "folder").mkdir()
    out = {"a directory": tmp_path / "folder", "under a file": a_file / "o.safetensors",
           "unwritable": Path("/proc/o.safetensors"), "the source": src,
           "new folders": tmp_path / "new" / "o.safetensors"}[case]
    before = corpus.snapshot(tmp_path)
    r = invoke("weights", "convert", src, "-o", out)
    assert corpus.check_outcome(r, before, tmp_path, [tmp_path / "new"]) == (0 if case == "new folders" else 1)


@pytest.mark.parametrize("case", ["new folders", "under a file", "unwritable"])
def test_download_without_network_leaves_nothing(tmp_path, monkeypatch, case):
    import urllib.error
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    dest = {"new folders": tmp_path / "new" / "weights", "under a file": a_file / "weights",
            "unwritable": Path("/proc/weights")}[case]
    before = corpus.snapshot(tmp_path)
    r = invoke("weights", "download", "vgg16", "--dest", dest)
    assert corpus.check_outcome(r, before, tmp_path) == 1 and not (tmp_path / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
@pytest.mark.parametrize("command", ["stylize", "sweep", "convert"])
def test_a_read_only_directory(tmp_path, images, vgg16_weights, monkeypatch, command):
    monkeypatch.setattr(run, "stylize", fake_stylize)
    monkeypatch.setattr(sweep_module, "sweep", fake_sweep)
    src = save(vgg16_weights, tmp_path / "src.safetensors")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    args = {"stylize": ["stylize", *images, "-o", locked / "o.png"], "sweep": ["sweep", *images, "-o", locked],
            "convert": ["weights", "convert", src, "-o", locked / "o.safetensors"]}[command]
    before = corpus.snapshot(tmp_path)
    try:
        assert corpus.check_outcome(invoke(*args), before, tmp_path) == 1
    finally:
        locked.chmod(0o755)


SPECIAL_SLOTS = ["content", "style", "--init-image", "--mask", "--style-mask", "--weights", "--resume"]


@pytest.mark.parametrize("slot", SPECIAL_SLOTS)
def test_a_fifo_is_refused_not_read(tmp_path, images, fabricated, slot):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    args = image_args(slot, fifo, *images) if slot in SLOTS else [*images, slot, fifo]
    before = corpus.snapshot(tmp_path)
    with corpus.never_opened(fifo):
        r = invoke("stylize", *args, "-o", tmp_path / "o.png", "--size", 32, "--steps", 1, *TINY_LAYERS)
    assert corpus.check_outcome(r, before, tmp_path) == 1 and "not a regular file" in r.stderr


@pytest.mark.parametrize("command", ["info", "convert"])
def test_a_fifo_is_no_weights_file(tmp_path, command):
    fifo = tmp_path / "pipe.pth"
    os.mkfifo(fifo)
    before = corpus.snapshot(tmp_path)
    with corpus.never_opened(fifo):
        r = invoke("weights", command, fifo)
    assert corpus.check_outcome(r, before, tmp_path) == 1


# ---------------------------------------------------------------- runs that optimise

REAL = {
    "--lr": st.sampled_from(["1e-4", "0.02", "0.5", "1", "1e3", "1e30", "0"]),
    "--style-weight": st.sampled_from(["0", "1", "1e6", "1e20", "3.4e38"]),
    "--content-weight": st.sampled_from(["0", "1e-3", "1", "1e30"]),
    "--tv-weight": st.sampled_from(["0", "1", "1e10"]),
    "--init": st.sampled_from(["content", "noise", "noisy-content", "style", "recoloured"]),
    "--init-noise": st.sampled_from(["0", "0.5", "1"]),
    "--average": st.sampled_from(["0", "0.5", "0.999"]),
    "--seed": st.sampled_from(["0", "7", str(2**63 - 1)]),
    "--optimizer": st.sampled_from(["adam", "lbfgs-fixed", "lbfgs-backtrack"]),
    "--style-layers": st.sampled_from(["relu1_1:0,relu2_1:0", "relu1_1:1e30,relu2_1:1", "relu1_1"]),
    "--steps": st.sampled_from(["1", "2"]),
    "--size": st.sampled_from(["32", "40"]),
}


@fuzz(6)
@given(args=option_values(REAL))
@example(args=("--average=0.5", "--style-weight=3.4e38", "--content-weight=1e30", "--init=noise"))  # a NaN average
@pytest.mark.slow
def test_real_runs(tmp_path, images, fabricated, args):
    """Tiny runs with accepted values: done (0), NaN with the best image (3) or no
    progress and nothing written (4)."""
    out = fresh_dir(tmp_path) / "o.png"
    before = corpus.snapshot(tmp_path)
    r = invoke("stylize", *images, "-o", out, "--size", 32, "--steps", 2, "--scales", "none", "--optimizer", "adam",
               "--init", "content", *TINY_LAYERS, *args)
    code = corpus.check_outcome(r, before, tmp_path, [out], codes={0, 1, 3, 4})
    event(f"exit {code}")
    assert code != 1, r.stderr
    assert out.exists() == (code in (0, 3))
    if out.exists():
        assert max(load_image(out).shape[:2]) <= 40


def sweep_args(images, out, *extra):
    return ["sweep", *images, "-o", out, "--size", 32, "--steps", 2, "--scales", "none", *TINY_LAYERS, *extra]


def strict_json(path: Path):
    """JSON as the standard has it: no NaN, no Infinity."""
    def refuse(name):
        raise ValueError(f"{name} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_sweep_that_blows_up_exits_3_with_valid_json(tmp_path, images, fabricated):
    out = tmp_path / "grid"
    before = corpus.snapshot(tmp_path)
    r = invoke(*sweep_args(images, out, "--style-weight", "1e38,3e38", "--content-weight", "1e38",
                           "--init", "noise", "--average", 0.5, "--optimizer", "adam",
                           "--content-norm", "sum"))
    assert corpus.check_outcome(r, before, tmp_path, [out]) == 3 and "NaN" in r.stderr
    report = strict_json(out / "losses.json")
    assert report["stopped"] == "nan" and len(report["cells"]) == 2
    assert (out / "cell_r0_c1.png").exists() and (out / "contact_sheet.png").exists()


def test_a_sweep_where_no_cell_improves_writes_nothing(tmp_path, images, fabricated):
    out = tmp_path / "grid"
    before = corpus.snapshot(tmp_path)
    r = invoke(*sweep_args(images, out, "--lr", 0, "--style-weight", "1e3,1e6"))
    assert corpus.check_outcome(r, before, tmp_path) == 4 and "raise --lr" in r.stderr and not out.exists()


def test_a_sweep_names_the_cells_that_blew_up_or_never_improved(tmp_path, images, monkeypatch):
    def mixed(*args, **kw):
        result = fake_sweep(*args, **kw)
        result.trace["loss"][-1, 1] = np.nan  # blew up after improving
        result.best_losses[2] = 2.0  # never below its start
        return result

    monkeypatch.setattr(sweep_module, "sweep", mixed)
    out = tmp_path / "grid"
    before = corpus.snapshot(tmp_path)
    r = invoke("sweep", *images, "-o", out, "--style-weight", "1,2,3")
    assert corpus.check_outcome(r, before, tmp_path, [out]) == 0
    warned = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 2 and "NaN/inf in cell(s) r0c1 " in warned[0] and "cell(s) r0c2 " in warned[1]
    cells = strict_json(out / "losses.json")["cells"]
    assert cells[1]["final_loss"] is None and cells[0]["final_loss"] == 1.0


def test_an_interrupted_sweep_saves_what_it_has(tmp_path, images, fabricated, monkeypatch):
    real_drive = run.drive

    def interrupted_drive(*args, callback=None, **kw):
        def stop(progress):
            raise KeyboardInterrupt  # as Ctrl-C after the first step
        return real_drive(*args, callback=stop, **kw)

    monkeypatch.setattr(run, "drive", interrupted_drive)
    out = tmp_path / "grid"
    before = corpus.snapshot(tmp_path)
    r = invoke(*sweep_args(images, out, "--style-weight", "1e3,1e6"))
    assert corpus.check_outcome(r, before, tmp_path, [out]) == 130 and "interrupted" in r.stderr
    assert strict_json(out / "losses.json")["stopped"] == "interrupted"
    assert sorted(p.name for p in out.iterdir()) == ["cell_r0_c0.png", "cell_r0_c1.png", "contact_sheet.png",
                                                     "losses.json", "record.json"]


@pytest.mark.parametrize("command", ["stylize", "sweep"])
def test_ctrl_c_before_the_first_step_exits_130(tmp_path, images, fabricated, monkeypatch, command):
    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(inputs, "prepare", interrupted)
    monkeypatch.setattr(run, "prepare", interrupted)
    monkeypatch.setattr(sweep_module, "prepare", interrupted)
    out = tmp_path / ("o.png" if command == "stylize" else "grid")
    before = corpus.snapshot(tmp_path)
    args = sweep_args(images, out) if command == "sweep" else ["stylize", *images, "-o", out]
    r = invoke(*args)
    assert corpus.check_outcome(r, before, tmp_path) == 130 and not out.exists()
    assert r.stderr.strip().splitlines()[-1].startswith("interrupted")


# ---------------------------------------------------------------- signals to a real process

def start(tmp_path: Path, images, *args) -> subprocess.Popen:
    """The command in a process of its own, with the small fabricated weights in a file."""
    from conftest import random_params

    weights = save(VGGWeights("vgg16", "torchvision", random_params("vgg16", 16)), tmp_path / "w.safetensors")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    command = [args[0], *images, *args[1:], "--weights", weights, "--size", 32, "--scales", "none",
               "--steps", 100000, *TINY_LAYERS]
    return subprocess.Popen([sys.executable, "-m", "nst_jax", *map(str, command)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def wait_for_progress(proc: subprocess.Popen) -> list[str]:
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if ": step " in line:
            return lines
    raise AssertionError(f"no progress line: {''.join(lines)}")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_saves_the_best_image(tmp_path, images, sig):
    if signal.getsignal(getattr(signal, sig)) == signal.SIG_IGN:
        pytest.skip(f"{sig} is ignored here, and so in the process too")  # e.g. nohup
    out = tmp_path / "o.png"
    proc = start(tmp_path, images, "stylize", "-o", out, "--checkpoint-every", 100000)
    try:
        lines = wait_for_progress(proc)
        proc.send_signal(getattr(signal, sig))
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    stderr = "".join(lines) + stderr
    assert proc.returncode == {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}[sig], stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("interrupted after"), stderr
    assert load_image(out).shape[:2] == (32, 26) and (tmp_path / "o.ckpt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_signal_to_a_sweep_saves_the_grid(tmp_path, images):
    out = tmp_path / "grid"
    proc = start(tmp_path, images, "sweep", "-o", out, "--style-weight", "1e3,1e6")
    try:
        lines = wait_for_progress(proc)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    stderr = "".join(lines) + stderr
    assert proc.returncode == 143 and "Traceback" not in stderr, stderr
    assert strict_json(out / "losses.json")["stopped"] == "interrupted"
    assert load_image(out / "cell_r0_c1.png").shape[:2] == (32, 26)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- masks

@pytest.mark.parametrize("erode", [3, 40, 2**31 - 1])
def test_any_erosion_radius(tmp_path, images, fabricated, erode):
    """A radius past the image's side is the whole image, not a giant padded copy."""
    white = tmp_path / "white.png"
    save_image(np.ones((40, 32, 3)), white)
    out = tmp_path / "o.png"
    before = corpus.snapshot(tmp_path)
    r = invoke("stylize", *images, "-o", out, "--size", 32, "--steps", 0, "--scales", "none", "--mask", white,
               "--mask-erode", erode, *TINY_LAYERS)
    assert corpus.check_outcome(r, before, tmp_path, [out]) == 0


@fuzz(40)
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)), radius=st.integers(0, 30),
       seed=st.integers(0, 2**32 - 1))
def test_erosion_is_the_neighbourhood_minimum(shape, radius, seed):
    from nst_jax.masks import erode_min

    guides = np.random.default_rng(seed).uniform(size=shape).astype(np.float32)
    h, w = shape[1:]
    padded = np.pad(guides, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    expected = np.min([padded[:, i:i + h, j:j + w] for i in range(2 * radius + 1) for j in range(2 * radius + 1)],
                      axis=0)
    np.testing.assert_array_equal(erode_min(guides, radius), expected)


# ---------------------------------------------------------------- checkpoints

def test_damaged_checkpoints_are_one_error(tmp_path, images, fabricated):
    """A real checkpoint, then variants of it: every one is refused with one line."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    run_args = [*images, "--size", 32, "--scales", "none", *TINY_LAYERS]
    ckpt = tmp_path / "o.ckpt"
    r = invoke("stylize", *run_args, "-o", tmp_path / "o.png", "--steps", 2, "--checkpoint-every", 1)
    assert ckpt.is_file(), r.stderr
    arrays = load_file(str(ckpt))
    with safe_open(str(ckpt), framework="numpy") as f:
        meta = dict(f.metadata())
    variants = {
        "step below 0": (arrays, {**meta, "step": "-5"}),
        "step past the history": (arrays, {**meta, "step": "99999999999"}),
        "config null": (arrays, {**meta, "config": "null"}),
        "config nested deep": (arrays, {**meta, "config": "[" * 100_000 + "]" * 100_000}),
        "a history term missing": ({k: v for k, v in arrays.items() if k != "history.style"}, meta),
        "a 2-d history": ({**arrays, "history.loss": np.zeros((2, 2), np.float32)}, meta),
        "a short history": ({**arrays, "history.loss": arrays["history.loss"][:1]}, meta),
        "an unknown history term": ({**arrays, "history.zzz": np.zeros(2, np.float32)}, meta),
        "half precision state": ({k: v.astype(np.float16) if v.dtype == np.float32 else v
                                  for k, v in arrays.items()}, meta),
    }
    for name, (changed, metadata) in [*variants.items(), ("float8 arrays", (None, meta))]:
        path = tmp_path / "variant.ckpt"
        if changed is None:
            corpus.safetensors_file(path, {k: ("F8_E4M3", v.shape, bytes(v.size)) for k, v in arrays.items()}, meta)
        else:
            save_file(changed, str(path), metadata=metadata)
        out = tmp_path / "resumed.png"
        before = corpus.snapshot(tmp_path)
        r = invoke("stylize", *run_args, "-o", out, "--steps", 3, "--resume", path)
        assert corpus.check_outcome(r, before, tmp_path, [out]) == 1, name


def test_zero_steps_is_the_start_image_in_both_commands(tmp_path, images, fabricated):
    """--steps 0 writes the start image and exits 0, in stylize and in sweep alike."""
    for command, out in (("stylize", tmp_path / "o.png"), ("sweep", tmp_path / "grid")):
        before = corpus.snapshot(tmp_path)
        r = invoke(command, *images, "-o", out, "--size", 32, "--steps", 0, "--scales", "none", *TINY_LAYERS)
        written = [out, out.with_suffix(".json")] if command == "stylize" else [out]
        assert corpus.check_outcome(r, before, tmp_path, written) == 0, r.stderr
        assert "warning" not in r.stderr


def test_a_run_where_no_step_helps_leaves_nothing(tmp_path, images, fabricated):
    """Exit 4 writes no output and removes its snapshots; the checkpoint stays, said so,
    since resuming it with more steps is what the advice asks."""
    before = set(tmp_path.iterdir())
    r = invoke("stylize", *images, "-o", tmp_path / "o.png", "--size", 32, "--steps", 2, "--scales", "none",
               "--optimizer", "adam", "--lr", 0, "--save-every", 1, "--checkpoint-every", 1, *TINY_LAYERS)
    assert r.exit_code == 4 and "raise --lr" in r.stderr and set(tmp_path.iterdir()) - before == {tmp_path / "o.ckpt"}
    assert f"the run state is in {tmp_path / 'o.ckpt'}" in r.stderr
