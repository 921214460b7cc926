"""ICC profiles written byte by byte (the version 2 layout of ICC.1:2001-04), so the colour
management tests need no profile files: an RGB matrix/TRC profile from primaries, a grey
profile from a gamma, and a CMYK profile whose A2B0 table is a small lut8.
"""

from __future__ import annotations

import itertools
import struct

import numpy as np

D50 = np.array([0.9642, 1.0, 0.8249])  # the profile connection space's white
D65_XY = (0.3127, 0.3290)
# Display P3 and Adobe RGB (1998): red, green, blue chromaticities; both have a D65 white.
P3_PRIMARIES = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
ADOBE_PRIMARIES = ((0.640, 0.330), (0.210, 0.710), (0.150, 0.060))
SRGB_PRIMARIES = ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060))
# IEC 61966-2-1's curve as ICC parametric function 3: (g, a, b, c, d).
SRGB_CURVE = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
GAMMA_22 = 563 / 256  # 2.2 as a u8Fixed8 number, exactly what a 'curv' tag stores
GAMMA_18 = 461 / 256

BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def xyz(x: float, y: float) -> np.ndarray:
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz(primaries, white_xy=D65_XY) -> np.ndarray:
    """The 3x3 matrix from linear RGB to XYZ (columns: the primaries scaled so that RGB 1,1,1 is the white)."""
    p = np.stack([xyz(*c) for c in primaries], axis=1)
    return p * np.linalg.solve(p, xyz(*white_xy))


def bradford_to_d50(white_xy=D65_XY) -> np.ndarray:
    cone_from, cone_to = BRADFORD @ xyz(*white_xy), BRADFORD @ D50
    return np.linalg.inv(BRADFORD) @ np.diag(cone_to / cone_from) @ BRADFORD


def _s15(*values) -> bytes:
    return b"".join(struct.pack(">i", round(v * 65536)) for v in values)


def _xyz_tag(v) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(*v)


def _desc_tag(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + bytes(4 + 4 + 2 + 1 + 67)


def _curve_tag(curve) -> bytes:
    if isinstance(curve, tuple):  # parametric, function type 3
        return b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + _s15(*curve)
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(curve * 256)) + b"\0\0"


def _profile(device_class: bytes, space: bytes, pcs: bytes, tags: dict[bytes, bytes]) -> bytes:
    header_size, table = 128, 4 + 12 * len(tags)
    offset, entries, data = header_size + table, b"", b""
    for sig, body in tags.items():
        body += bytes(-len(body) % 4)
        entries += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = header_size + table + len(data)
    header = (struct.pack(">I", size) + bytes(4) + bytes([2, 0x10, 0, 0]) + device_class + space + pcs
              + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + bytes(4 + 4 + 4 + 4 + 8 + 4)
              + _s15(*D50) + bytes(4 + 16 + 28))
    assert len(header) == header_size
    return header + struct.pack(">I", len(tags)) + entries + data


def rgb_profile(name: str, primaries, curve) -> bytes:
    """A display RGB profile: the primaries (D65 white) adapted to D50 by Bradford, one tone curve."""
    colorants = bradford_to_d50() @ rgb_to_xyz(primaries)
    trc = _curve_tag(curve)
    return _profile(b"mntr", b"RGB ", b"XYZ ", {
        b"desc": _desc_tag(name), b"wtpt": _xyz_tag(D50), b"rXYZ": _xyz_tag(colorants[:, 0]),
        b"gXYZ": _xyz_tag(colorants[:, 1]), b"bXYZ": _xyz_tag(colorants[:, 2]),
        b"rTRC": trc, b"gTRC": trc, b"bTRC": trc})


def grey_profile(name: str, gamma: float) -> bytes:
    return _profile(b"mntr", b"GRAY", b"XYZ ", {b"desc": _desc_tag(name), b"wtpt": _xyz_tag(D50),
                                                b"kTRC": _curve_tag(gamma)})


def cmyk_profile(name: str) -> bytes:
    """A CMYK printer profile whose tables (CMYK -> Lab) are lut8s with 2 grid points per
    ink: each ink's density follows a 1.8 power (the input tables), the corners are the
    Lab colours of subtractive primaries (cyan ink absorbs red, ...) on a slightly warm
    paper. The perceptual table (A2B0) has a lighter black than the colorimetric (A2B1),
    so the two intents give different colours."""
    return _profile(b"prtr", b"CMYK", b"Lab ", {b"desc": _desc_tag(name), b"wtpt": _xyz_tag(D50),
                                                b"A2B0": _cmyk_lut(black=0.85), b"A2B1": _cmyk_lut(black=0.95)})


def _cmyk_lut(black: float) -> bytes:
    ramp = np.round(255 * (np.arange(256) / 255) ** (1 / 1.8)).astype(np.uint8)
    corners = []
    for c, m, y, k in itertools.product((0, 1), repeat=4):  # the first ink varies slowest
        rgb = np.array([(1 - c) * (1 - 0.1 * m), (1 - m) * (1 - 0.15 * y), (1 - y) * (1 - 0.05 * c)]) * (1 - black * k)
        lab = _lab(bradford_to_d50() @ rgb_to_xyz(SRGB_PRIMARIES) @ (rgb * [0.98, 0.97, 0.92]))
        corners.append([round(lab[0] * 255 / 100), round(lab[1] + 128), round(lab[2] + 128)])
    return (b"mft1\0\0\0\0" + bytes([4, 3, 2, 0]) + _s15(1, 0, 0, 0, 1, 0, 0, 0, 1) + ramp.tobytes() * 4
            + np.clip(corners, 0, 255).astype(np.uint8).tobytes() + np.arange(256, dtype=np.uint8).tobytes() * 3)


def _lab(v: np.ndarray) -> np.ndarray:
    t = v / D50
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def srgb_encode(linear) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def srgb_decode(encoded) -> np.ndarray:
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)
