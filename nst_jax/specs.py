"""The text forms of config values, as the command line takes them, and the config they make.

Layer lists (``relu1_1:0.5,relu2_1``), number lists, scales, tiles, a sweep's rows of layer
sets and of blends; :func:`config_from_options` turns a dict of such options into the one
:class:`StyleConfig`, with the two rules that join options (``ratio``, ``init_image``).
Library users who take settings as text get the same parsing and the same errors.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from .config import PAPER_STYLE_LAYERS, WEIGHT, Colour, Init, StyleConfig
from .errors import NstError

# Options whose names differ from the config field they set.
FIELD_OF = {"lr": "learning_rate", "blend": "style_blend", "mask": "masks", "style_mask": "style_masks"}
# Options that set two fields: the layers and their weights.
LAYER_WEIGHTS = {"content_layers": "content_layer_weights", "style_layers": "style_layer_weights"}


def parse_layers(spec: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """``"relu1_1,relu2_1"`` (equal weights summing to 1), ``"relu1_1:0.5,relu2_1:0.5"``,
    or ``"paper"`` (the paper's five style layers, 0.2 each)."""
    if spec.strip() == "paper":
        return PAPER_STYLE_LAYERS, (0.2,) * 5
    names, weights = [], []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, w = item.partition(":")
        names.append(name.strip())
        try:
            weights.append(float(w) if w else None)
        except ValueError:
            raise NstError(f"bad layer weight in {item!r}: expected NAME or NAME:WEIGHT") from None
    if not names:
        raise NstError(f"no layers in {spec!r}")
    if any(w is None for w in weights):
        if not all(w is None for w in weights):
            raise NstError(f"give a weight for every layer or for none: {spec!r}")
        weights = [1.0 / len(names)] * len(names)
    return tuple(names), tuple(weights)


def parse_numbers(spec: str, what: str) -> tuple[float, ...]:
    """``"3,7"`` -> (3.0, 7.0); ``what`` names the option in the error."""
    try:
        values = tuple(float(v) for v in spec.split(",") if v.strip())
    except ValueError:
        raise NstError(f"{what} takes numbers separated by commas, not {spec!r}") from None
    if not values:
        raise NstError(f"{what} needs at least one number")
    return values


def parse_scales(spec: str, size: int) -> tuple[int, ...] | str:
    """``auto`` (the sqrt(2) ladder up to ``size``), ``none``, or sizes ``a,b,...``."""
    spec = spec.strip().lower()
    if spec in ("auto", "none", ""):
        return "auto" if spec == "auto" else ()
    values = parse_numbers(spec, "--scales")
    if not all(float(v).is_integer() for v in values):
        raise NstError(f"--scales takes whole pixel sizes, 'auto' or 'none', not {spec!r}")
    sizes = tuple(int(v) for v in values)
    return sizes if sizes[-1] == size else sizes + (size,)


def parse_tile(spec: str) -> int | str:
    """``auto``, ``none`` (0: never tile) or a tile side in pixels."""
    spec = str(spec).strip().lower()
    if spec in ("auto", "none", "0"):
        return 0 if spec != "auto" else "auto"
    if not spec.isdigit():
        raise NstError(f"--tile takes 'auto', 'none' or a size in pixels, not {spec!r}")
    return int(spec)


def config_from_options(options: dict, base: StyleConfig = StyleConfig()) -> StyleConfig:
    """``base`` with ``options`` applied: config fields (or their option names, e.g. ``lr``)
    with values in the text forms above, enums and paths. Two rules join options:
    ``ratio`` sets alpha = ratio x beta (not with ``content_weight``), and an
    ``init_image`` with the default ``init`` means init "image". A ``None`` keeps the base's value."""
    options = dict(options)
    ratio = options.pop("ratio", None)
    fields = {}
    for name, value in options.items():
        if name in LAYER_WEIGHTS:
            fields[name], fields[LAYER_WEIGHTS[name]] = parse_layers(value)
        elif name == "scales":
            fields[name] = parse_scales(value, options.get("size", base.size))
        elif name == "tile":
            fields[name] = parse_tile(value)
        elif name == "blend":
            fields["style_blend"] = parse_numbers(value, "--blend") if value else ()
        elif name in ("mask", "style_mask"):
            fields[FIELD_OF[name]] = tuple(map(str, value or ()))
        elif isinstance(value, (Enum, Path)):
            fields[FIELD_OF.get(name, name)] = str(value)
        elif value is not None:
            fields[FIELD_OF.get(name, name)] = value
    if ratio is not None:
        if "content_weight" in fields:
            raise NstError("give --content-weight or --ratio, not both")
        fields["content_weight"] = ratio * fields.get("style_weight", base.style_weight)
        if fields["content_weight"] not in WEIGHT:
            raise NstError(f"--ratio x --style-weight (alpha) must be {WEIGHT}, not {fields['content_weight']!r}")
    if fields.get("init_image") is not None and fields.get("init", base.init) == base.init:
        fields["init"] = Init.image.value  # a start image alone means: start from it
    if (fields.get("colour_match", base.colour_match) != base.colour_match
            and fields.get("colour", base.colour) != Colour.histogram):  # it would be ignored
        raise NstError("--colour-match picks how --colour histogram recolours the painting: give both")
    return base.replace(**fields)


def parse_blend_grid(spec: str, n_styles: int) -> tuple[list[tuple[float, ...]], list[str]]:
    """Rows of blends: ``"0,0.5,1"`` (two styles: t is the second's share, 1 - t the
    first's) or weight vectors ``"3,1,0;0,1,1"`` (one weight per style, normalised later)."""
    from .inputs import normalised_blend

    if n_styles < 2:
        raise NstError("--blend-grid needs two or more style images")
    if ";" not in spec and n_styles == 2:
        shares = parse_numbers(spec, "--blend-grid")
        if any(not 0.0 <= t <= 1.0 for t in shares):
            raise NstError(f"--blend-grid shares are fractions in [0, 1], not {spec!r}")
        return [(1.0 - t, t) for t in shares], [f"blend {t:g}" for t in shares]
    rows = [parse_numbers(part, "--blend-grid") for part in spec.split(";") if part.strip()]
    if not rows or any(len(row) != n_styles for row in rows):
        example = ";".join(",".join("1" if j == i else "0" for j in range(n_styles)) for i in range(2))
        raise NstError(f"with {n_styles} styles, --blend-grid takes one weight per style for each row, "
                       f"rows separated by ';' (e.g. {example})")
    blends = [normalised_blend(row, n_styles) for row in rows]
    return blends, ["blend " + "/".join(f"{w:.2g}" for w in b) for b in blends]


def parse_layer_sets(spec: str, layers: tuple[str, ...], weights: tuple[float, ...]):
    """Rows of a sweep: (union of layer names, one weight vector per row, row labels).

    ``""``: one row, ``layers`` with ``weights``; ``"paper"``: the first k of ``layers``
    with equal weights, k = 1..n (Fig. 9 of the article); else rows ``A[:w],B;C,...``.
    """
    from .sweeps import paper_layer_sets

    if not spec.strip():
        return layers, [weights], [",".join(layers)]
    if spec.strip() == "paper":
        return layers, paper_layer_sets(layers), [layers[0] if k == 1 else f"{layers[0]}..{layers[k - 1]}"
                                                  for k in range(1, len(layers) + 1)]
    rows = [parse_layers(part) for part in spec.split(";") if part.strip()]
    if not rows:
        raise NstError(f"--layers takes layer sets separated by ';', not {spec!r}")
    union = tuple(dict.fromkeys(n for names, _ in rows for n in names))
    sets = [tuple(dict(zip(names, ws)).get(n, 0.0) for n in union) for names, ws in rows]
    return union, sets, [",".join(names) for names, _ in rows]
