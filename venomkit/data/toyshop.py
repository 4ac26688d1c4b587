"""toyshop: a seeded synthetic shop whose raw content explains what users buy.

Every item has four attributes -- a product category, a colour, a pattern and a material --
and its raw content shows them: the image is a procedurally drawn product photo (a
recognisable silhouette per category, the colour and pattern on its body, the material as a
texture and shading cue, small pose/scale/offset jitter on a light background), and the text
is a varied product description that always names the category, colour, pattern and material
in plain words. Users have latent tastes over the same attributes, so what they interact
with is explained by the content; a Zipf-like popularity prior makes the interactions
long-tailed, which leaves many cold items whose few interactions can only be predicted from
their content (the setting of the promotion-attack papers: AUV-Fusion, VenomRec, UAT-MC).

Interaction model (one draw per dataset)::

    logit(u, i) = taste_u . onehot(attrs_i) + quality_i
                  - popularity_weight * zipf_exponent * log(rank_i / n_items + zipf_offset)

(the last term is a Zipf-Mandelbrot prior ``(rank + q)^-a`` over a random item order: a
flat-ish head and a steep tail, so the tail is cold without one item reaching every user)
and each user samples ``n_u`` distinct items from ``softmax(logit(u, .))`` without
replacement (Gumbel top-k). Timestamps order each history at random, so leave-one-out
holds out a draw of the same distribution.

Images are (3, S, S) float tensors in [0, 1], S in [32, 256]; geometry is defined in unit
coordinates, drawn with PIL at 2-3x the output size and downsampled with a Lanczos filter, so
the same item at two sizes is the same picture. Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from venomkit.config import check_int
from venomkit.data.catalog import Catalog
from venomkit.data.dataset import Dataset, make_split
from venomkit.data.export import write_atomic
from venomkit.data.interactions import Interactions
from venomkit.progress import progress as progress_bar

CATEGORIES: tuple[str, ...] = (
    "t-shirt",
    "mug",
    "sneaker",
    "backpack",
    "lamp",
    "chair",
    "hat",
    "bottle",
    "watch",
    "umbrella",
)

#: Colour name -> RGB (0-255). Iterating gives the names in a fixed order.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 38, 38),
    "orange": (243, 133, 25),
    "yellow": (246, 208, 36),
    "green": (46, 150, 64),
    "blue": (38, 84, 204),
    "purple": (124, 52, 168),
    "pink": (243, 125, 178),
    "black": (38, 38, 44),
}

PATTERNS: tuple[str, ...] = ("plain", "striped", "polka-dot", "checked", "zigzag")

MATERIALS: tuple[str, ...] = ("cotton", "wool", "leather", "ceramic", "glass", "metal", "wood", "plastic")

#: Plausible materials per category (a ceramic t-shirt would teach nothing about shops).
CATEGORY_MATERIALS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("cotton", "wool"),
    "mug": ("ceramic", "glass", "metal", "plastic"),
    "sneaker": ("leather", "cotton", "wool"),
    "backpack": ("leather", "cotton", "plastic"),
    "lamp": ("metal", "ceramic", "glass", "wood", "plastic"),
    "chair": ("wood", "metal", "plastic", "leather"),
    "hat": ("wool", "cotton", "leather"),
    "bottle": ("glass", "plastic", "metal", "ceramic"),
    "watch": ("metal", "leather", "plastic", "wood"),
    "umbrella": ("cotton", "plastic"),
}

BRANDS: tuple[str, ...] = (
    "Northwind",
    "Acorn & Co",
    "Lumen",
    "Bramble",
    "Kestrel",
    "Pebble Goods",
    "Orbit",
    "Maple Row",
    "Tidewater",
    "Foxglove",
    "Cobalt Works",
    "Juniper",
)

# Pattern colour drawn over the body: light on dark and mid colours, dark on light ones.
_CREAM = (0.96, 0.94, 0.88)
_INK = (0.16, 0.16, 0.21)
_SECONDARY: dict[str, tuple[float, float, float]] = {
    "red": _CREAM,
    "orange": _CREAM,
    "yellow": _INK,
    "green": _CREAM,
    "blue": _CREAM,
    "purple": _CREAM,
    "pink": _INK,
    "black": _CREAM,
}
_NEUTRAL_LIGHT = (0.93, 0.93, 0.91)
_NEUTRAL_DARK = (0.2, 0.2, 0.23)
_STEEL = (0.62, 0.63, 0.66)

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 256

# --------------------------------------------------------------------------------------
# Geometry in unit coordinates: x, y in [-1, 1], y pointing down, object centred.
# --------------------------------------------------------------------------------------

Points = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float = 0.0, a1: float = 2 * math.pi, n: int = 48) -> Points:
    """Points on an elliptical arc; angle 0 is +x, pi/2 is down (y grows downwards)."""
    ts = np.linspace(a0, a1, n)
    return [(cx + rx * math.cos(t), cy + ry * math.sin(t)) for t in ts]


def _rrect(x0: float, y0: float, x1: float, y1: float, r: float) -> Points:
    """A rounded rectangle as a polygon."""
    r = min(r, (x1 - x0) / 2, (y1 - y0) / 2)
    pts: Points = []
    pts += _arc(x1 - r, y0 + r, r, r, -math.pi / 2, 0, 8)
    pts += _arc(x1 - r, y1 - r, r, r, 0, math.pi / 2, 8)
    pts += _arc(x0 + r, y1 - r, r, r, math.pi / 2, math.pi, 8)
    pts += _arc(x0 + r, y0 + r, r, r, math.pi, 1.5 * math.pi, 8)
    return pts


def _smooth(pts: Points, iterations: int = 3) -> Points:
    """Chaikin corner cutting of a closed polygon (turns a coarse outline into a curve)."""
    for _ in range(iterations):
        out: Points = []
        for k in range(len(pts)):
            (x0, y0), (x1, y1) = pts[k], pts[(k + 1) % len(pts)]
            out += [(0.75 * x0 + 0.25 * x1, 0.75 * y0 + 0.25 * y1), (0.25 * x0 + 0.75 * x1, 0.25 * y0 + 0.75 * y1)]
        pts = out
    return pts


class _Pen:
    """Draws unit-coordinate shapes into (res x res) 8-bit masks under one pose transform."""

    def __init__(self, res: int, scale: float, angle: float, offset: tuple[float, float], flip: bool) -> None:
        self.res = res
        self.half = res / 2.0
        self.scale = scale  # unit length -> fraction of half the canvas
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self.offset = offset
        self.flip = flip

    def px(self, pts: Points) -> list[tuple[float, float]]:
        out = []
        for x, y in pts:
            if self.flip:
                x = -x
            xr = self.cos * x - self.sin * y
            yr = self.sin * x + self.cos * y
            out.append((self.half * (1 + self.offset[0] + self.scale * xr), self.half * (1 + self.offset[1] + self.scale * yr)))
        return out

    def width(self, w: float) -> int:
        return max(1, round(w * self.scale * self.half))

    def new(self) -> Image.Image:
        return Image.new("L", (self.res, self.res), 0)

    def fill(self, *polys: Points, holes: Sequence[Points] = (), mask: Image.Image | None = None) -> Image.Image:
        mask = mask if mask is not None else self.new()
        draw = ImageDraw.Draw(mask)
        for poly in polys:
            draw.polygon(self.px(poly), fill=255)
        for hole in holes:
            draw.polygon(self.px(hole), fill=0)
        return mask

    def stroke(
        self, pts: Points, w: float, mask: Image.Image | None = None, closed: bool = False, value: int = 255
    ) -> Image.Image:
        mask = mask if mask is not None else self.new()
        p = self.px(pts)
        if closed:
            p = p + p[:1]
        ImageDraw.Draw(mask).line(p, fill=value, width=self.width(w), joint="curve")
        return mask

    def object_coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit object coordinates (u, v) of every canvas pixel centre, (res, res) each."""
        g = (np.arange(self.res, dtype=np.float32) + 0.5) / self.half - 1.0
        gx = (g[None, :] - self.offset[0]) / self.scale
        gy = (g[:, None] - self.offset[1]) / self.scale
        u = self.cos * gx + self.sin * gy
        v = -self.sin * gx + self.cos * gy
        if self.flip:
            u = -u
        return u.astype(np.float32), v.astype(np.float32)


# A layer: what paints it ("main" = the item's colour/pattern/material, "main_dark" = the same
# a shade darker, or a fixed RGB) and its mask.
Layer = tuple[object, Image.Image]


def _tshirt(pen: _Pen, rng: np.random.Generator) -> list[Layer]:
    sl = rng.uniform(0.85, 1.0)  # sleeve reach
    bw = rng.uniform(0.44, 0.52)  # body half width
    bottom = rng.uniform(0.75, 0.86)
    neck = rng.uniform(0.16, 0.22)
    body = [
        (-neck, -0.76),
        (-0.56, -0.68),
        (-sl, -0.33),
        (-sl + 0.22, -0.08),
        (-bw - 0.02, -0.27),
        (-bw, bottom),
        (bw, bottom),
        (bw + 0.02, -0.27),
        (sl - 0.22, -0.08),
        (sl, -0.33),
        (0.56, -0.68),
        (neck, -0.76),
    ] + _arc(0, -0.76, neck, 0.15, 0, math.pi, 16)
    main = pen.fill(body)
    details = pen.stroke(_arc(0, -0.76, neck + 0.03, 0.18, 0.15, math.pi - 0.15, 16), 0.05, value=200)
    pen.stroke([(-bw - 0.02, -0.27), (-0.52, -0.62)], 0.025, mask=details, value=130)
    pen.stroke([(bw + 0.02, -0.27), (0.52, -0.62)], 0.025, mask=details, value=130)
    return [("main", main), (_NEUTRAL_DARK, details)]


def _mug(pen: _Pen, rng: np.random.Generator) -> list[Layer]:
    x0, x1 = -0.6, rng.uniform(0.3, 0.38)
    top, bottom = rng.uniform(-0.62, -0.5), rng.uniform(0.62, 0.72)
    cx = (x0 + x1) / 2
    rx = (x1 - x0) / 2
    handle = pen.stroke(_arc(x1 - 0.02, (top + bottom) / 2 - 0.02, 0.32, 0.34, -math.pi / 2 - 0.2, math.pi / 2 + 0.2, 24), 0.13)
    body = _arc(cx, top, rx, 0.09, math.pi, 2 * math.pi, 20) + _arc(cx, bottom, rx, 0.09, 0, math.pi, 20)
    main = pen.fill(body)
    rim = pen.fill(_arc(cx, top, rx - 0.05, 0.065))
    return [("main", handle), ("main", main), ("main_dark", rim)]


def _sneaker(pen: _Pen, rng: np.random.Generator) -> list[Layer]:
    h = rng.uniform(-0.05, 0.05)  # collar height jitter
    toe_y = rng.uniform(0.02, 0.1)  # toe box height
    upper = [
        (-0.88, 0.3),
        (-0.93, 0.02),
        (-0.88, -0.24 + h),
        (-0.72, -0.32 + h),
        (-0.5, -0.2 + h),
        (-0.3, -0.2 + h),
        (-0.18, -0.38 + h),
        (-0.04, -0.42 + h),
        (0.06, -0.33),
        (0.36, -0.14),
        (0.66, toe_y - 0.06),
        (0.86, toe_y),
        (0.96, 0.16),
        (0.96, 0.3),
    ]
    main = pen.fill(_smooth(upper, 2))
    sole = pen.fill(_smooth([(-0.95, 0.24), (0.9, 0.24), (1.0, 0.2), (1.0, 0.36), (0.9, 0.44), (-0.9, 0.44), (-0.97, 0.36)], 1))
    # Laces cross the lace line (tongue -> vamp) at right angles.
    laces = pen.new()
    (ax, ay), (bx, by) = (0.02, -0.34 + h * 0.5), (0.4, -0.12)
    dx, dy = bx - ax, by - ay
    norm = math.hypot(dx, dy)
    nx, ny = -dy / norm, dx / norm
    for k in range(4):
        t = 0.1 + 0.8 * k / 3.0
        px, py = ax + t * dx + 0.1 * nx, ay + t * dy + 0.1 * ny  # inset into the upper
        pen.stroke([(px - 0.065 * nx, py - 0.065 * ny), (px + 0.065 * nx, py + 0.065 * ny)], 0.045, mask=laces)
    # Side stripes and a toe-cap seam: the marks that make a shoe read as a sneaker.
    stripe = pen.new()
    for k in range(3):
        x = -0.34 + 0.13 * k
        pen.stroke([(x + 0.12, -0.12), (x - 0.06, 0.2)], 0.055, mask=stripe, value=210)
    toe = pen.stroke(_arc(0.78, 0.3, 0.16, 0.24, -math.pi / 2 - 0.4, -0.2, 12), 0.03, value=150)
    # White or dark gum soles, as in real shops; a midsole line keeps a white sole visible.
    sole_rgb = (0.99, 0.99, 0.98) if rng.random() < 0.6 else (0.32, 0.28, 0.26)
    midsole = pen.stroke([(-0.9, 0.34), (0.95, 0.34)], 0.03, value=140)
    return [
        ("main", main),
        (_NEUTRAL_LIGHT, stripe),
        (sole_rgb, sole),
        (_NEUTRAL_DARK, midsole),
        (_NEUTRAL_LIGHT, laces),
        (_NEUTRAL_DARK, toe),
    ]


def _backpack(pen: _Pen, rng: np.random.Generator) -> list[Layer]:
    w = rng.uniform(0.5, 0.58)
    top = rng.uniform(-0.66, -0.56)
    straps = pen.new()
    pen.stroke([(-w - 0.04, top + 0.3), (-w - 0.1, 0.55)], 0.1, mask=straps)
    pen.stroke([(w + 0.04, top + 0.3), (w + 0.1, 0.55)], 0.1, mask=straps)
    handle = pen.stroke(_arc(0, top - 0.02, 0.17, 0.16, math.pi + 0.3, 2 * math.pi - 0.3, 12), 0.07)
    body = pen.fill(_rrect(-w, top, w, 0.82, 0.34))
    pocket = pen.fill(_rrect(-w + 0.14, 0.18, w - 0.14, 0.7, 0.12))
    zips = pen.stroke(_arc(0, top + 0.42, w - 0.1, 0.25, math.pi + 0.25, 2 * math.pi - 0.25, 16), 0.03, value=170)
    pen.stroke([(-w + 0.2, 0.3), (w - 0.2, 0.3)], 0.03, mask=zips, value=170)
    return [(_NEUTRAL_DARK, straps), (_NEUTRAL_DARK, handle), ("main", body), ("main_dark", pocket), (_NEUTRAL_DARK, zips)]


def _lamp(pen: _Pen, rng: np.random.Generator) -> list[Layer]:
    top_w = rng.uniform(0.26, 0.36)
    bot_w = rng.uniform(0.56, 0.66)
    shade_bottom = rng.uniform(-0.15, -0.05)
    shade = pen.fill([(-top_w, -0.82), (top_w, -0.82), (bot_w, shade_bottom), (-bot_w, shade_bottom)])
    stem = pen.fill(_rrect(-0.05, shade_bottom - 0.05, 0.05, 0.66, 0.02))
    base = pen.fill(_arc(0, 0.66, 0.36, 0.1, math.pi, 2 * math.pi, 16) + [(0.38, 0.8), (-0.38, 0.8)])
    glow = pen.fill(_arc(0, shade_bottom, bot_w - 0.04, 0.06, 0, math.pi, 16))
    return [("main_dark", stem), ("main", base), ("main", shade), ((0.99, 0.95, 0.75), glow)]


def _chair(pen: _Pen, rng: np.random.Generator) -> list[Layer]:
    sw = rng.uniform(0.55, 0.62)  # seat half width
    back_top = rng.uniform(-0.9, -0.78)
    back_legs = pen.new()
    for x in (-sw + 0.14, sw - 0.14):
        pen.stroke([(x, 0.1), (x, 0.66)], 0.08, mask=back_legs)
    frame = pen.new()
    for x in (-sw + 0.08, sw - 0.08):
        pen.stroke([(x, back_top + 0.05), (x, 0.0)], 0.11, mask=frame)
        pen.stroke([(x + (0.02 if x < 0 else -0.02), 0.1), (x + (-0.04 if x < 0 else 0.04), 0.86)], 0.11, mask=frame)
    pen.fill(_rrect(-sw + 0.02, back_top, sw - 0.02, back_top + 0.26, 0.07), mask=frame)
    pen.fill(_rrect(-sw + 0.08, back_top + 0.36, sw - 0.08, back_top + 0.46, 0.03), mask=frame)
    seat = pen.fill([(-sw + 0.1, -0.06), (sw - 0.1, -0.06), (sw, 0.08), (sw, 0.16), (-sw, 0.16), (-sw, 0.08)])
    return [("main_dark", back_legs), ("main", frame), ("main", seat)]


def _hat(pen: _Pen, rng: np.random.Generator) -> list[Layer]:
    bw = rng.uniform(0.84, 0.96)
    ch = rng.uniform(-0.58, -0.44)  # crown height
    brim = pen.fill(_arc(0, 0.3, bw, rng.uniform(0.16, 0.22)))
    crown = pen.fill(
        _smooth(
            [
                (-0.52, 0.3),
                (-0.5, 0.0),
                (-0.46, ch + 0.12),
                (-0.3, ch),
                (-0.12, ch + 0.02),
                (0.0, ch + 0.1),
                (0.12, ch + 0.02),
                (0.3, ch),
                (0.46, ch + 0.12),
                (0.5, 0.0),
                (0.52, 0.3),
            ]
            + _arc(0, 0.3, 0.52, 0.1, 0, math.pi, 12),
            2,
        )
    )
    band = pen.fill([(-0.505, 0.06), (0.505, 0.06), (0.52, 0.26), (-0.52, 0.26)])
    return [("main", brim), ("main", crown), (_NEUTRAL_DARK, band)]


def _bottle(pen: _Pen, rng: np.random.Generator) -> list[Layer]:
    bw = rng.uniform(0.28, 0.36)
    nw = rng.uniform(0.1, 0.14)
    shoulder = rng.uniform(-0.28, -0.15)
    body = pen.fill(
        [(-nw, -0.7), (nw, -0.7), (nw, -0.52)]
        + [
            (nw + 0.04, -0.46),
            (bw - 0.05, shoulder - 0.05),
            (bw, shoulder + 0.06),
            (bw, 0.8),
            (bw - 0.06, 0.86),
            (-bw + 0.06, 0.86),
            (-bw, 0.8),
            (-bw, shoulder + 0.06),
            (-bw + 0.05, shoulder - 0.05),
            (-nw - 0.04, -0.46),
            (-nw, -0.52),
        ]
    )
    cap = pen.fill(_rrect(-nw - 0.03, -0.9, nw + 0.03, -0.68, 0.03))
    return [("main", body), (_NEUTRAL_DARK, cap)]


def _watch(pen: _Pen, rng: np.random.Generator) -> list[Layer]:
    sw = rng.uniform(0.2, 0.25)
    r = rng.uniform(0.44, 0.5)
    strap = pen.fill(_rrect(-sw, -0.95, sw, 0.95, 0.08))
    case = pen.fill(_arc(0, 0, r, r))
    pen.fill(_rrect(r - 0.02, -0.07, r + 0.08, 0.07, 0.02), mask=case)  # crown
    face = pen.fill(_arc(0, 0, r - 0.12, r - 0.12))
    ticks = pen.new()
    for k in range(12):
        a = k * math.pi / 6
        ri, ro = (r - 0.22, r - 0.14) if k % 3 == 0 else (r - 0.18, r - 0.14)
        pen.stroke([(ri * math.cos(a), ri * math.sin(a)), (ro * math.cos(a), ro * math.sin(a))], 0.035, mask=ticks)
    ha, ma = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
    pen.stroke([(0, 0), (0.16 * math.cos(ha), 0.16 * math.sin(ha))], 0.05, mask=ticks)
    pen.stroke([(0, 0), (0.26 * math.cos(ma), 0.26 * math.sin(ma))], 0.035, mask=ticks)
    return [("main", strap), ("main_dark", case), (_NEUTRAL_LIGHT, face), (_NEUTRAL_DARK, ticks)]


def _umbrella(pen: _Pen, rng: np.random.Generator) -> list[Layer]:
    rx = rng.uniform(0.86, 0.95)
    top = rng.uniform(-0.82, -0.72)
    base = 0.0
    n = 5
    canopy_pts = _arc(0, base, rx, base - top, math.pi, 2 * math.pi, 32)
    edge: Points = []
    for k in range(n, 0, -1):  # scallops from right to left
        x1, x0 = -rx + 2 * rx * k / n, -rx + 2 * rx * (k - 1) / n
        edge += _arc((x0 + x1) / 2, base, (x1 - x0) / 2, 0.09, 0, -math.pi, 8)
    canopy = pen.fill(canopy_pts + edge)
    shaft = pen.stroke([(0, top - 0.1), (0, 0.68)], 0.05)
    pen.stroke(_arc(-0.13, 0.68, 0.13, 0.14, 0, math.pi, 12), 0.06, mask=shaft)
    ribs = pen.new()
    for k in range(1, n):
        x = -rx + 2 * rx * k / n
        pen.stroke([(0, top + 0.02), (x, base - 0.07)], 0.025, mask=ribs, value=110)
    return [(_NEUTRAL_DARK, shaft), ("main", canopy), (_NEUTRAL_DARK, ribs)]


_SHAPES: dict[str, Callable[[_Pen, np.random.Generator], list[Layer]]] = {
    "t-shirt": _tshirt,
    "mug": _mug,
    "sneaker": _sneaker,
    "backpack": _backpack,
    "lamp": _lamp,
    "chair": _chair,
    "hat": _hat,
    "bottle": _bottle,
    "watch": _watch,
    "umbrella": _umbrella,
}
_ASYMMETRIC = {"mug", "sneaker", "watch", "umbrella"}

# --------------------------------------------------------------------------------------
# Surfaces: colour, pattern, material.
# --------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, grid: int, res: int) -> np.ndarray:
    """Band-limited noise (std ~1) on a (res, res) canvas from a (grid, grid) lattice."""
    lattice = rng.standard_normal((grid, grid)).astype(np.float32)
    img = Image.fromarray(lattice, mode="F").resize((res, res), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _pattern_mask(pattern: str, u: np.ndarray, v: np.ndarray, phase: tuple[float, float]) -> np.ndarray:
    """Coverage in [0, 1] of the secondary colour, in object coordinates (rotates with the item)."""
    if pattern == "plain":
        return np.zeros_like(u)
    uu, vv = u + phase[0], v + phase[1]
    if pattern == "striped":
        p = 0.27
        return (np.mod(vv / p, 1.0) < 0.42).astype(np.float32)
    if pattern == "polka-dot":
        p = 0.3
        row = np.floor(vv / p)
        du = np.mod(uu / p + 0.5 * row, 1.0) - 0.5
        dv = np.mod(vv / p, 1.0) - 0.5
        return ((du * du + dv * dv) < 0.23**2).astype(np.float32)
    if pattern == "checked":
        p = 0.32
        a = (np.mod(uu / p, 1.0) < 0.5).astype(np.float32)
        b = (np.mod(vv / p, 1.0) < 0.5).astype(np.float32)
        return 0.45 * (a + b)
    if pattern == "zigzag":
        p, amp, period = 0.3, 0.09, 0.3
        tri = np.abs(np.mod(uu / period, 1.0) - 0.5) * 2 * amp
        return (np.mod((vv + tri) / p, 1.0) < 0.4).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r}")


def _material_surface(
    material: str,
    base: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    noise: Callable[[int], np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """Apply the material's texture and shading to ``base`` (H, W, 3) at object coordinates (u, v).

    ``noise(grid)`` gives band-limited noise on the same pixels. Returns (rgb, opacity).
    """
    # Soft cylinder shading plus light from the upper left: every material gets some volume.
    shade = 1.0 - 0.14 * np.clip(u, -1.2, 1.2) ** 2 - 0.05 * (u + v)
    opacity = 1.0
    white = np.ones(3, dtype=np.float32)
    if material == "cotton":
        fine = noise(48)
        rgb = base * (shade * (1.0 + 0.045 * fine))[..., None]
    elif material == "wool":
        ribs = 0.5 + 0.5 * np.cos(2 * math.pi * u / 0.11)
        fuzz = noise(40)
        rgb = base * (shade * (0.9 + 0.12 * ribs + 0.05 * fuzz))[..., None]
    elif material == "leather":
        mottle = noise(14)
        grain = noise(56)
        sheen = np.exp(-(((u + 0.3) / 0.35) ** 2 + ((v + 0.3) / 0.5) ** 2))
        rgb = base * 0.8 * (shade * (1.0 + 0.09 * mottle + 0.05 * grain))[..., None]
        rgb = rgb + 0.22 * sheen[..., None] * (white - rgb)
    elif material == "ceramic":
        gloss = np.exp(-(((u + 0.32) / 0.09) ** 2 + ((v + 0.05) / 0.45) ** 2))
        rim = np.exp(-(((u - 0.45) / 0.08) ** 2))
        rgb = base * (1.04 * shade)[..., None]
        rgb = rgb + (0.75 * gloss + 0.15 * rim)[..., None] * (white - rgb)
    elif material == "glass":
        opacity = 0.62
        streak = np.exp(-(((u + 0.2) / 0.05) ** 2)) + 0.6 * np.exp(-(((u - 0.28) / 0.03) ** 2))
        rgb = base * (0.95 + 0.1 * shade)[..., None]
        rgb = rgb + np.clip(0.85 * streak, 0, 1)[..., None] * (white - rgb)
    elif material == "metal":
        grey = base.mean(axis=-1, keepdims=True)
        tinted = 0.75 * base + 0.25 * grey
        bands = 0.5 + 0.5 * np.cos(2 * math.pi * (0.9 * u + 0.12))
        brushed = np.interp(v, np.linspace(-1.5, 1.5, 160), rng.standard_normal(160)).astype(np.float32)
        rgb = tinted * (0.62 + 0.48 * bands**2 + 0.035 * brushed)[..., None]
        highlight = np.exp(-(((u + 0.42) / 0.07) ** 2))
        rgb = rgb + 0.6 * highlight[..., None] * (white - rgb)
    elif material == "wood":
        warp = noise(6)
        grain = 0.5 + 0.5 * np.sin(2 * math.pi * (v * 4.2 + 0.35 * np.sin(2.2 * u + rng.uniform(0, 6.28)) + 0.12 * warp))
        warm = 0.82 * base + 0.18 * np.array([0.55, 0.34, 0.18], dtype=np.float32)
        rgb = warm * (shade * (1.0 - 0.38 * grain**4))[..., None]
    elif material == "plastic":
        grey = base.mean(axis=-1, keepdims=True)
        vivid = np.clip(grey + 1.12 * (base - grey), 0, 1)
        spot = np.exp(-((((u + 0.32) ** 2 + (v + 0.35) ** 2) / 0.03) ** 2))
        rgb = vivid * (0.97 + 0.06 * shade)[..., None]
        rgb = rgb + 0.85 * spot[..., None] * (white - rgb)
    else:
        raise ValueError(f"unknown material {material!r}")
    return np.clip(rgb, 0.0, 1.0).astype(np.float32), opacity


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Grey-level erosion of a uint8 mask by a (2r+1) square, separable (fast in numpy)."""
    out = mask.copy()
    for axis in (0, 1):
        src = out.copy()
        for d in range(1, r + 1):
            if axis == 0:
                np.minimum(out[d:], src[:-d], out=out[d:])
                np.minimum(out[:-d], src[d:], out=out[:-d])
            else:
                np.minimum(out[:, d:], src[:, :-d], out=out[:, d:])
                np.minimum(out[:, :-d], src[:, d:], out=out[:, :-d])
        # Pixels beyond the border count as background, so parts touching the edge get a contour.
        if axis == 0:
            out[:r] = 0
            out[-r:] = 0
        else:
            out[:, :r] = 0
            out[:, -r:] = 0
    return out


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"render_item: unknown {name} {value!r}; expected one of {', '.join(choices)}")


def render_item(
    category: str,
    colour: str,
    pattern: str,
    material: str,
    size: int = 64,
    rng: np.random.Generator | int | None = None,
) -> torch.Tensor:
    """Draw one product photo: a (3, size, size) float tensor in [0, 1].

    The silhouette shows ``category``; its body is painted in ``colour`` with ``pattern`` in a
    contrasting colour; ``material`` adds its texture and shading (cotton weave, wool ribs,
    leather grain and sheen, ceramic gloss, translucent glass, banded metal, wood grain,
    plastic highlight). ``rng`` (a Generator or an int seed) sets the pose, scale, offset,
    shape proportions, colour jitter and background, so two items with the same attributes
    differ. The drawing is resolution-independent: the same seed at two sizes gives the same
    picture. ``size`` is in [32, 256].
    """
    _check_choice("category", category, CATEGORIES)
    _check_choice("colour", colour, tuple(COLOURS))
    _check_choice("pattern", pattern, PATTERNS)
    _check_choice("material", material, MATERIALS)
    check_int("render_item: size", size, MIN_IMAGE_SIZE, maximum=MAX_IMAGE_SIZE, numpy_ok=True)
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    size = int(size)
    # Supersampling (3x, 2x above 85 px) so 1-px details and patterns antialias cleanly.
    res = size * 3 if size <= 85 else size * 2

    pen = _Pen(
        res,
        scale=float(rng.uniform(0.8, 0.93)),
        angle=float(rng.uniform(-0.12, 0.12)),
        offset=(float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.04, 0.04))),
        flip=bool(category in _ASYMMETRIC and rng.random() < 0.5),
    )
    layers = _SHAPES[category](pen, rng)

    # Background: light, slightly tinted, with a vertical gradient.
    grad = np.linspace(-0.5, 0.5, res, dtype=np.float32)[:, None, None]
    bg_level = rng.uniform(0.88, 0.97)
    bg = bg_level + rng.uniform(-0.025, 0.025, size=3).astype(np.float32) + rng.uniform(-0.07, 0.02) * grad
    out = np.broadcast_to(bg, (res, res, 3)).astype(np.float32).copy()

    union = np.zeros((res, res), dtype=np.uint8)
    for _, mask in layers:
        np.maximum(union, np.asarray(mask), out=union)
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    edge = max(1, round(0.75 * res / size))
    # All surface work happens inside the object's box (grown by the contour width).
    oy0, oy1 = max(0, rows[0] - edge), min(res, rows[-1] + 1 + edge)
    ox0, ox1 = max(0, cols[0] - edge), min(res, cols[-1] + 1 + edge)
    crop = (slice(oy0, oy1), slice(ox0, ox1))

    # Contact shadow: a soft ellipse under the object's footprint.
    cx, half_w, bottom = (cols[0] + cols[-1]) / 2, (cols[-1] - cols[0]) * 0.45 + 1, rows[-1]
    band = slice(max(0, int(bottom - 0.08 * res)), min(res, int(bottom + 0.08 * res)))
    ys = np.arange(band.start, band.stop, dtype=np.float32)[:, None]
    xs = np.arange(res, dtype=np.float32)[None, :]
    shadow = np.exp(-(((xs - cx) / half_w) ** 4) - ((ys - bottom) / (0.035 * res)) ** 2)
    out[band] *= (1.0 - 0.2 * shadow)[..., None]

    u_full, v_full = pen.object_coords()
    u, v = u_full[crop], v_full[crop]
    colour_rgb = np.array(COLOURS[colour], dtype=np.float32) / 255.0
    colour_rgb = np.clip(colour_rgb * (1.0 + rng.normal(0, 0.035, size=3)) + rng.normal(0, 0.02), 0, 1).astype(np.float32)
    secondary = np.array(_SECONDARY[colour], dtype=np.float32)
    cover = _pattern_mask(pattern, u, v, (float(rng.uniform(0, 1)), float(rng.uniform(0, 1))))[..., None]
    base = colour_rgb * (1.0 - cover) + secondary * cover
    main_rgb, opacity = _material_surface(material, base, u, v, lambda grid: _smooth_noise(rng, grid, res)[crop], rng)

    region = out[crop]
    for paint, mask in layers:
        m8 = np.asarray(mask)[crop]
        if not m8.any():
            continue
        alpha = m8.astype(np.float32) / 255.0
        if paint == "main":
            rgb = main_rgb
            alpha = alpha * opacity
        elif paint == "main_dark":
            rgb = main_rgb * 0.78
            alpha = alpha * max(opacity, 0.8)
        else:
            rgb = np.array(paint, dtype=np.float32) * (1.0 - 0.1 * np.clip(u, -1, 1) ** 2)[..., None]
        # A thin darker contour separates parts and the object from the background.
        contour = (m8 - _erode(m8, edge)).astype(np.float32)[..., None] / 255.0
        a = alpha[..., None]
        region = region * (1.0 - a) + (rgb * (1.0 - 0.35 * contour)) * a
    out[crop] = region

    img = Image.fromarray((np.clip(out, 0, 1) * 255.0 + 0.5).astype(np.uint8), mode="RGB")
    img = img.resize((size, size), Image.LANCZOS)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


# --------------------------------------------------------------------------------------
# Texts.
# --------------------------------------------------------------------------------------

_CATEGORY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("tee", "top", "shirt"),
    "mug": ("cup", "coffee mug", "tea cup"),
    "sneaker": ("trainer", "shoe", "running shoe"),
    "backpack": ("rucksack", "bag", "daypack"),
    "lamp": ("table lamp", "desk light", "light"),
    "chair": ("seat", "dining chair", "side chair"),
    "hat": ("fedora", "brimmed hat", "topper"),
    "bottle": ("flask", "water bottle", "carafe"),
    "watch": ("wristwatch", "timepiece", "wrist watch"),
    "umbrella": ("brolly", "parasol", "rain umbrella"),
}
_CATEGORY_USES: dict[str, tuple[str, ...]] = {
    "t-shirt": ("for warm weekends", "that layers under any jacket", "cut for an easy, relaxed fit"),
    "mug": ("for the morning coffee", "that keeps tea warm", "sized for a generous latte"),
    "sneaker": ("for city walks", "with a cushioned sole", "built for all-day comfort"),
    "backpack": ("with room for a laptop", "for commutes and day trips", "with a zip front pocket"),
    "lamp": ("that casts a warm glow", "for a reading corner", "for bedside tables"),
    "chair": ("for the dining room", "with a supportive back", "that stacks neatly"),
    "hat": ("that shades the sun", "for travel and festivals", "with a classic band"),
    "bottle": ("for the gym bag", "that keeps drinks cold", "for picnics and hikes"),
    "watch": ("with a clean dial", "for everyday wear", "with a comfortable strap"),
    "umbrella": ("for rainy days", "that opens in a second", "with a sturdy handle"),
}
_PATTERN_PHRASES: dict[str, tuple[str, ...]] = {
    "plain": ("in plain solid {c}", "in one solid {c} tone", "in plain {c} with no print"),
    "striped": ("with {c} stripes", "in {c} with bold stripes", "in {c} stripes"),
    "polka-dot": ("with {a} {c} polka-dot print", "in {c} covered in dots", "in {c} with polka dots"),
    "checked": ("in {a} {c} checked print", "with {c} checks", "in {c} gingham checks"),
    "zigzag": ("with {a} {c} zigzag print", "in {c} with zigzag lines", "in {c} with a chevron zigzag"),
}
_MATERIAL_PHRASES: dict[str, tuple[str, ...]] = {
    "cotton": ("soft cotton", "breathable cotton", "organic cotton"),
    "wool": ("warm wool", "knitted wool", "merino wool"),
    "leather": ("supple leather", "full-grain leather", "smooth leather"),
    "ceramic": ("glazed ceramic", "stoneware ceramic", "glossy ceramic"),
    "glass": ("clear glass", "tinted glass", "blown glass"),
    "metal": ("brushed metal", "polished metal", "stainless metal"),
    "wood": ("solid wood", "oiled wood", "natural wood"),
    "plastic": ("recycled plastic", "durable plastic", "lightweight plastic"),
}
_ADJECTIVES = ("stylish", "classic", "modern", "handy", "everyday", "elegant", "sturdy", "minimal", "cheerful", "compact")
_CLOSERS = (
    "A great gift.",
    "Ships within two days.",
    "Easy to care for.",
    "Designed in our studio.",
    "Limited stock.",
    "Backed by a one-year warranty.",
    "",
    "",
)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def make_title(category: str, colour: str, pattern: str, material: str) -> str:
    """The item title, e.g. ``"Blue striped cotton t-shirt"`` or ``"Plain red ceramic mug"``."""
    if pattern == "plain":
        return f"Plain {colour} {material} {category}"
    return f"{colour.capitalize()} {pattern} {material} {category}"


def caption(attrs: Mapping[str, str]) -> str:
    """A short, fixed-form caption for text-to-image and CLIP training.

    ``attrs`` maps 'category', 'colour', 'pattern' and 'material' to names from the module
    constants; the result reads e.g. ``"a photo of a striped blue cotton t-shirt"``.
    """
    try:
        cat, col, pat, mat = attrs["category"], attrs["colour"], attrs["pattern"], attrs["material"]
    except KeyError as exc:
        raise ValueError(f"caption: attrs lacks the key {exc.args[0]!r}") from None
    phrase = f"{pat} {col} {mat} {cat}"
    return f"a photo of {_article(phrase)} {phrase}"


def item_attributes(catalog: Catalog, index: int) -> dict[str, str]:
    """The attribute dict of item ``index`` (for :func:`caption`)."""
    return {k: catalog.attributes[k][index] for k in ("category", "colour", "pattern", "material")}


def describe(category: str, colour: str, pattern: str, material: str, brand: str, rng: np.random.Generator) -> str:
    """A varied product description that names category, colour, pattern and material.

    The category and colour words always appear literally (synonyms are added, never
    substituted), so text encoders and rewriting models can be checked against them.
    """

    def pick(options: Sequence[str], n: int = 1) -> list[str]:
        return [options[int(k)] for k in rng.choice(len(options), size=n, replace=False)]

    title = make_title(category, colour, pattern, material)
    lower_title = title[0].lower() + title[1:]
    (syn,) = pick(_CATEGORY_SYNONYMS[category])
    adj, adj2 = pick(_ADJECTIVES, 2)
    use, use2 = pick(_CATEGORY_USES[category], 2)
    (pat,) = pick(_PATTERN_PHRASES[pattern])
    pat = pat.format(c=colour, a=_article(colour))
    (mat,) = pick(_MATERIAL_PHRASES[material])
    a_adj, a_adj2 = _article(adj), _article(adj2)
    openers = (
        f"{title} by {brand}.",
        f"{brand} {lower_title}.",
        f"Meet the {lower_title} from {brand}.",
        f"The {colour} {category} you wanted: the {lower_title} by {brand}.",
        f"{title} | {brand}.",
    )
    bodies = (
        f"{a_adj.capitalize()} {adj} {syn} made of {mat}, {pat}.",
        f"This {category} is crafted from {mat} and comes {pat}.",
        f"{mat.capitalize()} {syn} {pat}, {use}.",
        f"{a_adj.capitalize()} {adj} {colour} {category} {use}, made of {mat}.",
        f"Made of {mat} and finished {pat}; {a_adj} {adj} {syn} {use}.",
    )
    seconds = (
        f"{a_adj2.capitalize()} {adj2} pick {use2}.",
        f"Pairs well with other {colour} pieces.",
        f"{_article(pattern).capitalize()} {pattern} look that suits any room or outfit."
        if pattern != "plain"
        else "A clean, plain look that suits any room or outfit.",
        f"Our customers love this {syn}.",
        "",
    )
    parts = [pick(openers)[0], pick(bodies)[0], pick(seconds)[0], pick(_CLOSERS)[0]]
    return " ".join(p for p in parts if p)


# --------------------------------------------------------------------------------------
# The shop: items, users, interactions.
# --------------------------------------------------------------------------------------


@dataclass
class ToyshopConfig:
    """Settings of :func:`make`; validated on construction (ValueError naming the field).

    Attributes:
        n_users, n_items: sizes of the shop.
        image_size: side of the square images, pixels, in [32, 256].
        seed: everything (attributes, images, texts, tastes, interactions) follows from it.
        interactions_per_user: mean history length (log-normal spread, at least ``min_per_user``).
        min_per_user: shortest history (>= 3 so leave-one-out keeps one training item).
        zipf_exponent, zipf_offset: popularity prior ``(rank / n_items + zipf_offset) ** -zipf_exponent``
            over a random item order (Zipf-Mandelbrot; the offset flattens the head).
        popularity_weight: weight of the log popularity prior in the logit (the long tail).
        taste_weight: scale of the users' attribute tastes (how much content explains choices).
        quality_std: std of a per-item quality term (brand offset plus noise).
        split: 'ratio' (80/10/10 per user) or 'loo' (leave-one-out by timestamp).
    """

    n_users: int = 1000
    n_items: int = 600
    image_size: int = 64
    seed: int = 0
    interactions_per_user: float = 30.0
    min_per_user: int = 5
    zipf_exponent: float = 3.5
    zipf_offset: float = 0.1
    popularity_weight: float = 1.0
    taste_weight: float = 1.0
    quality_std: float = 0.3
    split: str = "ratio"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"ToyshopConfig.{f.name} must be an integer, got {value!r}")
            if f.type in ("float", float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"ToyshopConfig.{f.name} must be a number, got {value!r}")
        if self.n_users < 1:
            raise ValueError(f"ToyshopConfig.n_users must be >= 1, got {self.n_users}")
        if self.n_items < 2:
            raise ValueError(f"ToyshopConfig.n_items must be >= 2, got {self.n_items}")
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise ValueError(f"ToyshopConfig.image_size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {self.image_size}")
        if self.min_per_user < 3:
            raise ValueError(f"ToyshopConfig.min_per_user must be >= 3, got {self.min_per_user}")
        if not self.interactions_per_user > 0:
            raise ValueError(f"ToyshopConfig.interactions_per_user must be > 0, got {self.interactions_per_user}")
        for name in ("zipf_exponent", "zipf_offset", "popularity_weight", "taste_weight", "quality_std"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"ToyshopConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.split not in ("ratio", "loo"):
            raise ValueError(f"ToyshopConfig.split must be 'ratio' or 'loo', got {self.split!r}")


OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ToyshopConfig))
"""The option names ``make`` and the ``toyshop:key=value,...`` dataset spec accept, in field order."""


def config_from_options(options: Mapping[str, object], where: str = "toyshop") -> ToyshopConfig:
    """A :class:`ToyshopConfig` from ``{option: value}``, every name and value checked.

    An unknown option or a wrong-typed or out-of-range value raises ValueError, one line
    starting with ``where`` (e.g. ``dataset spec 'toyshop:n_itemz=5'``) that names the option
    and lists the valid ones.
    """
    unknown = [name for name in options if name not in OPTIONS]
    if unknown:
        raise ValueError(f"{where}: unknown option {unknown[0]!r}; valid options: {', '.join(OPTIONS)}")
    try:
        return ToyshopConfig(**options)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def attribute_onehots(attributes: Mapping[str, Sequence[str]]) -> np.ndarray:
    """(n_items, 10 + 8 + 5 + 8) float32 one-hots of category, colour, pattern, material.

    The content features the users' tastes act on; also handy as an oracle content model.
    """
    blocks = []
    for key, names in (("category", CATEGORIES), ("colour", tuple(COLOURS)), ("pattern", PATTERNS), ("material", MATERIALS)):
        index = {n: k for k, n in enumerate(names)}
        codes = np.array([index[a] for a in attributes[key]], dtype=np.int64)
        blocks.append(np.eye(len(names), dtype=np.float32)[codes])
    return np.concatenate(blocks, axis=1)


def _sample_items(rng: np.random.Generator, n_items: int) -> dict[str, list[str]]:
    cats = rng.integers(len(CATEGORIES), size=n_items)
    cols = rng.integers(len(COLOURS), size=n_items)
    # Plain items are the most common in real shops.
    pats = rng.choice(len(PATTERNS), size=n_items, p=[0.32, 0.2, 0.16, 0.16, 0.16])
    colour_names = tuple(COLOURS)
    attrs: dict[str, list[str]] = {"category": [], "colour": [], "pattern": [], "material": [], "brand": []}
    for k in range(n_items):
        cat = CATEGORIES[cats[k]]
        attrs["category"].append(cat)
        attrs["colour"].append(colour_names[cols[k]])
        attrs["pattern"].append(PATTERNS[pats[k]])
        options = CATEGORY_MATERIALS[cat]
        attrs["material"].append(options[int(rng.integers(len(options)))])
        attrs["brand"].append(BRANDS[int(rng.integers(len(BRANDS)))])
    return attrs


def _user_tastes(rng: np.random.Generator, n_users: int, weight: float) -> np.ndarray:
    """(n_users, 31) taste vectors: a few favourite categories/colours, a pattern, a material.

    Categories differ in how many users like them (a Dirichlet share), as in real shops.
    """
    sizes = [len(CATEGORIES), len(COLOURS), len(PATTERNS), len(MATERIALS)]
    strengths = [4.0, 3.2, 1.6, 1.6]
    favourites = [(1, 3), (1, 3), (1, 2), (1, 2)]
    blocks = []
    for size, strength, (lo, hi) in zip(sizes, strengths, favourites):
        share = rng.dirichlet(np.full(size, 3.0))
        block = rng.normal(0.0, 0.5, size=(n_users, size))
        for u in range(n_users):
            k = int(rng.integers(lo, hi + 1))
            fav = rng.choice(size, size=k, replace=False, p=share)
            block[u, fav] += strength * rng.uniform(0.7, 1.3, size=k)
        blocks.append(block)
    return (weight * np.concatenate(blocks, axis=1)).astype(np.float32)


@dataclass
class PreferenceModel:
    """The interaction model's terms (module docstring), as drawn for one shop.

    tastes: (n_users, 31) float32 ``taste_u``; features: (n_items, 31) attribute one-hots;
    quality: (n_items,) ``quality_i``; log_prior: (n_items,) ``popularity_weight *
    log((rank_i / n_items + zipf_offset) ** -zipf_exponent)``, the popularity term as it enters the logit.
    """

    tastes: np.ndarray
    features: np.ndarray
    quality: np.ndarray
    log_prior: np.ndarray

    def logits(self, users: np.ndarray | None = None) -> np.ndarray:
        """(U, n_items) ``logit(u, i)`` of ``users`` (default all): what each user's draws follow."""
        tastes = self.tastes if users is None else self.tastes[np.asarray(users)]
        return tastes @ self.features.T + (self.quality + self.log_prior)[None, :]


def _preference_model(rng: np.random.Generator, features: np.ndarray, brands: Sequence[str], cfg: ToyshopConfig) -> PreferenceModel:
    n_items = features.shape[0]
    tastes = _user_tastes(rng, cfg.n_users, cfg.taste_weight)
    brand_quality = {b: q for b, q in zip(BRANDS, rng.normal(0.0, cfg.quality_std, size=len(BRANDS)))}
    quality = np.array([brand_quality[b] for b in brands]) + rng.normal(0.0, cfg.quality_std, size=n_items)
    ranks = rng.permutation(n_items) + 1
    log_prior = cfg.popularity_weight * -cfg.zipf_exponent * np.log(ranks / n_items + cfg.zipf_offset)
    return PreferenceModel(tastes, features, quality, log_prior)


def _sample_interactions(
    rng: np.random.Generator, features: np.ndarray, brands: Sequence[str], cfg: ToyshopConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, timestamps) sampled from the taste + quality + popularity model."""
    n_items = features.shape[0]
    logits = _preference_model(rng, features, brands, cfg).logits()

    # History lengths: log-normal around the mean, clipped to [min_per_user, n_items // 2]
    # (and to the catalog size, for tiny test catalogs).
    sigma = 0.5
    lengths = rng.lognormal(math.log(cfg.interactions_per_user) - sigma**2 / 2, sigma, size=cfg.n_users)
    low = min(cfg.min_per_user, n_items)
    lengths = np.clip(np.round(lengths), low, max(low, n_items // 2)).astype(np.int64)

    # Gumbel top-k = sampling without replacement from softmax(logits), all users at once.
    keys = logits + rng.gumbel(size=logits.shape)
    order = np.argsort(-keys, axis=1, kind="stable")
    users = np.repeat(np.arange(cfg.n_users), lengths)
    items = np.concatenate([order[u, : lengths[u]] for u in range(cfg.n_users)])

    # Timestamps: each user starts somewhere in a year and acts every ~day, in random order
    # (so the last item of a history is an ordinary draw, not the least liked one).
    start = 1_600_000_000 + rng.uniform(0, 365 * 86400, size=cfg.n_users)
    timestamps = np.empty(len(items), dtype=np.float64)
    offset = 0
    for u in range(cfg.n_users):
        n = lengths[u]
        gaps = rng.exponential(86400.0, size=n)
        times = np.round(start[u] + np.cumsum(gaps))
        timestamps[offset : offset + n] = times[rng.permutation(n)]
        offset += n
    return users, items, timestamps


def make(
    n_users: int = 1000,
    n_items: int = 600,
    image_size: int = 64,
    seed: int = 0,
    interactions_per_user: float = 30.0,
    **overrides,
) -> Dataset:
    """Generate the toyshop dataset (name ``'toyshop'``).

    Returns a :class:`~venomkit.data.dataset.Dataset` whose catalog holds in-memory
    (3, image_size, image_size) float images in [0, 1], texts, and the attributes
    'category', 'colour', 'pattern', 'material', 'title', 'brand' (index-aligned lists of
    strings); interactions carry timestamps. ``overrides`` are further
    :class:`ToyshopConfig` fields (``zipf_exponent``, ``popularity_weight``,
    ``taste_weight``, ``quality_std``, ``min_per_user``, ``split``). Deterministic given
    ``seed``; the default (1,000 users x 600 items at 64 px) takes a few seconds on one core.
    Options are checked by :func:`config_from_options` (ValueError naming a bad one).
    """
    cfg = config_from_options(
        dict(
            n_users=n_users,
            n_items=n_items,
            image_size=image_size,
            seed=seed,
            interactions_per_user=interactions_per_user,
            **overrides,
        )
    )
    seq = np.random.SeedSequence(cfg.seed)
    item_seq, text_seq, user_seq, image_seq = seq.spawn(4)
    attrs = _sample_items(np.random.default_rng(item_seq), cfg.n_items)

    text_rng = np.random.default_rng(text_seq)
    titles, texts = [], []
    for k in range(cfg.n_items):
        a = (attrs["category"][k], attrs["colour"][k], attrs["pattern"][k], attrs["material"][k])
        titles.append(make_title(*a))
        texts.append(describe(*a, brand=attrs["brand"][k], rng=text_rng))
    attrs["title"] = titles

    # One child seed per item: an item's image depends on its own seed only.
    images = []
    for k, child in enumerate(progress_bar(image_seq.spawn(cfg.n_items), desc="toyshop images", unit="img", leave=False)):
        images.append(
            render_item(
                attrs["category"][k],
                attrs["colour"][k],
                attrs["pattern"][k],
                attrs["material"][k],
                cfg.image_size,
                np.random.default_rng(child),
            )
        )

    features = attribute_onehots(attrs)
    users, items, timestamps = _sample_interactions(np.random.default_rng(user_seq), features, attrs["brand"], cfg)
    interactions = Interactions.from_pairs(users, items, cfg.n_users, cfg.n_items, timestamps=timestamps)

    width = max(4, len(str(cfg.n_items - 1)))
    catalog = Catalog(
        item_ids=[f"item{k:0{width}d}" for k in range(cfg.n_items)],
        texts=texts,
        placeholder_size=cfg.image_size,
        attributes={key: attrs[key] for key in ("category", "colour", "pattern", "material", "title", "brand")},
        images=images,
    )
    uwidth = max(4, len(str(cfg.n_users - 1)))
    return Dataset(
        name="toyshop",
        catalog=catalog,
        interactions=interactions,
        split=make_split(interactions, method=cfg.split, seed=cfg.seed),
        user_ids=[f"user{u:0{uwidth}d}" for u in range(cfg.n_users)],
    )


def preference_model(**options: object) -> PreferenceModel:
    """The hidden interaction model of the shop ``make(**options)`` builds (same options, same
    draws), without rendering it: the ground truth a recommender is measured against (an
    oracle ranks by ``logits()``; ``log_prior`` alone is the popularity every user shares).
    Options as :func:`make` (ValueError naming a bad one)."""
    cfg = config_from_options(options, where="preference_model")  # ToyshopConfig's defaults are make()'s
    item_seq, _, user_seq, _ = np.random.SeedSequence(cfg.seed).spawn(4)
    attrs = _sample_items(np.random.default_rng(item_seq), cfg.n_items)
    return _preference_model(np.random.default_rng(user_seq), attribute_onehots(attrs), attrs["brand"], cfg)


def contact_sheet(catalog: Catalog, indices: Sequence[int], ncol: int = 8, pad: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile item images into one (3, H, W) float image in [0, 1] (for figures and reports)."""
    indices = list(indices)
    if not indices:
        raise ValueError("contact_sheet: no indices given")
    if ncol < 1:
        raise ValueError(f"contact_sheet: ncol must be >= 1, got {ncol}")
    s = max(max(catalog.image_size(int(i))) for i in indices)
    nrow = math.ceil(len(indices) / ncol)
    sheet = torch.full((3, pad + nrow * (s + pad), pad + ncol * (s + pad)), float(pad_value))
    for k, index in enumerate(indices):
        r, c = divmod(k, ncol)
        img = catalog.image(int(index))
        h, w = img.shape[-2:]
        if max(h, w) != s:  # display only: fit the longer side, keep the aspect ratio
            scale = s / max(h, w)
            h, w = max(1, round(h * scale)), max(1, round(w * scale))
            img = torch.nn.functional.interpolate(img[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
        y, x = pad + r * (s + pad) + (s - h) // 2, pad + c * (s + pad) + (s - w) // 2
        sheet[:, y : y + h, x : x + w] = img.clamp(0, 1)
    return sheet


# --------------------------------------------------------------------------------------
# CLI: `venomkit toyshop --out DIR`.
# --------------------------------------------------------------------------------------


def add_toyshop_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``venomkit toyshop``."""
    parser.add_argument("--out", required=True, type=Path, help="folder to write (RecBole atomic files + images/ as PNG)")
    parser.add_argument("--users", type=int, default=1000, help="number of users (default 1000)")
    parser.add_argument("--items", type=int, default=600, help="number of items (default 600)")
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels, 32-256 (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--interactions-per-user", type=float, default=30.0, help="mean history length (default 30)")
    return parser


def cli_toyshop(args: argparse.Namespace) -> int:
    """Generate toyshop and write it to ``args.out`` with :func:`venomkit.data.export.write_atomic`."""
    dataset = make(
        n_users=args.users,
        n_items=args.items,
        image_size=args.image_size,
        seed=args.seed,
        interactions_per_user=args.interactions_per_user,
    )
    write_atomic(dataset, args.out)
    pop = dataset.split.train.popularity()
    print(
        f"toyshop: {dataset.n_users} users x {dataset.n_items} items, {dataset.interactions.nnz} interactions, "
        f"{int((pop <= 5).sum())} cold items (<= 5 training interactions), images {args.image_size} px -> {args.out}"
    )
    return 0
