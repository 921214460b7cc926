"""The ``nst-jax weights`` commands: list, inspect, convert and download VGG weights.

cli.py adds ``weights_app`` to its app."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import NstError
from .terminal import OneLineErrors, explain, fail, out

weights_app = typer.Typer(cls=OneLineErrors, help="List, inspect, convert and download VGG weights.",
                          no_args_is_help=True, rich_markup_mode=None)


@weights_app.command("list")
def weights_list() -> None:
    """Weights available: the embedded VGG16 and converted files in the weights dirs."""
    from .weights import list_available, weights_dirs

    try:
        entries = list_available()
    except NstError as e:
        raise fail(explain(e)) from None
    for e in entries:
        out.print(f"{e['name']:<28} {e['arch']:<6} {e['pixel_space']:<12} {e['source_format']:<12} "
                  f"{e['path']}", highlight=False, markup=False)
    out.print(f"(searched {', '.join(str(d) for d in weights_dirs())}; more: `nst-jax weights download "
              f"vgg19` or `nst-jax weights convert FILE`)", style="dim", highlight=False, markup=False)


@weights_app.command("convert")
def weights_convert(
    src: Annotated[Path, typer.Argument(help="A .pth, .h5, .mat, .ckpt or .safetensors file.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output .safetensors.")] = None,
    arch: Annotated[Optional[str], typer.Option(help="vgg16 or vgg19 (default: from the file).")] = None,
) -> None:
    """Convert a checkpoint (format sniffed from its content) to nst-jax safetensors."""
    from .weights import convert

    try:
        path = convert(src, output, arch)
    except NstError as e:
        raise fail(explain(e)) from None
    out.print(f"wrote {path}", highlight=False, markup=False)


@weights_app.command("info")
def weights_info(spec: Annotated[str, typer.Argument(
        help="A weights file, 'embedded', or a name from `nst-jax weights list`.")]) -> None:
    """Architecture, pixel space and provenance of weights."""
    from .weights import describe

    try:
        info = describe(spec)
    except NstError as e:
        raise fail(explain(e)) from None
    for k, v in info.items():
        out.print(f"{k:<14} {v}", highlight=False, markup=False)


@weights_app.command("download")
def weights_download(
    arch: Annotated[str, typer.Argument(help="vgg19 or vgg16.")] = "vgg19",
    dest: Annotated[Optional[Path], typer.Option(help="Directory (default ./weights).")] = None,
) -> None:
    """Download torchvision's VGG weights (sha256-checked) and convert them."""
    from .weights import TORCHVISION_URLS, download

    if arch not in TORCHVISION_URLS:
        raise fail(f"unknown architecture {arch!r}: vgg16 or vgg19")
    try:
        path = download(arch, dest)
    except NstError as e:
        raise fail(explain(e)) from None
    out.print(f"wrote {path}", highlight=False, markup=False)
