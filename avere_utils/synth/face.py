"""Drawing the synthetic face: numpy masks for each face part in each emotion's shape.

Shapes are bold on purpose: the model sees 56x56 frames through 14x14 patches, so a part must still be
readable after halving a 112x112 frame.  A part that the clip does not render is covered by a light grey
bar (an occluder), so an absent cue is visibly absent rather than ambiguous.  All geometry is in units
of the frame size, so any even size works; masks are cached per size.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from avere_utils.emotions import VISUAL_CONTEXT

RGB = tuple[int, int, int]

BACKGROUND_RGB: dict[str, RGB] = dict(zip(VISUAL_CONTEXT["background"], [
    (240, 215, 40), (40, 80, 215), (40, 165, 60), (95, 95, 95), (205, 35, 35), (135, 55, 175), (250, 135, 20)]))
SKIN_TONES: tuple[RGB, ...] = ((236, 198, 160), (205, 160, 120), (160, 112, 80))
INK: RGB = (35, 25, 25)
WHITE: RGB = (250, 250, 250)
MOUTH_DARK: RGB = (110, 15, 30)
OCCLUDER: RGB = (170, 170, 170)

# Bounding boxes (y0, y1, x0, x1) of each part's region, in frame units: where the occluder goes.
PART_BOX: dict[str, tuple[float, float, float, float]] = {
    "brows": (0.19, 0.345, 0.20, 0.80),
    "eyes": (0.355, 0.545, 0.20, 0.80),
    "mouth": (0.60, 0.88, 0.25, 0.75),
}
FACE_CENTER, FACE_RADII = (0.55, 0.5), (0.43, 0.35)  # (cy, cx), (ry, rx)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size) + 0.5) / size
    return c[:, None], c[None, :]


def ellipse(size: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    y, x = _grid(size)
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def rect(size: int, y0: float, y1: float, x0: float, x1: float) -> np.ndarray:
    y, x = _grid(size)
    return (y >= y0) & (y <= y1) & (x >= x0) & (x <= x1)


def stroke(size: int, points: list[tuple[float, float]], width: float) -> np.ndarray:
    """A thick polyline through (y, x) points: pixels within width/2 of any segment."""
    y, x = _grid(size)
    mask = np.zeros((size, size), dtype=bool)
    for (ya, xa), (yb, xb) in zip(points[:-1], points[1:]):
        dy, dx = yb - ya, xb - xa
        t = np.clip(((y - ya) * dy + (x - xa) * dx) / max(dy * dy + dx * dx, 1e-12), 0.0, 1.0)
        mask |= (y - (ya + t * dy)) ** 2 + (x - (xa + t * dx)) ** 2 <= (width / 2) ** 2
    return mask


def curve(size: int, p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float],
          width: float, n: int = 16) -> np.ndarray:
    """A thick quadratic Bezier from p0 to p2 pulled towards p1."""
    t = np.linspace(0, 1, n)[:, None]
    pts = (1 - t) ** 2 * np.array(p0) + 2 * (1 - t) * t * np.array(p1) + t ** 2 * np.array(p2)
    return stroke(size, [tuple(p) for p in pts], width)


def _mirror(mask: np.ndarray) -> np.ndarray:
    return mask | mask[:, ::-1]


W = 0.05  # stroke width: 5-6 px at 112, ~3 px at 56


def _brows(size: int, emotion: str) -> list[tuple[np.ndarray, RGB]]:
    # Left brow from outer (x=0.25) to inner (x=0.45); the right brow mirrors it.
    s = size
    shapes = {
        "happiness": curve(s, (0.30, 0.25), (0.22, 0.35), (0.30, 0.45), W),  # soft arch
        "sadness": stroke(s, [(0.32, 0.25), (0.23, 0.45)], W),  # inner end raised
        "neutral": stroke(s, [(0.28, 0.25), (0.28, 0.45)], W),  # level
        "anger": stroke(s, [(0.22, 0.24), (0.34, 0.46)], W * 1.3),  # furrowed: inner end low, thick
        "surprise": curve(s, (0.24, 0.25), (0.16, 0.35), (0.24, 0.45), W),  # high arch
        "disgust": stroke(s, [(0.32, 0.25), (0.335, 0.45)], W * 1.2),  # lowered onto the eyes
        "fear": stroke(s, [(0.25, 0.38), (0.21, 0.48)], W * 1.2),  # short, drawn to the centre
    }
    return [(_mirror(shapes[emotion]), INK)]


def _eyes(size: int, emotion: str) -> list[tuple[np.ndarray, RGB]]:
    s, cy, cx = size, 0.45, 0.36
    if emotion == "happiness":  # crinkled: upside-down arcs
        return [(_mirror(curve(s, (0.48, cx - 0.08), (0.38, cx), (0.48, cx + 0.08), W)), INK)]
    if emotion == "sadness":  # drooping lids: a lid line across, the lower half open
        white = ellipse(s, cy + 0.02, cx, 0.045, 0.075) & ~rect(s, 0, cy, 0, 1)
        pupil = ellipse(s, cy + 0.03, cx, 0.03, 0.03)
        lid = stroke(s, [(cy - 0.01, cx - 0.09), (cy + 0.01, cx + 0.09)], W)
        return [(_mirror(white), WHITE), (_mirror(pupil), INK), (_mirror(lid), INK)]
    if emotion == "neutral":  # steady gaze: circular eye, centred pupil
        return [(_mirror(ellipse(s, cy, cx, 0.055, 0.07)), WHITE), (_mirror(ellipse(s, cy, cx, 0.035, 0.035)), INK)]
    if emotion == "anger":  # glaring: half-covered eye under a slanted dark lid
        white = ellipse(s, cy + 0.01, cx, 0.05, 0.08)
        lid = stroke(s, [(cy - 0.04, cx - 0.09), (cy + 0.01, cx + 0.09)], W * 1.3)
        return [(_mirror(white), WHITE), (_mirror(ellipse(s, cy + 0.02, cx + 0.01, 0.03, 0.03)), INK), (_mirror(lid), INK)]
    if emotion == "surprise":  # wide open: big white disc, small pupil
        return [(_mirror(ellipse(s, cy, cx, 0.085, 0.09)), WHITE), (_mirror(ellipse(s, cy, cx, 0.025, 0.025)), INK)]
    if emotion == "disgust":  # narrowed: thin slits
        return [(_mirror(stroke(s, [(cy, cx - 0.09), (cy + 0.01, cx + 0.09)], W * 0.8)), INK)]
    if emotion == "fear":  # widened and tense: tall eye, pupil looking aside, dark rim
        rim = ellipse(s, cy, cx, 0.095, 0.07)
        white = ellipse(s, cy, cx, 0.075, 0.05)
        return [(_mirror(rim), INK), (_mirror(white), WHITE), (ellipse(s, cy, cx - 0.03, 0.025, 0.02)
                                                               | ellipse(s, cy, 1 - cx - 0.03, 0.025, 0.02), INK)]
    raise KeyError(emotion)


def _mouth(size: int, emotion: str) -> list[tuple[np.ndarray, RGB]]:
    s, cy = size, 0.74
    if emotion == "happiness":  # broad smile: wide U
        return [(curve(s, (0.67, 0.30), (0.87, 0.50), (0.67, 0.70), W * 1.2), MOUTH_DARK)]
    if emotion == "sadness":  # downturned: an arch
        return [(curve(s, (0.82, 0.34), (0.64, 0.50), (0.82, 0.66), W * 1.1), MOUTH_DARK)]
    if emotion == "neutral":  # relaxed closed: short straight line
        return [(stroke(s, [(cy, 0.40), (cy, 0.60)], W * 0.8), MOUTH_DARK)]
    if emotion == "anger":  # tightly pressed lips: a thick flat bar
        return [(rect(s, cy - 0.035, cy + 0.035, 0.36, 0.64), INK)]
    if emotion == "surprise":  # dropped open jaw: tall dark oval
        return [(ellipse(s, cy + 0.03, 0.5, 0.11, 0.075), MOUTH_DARK)]
    if emotion == "disgust":  # raised upper lip: asymmetric, one side lifted
        return [(stroke(s, [(0.79, 0.35), (0.76, 0.50), (0.66, 0.64)], W * 1.1), MOUTH_DARK)]
    if emotion == "fear":  # lips stretched back: wide band with the teeth showing
        return [(rect(s, cy - 0.04, cy + 0.04, 0.29, 0.71), MOUTH_DARK), (rect(s, cy - 0.015, cy + 0.015, 0.32, 0.68), WHITE)]
    raise KeyError(emotion)


PART_DRAWERS = {"brows": _brows, "eyes": _eyes, "mouth": _mouth}


@lru_cache(maxsize=None)
def part_layers(size: int, part: str, emotion: str) -> tuple[tuple[np.ndarray, RGB], ...]:
    return tuple(PART_DRAWERS[part](size, emotion))


@lru_cache(maxsize=None)
def face_mask(size: int) -> np.ndarray:
    return ellipse(size, *FACE_CENTER, *FACE_RADII)


@lru_cache(maxsize=None)
def occluder_mask(size: int, part: str) -> np.ndarray:
    return rect(size, *PART_BOX[part])


@lru_cache(maxsize=None)
def object_layers(size: int, obj: str, corner: int) -> tuple[tuple[np.ndarray, RGB], ...]:
    """A small object icon (~18% of the frame) in one of the four corners."""
    oy = 0.02 if corner < 2 else 0.80
    ox = 0.02 if corner % 2 == 0 else 0.80
    s = size

    def r(y0, y1, x0, x1):  # a rect in the icon's own 0..1 box
        return rect(s, oy + 0.18 * y0, oy + 0.18 * y1, ox + 0.18 * x0, ox + 0.18 * x1)

    def e(cy, cx, ry, rx):
        return ellipse(s, oy + 0.18 * cy, ox + 0.18 * cx, 0.18 * ry, 0.18 * rx)

    if obj == "a coffee mug":
        handle = e(0.55, 0.8, 0.25, 0.2) & ~e(0.55, 0.8, 0.12, 0.08)
        return ((handle, WHITE), (r(0.2, 1.0, 0.05, 0.75), WHITE), (r(0.2, 0.35, 0.05, 0.75), (90, 50, 20)))
    if obj == "a potted plant":
        return ((e(0.3, 0.5, 0.32, 0.45), (20, 120, 30)), (r(0.55, 1.0, 0.2, 0.8), (190, 90, 40)))
    if obj == "a desk lamp":
        shade = ellipse(s, oy + 0.18 * 0.25, ox + 0.18 * 0.5, 0.18 * 0.25, 0.18 * 0.45) & r(0.0, 0.35, 0, 1)
        return ((r(0.3, 0.9, 0.45, 0.55), (60, 60, 60)), (r(0.88, 1.0, 0.2, 0.8), (60, 60, 60)), (shade, (255, 240, 120)))
    if obj == "a stack of books":
        return ((r(0.1, 0.38, 0.1, 0.9), (200, 30, 30)), (r(0.4, 0.68, 0.0, 0.8), (30, 60, 200)),
                (r(0.7, 0.98, 0.15, 1.0), (30, 150, 60)))
    raise KeyError(obj)


def draw_still(size: int, emotion: str, rendered_parts: tuple[str, ...], background: str, obj: str,
               corner: int, skin: RGB) -> np.ndarray:
    """One (size, size, 3) uint8 frame: background, object, face, rendered parts, occluders."""
    img = np.empty((size, size, 3), dtype=np.uint8)
    img[:] = BACKGROUND_RGB[background]
    for mask, colour in object_layers(size, obj, corner):
        img[mask] = colour
    img[face_mask(size)] = skin
    for part in ("brows", "eyes", "mouth"):
        if part in rendered_parts:
            for mask, colour in part_layers(size, part, emotion):
                img[mask] = colour
        else:
            img[occluder_mask(size, part)] = OCCLUDER
    return img


def render_frames(size: int, n_frames: int, emotion: str, rendered_parts: tuple[str, ...], background: str,
                  obj: str, rng: np.random.Generator, jitter_px: float = 1.5) -> np.ndarray:
    """(n_frames, size, size, 3) uint8: the still with a slow, smooth camera jitter."""
    corner = int(rng.integers(4))
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    still = draw_still(size, emotion, rendered_parts, background, obj, corner, skin)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    t = np.arange(n_frames) / max(n_frames, 1)
    dy = np.round(jitter_px * np.sin(2 * np.pi * 1.0 * t + phase[0])).astype(int)
    dx = np.round(jitter_px * np.sin(2 * np.pi * 0.7 * t + phase[1])).astype(int)
    out = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    for i in range(n_frames):
        out[i] = np.roll(still, (dy[i], dx[i]), axis=(0, 1))
    return out
