"""Run checkpoints: the whole optimisation state in one safetensors file, no pickle.

A checkpoint holds every array of the step state (image, optimizer state, best image and
loss, evaluation count) under its pytree key path, the history so far, and JSON metadata:
the step index, the config, and the sha256 digest of the inputs and weights. Loading
rebuilds the state on the structure of a freshly initialised one, so a file made for
another optimizer, other inputs or another objective is refused with one error instead
of being half-used. Writes are atomic: an interrupted save leaves the old file intact.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np

from .atomic import atomic_path, created
from .config import StyleConfig
from .errors import NstError
from .step import StepState

FORMAT = "nst-jax-checkpoint"
VERSION = "1"


def _json_config(config: StyleConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def save_checkpoint(path: str | Path, state: StepState, step: int, history: dict[str, np.ndarray],
                    config: StyleConfig, digest: str) -> Path:
    """Write the run state after ``step`` completed steps to ``path`` atomically."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    path = Path(path)
    arrays = {f"state{jax.tree_util.keystr(k)}": np.asarray(v)
              for k, v in jax.tree_util.tree_flatten_with_path(state)[0]}
    arrays.update({f"history.{k}": np.ascontiguousarray(v) for k, v in history.items()})
    meta = {"format": FORMAT, "version": VERSION, "step": str(step), "digest": digest,
            "config": json.dumps(_json_config(config))}
    try:
        with created(path.parent), atomic_path(path) as tmp:
            save_file(arrays, tmp, metadata=meta)
    except (OSError, SafetensorError) as e:  # the latter: a full disk while it writes
        raise NstError(f"cannot write the checkpoint {path}: {getattr(e, 'strerror', None) or e}") from None
    return path


# Config fields added since this checkpoint version was first written, each with the value
# that reproduces what a checkpoint without it ran (a missing field reads as that value).
ADDED_FIELDS = {"detail": 0.0, "precondition": 0.0, "per_channel": 0.0, "balance": "fixed", "coarse_steps": None}


def load_checkpoint(path: str | Path, template: StepState, config: StyleConfig, digest: str,
                    terms: tuple[str, ...] = ()) -> tuple[StepState, int, dict[str, np.ndarray]]:
    """(state, completed steps, history) from ``path``, checked against this run.

    ``template`` is the state this run would start from (its structure, shapes and dtypes
    are what the file must hold); ``config`` and ``digest`` must match what the
    checkpoint was made with, apart from the fields a resumed run may change; ``terms``:
    the history's keys (none when no step was taken).
    """
    arrays, meta = _read(Path(path))
    _check(path, meta, config, digest)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    restored = []
    for key, like in leaves:
        name = f"state{jax.tree_util.keystr(key)}"
        value = arrays.get(name)
        like = np.asarray(like)
        if value is None or value.shape != like.shape or value.dtype != like.dtype:
            raise NstError(f"{path} does not hold this run's state ({name} is missing or "
                           f"has another shape): made for another size or optimizer?")
        restored.append(value)
    state = jax.tree_util.tree_unflatten(treedef, restored)
    history = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("history.")}
    if history and set(history) != set(terms):
        raise NstError(f"{path} is not an nst-jax checkpoint, or it is damaged")
    return state, int(meta["step"]), history


def check_checkpoint(path: str | Path, config: StyleConfig, digest: str) -> None:
    """Refuse ``path`` unless it was made with ``config`` (the fields a resumed run may not
    change) and inputs of ``digest``: what :func:`load_checkpoint` checks first, for a run
    to say before it starts."""
    _check(path, _read(Path(path))[1], config, digest)


def _check(path, meta: dict, config: StyleConfig, digest: str) -> None:
    saved = {**ADDED_FIELDS, **meta.get("config", {})}
    ours = {k: v for k, v in _json_config(config).items() if k in config.objective_fields()}
    changed = sorted(k for k, v in ours.items() if saved.get(k) != v)
    if changed:  # before the inputs: a new size changes their digest too, and this names it
        was = ", ".join(f"{k} ({saved.get(k)!r} there, {ours[k]!r} here)" for k in changed)
        raise NstError(f"{path} was made with a different {was}; "
                       f"a run resumes only with the same objective and optimizer")
    if meta.get("digest") != digest:
        raise NstError(f"{path} was made for other content/style images or other weights")


def checkpoint_step(path: str | Path) -> int:
    """How many steps the run in the checkpoint ``path`` had completed."""
    return int(_read(Path(path))[1]["step"])


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, metadata with the config parsed), or one error: the file is checked for
    its tag, version, config (an object), step (0 or more) and history (one row per step)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    if not path.exists():
        raise NstError(f"no such checkpoint: {path}")
    if not path.is_file():  # a FIFO would block forever
        raise NstError(f"{path} is not a regular file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
        arrays = load_file(str(path))
        if meta.get("format") != FORMAT:
            raise ValueError("not tagged")
        if meta.get("version") != VERSION:
            raise NstError(f"{path} is a version {meta.get('version')} checkpoint; "
                           f"this nst-jax reads version {VERSION}")
        meta["config"] = json.loads(meta["config"])
        step = int(meta["step"])
        rows = {v.shape for k, v in arrays.items() if k.startswith("history.")}
        if not isinstance(meta["config"], dict) or step < 0 or rows - {(step,)}:
            raise ValueError("inconsistent")
    except NstError:
        raise
    except Exception:  # whatever a damaged file provokes (float8 arrays, JSON nested too deep...)
        raise NstError(f"{path} is not an nst-jax checkpoint, or it is damaged") from None
    return arrays, meta
