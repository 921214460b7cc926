"""What a command reads and writes (files.py)."""

from __future__ import annotations

import numpy as np
import pytest

from nst_jax.errors import NstError
from nst_jax.files import content_jobs
from nst_jax.image import save_image


def photos(folder, *names):
    folder.mkdir()
    for name in names:
        save_image(np.zeros((4, 4, 3), np.float32), folder / name)
    return folder


def test_a_folder_of_photos_maps_each_to_its_own_result(tmp_path):
    jobs = content_jobs(photos(tmp_path / "in", "b.jpg", "a.png"), tmp_path / "out")
    assert jobs == [(tmp_path / "in" / "a.png", tmp_path / "out" / "a.png"),
                    (tmp_path / "in" / "b.jpg", tmp_path / "out" / "b.png")]


def test_two_photos_that_would_share_a_result_are_refused(tmp_path):
    folder = photos(tmp_path / "in", "a.jpg", "a.png", "b.png")
    with pytest.raises(NstError, match=r"a\.jpg and .*a\.png would both be written to .*out/a\.png"):
        content_jobs(folder, tmp_path / "out")


def test_two_photos_whose_results_differ_only_in_case_are_refused(tmp_path):
    folder = photos(tmp_path / "in", "Cat.jpg", "b.png")
    (folder / "cat.png").write_bytes((folder / "b.png").read_bytes())
    with pytest.raises(NstError, match=r"Cat\.jpg and .*cat\.png would both be written to .*out/Cat\.png and "
                                       r".*out/cat\.png, one file on a disk that ignores case"):
        content_jobs(folder, tmp_path / "out")
    # the same letters composed or not (NFC, NFD) are one name there too; ß and ss are not
    folder = photos(tmp_path / "in2", "Stra\u00dfe.jpg", "Strasse.png", "caf\u00e9.jpg")
    (folder / "cafe\u0301.png").write_bytes((folder / "Strasse.png").read_bytes())
    with pytest.raises(NstError, match="one file on a disk that ignores case"):
        content_jobs(folder, tmp_path / "out2")
    (folder / "cafe\u0301.png").unlink()
    assert len(content_jobs(folder, tmp_path / "out2")) == 3


def test_an_existing_output_folder_may_have_a_dot_in_its_name(tmp_path):
    folder = photos(tmp_path / "in", "a.png")
    (tmp_path / "res.v2").mkdir()
    assert content_jobs(folder, tmp_path / "res.v2") == [(folder / "a.png", tmp_path / "res.v2" / "a.png")]
    with pytest.raises(NstError, match="give -o a folder for the results, not .*res.png"):
        content_jobs(folder, tmp_path / "res.png")
