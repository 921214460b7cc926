"""Run records: what they hold, how they are written and refused, and their plot."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from nst_jax import record as rec
from nst_jax.errors import NstError
from nst_jax.run import stylize
from nst_jax.sweeps import sweep

from conftest import CONTENT, STYLE, tiny


def strict(path: Path) -> dict:
    """Parse as strict JSON (NaN and infinity are not JSON)."""
    def refuse(constant):
        raise ValueError(f"{constant} in {path}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def tiny_run(vgg16_weights):
    """A real four-step run with the terms logged every other step, and its call times."""
    times = rec.CallTimes()
    config = tiny(steps=4, log_every=2, scales=(24, 32))
    plans = []
    result = stylize(CONTENT, STYLE, config, weights=vgg16_weights, callback=times, on_plan=plans.extend)
    return result, times, tuple(plans)


def test_a_run_record_holds_the_run(tiny_run, tmp_path):
    result, times, plans = tiny_run
    record = rec.run_record(result, command=["nst-jax", "stylize", "a.png"], inputs={"content": "a.png"},
                            output=tmp_path / "o.png", times=times, plans=plans)
    path = rec.write_record(record, tmp_path / "o.json")
    back = strict(path)
    assert back == rec.read_record(path)
    assert back["kind"] == "stylize" and back["command"] == ["nst-jax", "stylize", "a.png"]
    assert back["config"]["size"] == 32 and back["config"]["scales"] == [24, 32]
    assert back["scales"] == [{"size": 24, "first_step": 0, "end_step": 4}, {"size": 32, "first_step": 4, "end_step": 8}]
    assert back["stopped"] == "done" and back["steps"] == 8 and back["seconds"] > 0
    assert 0 < back["compile_seconds"] < back["seconds"]
    assert back["balance"] == {"content_weight": 1.0, "style_weight": result.config.style_weight, "tv_weight": 0.0,
                               "ratio": 1.0 / result.config.style_weight}
    assert back["versions"]["jax"] and back["versions"]["nst-jax"] and back["machine"]["cpus"] >= 1
    assert back["devices"]["platform"] == "cpu"
    assert len(back["memory"]["plans"]) == 2 and back["memory"]["plan"].startswith("28x32, vgg16")
    history = back["history"]
    assert history["step"] == list(range(8))
    assert history["loss"] == pytest.approx([r.total for r in result.history])
    assert history["content"] == pytest.approx([r.content for r in result.history])
    assert back["calls"]["step"] == list(range(1, 9))
    assert back["calls"]["seconds"] == sorted(back["calls"]["seconds"])


def test_nan_and_infinity_are_null(tiny_run, tmp_path):
    """Terms not logged at a step are NaN in the history, and a run that blew up has NaN
    and infinite losses: strict JSON has neither."""
    result, _, _ = tiny_run
    trace = {k: v.copy() for k, v in result.trace.items()}
    trace["content"][1::2] = math.nan
    trace["loss"][-1] = math.inf
    broken = dataclasses.replace(result, trace=trace, best_losses=np.array([math.nan]), stopped="nan")
    rows = broken.history
    back = strict(rec.write_record(rec.run_record(broken, command=[], inputs={}, output="o.png"), tmp_path / "r.json"))
    assert [v is None for v in back["history"]["content"]] == [bool(r.step % 2) for r in rows]
    assert back["history"]["loss"][-1] is None and back["best_loss"] is None and back["stopped"] == "nan"
    assert back["calls"] == {"step": [], "seconds": []} and back["memory"]["plans"] == []


def test_a_sweep_record_has_a_column_per_cell(vgg16_weights, tmp_path):
    times = rec.CallTimes()
    result = sweep(CONTENT, STYLE, tiny(steps=3), style_weights=[1.0, 1e3], weights=vgg16_weights,
                   max_chunk=1, callback=lambda chunk, p: times(p))
    path = rec.write_record(rec.sweep_record(result, command=["nst-jax", "sweep"], inputs={}, output=tmp_path / "g",
                                             times=times), tmp_path / "g.json")
    back = strict(path)
    assert back["kind"] == "sweep" and back["grid"] == {"rows": 1, "cols": 2} and len(back["cells"]) == 2
    assert back["memory"]["chunks"] == 2
    assert np.array(back["history"]["loss"]).shape == (3, 2)
    np.testing.assert_allclose(np.array(back["history"]["loss"]), result.trace["loss"])
    assert back["calls"]["step"] == [1, 2, 3, 1, 2, 3]  # each chunk runs every step


def test_records_go_beside_the_output(tmp_path):
    assert rec.record_path(tmp_path / "out.png") == tmp_path / "out.json"
    assert rec.record_path(tmp_path / "out.v2.png") == tmp_path / "out.v2.json"
    assert rec.record_path(Path("out.png")).is_absolute()
    assert rec.record_path(tmp_path / "grid.v2", folder=True) == tmp_path / "grid.v2" / "record.json"
    assert rec.record_path(Path("."), folder=True) == Path.cwd() / "record.json"


def test_a_record_that_would_replace_an_input_or_output_is_refused(tmp_path, monkeypatch):
    content = tmp_path / "content.png"
    content.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NstError, match="it is an input of this run"):
        rec.check_record_path(Path("sub/../content.png"), [tmp_path / "o.png"], [content])
    with pytest.raises(NstError, match="it is an output of this run"):
        rec.check_record_path(tmp_path / "o.png", [Path("o.png")], [content])  # not written yet
    with pytest.raises(NstError, match="it is a directory"):
        rec.check_record_path(tmp_path, [], [])
    with pytest.raises(NstError, match="cannot write into /proc"):
        rec.check_record_path(Path("/proc/o.json"), [], [])
    with pytest.raises(NstError, match="its name is too long"):
        rec.check_record_path(tmp_path / ("r" * 250 + ".json"), [], [])
    with pytest.raises(NstError, match="its name is too long"):  # too long even to look up
        rec.check_record_path(tmp_path / ("r" * 300 + ".json"), [], [])
    assert rec.check_record_path(tmp_path / "new" / "o.json", [tmp_path / "o.png"], [content])


def test_a_record_replaces_only_an_earlier_record(tmp_path):
    """The record goes beside the picture as NAME.json: a file of that name the user made is
    kept and the run refused; an earlier run's record is replaced."""
    mine = tmp_path / "data.json"
    mine.write_text('{"my": "important config"}')
    with pytest.raises(NstError, match="data.json: it exists and is not a run record"):
        rec.check_record_path(mine, [tmp_path / "data.png"], [])
    assert mine.read_text() == '{"my": "important config"}'
    earlier = tmp_path / "out.json"
    earlier.write_text(json.dumps({"format": rec.FORMAT, "version": 0}))
    assert rec.check_record_path(earlier, [tmp_path / "out.png"], []) == earlier


def test_a_default_record_keeps_another_output_s_record(tmp_path):
    """out.png and out.jpg would share out.json: the record of a picture still there is
    kept; one whose picture is gone, or the same picture's, is replaced."""
    record, png, jpg = tmp_path / "out.json", tmp_path / "out.png", tmp_path / "out.jpg"
    record.write_text(json.dumps({"format": rec.FORMAT, "version": 1, "output": "elsewhere/out.png"}))
    png.write_bytes(b"x")
    with pytest.raises(NstError, match=f"out.json: it is the record of {png}, which is still there"):
        rec.check_record_path(record, [jpg], [], beside=jpg)
    assert rec.check_record_path(record, [jpg], []) == record  # --record out.json: as asked
    assert rec.check_record_path(record, [png], [], beside=png) == record  # the same picture again
    png.unlink()
    assert rec.check_record_path(record, [jpg], [], beside=jpg) == record


def test_a_record_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "o.json"
    path.write_text("old")

    def fail(self, *args, **kw):  # the disk fills half way through
        with open(self, "w") as f:
            f.write("{half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", fail)
    with pytest.raises(NstError, match="cannot write the record .*No space left"):
        rec.write_record({"format": rec.FORMAT}, path)
    monkeypatch.undo()
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["o.json"]


def test_what_is_not_a_record_is_one_error(tmp_path):
    cases = {"missing.json": None, "text.json": "hello", "list.json": "[1, 2]",
             "other.json": json.dumps({"format": "something else", "history": {}}),
             "no-history.json": json.dumps({"format": rec.FORMAT})}
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(NstError) as e:
            rec.read_record(tmp_path / name)
        assert str(tmp_path / name) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(NstError, match="not a regular file"):
        rec.read_record(tmp_path)


def test_the_plot_draws_every_term(tiny_run, tmp_path):
    result, times, plans = tiny_run
    record = json.loads(json.dumps(rec.run_record(result, command=[], inputs={}, output="o.png", times=times,
                                                  plans=plans)))
    png = rec.plot_record(record, tmp_path / "deeper" / "losses.png")
    from PIL import Image

    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.size[0] > 4 * picture.size[1]  # total, content, style, tv
    record["history"]["tv"] = [0.0] * len(record["history"]["tv"])
    svg = rec.plot_record(record, tmp_path / "losses.svg").read_text()
    assert svg.count("<g id=\"axes_") == 3  # no positive tv: no panel on a log axis
    with pytest.raises(NstError, match="unknown plot format '.xyz'"):
        rec.plot_record(record, tmp_path / "losses.xyz")
    record["history"]["loss"] = [None] * len(record["history"]["loss"])
    record["history"]["content"] = record["history"]["style"] = record["history"]["loss"]
    with pytest.raises(NstError, match="no positive losses"):
        rec.plot_record(record, tmp_path / "empty.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deeper", "losses.svg"]


def test_the_plot_without_matplotlib_says_what_to_install(tiny_run, tmp_path, monkeypatch):
    result, times, plans = tiny_run
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(NstError, match=r'pip install "nst-jax\[plot\]"'):
        rec.plot_record(rec.run_record(result, command=[], inputs={}, output="o.png"), tmp_path / "l.png")
