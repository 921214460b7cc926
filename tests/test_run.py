"""The driver and stylize(): optimizers end to end, scanned calls, stops, checkpoints, resume."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest

import nst_jax
from conftest import CONTENT, STYLE, tiny
from nst_jax.config import StyleConfig
from nst_jax.errors import NstError
from nst_jax.image import save_image
from nst_jax.run import stylize

SAMPLES = Path(nst_jax.__file__).parent / "samples"


def test_adam_keeps_pixels_in_range_and_lowers_the_loss(vgg16_weights):
    config = tiny(steps=12, init="noise", learning_rate=0.01)
    result = stylize(CONTENT, STYLE, config, weights=vgg16_weights)
    assert result.stopped == "done" and result.steps == 12 and result.function_evals == 12
    assert result.history[-1].total < 0.75 * result.history[0].total
    assert result.best_loss <= min(r.total for r in result.history) and result.improved
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert [r.step for r in result.history] == list(range(12))


def test_lbfgs_counts_function_evaluations_apart_from_steps(vgg16_weights):
    config = tiny(optimizer="lbfgs", steps=6, log_every=3)
    result = stylize(CONTENT, STYLE, config, weights=vgg16_weights)
    assert result.steps == 6 and result.function_evals >= 7  # the start is evaluated once more
    assert result.history[-1].total < 0.5 * result.history[0].total
    recorded = [r.step for r in result.history if np.isfinite(r.style)]
    assert recorded == [0, 3, 5]  # every log_every steps, and the last


def test_lbfgs_fixed_is_one_evaluation_per_step(vgg16_weights):
    result = stylize(CONTENT, STYLE, tiny(optimizer="lbfgs-fixed", steps=6), weights=vgg16_weights)
    assert result.function_evals == 6
    # 0.66 with the default low-pass curvature on these random weights at 32 px, where an
    # image holds few fine frequencies for it to damp (plain L-BFGS: below 0.5)
    assert result.history[-1].total < 0.75 * result.history[0].total


@pytest.mark.parametrize("optimizer,per_step", [("lbfgs-backtrack", 1), ("lbfgs-armijo", 3)])
def test_lbfgs_with_an_unrolled_search_counts_its_trials(optimizer, per_step, vgg16_weights):
    result = stylize(CONTENT, STYLE, tiny(optimizer=optimizer, steps=6), weights=vgg16_weights)
    assert result.function_evals == 6 * per_step
    assert result.history[-1].total < 0.75 * result.history[0].total
    assert result.image.min() >= 0 and result.image.max() <= 1


def test_any_optax_optimizer_by_name(vgg16_weights):
    result = stylize(CONTENT, STYLE, tiny(optimizer="rmsprop", learning_rate=0.01),
                     weights=vgg16_weights)
    assert result.history[-1].total < result.history[0].total


def test_a_run_that_never_improves_says_so(vgg16_weights):
    config = tiny(optimizer="sgd", learning_rate=1e4, steps=3)
    result = stylize(CONTENT, STYLE, config, weights=vgg16_weights)
    assert result.improved is False
    np.testing.assert_array_equal(result.best_image, np.clip(CONTENT, 0, 1))


@pytest.mark.parametrize("k", [2, 4])
def test_scanned_calls_follow_the_same_path(k, vgg16_weights):
    config = tiny(steps=6)
    one = stylize(CONTENT, STYLE, config.replace(steps_per_call=1), weights=vgg16_weights)
    many = stylize(CONTENT, STYLE, config.replace(steps_per_call=k), weights=vgg16_weights)
    np.testing.assert_allclose([r.total for r in many.history], [r.total for r in one.history], rtol=1e-5)
    np.testing.assert_allclose(many.image, one.image, atol=1e-5)
    assert many.steps == 6


@pytest.mark.parametrize("init", ["content", "noise", "noisy-content", "style"])
def test_same_seed_same_result_bit_for_bit(init, vgg16_weights):
    config = tiny(init=init, steps=3, seed=5)
    a = stylize(CONTENT, STYLE, config, weights=vgg16_weights)
    b = stylize(CONTENT, STYLE, config, weights=vgg16_weights)
    np.testing.assert_array_equal(a.image, b.image)
    if init in ("noise", "noisy-content"):
        c = stylize(CONTENT, STYLE, config.replace(seed=6), weights=vgg16_weights)
        assert not np.array_equal(a.image, c.image)


def test_init_from_image_file(tmp_path, vgg16_weights):
    save_image(np.full((10, 10, 3), 0.5, np.float32), tmp_path / "start.png")
    config = tiny(init="image", init_image=str(tmp_path / "start.png"), steps=0)
    result = stylize(CONTENT, STYLE, config, weights=vgg16_weights)
    assert result.image.shape == CONTENT.shape and np.allclose(result.image, 0.5, atol=1 / 255)
    assert result.improved is None


def test_ctrl_c_returns_the_best_so_far_and_leaves_a_checkpoint(tmp_path, vgg16_weights):
    def interrupt(progress):
        if progress.step == 3:
            raise KeyboardInterrupt

    ckpt = tmp_path / "run.ckpt"
    result = stylize(CONTENT, STYLE, tiny(steps=10), weights=vgg16_weights, callback=interrupt,
                     checkpoint=ckpt, checkpoint_every=100)
    assert result.stopped == "interrupted" and result.steps == 3
    assert np.isfinite(result.best_loss) and ckpt.exists()
    resumed = stylize(CONTENT, STYLE, tiny(steps=10), weights=vgg16_weights, resume=ckpt)
    assert resumed.steps == 10 and [r.step for r in resumed.history] == list(range(10))


def test_a_callback_can_stop_the_run(vgg16_weights):
    result = stylize(CONTENT, STYLE, tiny(steps=10), weights=vgg16_weights,
                     callback=lambda p: p.step >= 2)
    assert result.stopped == "callback" and result.steps == 2


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs-fixed", "lbfgs-backtrack"])
def test_resumed_run_is_bit_identical(optimizer, tmp_path, vgg16_weights):
    config = tiny(optimizer=optimizer, steps=6, init="noisy-content", log_every=2)
    whole = stylize(CONTENT, STYLE, config, weights=vgg16_weights)
    ckpt = tmp_path / "half.ckpt"
    half = stylize(CONTENT, STYLE, config.replace(steps=3), weights=vgg16_weights, checkpoint=ckpt,
                   checkpoint_every=3)
    assert half.steps == 3 and ckpt.exists()
    rest = stylize(CONTENT, STYLE, config, weights=vgg16_weights, resume=ckpt)
    np.testing.assert_array_equal(rest.image, whole.image)
    np.testing.assert_array_equal(rest.best_image, whole.best_image)
    assert rest.best_loss == whole.best_loss and rest.function_evals == whole.function_evals
    assert [r.total for r in rest.history] == [r.total for r in whole.history]
    # the library's own state resumes the same way, without a file
    again = stylize(CONTENT, STYLE, config, weights=vgg16_weights, resume=half.state)
    np.testing.assert_array_equal(again.image, whole.image)


def test_a_checkpoint_for_another_run_is_refused_and_kept(tmp_path, vgg16_weights):
    config = tiny(steps=2)
    ckpt = tmp_path / "run.ckpt"
    stylize(CONTENT, STYLE, config, weights=vgg16_weights, checkpoint=ckpt, checkpoint_every=2)
    before = ckpt.read_bytes()
    cases = [
        (CONTENT[::-1].copy(), config, "other content/style images or other weights"),
        (CONTENT, config.replace(style_weight=7.0), "different style_weight"),
        (CONTENT, config.replace(optimizer="lbfgs-fixed"), "different optimizer"),
        (CONTENT, config.replace(size=24), r"different size \(32 there, 24 here\)"),  # its inputs' digest too
    ]
    for content, other, message in cases:
        with pytest.raises(NstError, match=message):
            stylize(content, STYLE, other.replace(steps=4), weights=vgg16_weights, resume=ckpt,
                    checkpoint=ckpt, checkpoint_every=1)
    assert ckpt.read_bytes() == before
    with pytest.raises(NstError, match="has made 2 steps, more than the 1 this run asks for: ask for 2 or more"):
        stylize(CONTENT, STYLE, config.replace(steps=1), weights=vgg16_weights, resume=ckpt)  # an older picture
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(before[: len(before) // 2])
    with pytest.raises(NstError, match="not an nst-jax checkpoint, or it is damaged"):
        stylize(CONTENT, STYLE, config, weights=vgg16_weights, resume=damaged)
    with pytest.raises(NstError, match="no such checkpoint"):
        stylize(CONTENT, STYLE, config, weights=vgg16_weights, resume=tmp_path / "none.ckpt")


@pytest.mark.parametrize("field, old, other", [("detail", 0.0, 1.0), ("precondition", 0.0, 0.1),
                                               ("per_channel", 0.0, 4.0), ("balance", "fixed", "gap"),
                                               ("coarse_steps", None, 1)])
def test_a_checkpoint_from_before_a_field_existed_reads_as_its_old_behaviour(field, old, other, tmp_path,
                                                                               vgg16_weights):
    """Saved without ``field`` (checkpoints made before it existed): resumes as ``old``,
    which is what such a run did, and is refused with another value, naming the field."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    config = tiny(scales=(16, 32), steps=2, optimizer="lbfgs-backtrack", **{field: old})
    ckpt = tmp_path / "old.ckpt"
    stylize(CONTENT, STYLE, config, weights=vgg16_weights, checkpoint=ckpt, checkpoint_every=1,
            callback=lambda p: p.step == 3)
    with safe_open(str(ckpt), framework="numpy") as f:
        meta = dict(f.metadata())
    saved = json.loads(meta["config"])
    del saved[field]
    save_file(load_file(str(ckpt)), str(ckpt), metadata={**meta, "config": json.dumps(saved)})
    whole = stylize(CONTENT, STYLE, config, weights=vgg16_weights)
    rest = stylize(CONTENT, STYLE, config, weights=vgg16_weights, resume=ckpt)
    np.testing.assert_array_equal(rest.output, whole.output)
    with pytest.raises(NstError, match=f"different {field}"):
        stylize(CONTENT, STYLE, config.replace(**{field: other}), weights=vgg16_weights, resume=ckpt)


def test_the_precondition_binds_a_resume_only_for_lbfgs():
    """Only L-BFGS reads config.precondition: an Adam checkpoint resumes under any corner,
    an L-BFGS one only under its own."""
    assert "precondition" not in tiny(optimizer="adam").objective_fields()
    assert "precondition" in tiny(optimizer="lbfgs-backtrack").objective_fields()


def test_upscaling_a_small_content_image_is_noted(vgg16_weights):
    result = stylize(CONTENT[:10, :10], STYLE, tiny(steps=0), weights=vgg16_weights)
    assert any("content image is 10x10 px, upscaled to 32x32" in n for n in result.notes)


@pytest.mark.slow
def test_end_to_end_with_embedded_vgg16():
    """The real network at 64 px: style loss falls by more than half, content stays close.

    Measured on the project's CPU (Adam, lr 0.02, 40 steps from the content, paper layers,
    beta 1e4 -- at 64 px the content term is 16x smaller than at 256 px): style ends at
    0.235 of its start; content loss ends at 0.274 of that of a white-noise image.
    """
    config = StyleConfig(size=64, steps=40, log_every=39, style_weight=1e4, optimizer="adam", init="content",
                         content_norm="sum", balance="fixed", per_channel=0.0)  # the paper's loss
    result = stylize(SAMPLES / "content.jpg", SAMPLES / "style.jpg", config)
    first, last = result.history[0], result.history[-1]
    assert last.style < 0.5 * first.style
    noise = stylize(SAMPLES / "content.jpg", SAMPLES / "style.jpg", config.replace(steps=1, init="noise"))
    assert last.content < 0.45 * noise.history[0].content


@pytest.mark.slow
def test_the_defaults_move_to_the_style_and_stay_nearer_the_content_than_noise():
    """``StyleConfig()``'s optimiser, start, loss scale and coarse-to-fine schedule (only the
    size and steps made small: two scales, 128 and 181 px; XLA's own convolutions, which
    compile faster and equal the CPU mode's: tests/test_conv.py) on the real network: the style
    loss ends far below the recoloured start's, and the content loss below what a
    white-noise image scores."""
    config = StyleConfig(size=181, steps=15, log_every=5, conv="lax")
    assert config.sizes == (128, 181)
    result = stylize(SAMPLES / "content.jpg", SAMPLES / "style.jpg", config)
    first, last = result.history[0], result.history[-1]  # the start at 128 px, the end at 181 px
    assert last.style < 0.1 * first.style
    noise = stylize(SAMPLES / "content.jpg", SAMPLES / "style.jpg", config.replace(steps=1, init="noise", scales=()))
    assert last.content < 0.95 * noise.history[0].content


@pytest.mark.slow
def test_the_default_balance_at_two_sizes():
    """The defaults' beta is read against the pair at each size (balance "gap", content
    "relative", per_channel 4): the beta on J_style itself is larger at 64 px than at 128 px
    (the deep layers count less there, so the photo's own style distance is smaller), and
    at both sizes the run moves most of the way to the painting's statistics. Measured on
    the project's CPU, bundled samples, 30 steps at one size, average pooling: beta on
    J_style 293 at 64 px and 94.8 at 128 px; the end's content term 0.38 and 0.34 (of the
    photo's features), its style term 17% and 3.7% of the photo's (with max pooling: 1.0%
    and 0.20%; the average pools' style falls slower at these sizes)."""
    ends = {}
    for size in (64, 128):
        result = stylize(SAMPLES / "content.jpg", SAMPLES / "style.jpg",
                         StyleConfig(size=size, steps=30, log_every=10, scales=()))
        line = next(n for n in result.notes if n.startswith("balance: beta 20 on the style gap"))
        gap = float(line.split("J_style of the photo, ")[1].split(" ")[0])
        last = result.history[-1]
        ends[size] = (20 / gap, last.content, last.style / gap)
    assert ends[64][0] > 2 * ends[128][0]
    for size, (beta, content, style) in ends.items():
        assert 0.3 < content < 0.9 and style < 0.25, (size, ends)
    assert ends[128][2] < 0.06, ends


def test_a_progress_pictures_what_the_run_would_save(vgg16_weights):
    """Each callback's progress makes, only when asked, the picture the run would save if it
    stopped there: after the last step, the result's output (average, colour control)."""
    seen = []
    config = tiny(steps=3, average=0.5, colour="original", scales=(24, 32))
    result = stylize(CONTENT, STYLE, config, weights=vgg16_weights, callback=seen.append)
    assert [p.step for p in seen] == list(range(1, 7)) and all(len(p.metrics.loss) == 1 for p in seen)
    assert seen[2].picture().shape[:2] != seen[-1].picture().shape[:2]  # each scale at its size
    np.testing.assert_array_equal(seen[-1].picture(), result.output)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs-backtrack"])
def test_a_donated_state_gives_the_same_run(optimizer, tmp_path, vgg16_weights):
    """Where signals wait for a safe point (the command line), each call writes its state
    over the last one's buffers: the run is the same bit for bit, the caller's start stays
    valid, a progress's state is gone after its callback, and its held picture is not."""
    from nst_jax import interrupt

    config = tiny(optimizer=optimizer, learning_rate=None if optimizer != "adam" else 0.02, steps=4,
                  scales=(24, 32), average=0.5, log_every=2)
    plain = stylize(CONTENT, STYLE, config, weights=vgg16_weights)  # undonated, unless SIGINT is ignored
    outside = interrupt.only_at_safe_points()  # as it is where the runner ignores SIGINT (a background job)
    seen = []
    with interrupt.installed():
        assert interrupt.only_at_safe_points()
        donated = stylize(CONTENT, STYLE, config, weights=vgg16_weights, callback=seen.append,
                          checkpoint=tmp_path / "run.ckpt", checkpoint_every=3)
    assert interrupt.only_at_safe_points() == outside
    np.testing.assert_array_equal(donated.image, plain.image)
    np.testing.assert_array_equal(donated.output, plain.output)
    assert [r.total for r in donated.history] == [r.total for r in plain.history]
    assert seen[0].state.image.is_deleted()  # the next call reused its buffers
    assert not seen[-1].state.image.is_deleted()  # the run's last state: the result's
    np.testing.assert_array_equal(seen[-1].hold()(), donated.output)
    with pytest.raises(RuntimeError, match="deleted"):  # a picture is held during its callback
        seen[0].hold()


def test_a_held_picture_outlives_the_next_step(vgg16_weights):
    from nst_jax import interrupt

    held, pictures = [], []

    def callback(p):
        held.append(p.hold())  # during the callback, as the live view takes it
        pictures.append(p.picture())

    with interrupt.installed():
        stylize(CONTENT, STYLE, tiny(steps=3), weights=vgg16_weights, callback=callback)
    for hold, picture in zip(held, pictures):
        np.testing.assert_array_equal(hold(), picture)


def test_the_step_writes_its_state_over_the_last_one(vgg16_weights):
    """XLA's own account of the donating program: the state's buffers are its outputs'."""
    import jax

    from nst_jax.inputs import prepare
    from nst_jax.run import compile_chunk
    from nst_jax.step import init_state, make_optimizer, make_step

    config = tiny(optimizer="lbfgs-backtrack", learning_rate=None)
    run = prepare(CONTENT, STYLE, config, vgg16_weights)
    optimizer = make_optimizer(config)
    state = init_state(run.objective, optimizer, run.problem, run.start)
    step = make_step(run.objective, optimizer)
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
    kept = compile_chunk(step, 1, state, run.problem, {}).memory_analysis()
    reused = compile_chunk(step, 1, state, run.problem, {"donate_argnums": 0}).memory_analysis()
    assert kept.alias_size_in_bytes == 0
    assert reused.alias_size_in_bytes >= 0.95 * state_bytes, (reused.alias_size_in_bytes, state_bytes)


def test_a_checkpoint_the_disk_cannot_hold_is_one_error_and_no_file(tmp_path, vgg16_weights, monkeypatch):
    """safetensors reports a full disk as its own error, not an OSError: still one line, and
    nothing half-written left behind."""
    import safetensors.numpy
    from safetensors import SafetensorError

    def full(arrays, path, metadata=None):
        Path(path).write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(NstError, match=r"cannot write the checkpoint .*run\.ckpt: .*No space left on device"):
        stylize(CONTENT, STYLE, tiny(steps=2), weights=vgg16_weights, checkpoint=ckpt, checkpoint_every=1)
    assert list(tmp_path.iterdir()) == []
