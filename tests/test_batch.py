"""Photos as one batch: grouped by shape, chunked, each result what its own run gives."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CONTENT, STYLE, tiny
from nst_jax import run
from nst_jax.batch import shape_groups, stylize_many
from nst_jax.run import stylize
from nst_jax.sweeps import sweep

RNG = np.random.default_rng(11)
PHOTOS = [CONTENT, RNG.uniform(size=(20, 40, 3)).astype(np.float32), RNG.uniform(size=(32, 28, 3)).astype(np.float32),
          RNG.uniform(size=(64, 56, 3)).astype(np.float32)]  # the last: CONTENT's shape at every size


def test_photos_are_grouped_by_their_shape_at_every_size():
    assert shape_groups(PHOTOS, (32,)) == [[0, 2, 3], [1]]
    # 36x31 is 32x28 at 32 px, but 20x17 against CONTENT's 20x18 at 20 px
    odd = RNG.uniform(size=(36, 31, 3)).astype(np.float32)
    assert shape_groups([CONTENT, odd], (32,)) == [[0, 1]]
    assert shape_groups([CONTENT, odd], (20, 32)) == [[0], [1]]


@pytest.mark.slow
def test_each_photo_gets_what_its_own_run_gives(vgg16_weights):
    config = tiny(steps=3)
    calls = []
    results = stylize_many(PHOTOS, STYLE, config, weights=vgg16_weights, max_chunk=2,
                           callback=lambda group, chunk, p: calls.append((group, chunk, p.step, len(p.loss))))
    # group 0 (3 photos) in chunks of 2 and 1 (its padding cell left out), then group 1
    assert calls == [(0, 0, s, 2) for s in (1, 2, 3)] + [(0, 1, s, 1) for s in (1, 2, 3)] + [
        (1, 0, s, 1) for s in (1, 2, 3)]
    for photo, result in zip(PHOTOS, results):
        alone = stylize(photo, STYLE, config, weights=vgg16_weights)
        assert result.output.shape == alone.output.shape
        np.testing.assert_allclose(result.output, alone.output, atol=1e-5)
        np.testing.assert_allclose([r.total for r in result.history], [r.total for r in alone.history], rtol=1e-5)
        assert (result.steps, result.function_evals, result.stopped) == (alone.steps, alone.function_evals, "done")
        assert result.improved and result.seconds > 0


def test_an_interrupted_padded_chunk_leaves_every_photo_its_own_scale(vgg16_weights):
    """Three photos of one shape in chunks of two, two scales: Ctrl-C in the second (padded)
    chunk's first scale. The first chunk's photos end at 32 px, the third at 24 px, each
    with its own content colours (the padding cell must not replace the first photo's)."""
    config = tiny(steps=2, scales=(24, 32), colour="original")

    def stop(group, chunk, progress):
        if chunk == 1:
            raise KeyboardInterrupt

    results = stylize_many([PHOTOS[0], PHOTOS[2], PHOTOS[3]], STYLE, config, weights=vgg16_weights, max_chunk=2,
                           callback=stop)
    assert [r.stopped for r in results] == ["done", "done", "interrupted"]
    assert [r.output.shape[:2] for r in results] == [(32, 28), (32, 28), (24, 21)]
    assert results[2].steps == 1 and np.isfinite(results[2].output).all()


def test_a_photo_that_blows_up_goes_on_from_its_best_image(vgg16_weights, monkeypatch):
    """One photo's loss turns NaN at the end of the first scale while the other's does not:
    the next scale starts it from its best image, it is reported "nan", and its picture
    is finite; the other photo is untouched by it."""
    config = tiny(steps=3, scales=(24, 32))
    real = run.drive

    def drive(*args, **kw):
        out = real(*args, **kw)
        if kw["steps"] == config.steps:  # the first scale's end: photo 1 blows up, Adam's moments too
            s = out.state
            out.state = s._replace(image=s.image.at[1].set(jnp.nan), average=s.average.at[1].set(jnp.nan),
                                   opt_state=jax.tree.map(lambda x: x.at[1].set(jnp.nan) if x.ndim == 4 else x,
                                                          s.opt_state))
            out.trace.arrays["loss"][-1, 1] = np.nan
        return out

    monkeypatch.setattr(run, "drive", drive)
    together = stylize_many([PHOTOS[0], PHOTOS[2]], STYLE, config, weights=vgg16_weights)
    monkeypatch.setattr(run, "drive", real)
    alone = stylize_many([PHOTOS[0]], STYLE, config, weights=vgg16_weights)[0]
    assert [r.stopped for r in together] == ["done", "nan"]
    assert np.isfinite(together[1].output).all() and np.isfinite(together[1].best_loss)
    assert np.isfinite([r.total for r in together[1].history][config.steps:]).all()  # the next scale went on
    # the same run up to the rounding of a batch of two against one (1e-4 seen here)
    np.testing.assert_allclose(together[0].output, alone.output, atol=1e-3)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs-backtrack"])
def test_a_batch_of_one_is_stylize_bit_for_bit(vgg16_weights, optimizer):
    """A photo alone in its shape and a sweep of one cell run the picture's own programs:
    exactly stylize's result, coarse to fine (a vmapped batch of one rounds differently)."""
    config = tiny(steps=3, scales=(24, 32), optimizer=optimizer)
    alone = stylize(PHOTOS[2], STYLE, config, weights=vgg16_weights)
    photo = stylize_many([PHOTOS[2]], STYLE, config, weights=vgg16_weights)[0]
    cell = sweep(PHOTOS[2], STYLE, config, style_weights=[config.style_weight], weights=vgg16_weights)
    assert np.array_equal(photo.output, alone.output) and np.array_equal(cell.outputs[0], alone.output)
    totals = [r.total for r in alone.history]
    assert [r.total for r in photo.history] == totals and list(cell.trace["loss"][:, 0]) == totals
