"""Video: the warp, the consistency check, the temporal term, whole clips end to end, and a
clip watched live with its record."""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import threading
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp
import av
import numpy as np
import pytest
from jax.test_util import check_grads
from typer.testing import CliRunner

import nst_jax
from nst_jax import inputs, live, run, video
from nst_jax.cli import app
from nst_jax.config import StyleConfig
from nst_jax.errors import NstError, VideoError
from nst_jax.flow import bspline5, consistency, fold, inside, later_frame_wins, optical_flow, warp
from nst_jax.image import load_image, save_image
from nst_jax.inputs import prepare
from nst_jax.losses import temporal_loss
from nst_jax.objective import Problem
from nst_jax.tiling import TilePlan, receptive_radius
from conftest import tiny

SAMPLES = Path(nst_jax.__file__).parent / "samples"
runner = CliRunner()


# ---------------------------------------------------------------- flow and warp


def test_the_quintic_b_spline_by_hand():
    # beta5 at the integers 0, 1, 2: 66/120, 26/120, 1/120 (the interpolation's prefilter); 0 from 3
    np.testing.assert_allclose(bspline5(jnp.array([0.0, 1.0, -1.0, 2.0, 3.0, 3.5])),
                               [66 / 120, 26 / 120, 26 / 120, 1 / 120, 0, 0], atol=1e-7)
    # (3 - t)^5 / 120 on [2, 3); its shifts sum to 1 anywhere
    assert abs(float(bspline5(jnp.float32(2.5))) - 0.5**5 / 120) < 1e-8
    t = jnp.float32(0.37)
    assert abs(float(sum(bspline5(t - k) for k in range(-3, 4))) - 1.0) < 1e-6


def test_warp_is_quintic_spline_interpolation():
    image = np.arange(12, dtype=np.float32).reshape(3, 4, 1)  # x(r, c) = 4 r + c
    one_down = np.zeros((3, 4, 2), np.float32)
    one_down[..., 1] = 1.0  # row r shows row r + 1; the last row, past the border, the mirror's: row 1
    np.testing.assert_allclose(warp(image, one_down)[..., 0], image[[1, 2, 1], :, 0], atol=1e-5)
    np.testing.assert_array_equal(inside(one_down), np.array([[True] * 4, [True] * 4, [False] * 4]))
    np.testing.assert_allclose(warp(image, np.zeros((3, 4, 2), np.float32)), image, atol=1e-5)  # exact at pixels
    # against scipy's quintic spline, the picture mirrored past its borders
    from scipy import ndimage

    rng = np.random.default_rng(0)
    picture = rng.random((20, 27, 2)).astype(np.float32)
    flow = (rng.random((20, 27, 2)) * 8 - 4).astype(np.float32)
    rows, cols = np.meshgrid(np.arange(20.0), np.arange(27.0), indexing="ij")
    at = [rows + flow[..., 1], cols + flow[..., 0]]
    expected = np.stack([ndimage.map_coordinates(picture[..., k].astype(np.float64), at, order=5, mode="mirror")
                         for k in range(2)], -1)
    np.testing.assert_allclose(warp(picture, flow), expected, atol=2e-5)


def test_warp_blurs_little():
    """A fine cosine (3 px period) shifted half a pixel there and back keeps 0.94 of its
    amplitude; Keys' cubic, the earlier warp, keeps (2 (9/16 cos(pi/3) + 1/16))^2 = 0.47."""
    c = np.arange(64, dtype=np.float32)
    picture = np.broadcast_to(np.cos(2 * np.pi / 3 * c)[None, :, None], (4, 64, 1)).astype(np.float32)
    there, back = np.zeros((4, 64, 2), np.float32), np.zeros((4, 64, 2), np.float32)
    there[..., 0], back[..., 0] = 0.5, -0.5
    twice = np.asarray(warp(warp(picture, there), back))[:, 8:-8, 0]
    assert np.abs(twice).max() > 0.9 and np.abs(twice - picture[:, 8:-8, 0]).max() < 0.1


def test_dis_flow_finds_a_known_shift():
    texture = load_image(SAMPLES / "content.jpg", 64)[:40, :48]
    moved = np.roll(texture, 2, axis=1)  # moved(p) = texture(p - (2, 0))
    flow = optical_flow(moved, texture)  # on moved's grid, into texture
    inner = flow[8:-8, 8:-8]
    np.testing.assert_allclose(np.median(inner.reshape(-1, 2), axis=0), [-2.0, 0.0], atol=0.1)


def square_scene():
    """A 4x4 square at columns 2..5 of frame s moves 2 px right (columns 4..7 of frame t),
    rows 4..7, over a still background: the flows by hand, and the weights c on frame t."""
    backward = np.zeros((12, 12, 2), np.float32)  # t -> s, on t's grid
    backward[4:8, 4:8, 0] = -2.0
    forward = np.zeros((12, 12, 2), np.float32)  # s -> t, on s's grid
    forward[4:8, 2:6, 0] = 2.0
    expected = np.ones((12, 12), np.float32)
    expected[4:8, 2:4] = 0  # disoccluded: background the square covered in frame s
    # motion boundaries: central differences of the backward flow differ from 0 on both
    # sides of the square's edges
    expected[4:8, [3, 4, 7, 8]] = 0
    expected[[3, 4, 7, 8], 4:8] = 0
    return backward, forward, expected


def test_consistency_marks_the_disocclusion_and_the_motion_boundaries():
    backward, forward, expected = square_scene()
    np.testing.assert_array_equal(consistency(backward, forward), expected)


def test_consistency_marks_what_a_pan_brings_into_view():
    backward = np.zeros((6, 8, 2), np.float32)
    backward[..., 0] = 1.0  # the camera moved right: the last column is new
    forward = -backward
    expected = np.ones((6, 8), np.float32)
    expected[:, -1] = 0
    np.testing.assert_array_equal(consistency(backward, forward), expected)


def test_later_frame_wins_and_fold():
    c1, c2, c4 = (np.array(v, np.float32) for v in ([[1, 0, 0, 0]], [[1, 1, 0, 0]], [[1, 1, 1, 0]]))
    long = later_frame_wins([c1, c2, c4])
    np.testing.assert_array_equal(np.stack(long), [[[1, 0, 0, 0]], [[0, 1, 0, 0]], [[0, 0, 1, 0]]])
    warped = [np.full((1, 4, 3), v, np.float32) for v in (0.1, 0.2, 0.4)]
    target, weight = fold(warped, long)
    np.testing.assert_allclose(target[..., 0], [[0.1, 0.2, 0.4, 0.0]], atol=1e-7)
    np.testing.assert_array_equal(weight[..., 0], [[1, 1, 1, 0]])
    # disjoint weights: the folded term is the sum of the separate ones, value and gradient
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(1, 4, 3)), jnp.float32)
    separate = lambda x: sum(temporal_loss(x, w, c[..., None]) for w, c in zip(warped, long))  # noqa: E731
    folded = lambda x: temporal_loss(x, target, weight)  # noqa: E731
    np.testing.assert_allclose(folded(x), separate(x), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(folded)(x), jax.grad(separate)(x), rtol=1e-6, atol=1e-8)
    # overlapping soft weights: the gradient still equals the sum's
    soft = [np.random.default_rng(k).uniform(size=(1, 4)).astype(np.float32) for k in range(3)]
    target, weight = fold(warped, soft)
    separate = lambda x: sum(temporal_loss(x, w, c[..., None]) for w, c in zip(warped, soft))  # noqa: E731
    np.testing.assert_allclose(jax.grad(lambda x: temporal_loss(x, target, weight))(x), jax.grad(separate)(x),
                               rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------- the temporal term


def test_temporal_loss_by_hand():
    x = jnp.array([[[0.5, 0.0], [1.0, 0.25]]], jnp.float32)  # (1, 2, 2): D = 4
    w = jnp.array([[[0.25, 0.5], [0.0, 0.25]]], jnp.float32)
    c = jnp.array([[[1.0], [0.0]]], jnp.float32)  # the second pixel is occluded
    # (0.25^2 + 0.5^2) / 4 = 0.078125; the gradient 2 c (x - w) / D
    assert float(jax.jit(temporal_loss)(x, w, c)) == pytest.approx(0.078125, abs=1e-8)
    np.testing.assert_allclose(jax.grad(temporal_loss)(x, w, c), [[[0.125, -0.25], [0.0, 0.0]]], atol=1e-8)
    check_grads(lambda x: temporal_loss(x, w, c), (x,), order=2, modes=("fwd", "rev"))


def test_the_objective_adds_gamma_times_the_temporal_term(vgg16_weights):
    config = tiny()
    run_ = prepare(np.asarray(CONTENT), np.asarray(STYLE), config, vgg16_weights)
    x = jnp.asarray(run_.start)
    target = jnp.asarray(np.random.default_rng(2).uniform(size=x.shape), jnp.float32)
    weight = jnp.ones(x.shape[:2] + (1,), jnp.float32).at[:4].set(0.0)
    plain, terms = run_.objective(run_.problem, x)
    problem = Problem(run_.problem.variables, run_.problem.targets._replace(temporal=(target, weight)),
                      run_.problem.weights._replace(temporal=jnp.float32(300.0)))
    value, same_terms = jax.jit(run_.objective)(problem, x)
    np.testing.assert_allclose(value, plain + 300.0 * temporal_loss(x, target, weight), rtol=1e-5)
    np.testing.assert_allclose(np.stack(same_terms), np.stack(terms), rtol=1e-6)


@pytest.mark.slow
def test_the_temporal_term_of_a_tiled_objective_is_the_whole_ones(vgg16_weights):
    config = tiny()
    run_ = prepare(np.asarray(CONTENT), np.asarray(STYLE), config, vgg16_weights)
    taps = run_.objective.model.taps
    tiled = dataclasses.replace(run_.objective, tiles=TilePlan(16, receptive_radius("vgg16", taps)))
    x = jnp.asarray(run_.start)
    target = jnp.asarray(np.random.default_rng(3).uniform(size=x.shape), jnp.float32)
    weight = jnp.ones(x.shape[:2] + (1,), jnp.float32).at[:, :5].set(0.0)
    problem = Problem(run_.problem.variables, run_.problem.targets._replace(temporal=(target, weight)),
                      run_.problem.weights._replace(temporal=jnp.float32(1e3)))
    whole_value, whole_grad = jax.value_and_grad(run_.objective.value, argnums=1)(problem, x)
    tiled_value, tiled_grad = jax.jit(jax.value_and_grad(tiled.value, argnums=1))(problem, x)
    np.testing.assert_allclose(tiled_value, whole_value, rtol=1e-5)
    np.testing.assert_allclose(tiled_grad, whole_grad, rtol=1e-4, atol=1e-4 * float(jnp.abs(whole_grad).max()))
    assert float(jnp.abs(jax.grad(lambda x: temporal_loss(x, target, weight))(x)).max()) > 0


# ---------------------------------------------------------------- whole clips

CONTENT = load_image(SAMPLES / "content.jpg", 48)
STYLE = load_image(SAMPLES / "style.jpg", 32)
TINY = dict(size=32, optimizer="adam", init="content", content_norm="sum", style_weight=1e6,
            style_layers=("relu1_1", "relu2_1"), style_layer_weights=(0.5, 0.5), content_layers=("relu2_1",),
            conv="lax", log_every=1, steps_per_call=1)
TINY_FLAGS = ["--size", 32, "--optimizer", "adam", "--init", "content", "--content-norm", "sum",
              "--style-weight", 1e6, "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1",
              "--conv", "lax", "--first-steps", 3, "--steps", 2]


def pan(n: int = 4, step: int = 2) -> list[np.ndarray]:
    """``n`` 32x24 crops of the content sample, the window moving ``step`` px right a frame."""
    return [CONTENT[4:28, 2 + step * t:34 + step * t] for t in range(n)]


def write_mp4(path: Path, frames, fps: int = 8, audio: bool = True) -> Path:
    """An H.264 clip (and half a second of AAC tone), written with PyAV directly."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        sound = out.add_stream("aac", rate=8000) if audio else None
        for i, f in enumerate(frames):
            picture = av.VideoFrame.from_ndarray((np.clip(f, 0, 1) * 255).astype(np.uint8), format="rgb24")
            picture.pts = i
            for p in stream.encode(picture):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
        if sound is not None:
            for k in range(4):
                tone = np.sin(np.arange(1024 * k, 1024 * (k + 1)) * 0.3).astype(np.float32)[None] * 0.2
                chunk = av.AudioFrame.from_ndarray(np.repeat(tone, 2, axis=0), format="fltp", layout="stereo")
                chunk.sample_rate, chunk.pts = 8000, 1024 * k
                for p in sound.encode(chunk):
                    out.mux(p)
            for p in sound.encode():
                out.mux(p)
    return path


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture
def fabricated(monkeypatch, vgg16_weights):
    monkeypatch.setattr(inputs, "load_weights", lambda spec: vgg16_weights)


def test_a_clip_end_to_end_keeps_its_frame_count_rate_and_audio(tmp_path, fabricated):
    source = write_mp4(tmp_path / "in.mp4", pan())
    style = save_image(STYLE, tmp_path / "style.png")
    r = invoke("video", source, style, "-o", tmp_path / "out.mp4", *TINY_FLAGS)
    assert r.exit_code == 0, r.output
    assert "frame 4/4" in r.output and "wrote" in r.output
    with av.open(str(tmp_path / "out.mp4")) as c:
        v = c.streams.video[0]
        assert v.average_rate == 8 and (v.width, v.height) == (32, 24)
        assert sum(1 for _ in c.decode(video=0)) == 4
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert [s.codec_context.name for s in c.streams.audio] == ["aac"]
    assert sorted(p.name for p in (tmp_path / "out.mp4.frames").glob("*.png")) == [f"00000{i}.png" for i in range(4)]
    # the same command again: nothing left to stylize, the video written again
    r = invoke("video", source, style, "-o", tmp_path / "out.mp4", *TINY_FLAGS)
    assert r.exit_code == 0 and "0 frames stylized" in r.output, r.output


def folder_clip(path: Path, frames) -> Path:
    path.mkdir()
    for i, f in enumerate(frames):
        save_image(f, path / f"f{i:03d}.png")
    return path


def test_one_compile_serves_the_whole_clip(tmp_path, vgg16_weights, monkeypatch):
    compiles = []
    real = run.compile_chunk
    monkeypatch.setattr(run, "compile_chunk", lambda *a, **k: compiles.append(1) or real(*a, **k))
    source = folder_clip(tmp_path / "in", pan(4))
    result = video.stylize_video(source, STYLE, tmp_path / "out", StyleConfig(**TINY),
                                 video.VideoConfig(first_steps=3, steps=2, previous=(1, 2)), weights=vgg16_weights)
    assert result.stopped == "done" and result.done == 4
    assert len(compiles) == 1 and result.compiles == 1


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, vgg16_weights, monkeypatch):
    source = folder_clip(tmp_path / "in", pan(4))
    config, settings = StyleConfig(**TINY), video.VideoConfig(first_steps=3, steps=3)
    whole = video.stylize_video(source, STYLE, tmp_path / "whole", config, settings, weights=vgg16_weights)
    assert whole.done == 4

    def stop_in_frame_2(p):
        if len(frames_done) == 2 and p.step == 2:
            raise KeyboardInterrupt

    frames_done = []
    part = video.stylize_video(source, STYLE, tmp_path / "part", config, settings, weights=vgg16_weights,
                               callback=stop_in_frame_2, on_frame=lambda p: frames_done.append(p.index))
    assert (part.stopped, part.done) == ("interrupted", 2)
    assert sorted(p.name for p in (tmp_path / "part").glob("*.png")) == ["000000.png", "000001.png"]
    flows = []
    real = video.optical_flow
    monkeypatch.setattr(video, "optical_flow", lambda *a: flows.append(1) or real(*a))
    rest = video.stylize_video(source, STYLE, tmp_path / "part", config, settings, weights=vgg16_weights,
                               resume=True)
    assert (rest.stopped, rest.done, len(rest.frame_seconds)) == ("done", 4, 2)
    assert len(flows) == 2  # frame 2's flows were cached by the interrupted run; frame 3's computed
    for i in range(4):
        a, b = (load_image(tmp_path / d / f"{i:06d}.png") for d in ("whole", "part"))
        np.testing.assert_array_equal(a, b)


def test_other_settings_are_refused_unless_restarted(tmp_path, vgg16_weights):
    source = folder_clip(tmp_path / "in", pan(2))
    config, settings = StyleConfig(**TINY), video.VideoConfig(first_steps=2, steps=1)
    video.stylize_video(source, STYLE, tmp_path / "out", config, settings, weights=vgg16_weights)
    other = video.VideoConfig(first_steps=2, steps=1, temporal_weight=5.0)
    with pytest.raises(VideoError, match="other video settings: run with --restart"):
        video.stylize_video(source, STYLE, tmp_path / "out", config, other, weights=vgg16_weights)
    again = video.stylize_video(source, STYLE, tmp_path / "out", config, other, weights=vgg16_weights,
                                restart=True)
    assert again.done == 2 and len(again.frame_seconds) == 2


def bad_inputs(tmp_path: Path) -> dict:
    c = tmp_path
    (c / "notavideo.mp4").write_text("hello")
    style = save_image(STYLE, c / "style.png")
    good = write_mp4(c / "good.mp4", pan(2), audio=False)
    with av.open(str(c / "empty.mp4"), "w") as out:  # a video stream without frames
        s = out.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 32, 24, "yuv420p"
        out.start_encoding()
    mixed = folder_clip(c / "mixed", pan(2))
    save_image(CONTENT[:20, :20], mixed / "f002.png")
    (c / "afile").write_text("x")
    return {
        "not a video": ([c / "notavideo.mp4", style, "-o", c / "o.mp4"], "is not a video FFmpeg can read"),
        "no frames": ([c / "empty.mp4", style, "-o", c / "o.mp4"], "has no video frames"),
        "mixed sizes": ([mixed, style, "-o", c / "o.mp4"], "differ in size: f000.png is 32x24, f002.png is 20x20"),
        "too large": ([good, style, "-o", c / "o.mp4", "--max-memory", 1e-4], "GiB"),
        "unwritable": ([good, style, "-o", c / "afile" / "o.mp4"], "cannot write into"),
        "unknown container": ([good, style, "-o", c / "o.xyz"], "unknown video extension"),
        "start past the end": ([good, style, "-o", c / "o.mp4", "--start", 5], "--start is past the clip's end: frame 5 ("),
        "bad start": ([good, style, "-o", c / "o.mp4", "--start", "soon"], "--start takes a frame index"),
        "bad temporal weight": ([good, style, "-o", c / "o.mp4", "--temporal-weight", -1], "--temporal-weight"),
    }


@pytest.mark.parametrize("case", ["not a video", "no frames", "mixed sizes", "too large", "unwritable",
                                  "unknown container", "start past the end", "bad start", "bad temporal weight"])
def test_bad_input_is_one_clear_line_and_nothing_written(tmp_path, case, fabricated):
    args, message = bad_inputs(tmp_path)[case]
    before = set(tmp_path.rglob("*"))
    r = invoke("video", *args, *TINY_FLAGS)
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:"), r.output
    assert message in lines[0], lines[0]
    assert set(tmp_path.rglob("*")) == before


def test_without_pyav_the_command_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "av", None)  # import av raises ImportError
    (tmp_path / "in.mp4").write_bytes(b"\0" * 16)
    r = invoke("video", tmp_path / "in.mp4", SAMPLES / "style.jpg", "-o", tmp_path / "o.mp4")
    assert r.exit_code == 1 and r.output.strip() == "error: video needs PyAV: pip install 'nst-jax[video]'"


def test_without_opencv_the_command_says_so_before_the_first_frame(tmp_path, monkeypatch, fabricated):
    monkeypatch.setitem(__import__("sys").modules, "cv2", None)  # import cv2 raises ImportError
    clip = folder_clip(tmp_path / "clip", pan(2))
    before = set(tmp_path.rglob("*"))
    r = invoke("video", clip, SAMPLES / "style.jpg", "-o", tmp_path / "styled", *TINY_FLAGS)
    assert r.exit_code == 1 and r.output.strip() == "error: optical flow needs OpenCV: pip install 'nst-jax[video]'"
    assert set(tmp_path.rglob("*")) == before  # no frame made, no folder left


def test_a_flow_cache_that_cannot_be_written_is_skipped(tmp_path):
    """The flows are cached to save time, not needed: where they cannot be written (a full
    disk; here a folder under a file) the frame goes on with them, and its own write says why."""
    (tmp_path / "afile").write_text("x")
    a, b = pan(2)
    backward, forward = video.cached_flows(tmp_path / "afile" / "flows", 1, 0, a, b, "ultrafast")
    assert backward.shape == forward.shape == a.shape[:2] + (2,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_gif_in_and_numbered_frames_out_with_start_in_seconds(tmp_path, fabricated):
    from PIL import Image

    frames = [Image.fromarray((f * 255).astype(np.uint8)) for f in pan(4)]
    frames[0].save(tmp_path / "in.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    style = save_image(STYLE, tmp_path / "style.png")
    r = invoke("video", tmp_path / "in.gif", style, "-o", tmp_path / "frames", "--start", "0.1s", "--frames", 2,
               *TINY_FLAGS)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "frames").glob("*.png")) == ["000000.png", "000001.png"]
    assert load_image(tmp_path / "frames" / "000000.png").shape == (24, 32, 3)
    assert json.loads((tmp_path / "frames" / "record.json").read_text())["frames_done"] == 2  # in the folder


def test_a_watched_clip_has_its_page_and_its_record(tmp_path, fabricated, monkeypatch):
    """--live shows the clip's frames as they are made, its steps one after another, and ends
    saying done; the record beside the video holds every frame's steps, losses and times."""
    from PIL import Image

    source, style = folder_clip(tmp_path / "in", pan(3)), save_image(STYLE, tmp_path / "style.png")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    states, pictures, stop, read_running = [], [], threading.Event(), threading.Event()
    # A tiny clip with warm compiles can end between two polls: each step waits until the page
    # has been read while the run is running, so that state is seen whatever the machine's speed.
    progress = live.LiveView.progress

    def progress_once_read(view, *args, **kwargs):
        progress(view, *args, **kwargs)
        read_running.wait(30)

    monkeypatch.setattr(live.LiveView, "progress", progress_once_read)

    def viewer():
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=5) as answer:
                    states.append(json.loads(answer.read()))
                if states[-1]["status"] == "running":
                    read_running.set()
                if states[-1]["version"] > 0 and len(pictures) < 3:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/image.jpg", timeout=5) as answer:
                        pictures.append(Image.open(io.BytesIO(answer.read())).size)
            except OSError:
                pass
            time.sleep(0.05)

    watching = threading.Thread(target=viewer)
    watching.start()
    try:
        r = invoke("video", source, style, "-o", tmp_path / "out.mp4", "--live-port", port, "--live-linger", 1,
                   *TINY_FLAGS)
    finally:
        stop.set()
        watching.join()
    assert r.exit_code == 0, r.output
    assert f"wrote {tmp_path / 'out.mp4'} and its record {tmp_path / 'out.json'}" in r.stdout
    begun = [s for s in states if s["run"]]  # (before the run begins, the page has nothing to show)
    assert any(s["status"] == "running" for s in begun)
    assert all(s["kind"] == "video" and s["settings"]["video"]["steps"] == 2 for s in begun)
    last = states[-1]
    assert last["status"] == "done" and "saved" in last["message"] and last["output"] == str(tmp_path / "out.mp4")
    assert (last["frame"]["done"], last["frame"]["total"]) == (3, 3) and (last["step"], last["total"]) == (7, 7)
    assert [p[1] for p in last["points"]] == list(range(7))  # frames of 3, 2 and 2 steps, one after another
    assert pictures and set(pictures) == {(32, 24)}
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["kind"] == "video" and record["stopped"] == "done" and record["inputs"]["content"] == str(source)
    assert [(f["index"], f["first_step"], f["steps"]) for f in record["frames"]] == [(0, 0, 3), (1, 3, 2), (2, 5, 2)]
    assert record["history"]["step"] == list(range(7)) and record["calls"]["step"][-1] == 7
    assert (record["frames_before"], record["frames_done"], record["frames_total"]) == (0, 3, 3)
    assert record["video"]["steps"] == 2 and record["memory"]["plan"].startswith("32x24")
    assert invoke("plot", tmp_path / "out.json", "-o", tmp_path / "losses.png").exit_code == 0
    # again: nothing left to make, and the record says so
    r = invoke("video", source, style, "-o", tmp_path / "out.mp4", *TINY_FLAGS)
    record = json.loads((tmp_path / "out.json").read_text())
    assert r.exit_code == 0 and (record["frames_before"], record["frames"], record["history"]["step"]) == (3, [], [])


def test_parse_start():
    from nst_jax.cli_video import parse_start

    assert parse_start("120", 1) == 120 and parse_start("4.8s", Fraction(25)) == 120
    assert parse_start("0.1s", Fraction(30000, 1001)) == 2
    with pytest.raises(NstError, match="--start takes"):
        parse_start("-1", 1)


def test_the_options_it_shares_with_stylize_have_its_defaults():
    """beta and every other option both commands take default alike (--steps, a later
    frame's steps, and --resume, a flag, mean other things here); video once kept beta 1000
    after stylize's became 20 on the gap."""
    import typer.main

    commands = typer.main.get_command(app).commands
    defaults = {name: {p.name: p.default for p in commands[name].params} for name in ("stylize", "video")}
    shared = (set(defaults["stylize"]) & set(defaults["video"])) - {"steps", "resume", "output", "styles"}
    assert {"style_weight", "content_weight", "size", "optimizer", "live"} <= shared
    assert {k: defaults["video"][k] for k in shared} == {k: defaults["stylize"][k] for k in shared}
