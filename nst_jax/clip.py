"""Video files and frame folders <-> float RGB frames, one frame in memory at a time.

Reading and writing go through PyAV, whose wheels bundle FFmpeg with its codecs (H.264,
VP9, GIF and the common audio codecs): nothing is downloaded or looked up at run time.
A clip is probed once (:func:`open_clip`: frame count, rate, size, audio) and its frames
are then streamed (:func:`read_frames`), so a long clip needs the memory of one frame.
Written videos appear whole or not at all (a temp file renamed when complete); the input's
audio is copied, without re-encoding, for the part of the clip that was stylized.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from .atomic import atomic_path, created
from .errors import NstError, VideoError
from .image import load_image, to_uint8

# Output container by extension: (FFmpeg's format name, video codec, codec options); GIF is
# written by Pillow, whose palettes beat FFmpeg's fixed 8-bit one.
CONTAINERS = {".mp4": ("mp4", "libx264", {"crf": "18"}), ".mov": ("mov", "libx264", {"crf": "18"}),
              ".mkv": ("matroska", "libx264", {"crf": "18"}),
              ".webm": ("webm", "libvpx-vp9", {"crf": "30", "b": "0"}), ".gif": ("gif", None, {})}
VIDEO_EXTENSIONS = tuple(CONTAINERS) + (".avi", ".m4v")  # readable ones
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")  # frames of a folder
DEFAULT_FPS = Fraction(25)  # a folder's rate unless given


def _av():
    try:
        import av
    except ImportError:
        raise NstError("video needs PyAV: pip install 'nst-jax[video]'") from None
    return av


@dataclass(frozen=True)
class Clip:
    """What a clip holds: its frames are read by :func:`read_frames`."""

    path: Path
    frames: int  # how many
    fps: Fraction  # frames per second
    height: int
    width: int
    audio: bool  # the file has an audio stream
    files: tuple[Path, ...] = ()  # a folder's frames, in order (empty for a video file)

    def seconds(self, index: int) -> Fraction:
        return Fraction(index) / self.fps


def open_clip(path: str | Path, fps: Fraction | None = None) -> Clip:
    """Probe a video file or a folder of numbered frames (sorted by name; all of one size).
    ``fps``: a folder's frame rate (default 25); a video's own rate is kept. One error
    for anything that is not a readable clip with at least one frame."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"no such file or folder: {path}")
    if path.is_dir():
        return _open_folder(path, fps or DEFAULT_FPS)
    if not path.is_file():  # a FIFO would block forever
        raise VideoError(f"{path} is not a regular file")
    av = _av()
    no_frames = VideoError(f"{path} has no video frames")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:  # FFmpeg drops a stream that never got a frame
                raise no_frames
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            frames = stream.frames or sum(1 for p in container.demux(stream) if p.size)
            height, width = stream.codec_context.height, stream.codec_context.width
            audio = bool(container.streams.audio)
    except NstError:
        raise
    except av.error.EOFError:  # a container whose header promises streams and holds nothing
        raise no_frames from None
    except Exception as e:  # av.FFmpegError and whatever a damaged file provokes
        raise VideoError(f"{path} is not a video FFmpeg can read ({type(e).__name__})") from None
    if frames == 0 or not height or not width:
        raise no_frames
    return Clip(path, frames, Fraction(rate) if rate else DEFAULT_FPS, height, width, audio)


def _open_folder(path: Path, fps: Fraction) -> Clip:
    files = tuple(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS
                         and not p.name.startswith(".")))
    if not files:
        raise VideoError(f"{path} holds no frames ({', '.join(FRAME_EXTENSIONS)})")
    sizes = {}
    for f in files:
        try:
            with warnings.catch_warnings(), Image.open(f) as img:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                sizes.setdefault(img.size, f)
        except Exception:
            raise VideoError(f"{f} is not an image Pillow can read") from None
        if len(sizes) > 1:
            (a, fa), (b, fb) = list(sizes.items())[:2]
            raise VideoError(f"the frames in {path} differ in size: {fa.name} is {a[0]}x{a[1]}, "
                             f"{fb.name} is {b[0]}x{b[1]}")
    (width, height), = sizes
    return Clip(path, len(files), fps, height, width, False, files)


def read_frames(clip: Clip, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
    """Frames ``start`` .. ``start + count - 1`` of ``clip`` as float32 (H, W, 3) in [0, 1],
    one at a time (a video is decoded from its beginning: exact, whatever its keyframes)."""
    end = clip.frames if count is None else min(clip.frames, start + count)
    if clip.files:
        for f in clip.files[start:end]:
            frame = load_image(f)
            if frame.shape[:2] != (clip.height, clip.width):
                raise VideoError(f"{f} is {frame.shape[1]}x{frame.shape[0]}, the other frames "
                                 f"{clip.width}x{clip.height}")
            yield frame
        return
    av = _av()
    index = 0
    try:
        with av.open(str(clip.path)) as container:
            for frame in container.decode(video=0):
                if index >= end:
                    break
                if index >= start:
                    yield frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0
                index += 1
    except av.FFmpegError as e:
        raise VideoError(f"{clip.path} is damaged at frame {index} ({type(e).__name__})") from None


def check_video_path(path: Path) -> str:
    """The container format of an output video ``path``, or one error naming those known."""
    if path.suffix.lower() not in CONTAINERS:
        raise VideoError(f"cannot write {path}: unknown video extension {path.suffix!r} "
                         f"(use {', '.join(CONTAINERS)}, or a folder for numbered frames)")
    return CONTAINERS[path.suffix.lower()][0]


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: Fraction,
                audio: tuple[Clip, int, int] | None = None) -> list[str]:
    """Encode ``frames`` (float (H, W, 3) in [0, 1]) at ``fps`` to ``path``, atomically; the
    container and codec come from the extension (:data:`CONTAINERS`). ``audio`` = (clip,
    first frame, frame count): that stretch of the clip's audio is copied unchanged.
    Returns notes for the user (audio that the container cannot hold, padding)."""
    path = Path(path)
    fmt = check_video_path(path)
    notes: list[str] = []
    try:
        with created(path.parent), atomic_path(path) as tmp:
            if fmt == "gif":
                _write_gif(frames, tmp, fps)
            else:
                _write_av(frames, tmp, fmt, fps, audio, notes)
    except NstError:
        raise
    except OSError as e:
        raise VideoError(f"cannot write {path}: {e.strerror or e}") from None
    except Exception as e:  # FFmpeg refusing a size or a codec
        raise VideoError(f"cannot encode {path}: {e}") from None
    return notes


def _write_gif(frames: Iterable[np.ndarray], tmp: str, fps: Fraction) -> None:
    images = [Image.fromarray(to_uint8(f), mode="RGB") for f in frames]
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=round(1000 / float(fps)))


def _write_av(frames, tmp: str, fmt: str, fps: Fraction, audio, notes: list[str]) -> None:
    av = _av()
    _, codec, options = CONTAINERS["." + {"matroska": "mkv"}.get(fmt, fmt)]
    with av.open(tmp, "w", format=fmt) as out:
        stream, copied = None, None
        for index, frame in enumerate(frames):
            rgb = to_uint8(frame)
            h, w = rgb.shape[:2]
            if h % 2 or w % 2:  # 4:2:0 chroma needs even sides: repeat the last row/column
                rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            if stream is None:
                stream = out.add_stream(codec, rate=fps)
                stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
                stream.options = dict(options)
                if (h, w) != rgb.shape[:2]:
                    notes.append(f"{w}x{h} frames padded to {rgb.shape[1]}x{rgb.shape[0]} (the video codec "
                                 "needs even sides)")
                copied = _audio_stream(out, audio, fmt, notes) if audio else None
            picture = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            picture.pts = index  # in the stream's time base, 1 / fps
            for packet in stream.encode(picture):
                out.mux(packet)
        if stream is None:
            raise VideoError("no frames to write")
        for packet in stream.encode():
            out.mux(packet)
        if copied is not None:
            _copy_audio(out, copied, *audio)


def _audio_stream(out, audio: tuple[Clip, int, int], fmt: str, notes: list[str]):
    """(input container, its audio stream, the output's copy of it), or None with a note
    when the output container cannot hold the input's audio codec."""
    av = _av()
    clip = audio[0]
    source = av.open(str(clip.path))
    stream = source.streams.audio[0]
    try:
        return source, stream, out.add_stream_from_template(stream)
    except ValueError:
        notes.append(f"the input's {stream.codec_context.name} audio cannot go into a {fmt} file unchanged: "
                     "not copied (write .mp4, .mov or .mkv to keep it)")
        source.close()
        return None


def _copy_audio(out, copied, clip: Clip, first: int, count: int) -> None:
    """The audio packets that start within frames ``first`` .. ``first + count`` of ``clip``,
    moved to start at 0."""
    source, stream, target = copied
    start, end = clip.seconds(first), clip.seconds(first + count)
    with source:
        for packet in source.demux(stream):
            if packet.dts is None or packet.pts is None:
                continue
            at = packet.pts * packet.time_base
            if at < start or at >= end:
                continue
            shift = int(start / packet.time_base)
            packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
            packet.stream = target
            out.mux(packet)
