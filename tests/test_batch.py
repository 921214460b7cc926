"""Photos as one batch: grouped by shape, chunked, each result what its own run gives."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CONTENT, STYLE, tiny
from nst_jax.batch import shape_groups, stylize_many
from nst_jax.run import stylize

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
