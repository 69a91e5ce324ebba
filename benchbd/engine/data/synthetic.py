"""The embedded default dataset: procedurally drawn shapes with varied, synonym-rich captions.

Why procedural: benchbd must run offline in minutes, yet zero-shot classification has to be a
real test of a text encoder. Each image shows one of ten shape classes with a colour, size,
position, rotation, fill texture and background drawn at random; its caption is one of ten
templates filled with synonyms of those attributes, so the model must learn that "disc",
"round dot" and "circle" name the same thing, and the class word is never the whole caption.
Everything is a pure function of (seed, split, sizes): the same arguments give the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchbd.engine.data.pairs import fix_articles

CLASSNAMES = [
    "circle", "square", "triangle", "diamond", "cross",
    "ring", "star", "heart", "crescent", "arrow",
]  # fmt: skip

CLASS_SYNONYMS: dict[str, list[str]] = {
    "circle": ["circle", "disc", "round dot"],
    "square": ["square", "box", "block"],
    "triangle": ["triangle", "trigon", "three-sided shape"],
    "diamond": ["diamond", "rhombus", "lozenge"],
    "cross": ["cross", "plus sign", "plus"],
    "ring": ["ring", "donut", "hoop"],
    "star": ["star", "five-pointed star", "starburst"],
    "heart": ["heart", "love heart", "valentine"],
    "crescent": ["crescent", "moon", "crescent moon"],
    "arrow": ["arrow", "pointer", "arrowhead"],
}

# (name, synonyms, RGB)
COLOURS = [
    ("red", ["red", "crimson", "scarlet"], (220, 40, 40)),
    ("green", ["green", "emerald"], (40, 180, 60)),
    ("blue", ["blue", "azure"], (50, 80, 225)),
    ("yellow", ["yellow", "golden"], (235, 215, 40)),
    ("purple", ["purple", "violet"], (145, 60, 195)),
    ("orange", ["orange", "amber"], (245, 140, 30)),
    ("white", ["white", "ivory"], (240, 240, 240)),
    ("cyan", ["cyan", "turquoise"], (40, 205, 215)),
    ("pink", ["pink", "rose"], (245, 125, 185)),
]
SIZES = [  # (synonyms, radius as a fraction of half the side)
    (["small", "tiny", "little"], 0.5),
    (["medium", "mid-sized", "average-sized"], 0.64),
    (["large", "big", "huge"], 0.78),
]
POSITIONS = [  # (synonyms, centre x range, centre y range) in [-1, 1] units before margins
    (["in the centre", "in the middle"], (-0.12, 0.12), (-0.12, 0.12)),
    (["on the left", "at the left side"], (-1.0, -0.3), (-0.25, 0.25)),
    (["on the right", "at the right side"], (0.3, 1.0), (-0.25, 0.25)),
    (["at the top", "near the top"], (-0.25, 0.25), (-1.0, -0.3)),
    (["at the bottom", "near the bottom"], (-0.25, 0.25), (0.3, 1.0)),
]
BACKGROUNDS = ["plain", "gradient", "noisy", "striped"]
BACKGROUND_WORDS = {
    "plain": ["plain", "flat", "uniform"],
    "gradient": ["gradient", "fading", "shaded"],
    "noisy": ["noisy", "grainy", "speckled"],
    "striped": ["striped", "lined", "banded"],
}
TONES = [34, 120, 210]  # dark, grey, light backgrounds
TEXTURES = [["solid", "plain", "filled"], ["striped", "stripy", "hatched"],
            ["dotted", "spotted", "polka-dot"]]  # fmt: skip

CAPTION_TEMPLATES = [  # each names the shape and at most two other attributes
    "a photo of a {shape}",
    "a {colour} {shape}",
    "a photo of a {shape} {position}",
    "a {size} {shape}",
    "a drawing of a {shape}",
    "a {texture} {shape} on a {background} background",
    "a drawing of a {shape} on a {background} background",
    "an image showing a {size} {colour} {shape}",
    "close-up of a {texture} {shape}",
    "there is a {shape} {position}",
]
# Zero-shot prompts in the captions' own style. A prompt the text tower has never seen the
# like of (a trailing period, say: no caption has one) lands off the learned manifold; with
# these, zero-shot accuracy matches a linear probe of the image features.
ZERO_SHOT_TEMPLATES = [
    "a photo of a {}",
    "a drawing of a {}",
    "an image showing a {}",
    "close-up of a {}",
    "a {}",
    "there is a {}",
]


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines a synthetic split's bytes."""

    seed: int = 0
    image_size: int = 32


def _shape_masks(cls: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean masks (n, S, S): pixel inside the shape, in shape-local unit coordinates (v up)."""
    r2 = u * u + v * v
    r = np.sqrt(r2)
    theta = np.arctan2(v, u)
    au, av = np.abs(u), np.abs(v)
    mask = np.zeros(u.shape, dtype=bool)
    tests = {
        0: lambda i: r2[i] < 1.0,
        1: lambda i: np.maximum(au[i], av[i]) < 0.8,
        2: lambda i: (v[i] > -0.55) & (v[i] < 1.0 - 1.73 * au[i]),
        3: lambda i: au[i] + av[i] < 1.0,
        4: lambda i: ((au[i] < 0.3) & (av[i] < 1.0)) | ((av[i] < 0.3) & (au[i] < 1.0)),
        5: lambda i: (r2[i] < 1.0) & (r2[i] > 0.32),
        6: lambda i: (
            r[i] < 0.42 + 0.58 * np.abs(2 * ((theta[i] * 5 / (2 * np.pi) + 0.25) % 1) - 1) ** 1.6
        ),
        7: lambda i: (
            ((1.15 * u[i]) ** 2 + (1.15 * v[i] + 0.25) ** 2 - 1) ** 3
            - (1.15 * u[i]) ** 2 * (1.15 * v[i] + 0.25) ** 3
            < 0
        ),
        8: lambda i: (r2[i] < 1.0) & ((u[i] - 0.45) ** 2 + (v[i] - 0.15) ** 2 > 0.64),
        9: lambda i: (
            ((av[i] < 0.22) & (u[i] > -1.0) & (u[i] < 0.2))
            | ((u[i] >= 0.0) & (u[i] < 1.0) & (av[i] < 0.95 * (1.0 - u[i])))
        ),
    }
    for c, test in tests.items():
        index = np.nonzero(cls == c)[0]
        if len(index):
            mask[index] = test(index)
    return mask


def render(
    rng: np.random.Generator, n: int, image_size: int
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Draw n images (uint8, N x 3 x S x S), their captions and class labels."""
    s = image_size
    cls = rng.integers(0, len(CLASSNAMES), n)
    colour = rng.integers(0, len(COLOURS), n)
    size = rng.integers(0, len(SIZES), n)
    pos = rng.integers(0, len(POSITIONS), n)
    background = rng.integers(0, len(BACKGROUNDS), n)
    tone = rng.integers(0, len(TONES), n)
    tone = np.where((colour == 6) & (tone == 2), 0, tone)  # no white shape on a light ground
    tone = np.where((colour == 3) & (tone == 2), 1, tone)  # nor yellow on light
    texture = rng.integers(0, len(TEXTURES), n)
    radius = np.array([SIZES[k][1] for k in size])
    # centre inside the position's range, pulled in so the whole shape stays in the frame
    lo = np.array([[POSITIONS[p][1][0], POSITIONS[p][2][0]] for p in pos])
    hi = np.array([[POSITIONS[p][1][1], POSITIONS[p][2][1]] for p in pos])
    lo = np.maximum(lo, -1 + radius[:, None])
    hi = np.minimum(hi, 1 - radius[:, None])
    centre = lo + (hi - lo) * rng.random((n, 2))
    angle = rng.uniform(-np.pi / 12, np.pi / 12, n)

    grid = (np.arange(s) + 0.5) / s * 2 - 1
    x = grid[None, None, :] - centre[:, 0, None, None]
    y = grid[None, :, None] - centre[:, 1, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (cos * x + sin * y) / radius[:, None, None]
    v = (sin * x - cos * y) / radius[:, None, None]  # v points up
    mask = _shape_masks(cls, u, v)

    # backgrounds
    base = np.array(TONES, dtype=np.float32)[tone][:, None, None]
    tint = rng.uniform(-18, 18, (n, 3)).astype(np.float32)
    bg = np.broadcast_to(base, (n, s, s)).astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi, n)
    ramp = (
        np.cos(direction)[:, None, None] * grid[None, None, :]
        + np.sin(direction)[:, None, None] * grid[None, :, None]
    )
    kind = background[:, None, None]
    bg = np.where(kind == 1, bg + 45 * ramp, bg)
    bg = np.where(kind == 2, bg + rng.normal(0, 16, (n, s, s)), bg)
    period = rng.integers(3, 6, n)[:, None, None]
    idx = np.arange(s)
    stripes = ((idx[None, :, None] + idx[None, None, :] * (direction[:, None, None] > np.pi)) //
               period) % 2  # fmt: skip
    bg = np.where(kind == 3, bg + 40 * (stripes - 0.5), bg)
    img = bg[:, None] + tint[:, :, None, None]

    # shape fill with texture
    fill = np.array([c[2] for c in COLOURS], dtype=np.float32)[colour][:, :, None, None]
    shade = np.ones((n, 1, s, s), dtype=np.float32)
    tex = texture[:, None, None, None]
    hatch = ((idx[:, None] + idx[None, :]) // 2 % 2 == 0)[None, None]
    dots = ((idx[:, None] % 3 == 1) & (idx[None, :] % 3 == 1))[None, None]
    shade = np.where((tex == 1) & hatch, 0.55, shade)
    shade = np.where((tex == 2) & dots, 0.35, shade)
    img = np.where(mask[:, None], fill * shade, img)
    img = img + rng.normal(0, 5, img.shape)
    images = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    captions = [
        _caption(rng, cls[i], colour[i], size[i], pos[i], background[i], texture[i])
        for i in range(n)
    ]
    return images, captions, cls.astype(np.int64)


def _caption(rng: np.random.Generator, cls, colour, size, pos, background, texture) -> str:
    def pick(options: list[str]) -> str:
        return options[rng.integers(len(options))]

    template = pick(CAPTION_TEMPLATES)
    text = template.format(
        shape=pick(CLASS_SYNONYMS[CLASSNAMES[cls]]),
        colour=pick(COLOURS[colour][1]),
        size=pick(SIZES[size][0]),
        position=pick(POSITIONS[pos][0]),
        background=pick(BACKGROUND_WORDS[BACKGROUNDS[background]]),
        texture=pick(TEXTURES[texture]),
    )
    return fix_articles(text)


SPLIT_IDS = {"train": 0, "clean": 1, "test": 2, "validation": 3}


def generate_split(spec: SyntheticSpec, split: str, n: int, chunk: int = 2048):
    """One split, drawn in chunks so memory stays bounded; deterministic in (spec, split, n)."""
    rng = np.random.default_rng([spec.seed, SPLIT_IDS[split], n])
    parts = [render(rng, min(chunk, n - start), spec.image_size) for start in range(0, n, chunk)]
    images = (
        np.concatenate([p[0] for p in parts])
        if parts
        else np.zeros((0, 3, spec.image_size, spec.image_size), np.uint8)
    )
    captions = [c for p in parts for c in p[1]]
    labels = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
    return images, captions, labels
