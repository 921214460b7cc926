"""Memory estimates, the refusal of what cannot fit, and the chunk planner."""

from __future__ import annotations

import pytest

from nst_jax.errors import NstError
from nst_jax.memory import FIXED_BYTES, check_memory, estimate_bytes, plan_chunks
from nst_jax.vgg import activation_bytes


def test_estimate_by_hand():
    # vgg16 to relu1_1 at 4x2 px: conv1_1 and relu1_1, each 4*2*64 floats of 4 bytes.
    assert activation_bytes("vgg16", 4, 2, ("relu1_1",)) == 2 * 4 * 2 * 64 * 4
    per_image = 4 * 2 * 4 * 2 * 64 * 4 + 16 * 4 * 2 * 3 * 4
    assert estimate_bytes("vgg16", 4, 2, ("relu1_1",), batch=3) == 3 * per_image + FIXED_BYTES


def test_memory_estimate_refuses_what_cannot_fit():
    with pytest.raises(NstError, match=r"20000x20000 px needs about \d+\.\d GiB"):
        check_memory("vgg19", 20000, 20000, ("relu1_1", "relu5_1"))
    check_memory("vgg19", 64, 64, ("relu1_1", "relu5_1"))


def test_plan_chunks():
    gib = 2**30
    assert plan_chunks(8, 1, per_cell=gib, fixed=0, available=100 * gib) == 8
    assert plan_chunks(8, 1, per_cell=gib, fixed=gib, available=4 * gib) == 2
    assert plan_chunks(8, 4, per_cell=gib, fixed=0, available=2 * gib) == 4  # at least one per device
    assert plan_chunks(3, 4, per_cell=1, fixed=0, available=gib) == 4  # padded up to the devices
