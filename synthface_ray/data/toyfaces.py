"""ToyFaces: an embedded, procedurally rendered face dataset with a real identity problem.

Every identity is a deterministic vector of continuous factors (face shape, skin tone, eyes,
brows, nose, mouth, ears, hair, facial hair, distinctive marks) drawn from ``(seed, identity)``.
Every image independently draws nuisance factors (pose, scale/translation, expression,
illumination, white balance, background colour/texture, clothing, blur, noise, occluders) from
``(seed, identity, image_index)``; their strength is scaled by ``difficulty``. Faces are drawn
with Pillow on a supersampled canvas and box-downsampled, so they are antialiased RGB images.

Everything is a pure function of its arguments: the same seed gives byte-identical PNGs no matter
how rows are batched. See ``docs/TOYFACES.md`` for the factor list and measured difficulty.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw, ImageFilter

from synthface_ray.config import check_range, check_seed
from synthface_ray.data import schema
from synthface_ray.data.transforms import encode_png

IDENTITY_FACTORS: tuple[str, ...] = (
    "face_width", "face_length", "jaw_taper", "skin_tone", "skin_warmth",
    "eye_spacing", "eye_height", "eye_size", "eye_colour",
    "brow_thickness", "brow_arch", "nose_length", "nose_width",
    "mouth_width", "lip_fullness", "ear_size",
    "hair_colour", "hair_style", "hair_volume", "hairline", "facial_hair",
    "mark1_x", "mark1_y", "mark1_kind", "mark2_x", "mark2_y", "mark2_presence",
)  # fmt: skip

NUISANCE_FACTORS: tuple[str, ...] = (
    "roll", "yaw", "scale", "shift_x", "shift_y",
    "mouth_curve", "mouth_open", "eye_open",
    "light_azimuth", "light_strength", "exposure", "white_balance_r", "white_balance_b",
    "bg_r", "bg_g", "bg_b", "bg_texture_kind", "bg_texture_strength", "bg_texture_seed",
    "clothing_r", "clothing_g", "clothing_b",
    "blur_sigma", "noise_std", "noise_seed", "occluder", "occluder_param",
)  # fmt: skip

#: values of the ``occluder`` nuisance factor
OCCLUDER_NONE, OCCLUDER_GLASSES, OCCLUDER_FRINGE = 0, 1, 2

_ID_TAG, _NUIS_TAG = 0x7F01, 0x7F02  # keep identity and image random streams apart
_NEUTRAL_BG = np.array([0.55, 0.55, 0.55])
_NEUTRAL_CLOTHES = np.array([0.30, 0.36, 0.48])
_UNIT = 1 / 2.8  # canonical unit (about half a head height) as a fraction of the image size

_SKIN = np.array([[62, 40, 28], [120, 80, 55], [176, 128, 96], [222, 178, 148], [246, 214, 190]])
_HAIR = np.array(  # black .. auburn .. brown .. blond .. platinum
    [
        [20, 16, 14],
        [48, 32, 24],
        [120, 52, 28],
        [96, 64, 40],
        [150, 110, 66],
        [212, 176, 110],
        [236, 228, 204],
    ]
)
_IRIS = np.array([[50, 30, 20], [100, 62, 30], [120, 110, 50], [70, 120, 80], [70, 120, 190]])


@dataclass
class ToyFacesConfig:
    """How many ToyFaces to render, at what resolution and how hard.

    ``difficulty`` in [0, 1] scales every nuisance factor (0: one canonical image per identity,
    1: strong pose, lighting, background, blur and noise). ``occluder_prob`` is the chance that an
    image gets glasses or a fringe, independent of difficulty. ``source`` fills the source column.
    ``first_identity``: the identities rendered are ``first_identity .. first_identity +
    identities - 1`` (label = identity number, ``identity`` = ``toy-<number>``); each is drawn from
    ``(seed, number)``, so a range after another set's gives new people with disjoint labels and
    names, e.g. a real test set of identities no model trained on (docs/BENCHMARKS.md).
    """

    seed: int = 0
    first_identity: int = 0
    identities: int = 64
    images_per_identity: int = 16
    resolution: int = 32
    difficulty: float = 0.5
    occluder_prob: float = 0.2
    source: int = 0

    def __post_init__(self) -> None:
        check_seed("toyfaces.seed", self.seed)
        check_range("toyfaces.first_identity", self.first_identity, 0)
        check_range("toyfaces.identities", self.identities, 1)
        check_range("toyfaces.images_per_identity", self.images_per_identity, 1)
        check_range("toyfaces.resolution", self.resolution, 16, 128)
        check_range("toyfaces.difficulty", self.difficulty, 0.0, 1.0)
        check_range("toyfaces.occluder_prob", self.occluder_prob, 0.0, 1.0)
        check_range("toyfaces.source", self.source, 0)

    def numbers(self) -> range:
        """The identity numbers rendered (labels)."""
        return range(self.first_identity, self.first_identity + self.identities)


# factor vectors -------------------------------------------------------------------------------
def identity_factors(seed: int, identity: int) -> np.ndarray:
    """The identity's factor vector: float32 in [0, 1], one entry per ``IDENTITY_FACTORS``."""
    rng = np.random.default_rng([_ID_TAG, seed, identity])
    return rng.random(len(IDENTITY_FACTORS)).astype(np.float32)


def nuisance_factors(
    seed: int, identity: int, image_index: int, difficulty: float, occluder_prob: float
) -> np.ndarray:
    """One image's nuisance vector (float32, ``NUISANCE_FACTORS`` order, physical units).

    Raw values are drawn in a fixed order whatever the arguments, then scaled by ``difficulty``,
    so raising the difficulty makes the same image harder rather than a different image.
    """
    rng = np.random.default_rng([_NUIS_TAG, seed, identity, image_index])
    u = rng.random(27)
    d = float(difficulty)
    mix = min(1.0, 1.6 * d)  # background and clothes colours reach full randomness at d=0.625
    rand_bg = 0.12 + 0.76 * u[13:16]
    rand_bg = rand_bg.mean() + (rand_bg - rand_bg.mean()) * 0.7  # less garish
    bg = _NEUTRAL_BG * (1 - mix) + rand_bg * mix
    clothes = _NEUTRAL_CLOTHES * (1 - mix) + u[19:22] * 0.85 * mix
    occluder = OCCLUDER_NONE
    if u[25] < occluder_prob:
        occluder = OCCLUDER_GLASSES if u[26] < 0.5 else OCCLUDER_FRINGE
    values = [
        d * np.radians(30.0) * (2 * u[0] - 1),  # roll (radians)
        d * 1.2 * (2 * u[1] - 1),  # yaw: head turn, +-1.2 at difficulty 1
        1.0 + d * 0.25 * (2 * u[2] - 1),  # scale
        d * 0.12 * (2 * u[3] - 1),  # shift_x (fraction of the image)
        d * 0.10 * (2 * u[4] - 1),  # shift_y
        d * 1.6 * (2 * u[5] - 1),  # mouth_curve: smile > 0 > frown
        d * max(0.0, 1.6 * u[6] - 0.6),  # mouth_open
        1.0 - d * 1.6 * max(0.0, u[7] - 0.4),  # eye_open: 1 open .. 0.04 closed
        2 * np.pi * u[8],  # light_azimuth
        d * 1.2 * u[9],  # light_strength
        1.0 + d * 0.5 * (2 * u[10] - 1),  # exposure gain
        1.0 + d * 0.24 * (2 * u[11] - 1),  # white_balance_r
        1.0 + d * 0.24 * (2 * u[12] - 1),  # white_balance_b
        *bg,
        float(int(u[16] * 4)),  # bg_texture_kind: gradient, blotches, stripes, tiles
        d * 1.2 * u[17],  # bg_texture_strength
        float(int(u[18] * (1 << 24))),  # bg_texture_seed (exact in float32)
        *clothes,
        d * 1.7 * u[22] ** 2,  # blur_sigma in pixels at 32px
        d * 18.0 * u[23],  # noise_std in 0..255 units
        float(int(u[24] * (1 << 24))),  # noise_seed
        float(occluder),
        float(u[26] * 2 % 1.0),  # occluder_param: glasses tint / fringe length
    ]
    return np.asarray(values, dtype=np.float32)


# identity -> geometry and colours -------------------------------------------------------------
def _palette(table: np.ndarray, t: float) -> np.ndarray:
    """Piecewise-linear colour from ``table`` at position ``t`` in [0, 1] (float RGB)."""
    pos = min(max(t, 0.0), 1.0) * (len(table) - 1)
    i = min(int(pos), len(table) - 2)
    return table[i] * (1 - (pos - i)) + table[i + 1] * (pos - i)


def _rgb(c: np.ndarray) -> tuple[int, int, int]:
    r, g, b = np.clip(np.rint(c), 0, 255).astype(int).tolist()
    return r, g, b


def _face_geometry(f: dict[str, float]) -> dict[str, float]:
    """Feature positions and sizes in canonical units (head half-height ~1, y down)."""
    a, b = 0.58 + 0.24 * f["face_width"], 0.86 + 0.22 * f["face_length"]
    eye_y = -b * (0.02 + 0.2 * f["eye_height"])
    eye_w = 0.10 + 0.08 * f["eye_size"]
    nose_bot = eye_y + b * (0.26 + 0.2 * f["nose_length"])
    return {
        "a": a, "b": b, "jaw": 0.05 + 0.4 * f["jaw_taper"],
        "eye_x": a * (0.30 + 0.2 * f["eye_spacing"]), "eye_y": eye_y, "eye_w": eye_w,
        "brow_t": 0.04 + 0.07 * f["brow_thickness"], "brow_arch": -0.05 + 0.15 * f["brow_arch"],
        "nose_bot": nose_bot, "nose_w": 0.07 + 0.1 * f["nose_width"],
        "mouth_y": nose_bot + (b - nose_bot) * 0.36, "mouth_w": a * (0.28 + 0.24 * f["mouth_width"]),
        "lip_t": 0.03 + 0.05 * f["lip_fullness"], "ear": 0.8 + 0.5 * f["ear_size"],
        "hairline": eye_y - 0.28 - 0.3 * f["hairline"],
    }  # fmt: skip


def _face_colours(f: dict[str, float]) -> dict[str, tuple[int, int, int]]:
    """Skin, hair, iris, lip and brow colours of an identity."""
    warm = (f["skin_warmth"] - 0.5) * np.array([26.0, 4.0, -22.0])
    skin = _palette(_SKIN, f["skin_tone"]) + warm
    hair = _palette(_HAIR, f["hair_colour"])
    lips = skin * np.array([0.82, 0.56, 0.58]) + np.array([30.0, 6.0, 8.0])
    named = {
        "skin": skin, "shade": skin * 0.8, "dark": skin * 0.55, "ear": skin * 0.9,
        "neck": skin * 0.78, "hair": hair, "brow": hair * 0.6 + skin * 0.15,
        "iris": _palette(_IRIS, f["eye_colour"]), "lips": lips, "stubble": hair * 0.55 + skin * 0.45,
    }  # fmt: skip
    rgb = np.clip(np.rint(np.stack(list(named.values()))), 0, 255).astype(int).tolist()
    return {name: tuple(c) for name, c in zip(named, rgb)}


# drawing --------------------------------------------------------------------------------------
#: a shape in the canonical face frame: (points (n, 2), depth for the yaw shift, fill colour or
#: "clothes", line width in canonical units or 0 for a filled polygon)
_Shape = tuple[np.ndarray, float, object, float]

_XS9 = np.linspace(1.0, -1.0, 9)
_XS11 = np.linspace(-1.0, 1.0, 11)
_BEND11 = 1 - _XS11**2
_SQRT_BEND11 = np.sqrt(_BEND11)


@lru_cache(maxsize=8)
def _unit_circle(n: int) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
    return _unit_circle(n) * (rx, ry) + (cx, cy)


def _pts(xs, ys) -> np.ndarray:
    return np.stack([np.asarray(xs, float), np.asarray(ys, float)], axis=1)


def _head_outline(g: dict[str, float], grow: float = 0.0, n: int = 28) -> np.ndarray:
    """Head outline: an ellipse whose lower half tapers towards the chin by ``jaw``."""
    pts = _unit_circle(n) * (g["a"] + grow, g["b"] + grow)
    lower = np.clip(pts[:, 1] / g["b"], 0, 1)
    pts[:, 0] *= 1 - g["jaw"] * lower**2
    return pts


def _hair_style(f: dict[str, float]) -> int:
    """Hair style class 0..4 (buzz, short crop, side part, long, curly) from the continuous factor."""
    return min(int(f["hair_style"] * 5), 4)


def _body_shapes(g: dict, col: dict, f: dict) -> list[_Shape]:
    """Long/voluminous back hair, shoulders, neck and ears (everything behind the face)."""
    style, vol, hair = _hair_style(f), f["hair_volume"], col["hair"]
    a, b = g["a"], g["b"]
    shapes: list[_Shape] = []
    if style == 4:  # big curly volume
        shapes.append(
            (_ellipse(0, -0.15, a + 0.3 + 0.25 * vol, b + 0.1 + 0.2 * vol, 28), -0.1, hair, 0)
        )
    if style == 3:  # long hair falling to the shoulders
        ln, w = 0.9 + 0.6 * vol, a + 0.18 + 0.1 * vol
        back = _pts([a + 0.12, w, -w, -a - 0.12], [-0.2, ln, ln, -0.2])
        shapes.append(
            (np.vstack([_ellipse(0, -0.2, a + 0.14, b * 0.95)[10:], back]), -0.1, hair, 0)
        )
    shapes.append((_ellipse(0, b + 1.05, 1.55, 0.75, 28), -0.1, "clothes", 0))
    neck = _pts([-a * 0.42, a * 0.42, a * 0.48, -a * 0.48], [0.3, 0.3, b + 0.42, b + 0.42])
    shapes.append((neck, 0.0, col["neck"], 0))
    ear_y, s = g["eye_y"] + 0.12, g["ear"]
    for side in (-1, 1):
        shapes.append(
            (_ellipse(side * (a - 0.02), ear_y, 0.09 * s, 0.16 * s, 12), -0.4, col["ear"], 0)
        )
    if style == 3:  # strands in front of the ears
        for side in (-1, 1):
            xs = side * np.array([a - 0.1, a + 0.16, a + 0.2, a - 0.02])
            shapes.append((_pts(xs, [-0.4, -0.3, 0.7 + 0.5 * vol, 0.7 + 0.5 * vol]), -0.1, hair, 0))
    return shapes


def _face_shapes(g: dict, col: dict, f: dict) -> list[_Shape]:
    """Head, distinctive marks, facial hair and nose: the expression-independent face."""
    shapes: list[_Shape] = [(_head_outline(g), 0.1, col["skin"], 0)]
    shapes += _mark_shapes(g, f)
    shapes += _beard_shapes(g, col, f)
    nw, nb, top = g["nose_w"], g["nose_bot"], g["eye_y"] + 0.05
    shapes.append(
        (_pts([-0.02, 0.03, nw, -nw * 0.6], [top, top, nb, nb + 0.02]), 0.9, col["shade"], 0)
    )
    for side in (-1, 1):
        shapes.append((_ellipse(side * nw * 0.55, nb, nw * 0.32, 0.025, 8), 1.0, col["dark"], 0))
    return shapes


def _mark_shapes(g: dict, f: dict) -> list[_Shape]:
    """Mole, scar or birthmark (mark 1, always) and a second mole for some identities."""
    x1, y1 = (2 * f["mark1_x"] - 1) * g["a"] * 0.6, g["eye_y"] + 0.1 + f["mark1_y"] * 0.55
    kind = f["mark1_kind"]
    if kind < 0.4:
        shapes = [(_ellipse(x1, y1, 0.055, 0.055, 10), 0.5, (48, 28, 22), 0)]
    elif kind < 0.7:
        dx, dy = np.cos(kind * 20.0) * 0.16, np.sin(kind * 20.0) * 0.16
        shapes = [(_pts([x1 - dx, x1 + dx], [y1 - dy, y1 + dy]), 0.5, (150, 60, 60), 0.045)]
    else:
        shapes = [(_ellipse(x1, y1, 0.15, 0.11, 14), 0.5, (150, 50, 70), 0)]
    if f["mark2_presence"] > 0.6:
        x2, y2 = (2 * f["mark2_x"] - 1) * g["a"] * 0.65, g["eye_y"] + 0.05 + f["mark2_y"] * 0.6
        shapes.append((_ellipse(x2, y2, 0.045, 0.045, 8), 0.5, (40, 24, 20), 0))
    return shapes


def _beard_shapes(g: dict, col: dict, f: dict) -> list[_Shape]:
    """Stubble or a full beard with moustache for identities with high ``facial_hair``."""
    if f["facial_hair"] < 0.7:
        return []
    colour = col["stubble"] if f["facial_hair"] < 0.82 else col["hair"]
    outline = _head_outline(g, 0.01, 36)
    lower = outline[outline[:, 1] > g["nose_bot"] * 0.5 + g["mouth_y"] * 0.5 - 0.05]
    lower = lower[np.argsort(-lower[:, 0])]  # right to left along the jaw
    mw, my, nb = g["mouth_w"], g["mouth_y"], g["nose_bot"] + 0.04
    upper = _pts([-mw * 1.25, -mw * 0.5, mw * 0.5, mw * 1.25], [my - 0.02, nb, nb, my - 0.02])
    return [(np.vstack([lower, upper]), 0.4, colour, 0)]


def _hair_shapes(g: dict, col: dict, f: dict) -> list[_Shape]:
    """Hair over the top of the head, closed along a hairline across the forehead."""
    style, vol = _hair_style(f), f["hair_volume"]
    a, top = g["a"], g["hairline"]
    grow = (0.02, 0.06, 0.08, 0.08, 0.14)[style] + 0.06 * vol * (style > 0)
    outline = _head_outline(g, grow, 36)
    arc = outline[outline[:, 1] < g["eye_y"] + 0.02]
    arc = arc[np.argsort(arc[:, 0])]  # over the top, left to right
    sweep = 0.0 if style != 2 else (0.3 if vol > 0.5 else -0.3)
    ys = top + 0.07 * (1 - _XS9**2) + sweep * (_XS9 + 1) * 0.5 - (sweep > 0) * 0.15
    ys = np.where(np.abs(_XS9) > 0.9, g["eye_y"] + 0.02, ys)
    rim = -(g["b"] + grow) * np.sqrt(np.clip(1 - (_XS9 * 0.98 * a / (a + grow)) ** 2, 0, 1))
    ys = np.maximum(ys, rim + 0.12)  # keep the hairline under the crown (no self-intersection)
    colour = col["hair"] if style else col["stubble"]
    return [(np.vstack([arc, _pts(_XS9 * a * 0.98, ys)]), 0.0, colour, 0)]


def _eye_shapes(g: dict, col: dict, nu: dict) -> list[_Shape]:
    """Brows, eye sockets, sclera, iris and pupil; closed eyes become a lash line."""
    ex, ey, ew = g["eye_x"], g["eye_y"], g["eye_w"]
    open_ = min(max(nu["eye_open"], 0.04), 1.0)
    eh = ew * 0.62 * open_
    shapes: list[_Shape] = []
    for side in (-1, 1):
        cx = side * ex
        bx = cx + side * np.array([-1.38, -0.24, 1.38]) * ew
        by = ey - ew * 0.95 - np.array([0.0, g["brow_arch"] + 0.04, g["brow_arch"] * 0.3])
        shapes.append((_pts(bx, by), 0.55, col["brow"], g["brow_t"]))
        shapes.append((_ellipse(cx, ey, ew * 1.25, ew * 0.85, 14), 0.55, col["shade"], 0))
        if open_ < 0.2:
            shapes.append(
                (_pts([cx - ew, cx, cx + ew], [ey, ey + 0.012, ey]), 0.55, (30, 22, 20), 0.035)
            )
            continue
        r = min(ew * 0.55, eh * 1.05)
        shapes.append((_ellipse(cx, ey, ew, eh, 16), 0.55, (238, 236, 230), 0))
        shapes.append((_ellipse(cx, ey, r, min(r, eh), 12), 0.6, col["iris"], 0))
        shapes.append((_ellipse(cx, ey, r * 0.45, min(r, eh) * 0.45, 8), 0.6, (12, 10, 10), 0))
        lid_x = cx + np.array([-1, -0.5, 0.0, 0.5, 1]) * ew
        lid_y = ey - eh * np.array([0.2, 0.85, 1.0, 0.85, 0.2])
        shapes.append((_pts(lid_x, lid_y), 0.55, (35, 26, 22), 0.03))
    return shapes


def _mouth_shapes(g: dict, col: dict, nu: dict) -> list[_Shape]:
    """Lips whose curve (smile/frown) and opening follow the expression."""
    mw, my, lt = g["mouth_w"], g["mouth_y"], g["lip_t"]
    curve, opening = nu["mouth_curve"], nu["mouth_open"]
    mid = my + 0.07 * curve * _BEND11
    gap = 0.12 * opening * _SQRT_BEND11
    top = mid - lt * (0.4 + 0.6 * _SQRT_BEND11) - gap * 0.4
    bottom = mid + lt * 1.4 * _SQRT_BEND11 + gap * 0.6
    x = _XS11 * mw * (1 + 0.1 * max(curve, 0))
    shapes: list[_Shape] = [
        (_pts(np.r_[x, x[::-1]], np.r_[top, bottom[::-1]]), 0.6, col["lips"], 0)
    ]
    if opening > 0.05:
        inner_y = np.r_[mid - gap * 0.4, (mid + gap * 0.6)[::-1]]
        shapes.append((_pts(np.r_[x, x[::-1]], inner_y), 0.6, (70, 22, 28), 0))
    shapes.append((_pts(x * 0.95, mid), 0.6, (90, 40, 40), 0.03))
    return shapes


def _occluder_shapes(g: dict, col: dict, nu: dict) -> list[_Shape]:
    """Glasses (clear or sunglasses, frame colour from the parameter) or a hair fringe."""
    kind, p = int(nu["occluder"]), float(nu["occluder_param"])
    shapes: list[_Shape] = []
    if kind == OCCLUDER_GLASSES:
        r, ex, ey = g["eye_w"] * 1.45, g["eye_x"], g["eye_y"]
        frame = ((20, 20, 24), (120, 30, 30), (150, 150, 160))[int(p * 3) % 3]
        for side in (-1, 1):
            ring = _ellipse(side * ex, ey, r, r * 0.8, 16)
            if p > 0.6:
                shapes.append((ring, 0.6, (28, 30, 38), 0))
            shapes.append((np.vstack([ring, ring[:1]]), 0.6, frame, 0.05))
        shapes.append((_pts([-ex + r, ex - r], [ey - 0.02, ey - 0.02]), 0.7, frame, 0.05))
    elif kind == OCCLUDER_FRINGE:
        a, bottom = g["a"], g["eye_y"] - g["eye_w"] * (0.9 - 1.4 * p)
        xs = np.linspace(a * 0.95, -a * 0.95, 11)
        ys = bottom + 0.06 * (np.arange(11) % 2) + 0.08 * (xs / a) ** 2
        cap = _ellipse(0, g["hairline"] - 0.05, a + 0.06, 0.4, 16)
        cap = cap[cap[:, 1] <= g["hairline"] - 0.05]
        cap = cap[np.argsort(cap[:, 0])]
        shapes.append((np.vstack([cap, _pts(xs, ys)]), 0.1, col["hair"], 0))
    return shapes


@lru_cache(maxsize=1024)
def _identity_model(key: bytes) -> tuple[dict, dict, list[_Shape], list[_Shape]]:
    """Geometry, colours and the static shapes (behind / above the features) of an identity.

    Memoised on the identity vector's bytes: a pure function, cached because every image of an
    identity shares it. Callers must not mutate the returned objects.
    """
    f = dict(zip(IDENTITY_FACTORS, np.frombuffer(key, np.float32).astype(float).tolist()))
    g, col = _face_geometry(f), _face_colours(f)
    return g, col, _body_shapes(g, col, f) + _face_shapes(g, col, f), _hair_shapes(g, col, f)


def _pose_matrix(nu: dict[str, float], canvas: int) -> np.ndarray:
    """2x3 affine from canonical units to canvas pixels: scale, roll, then translation."""
    unit = canvas * _UNIT * nu["scale"]
    c, s = np.cos(nu["roll"]) * unit, np.sin(nu["roll"]) * unit
    return np.array(
        [[c, -s, canvas * (0.5 + nu["shift_x"])], [s, c, canvas * (0.47 + nu["shift_y"])]]
    )


def _draw_shapes(
    draw: ImageDraw.ImageDraw, shapes: list[_Shape], matrix: np.ndarray, yaw: float, clothes: tuple
) -> None:
    """Warp every shape's points for yaw, map them with ``matrix`` (all at once) and draw in order.

    Yaw squeezes the face horizontally, compresses the side turning away and shifts each shape
    sideways in proportion to its depth (nose most, ears opposite), like a head turning.
    """
    counts = [len(s[0]) for s in shapes]
    pts = np.concatenate([s[0] for s in shapes])
    depth = np.repeat([s[1] for s in shapes], counts)
    x, y = pts[:, 0], pts[:, 1]
    x = (1 - 0.15 * abs(yaw)) * x * (1 - 0.3 * yaw * np.clip(x, -1, 1)) + 0.28 * yaw * depth
    out = np.empty((len(x), 2))
    out[:, 0] = matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]
    out[:, 1] = matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]
    flat = out.ravel().tolist()
    px = float(np.hypot(matrix[0, 0], matrix[1, 0]))  # canvas pixels per canonical unit
    pos = 0
    for (_, _, fill, width), n in zip(shapes, counts):
        xy, pos = flat[pos : pos + 2 * n], pos + 2 * n
        fill = clothes if fill == "clothes" else fill
        if width:
            draw.line(xy, fill=fill, width=max(1, round(width * px)), joint="curve")
        else:
            draw.polygon(xy, fill=fill)


# background, lighting, blur, noise ------------------------------------------------------------
@lru_cache(maxsize=16)
def _grid(res: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] as (y, x) arrays of shape (res, res)."""
    c = (np.arange(res) + 0.5) / res * 2 - 1
    return np.meshgrid(c, c, indexing="ij")


@lru_cache(maxsize=16)
def _upsample_matrix(res: int, cells: int) -> np.ndarray:
    """(res, cells) bilinear interpolation weights from a coarse grid to ``res`` pixels."""
    pos = np.linspace(0, cells - 1, res)
    return np.stack([np.interp(pos, np.arange(cells), np.eye(cells)[k]) for k in range(cells)], 1)


def _texture(kind: int, rng: np.random.Generator, res: int) -> np.ndarray:
    """Background texture in about [-1, 1], shape (res, res, 3)."""
    y, x = _grid(res)
    if kind == 1:  # colourful blotches
        w = _upsample_matrix(res, 5)
        rows = (w @ rng.normal(0, 0.7, (5, 15))).reshape(res, 5, 3)  # (y, j, c)
        return (rows.transpose(0, 2, 1) @ w.T).transpose(0, 2, 1)
    ang, phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi), rng.uniform(2, 6)
    t = x * np.cos(ang) + y * np.sin(ang)
    if kind == 0:  # linear gradient
        out = t * 0.8
    elif kind == 2:  # stripes
        out = np.sin(np.pi * freq * t + phase)
    else:  # tiles
        u = -x * np.sin(ang) + y * np.cos(ang)
        out = np.tanh(3 * np.sin(np.pi * freq * t + phase) * np.sin(np.pi * freq * u))
    tint = rng.uniform(0.5, 1.0, 3)
    return out[..., None] * tint


def _background(nu: dict[str, float], res: int) -> np.ndarray:
    """Background at output resolution: colour plus a seeded texture, float RGB 0..255."""
    colour = np.array([nu["bg_r"], nu["bg_g"], nu["bg_b"]]) * 255
    rng = np.random.default_rng(int(nu["bg_texture_seed"]))
    tex = _texture(int(nu["bg_texture_kind"]), rng, res)
    return colour + 70.0 * nu["bg_texture_strength"] * tex


def _lighting(
    nu: dict[str, float], g: dict, matrix: np.ndarray, canvas: int, res: int
) -> np.ndarray:
    """Per-pixel RGB gain (res, res, 3): a lit sphere over the head, a soft gradient elsewhere,
    times exposure and white balance."""
    y, x = _grid(res)
    half = canvas / 2
    px, py = x * half + half - matrix[0, 2], y * half + half - matrix[1, 2]
    inv = np.linalg.inv(matrix[:, :2])
    rx = (g["a"] + 0.06) * (1 - 0.15 * abs(nu["yaw"]))
    u = (inv[0, 0] * px + inv[0, 1] * py - 0.028 * nu["yaw"]) / rx
    v = (inv[1, 0] * px + inv[1, 1] * py + 0.05) / (g["b"] + 0.1)
    r2 = u * u + v * v
    nz = np.sqrt(np.clip(1 - r2, 0, 1))
    az, s = nu["light_azimuth"], nu["light_strength"]
    lx, ly, lz = np.cos(az) * 0.8, np.sin(az) * 0.8, 0.6
    sphere = 1 + s * 0.9 * (np.clip(u * lx + v * ly + nz * lz, -0.2, 1) - lz)
    weight = np.clip((1.1 - np.sqrt(r2)) / 0.2, 0, 1)
    ambient = 1 + s * 0.2 * (x * lx + y * ly)
    gain = (nu["exposure"] * (weight * sphere + (1 - weight) * ambient)).astype(np.float32)
    wb = np.array([nu["white_balance_r"], 1.0, nu["white_balance_b"]], dtype=np.float32)
    return gain[..., None] * wb


def _supersample(resolution: int) -> int:
    """Supersampling factor: 4x for small images, 2x at 128 px."""
    return 4 if resolution <= 64 else 2


def render_face(identity: np.ndarray, nuisance: np.ndarray, resolution: int) -> np.ndarray:
    """Render one face: uint8 array (resolution, resolution, 3), a pure function of its inputs."""
    g, col, back, front = _identity_model(np.asarray(identity, np.float32).tobytes())
    nu = dict(zip(NUISANCE_FACTORS, np.asarray(nuisance, np.float64).tolist()))
    ss = _supersample(resolution)
    canvas_px = resolution * ss
    bg = np.clip(_background(nu, resolution), 0, 255).astype(np.uint8)
    # nearest upsampling: the box downsample below then returns the background pixels exactly
    canvas = Image.fromarray(bg).resize((canvas_px, canvas_px), Image.Resampling.NEAREST)
    matrix = _pose_matrix(nu, canvas_px)
    shapes = back + _mouth_shapes(g, col, nu) + _eye_shapes(g, col, nu) + front
    shapes += _occluder_shapes(g, col, nu)
    clothes = _rgb(np.array([nu["clothing_r"], nu["clothing_g"], nu["clothing_b"]]) * 255)
    _draw_shapes(ImageDraw.Draw(canvas), shapes, matrix, nu["yaw"], clothes)
    small = canvas.reduce(ss)
    sigma = nu["blur_sigma"] * resolution / 32
    if sigma >= 0.15:  # optics blur; lighting below is smooth, so the order barely matters
        small = small.filter(ImageFilter.GaussianBlur(sigma))
    img = np.asarray(small, dtype=np.float32) * _lighting(nu, g, matrix, canvas_px, resolution)
    noise = np.random.default_rng(int(nu["noise_seed"])).standard_normal(img.shape, np.float32)
    img += noise * np.float32(nu["noise_std"])
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# tables ---------------------------------------------------------------------------------------
def _factor_column(vectors: list[np.ndarray], width: int) -> pa.FixedSizeListArray:
    flat = np.concatenate(vectors).astype(np.float32) if vectors else np.zeros(0, np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), width)


def _batch_table(
    rows: list[tuple[int, int, bytes, np.ndarray, np.ndarray]], source: int
) -> pa.Table:
    """A faces table from (identity, image_index, png, identity_vec, nuisance_vec) rows."""
    ids = [r[0] for r in rows]
    extra = {
        "identity": pa.array([f"toy-{i:06d}" for i in ids], pa.string()),
        "image_index": pa.array([r[1] for r in rows], pa.int64()),
        "identity_factors": _factor_column([r[3] for r in rows], len(IDENTITY_FACTORS)),
        "nuisance_factors": _factor_column([r[4] for r in rows], len(NUISANCE_FACTORS)),
    }
    paths = [f"toyfaces/{i:06d}/{j:04d}.png" for i, j, *_ in rows]
    return schema.faces_table([r[2] for r in rows], ids, source, paths=paths, extra=extra)


def iter_toyfaces(cfg: ToyFacesConfig, rows_per_batch: int = 1024) -> Iterator[pa.Table]:
    """Yield faces tables of at most ``rows_per_batch`` rows, ordered by (identity, image_index)."""
    check_range("toyfaces.rows_per_batch", rows_per_batch, 1)
    rows: list = []
    for ident in cfg.numbers():
        id_vec = identity_factors(cfg.seed, ident)
        for j in range(cfg.images_per_identity):
            nu = nuisance_factors(cfg.seed, ident, j, cfg.difficulty, cfg.occluder_prob)
            png = encode_png(render_face(id_vec, nu, cfg.resolution))
            rows.append((ident, j, png, id_vec, nu))
            if len(rows) == rows_per_batch:
                yield _batch_table(rows, cfg.source)
                rows = []
    if rows:
        yield _batch_table(rows, cfg.source)


def toyfaces_table(cfg: ToyFacesConfig) -> pa.Table:
    """The whole ToyFaces dataset of ``cfg`` as one faces table."""
    return pa.concat_tables(iter_toyfaces(cfg))


def render_arrays(cfg: ToyFacesConfig) -> tuple[np.ndarray, np.ndarray]:
    """Render ``cfg`` without encoding: images (N, H, W, 3) uint8 and labels (N,) int64."""
    images, labels = [], []
    for ident in cfg.numbers():
        id_vec = identity_factors(cfg.seed, ident)
        for j in range(cfg.images_per_identity):
            nu = nuisance_factors(cfg.seed, ident, j, cfg.difficulty, cfg.occluder_prob)
            images.append(render_face(id_vec, nu, cfg.resolution))
            labels.append(ident)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def grid_image(
    cfg: ToyFacesConfig, identities: int = 8, images: int = 8, cell: int = 96
) -> Image.Image:
    """Identities as rows, images as columns, each face upscaled (nearest) to ``cell`` pixels."""
    res = cfg.resolution
    sheet = np.zeros((identities * res, images * res, 3), dtype=np.uint8)
    for i in range(identities):
        ident = cfg.first_identity + i
        id_vec = identity_factors(cfg.seed, ident)
        for j in range(images):
            nu = nuisance_factors(cfg.seed, ident, j, cfg.difficulty, cfg.occluder_prob)
            sheet[i * res : (i + 1) * res, j * res : (j + 1) * res] = render_face(id_vec, nu, res)
    return Image.fromarray(sheet).resize(
        (images * cell, identities * cell), Image.Resampling.NEAREST
    )


# how hard is it? ------------------------------------------------------------------------------
def _sample_pairs(labels: np.ndarray, max_pairs: int, rng: np.random.Generator):
    """Up to ``max_pairs`` genuine (same label) and impostor index pairs, sampled without bias."""
    n = len(labels)
    i, j = np.triu_indices(n, k=1)
    same = labels[i] == labels[j]
    pairs = []
    for mask in (same, ~same):
        idx = np.flatnonzero(mask)
        if len(idx) > max_pairs:
            idx = np.sort(rng.choice(idx, max_pairs, replace=False))
        pairs.append((i[idx], j[idx]))
    return pairs


def pixel_distance_overlap(
    images: np.ndarray, labels: np.ndarray, max_pairs: int, seed: int
) -> dict:
    """Overlap of genuine vs impostor pixel L2 distances (on 0..1 scaled pixels).

    ``pairwise_inversion_rate`` is P(genuine distance > impostor distance) over all
    (sampled genuine, sampled impostor) combinations; 0 means pixels alone separate identities,
    0.5 means pixel distance carries no identity information.
    """
    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
    labels = np.asarray(labels)
    (gi, gj), (ii, ij) = _sample_pairs(labels, max_pairs, np.random.default_rng(seed))
    gen = np.linalg.norm(flat[gi] - flat[gj], axis=1)
    imp = np.linalg.norm(flat[ii] - flat[ij], axis=1)
    if len(gen) == 0 or len(imp) == 0:
        raise ValueError("pixel_distance_overlap needs at least one genuine and one impostor pair")
    imp_sorted = np.sort(imp)
    below = np.searchsorted(imp_sorted, gen, side="left")
    ties = np.searchsorted(imp_sorted, gen, side="right") - below
    inversion = float((below + 0.5 * ties).sum() / (len(gen) * len(imp)))
    edges = np.linspace(min(gen.min(), imp.min()), max(gen.max(), imp.max()), 51)
    hg = np.histogram(gen, edges)[0] / len(gen)
    hi = np.histogram(imp, edges)[0] / len(imp)
    return {
        "n_genuine": int(len(gen)), "n_impostor": int(len(imp)),
        "genuine_mean": float(gen.mean()), "genuine_std": float(gen.std()),
        "impostor_mean": float(imp.mean()), "impostor_std": float(imp.std()),
        "d_prime": float((imp.mean() - gen.mean()) / np.sqrt(0.5 * (gen.var() + imp.var()) + 1e-12)),
        "frac_genuine_above_impostor_median": float((gen > np.median(imp)).mean()),
        "frac_impostor_below_genuine_median": float((imp < np.median(gen)).mean()),
        "histogram_overlap": float(np.minimum(hg, hi).sum()),
        "pairwise_inversion_rate": inversion,
    }  # fmt: skip
