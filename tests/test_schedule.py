"""Coarse-to-fine: the ladder, resampling that keeps means, carrying Adam's moments,
iterate averaging by hand, and whole multi-scale runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CONTENT, STYLE, tiny
from nst_jax.config import ConfigError, StyleConfig
from nst_jax.inputs import prepare
from nst_jax.run import scale_of, scale_span, stylize
from nst_jax.config import scale_ladder
from nst_jax.schedule import carry_state, next_start, resample
from nst_jax.step import averaged, init_state, make_step, optimizer_named
from nst_jax.sweeps import sweep


def test_scale_ladder():
    assert scale_ladder(512) == (128, 181, 256, 362, 512)
    assert scale_ladder(1024) == (128, 181, 256, 362, 512, 724, 1024)
    assert scale_ladder(300) == (150, 212, 300)
    assert scale_ladder(100) == (100,)


def test_auto_scales_follow_the_size():
    from nst_jax.errors import ConfigError

    assert StyleConfig().sizes == (128, 181, 256, 362, 512)
    assert StyleConfig(size=256).sizes == (128, 181, 256)
    assert StyleConfig(scales=()).sizes == (512,) and StyleConfig(size=100).sizes == (100,)
    assert StyleConfig(size=300, scales=[150, 300]).sizes == (150, 300)
    with pytest.raises(ConfigError, match="must rise strictly to the output size 300"):
        StyleConfig(size=300, scales=(300, 150))
    with pytest.raises(ConfigError, match="'auto' or sizes"):
        StyleConfig(scales="sometimes")


def test_resampling_keeps_every_channels_mean_and_sign():
    rng = np.random.default_rng(0)
    signed = jnp.asarray(rng.normal(size=(2, 9, 7, 3)), jnp.float32)  # a batch of two
    positive = jnp.asarray(rng.uniform(size=(9, 7, 3)) ** 4, jnp.float32)
    for x in (signed, positive):
        y = resample(x, 13, 10)
        assert y.shape == x.shape[:-3] + (13, 10, 3)
        np.testing.assert_allclose(y.mean(axis=(-3, -2)), x.mean(axis=(-3, -2)), atol=1e-6)
    assert float(resample(positive, 13, 10).min()) >= 0.0


def test_iterate_average_by_hand(vgg16_weights):
    config = tiny(average=0.5)
    run = prepare(CONTENT, STYLE, config, vgg16_weights)
    opt = optimizer_named("adam")
    state = init_state(run.objective, opt, run.problem, run.start)
    step = jax.jit(make_step(run.objective, opt, 0.5))
    images = []
    for _ in range(3):
        state, _ = step(state, run.problem, False)
        images.append(np.asarray(state.image, np.float64))
    # a_3 = 0.5 (0.5 (0.5 x1) + 0.5 x2) + 0.5 x3 = x1/8 + x2/4 + x3/2; w_3 = 1 - 0.5^3 = 7/8
    want = (images[0] / 8 + images[1] / 4 + images[2] / 2) / (7 / 8)
    assert float(state.average_weight) == pytest.approx(7 / 8)
    np.testing.assert_allclose(averaged(state), want, atol=1e-6)
    fresh = init_state(run.objective, opt, run.problem, run.start)
    np.testing.assert_array_equal(averaged(fresh), fresh.image)  # nothing averaged yet


def test_carrying_adam_to_the_next_scale_resamples_its_moments(vgg16_weights):
    config = tiny()
    small = prepare(CONTENT, STYLE, config.replace(size=16), vgg16_weights)
    big = prepare(CONTENT, STYLE, config, vgg16_weights)
    opt = optimizer_named("adam")
    state = init_state(small.objective, opt, small.problem, small.start)
    for _ in range(3):
        state, _ = jax.jit(make_step(small.objective, opt))(state, small.problem, False)
    h, w = big.content.shape[:2]
    start = next_start(state, big.start, detail=0.5)
    carried = carry_state(state, init_state(big.objective, opt, big.problem, start), opt)
    mu, nu = carried.opt_state[0].mu, carried.opt_state[0].nu
    assert mu.shape == nu.shape == (h, w, 3) and int(carried.opt_state[0].count) == 3
    np.testing.assert_allclose(mu.mean(axis=(0, 1)), state.opt_state[0].mu.mean(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(nu.mean(axis=(0, 1)), state.opt_state[0].nu.mean(axis=(0, 1)), rtol=1e-5)
    assert int(carried.evals) == int(state.evals) and np.isinf(float(carried.best_loss))
    assert float(start.min()) >= 0 and float(start.max()) <= 1


def test_the_next_start_gets_the_band_the_coarse_scale_could_not_hold(vgg16_weights):
    """next = up(coarse) + detail (start - up(down(start))): a coarse result that never left
    its start comes back as the full-size start; the band adds no colour (zero mean per
    channel); detail 0 is the plain upsample."""
    rng = np.random.default_rng(5)
    start = jnp.asarray(0.25 + 0.5 * rng.uniform(size=(20, 14, 3)), jnp.float32)  # no clipping below
    run = prepare(CONTENT, STYLE, tiny(size=10), vgg16_weights)
    opt = optimizer_named("adam")
    still = init_state(run.objective, opt, run.problem, resample(start, 10, 7))
    np.testing.assert_allclose(next_start(still, start, 1.0), start, atol=1e-6)
    moved = init_state(run.objective, opt, run.problem, jnp.asarray(0.25 + 0.5 * rng.uniform(size=(10, 7, 3)),
                                                                    jnp.float32))
    plain = next_start(moved, start, 0.0)
    np.testing.assert_allclose(plain, resample(moved.image, 20, 14), atol=1e-6)  # one fused program: rounding
    half = next_start(moved, start, 0.5)
    band = start - resample(resample(start, 10, 7), 20, 14)
    np.testing.assert_allclose(half, plain + 0.5 * band, atol=1e-6)
    np.testing.assert_allclose(half.mean(axis=(0, 1)), plain.mean(axis=(0, 1)), atol=1e-6)
    assert float(jnp.abs(band).max()) > 0.05  # the band is not trivially zero


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
@pytest.mark.slow
def test_a_multi_scale_run(optimizer, vgg16_weights):
    config = tiny(scales=(16, 23, 32), steps=3, optimizer=optimizer, average=0.9)
    progress = []
    result = stylize(CONTENT, STYLE, config, weights=vgg16_weights,
                     callback=lambda p: progress.append((p.step, p.total)))
    assert result.steps == 9 and [r.step for r in result.history] == list(range(9))
    assert result.output.shape == CONTENT.shape and result.last_scale_start == 6
    assert result.average_image is not None and result.improved
    assert progress[-1] == (9, 9) and [s for s, _ in progress] == list(range(1, 10))


def test_coarse_steps_count_at_every_scale_but_the_last():
    config = StyleConfig(size=512, steps=150, coarse_steps=50)
    assert config.sizes == (128, 181, 256, 362, 512)
    assert config.scale_steps == (50, 50, 50, 50, 150) and config.total_steps == 350
    assert config.scale_ends == (50, 100, 150, 200, 350)
    assert [scale_span(config, i) for i in range(5)] == [(0, 50), (50, 100), (100, 150), (150, 200), (200, 350)]
    # the scale a state is at after so many steps: a scale's last step leaves it there
    assert [scale_of(config, d) for d in (0, 1, 50, 51, 200, 201, 350, 999)] == [0, 0, 0, 1, 3, 4, 4, 4]
    assert StyleConfig(size=512, steps=150).scale_steps == (150,) * 5  # None: steps everywhere
    assert StyleConfig(size=512, steps=150, coarse_steps=50, scales=()).scale_steps == (150,)
    skipped = StyleConfig(size=256, steps=7, coarse_steps=0)  # the coarse scales take no step
    assert skipped.scale_steps == (0, 0, 7) and scale_of(skipped, 1) == 2 and scale_span(skipped, 2) == (0, 7)
    with pytest.raises(ConfigError, match="coarse_steps"):
        StyleConfig(coarse_steps=-1)
    assert "coarse_steps" in config.objective_fields()  # binds a coarse-to-fine resume
    assert "coarse_steps" not in config.replace(scales=()).objective_fields()


@pytest.mark.slow
def test_a_run_takes_its_coarse_steps_then_its_steps(vgg16_weights):
    config = tiny(scales=(16, 23, 32), steps=3, coarse_steps=2)
    progress = []
    result = stylize(CONTENT, STYLE, config, weights=vgg16_weights,
                     callback=lambda p: progress.append((p.step, p.total)))
    assert result.steps == 7 and result.last_scale_start == 4 and len(result.history) == 7
    assert progress == [(s, 7) for s in range(1, 8)]
    assert result.output.shape == CONTENT.shape
    # the coarse scales ran exactly as a run of 2 steps at every scale does
    same = stylize(CONTENT, STYLE, tiny(scales=(16, 23, 32), steps=2), weights=vgg16_weights)
    np.testing.assert_array_equal([r.total for r in result.history[:4]], [r.total for r in same.history[:4]])


@pytest.mark.parametrize("coarse_steps", [None, 2])
def test_multi_scale_resume_across_a_scale_boundary(coarse_steps, tmp_path, vgg16_weights):
    config = tiny(scales=(16, 32), steps=3, average=0.5, coarse_steps=coarse_steps)
    whole = stylize(CONTENT, STYLE, config, weights=vgg16_weights)
    ckpt = tmp_path / "run.ckpt"
    end = config.scale_steps[0]
    stop = lambda p: p.step == end  # noqa: E731  (the end of the first scale)
    first = stylize(CONTENT, STYLE, config, weights=vgg16_weights, callback=stop, checkpoint=ckpt,
                    checkpoint_every=end)
    assert first.stopped == "callback" and first.image.shape[:2] != CONTENT.shape[:2]
    rest = stylize(CONTENT, STYLE, config, weights=vgg16_weights, resume=ckpt)
    np.testing.assert_array_equal(rest.output, whole.output)


@pytest.mark.parametrize("detail", [0.0, 1.0])
@pytest.mark.slow
def test_a_multi_scale_sweep_matches_its_stylize(detail, vgg16_weights):
    config = tiny(scales=(16, 32), steps=2, average=0.5, detail=detail)
    grid = sweep(CONTENT, STYLE, config, [1e2, 1e4], weights=vgg16_weights)
    for b, beta in enumerate([1e2, 1e4]):
        one = stylize(CONTENT, STYLE, config.replace(style_weight=beta), weights=vgg16_weights)
        np.testing.assert_allclose(grid.outputs[b], one.output, atol=1e-5)
        np.testing.assert_allclose(grid.trace["loss"][:, b], [r.total for r in one.history], rtol=1e-5)


def test_a_run_starts_each_scale_with_the_configs_detail(vgg16_weights):
    """The second scale's first loss is the objective at next_start(first scale's end,
    its start image, config.detail): the driver passes the config's detail through."""
    config = tiny(scales=(16, 32), steps=2, init="content")
    first = stylize(CONTENT, STYLE, config.replace(size=16, scales=()), weights=vgg16_weights)
    small, big = (prepare(CONTENT, STYLE, config, vgg16_weights, size=size) for size in (16, 32))
    opt = optimizer_named(config.optimizer)
    end = init_state(small.objective, opt, small.problem, jnp.asarray(first.image))
    losses = {}
    for detail in (0.0, 1.0):
        run = stylize(CONTENT, STYLE, config.replace(detail=detail), weights=vgg16_weights)
        want = big.objective.value(big.problem, next_start(end, big.start, detail))
        assert run.history[2].total == pytest.approx(float(want), rel=1e-5)
        losses[detail] = run.history[2].total
    assert losses[0.0] != pytest.approx(losses[1.0], rel=1e-3)


def test_mean_content_norm_is_size_invariant(vgg16_weights):
    """An image and its 2x upsample (and the target upsampled likewise): with
    content_norm="mean" the terms agree up to how the network sees finer pixels. Measured
    (random weights, smooth random images): content x1.075, style x1.024, TV x0.92;
    with the paper's sum the content term grows x4.30."""
    rng = np.random.default_rng(3)
    small = np.asarray(jax.image.resize(rng.uniform(size=(8, 8, 3)), (32, 32, 3), "linear"), np.float32)
    big = np.asarray(jax.image.resize(small, (64, 64, 3), "linear"), np.float32)
    target = np.asarray(jax.image.resize(rng.uniform(size=(8, 8, 3)), (32, 32, 3), "linear"), np.float32)
    terms = {}
    for norm in ("sum", "mean"):
        for name, image, size in (("small", small, 32), ("big", big, 64)):
            config = tiny(size=size, content_norm=norm, tv_weight=1.0)
            target_at = np.asarray(jax.image.resize(target, (size, size, 3), "linear"), np.float32)
            run = prepare(target_at, target_at, config, vgg16_weights)
            terms[norm, name] = run.objective(run.problem, jnp.asarray(image))[1]
    ratio = lambda norm, k: float(getattr(terms[norm, "big"], k) / getattr(terms[norm, "small"], k))  # noqa: E731
    assert ratio("mean", "content") == pytest.approx(1.0, abs=0.1)
    assert ratio("mean", "style") == pytest.approx(1.0, abs=0.05)
    assert ratio("mean", "tv") == pytest.approx(1.0, abs=0.1)
    assert ratio("sum", "content") == pytest.approx(4.0, rel=0.1)
