"""Procedural aerial scenes: an optical image, a DSM and ISPRS labels that need each other.

Tests, the demo model and the ablation benchmark need scenes with known labels
that any machine can make. These are built so that neither modality alone
separates every class, which is the point of MoBaNet's fusion:

- some roofs are painted with the road greys and some tree crowns with the
  grass greens, so colour alone confuses building/impervious and tree/low
  vegetation;
- roads and grass lie on the same ground with the same roughness, so height
  alone confuses impervious/low vegetation; buildings and trees both stand
  4-16 m high and differ in height only by shape (planar roofs with sharp
  edges against rounded, noisy crowns);
- the ground is rolling terrain several metres high, so only height above the
  local ground means something, never absolute height.

Sun shading and cast shadows, texture and sensor noise make the optical image
untidy; cars (~4.5 x 1.8 m, 1.5 m high) sit on roads and parking lots; clutter
is small objects, some flat, some standing. Sizes are in metres and scale with
the ground sampling distance. One numpy Generator draws everything, so a seed
always gives the same scene. `write_scene` stores a scene as three GeoTIFFs
in UTM 32N (EPSG:32632) near Vaihingen/Enz.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, osr

from mobanet.classes import IGNORE_INDEX, ISPRS_CLASSES
from mobanet.fileutil import OutputSet
from mobanet.geotiff import write_geotiff
from mobanet.progress import Progress

gdal.UseExceptions()

IMPERVIOUS, BUILDING, LOW_VEGETATION, TREE, CAR, CLUTTER = range(6)

DEFAULT_EPSG = 32632
DEFAULT_ORIGIN = (496_000.0, 5_421_000.0)  # upper-left corner, UTM 32N, near Vaihingen/Enz
SCENE_SPACING_M = 50.0  # gap between neighbouring scenes written by `write_scenes`
GROUND_ELEVATION_M = 245.0
DSM_NODATA = -9999.0
DSM_STEP_M = 1.0 / 128.0  # DSM heights are multiples of this: lossless DEFLATE then shrinks them well

GREY_RANGE = (95.0, 180.0)  # asphalt, paving and grey roofs share it
CAR_COLOURS = ((235, 235, 235), (30, 30, 35), (165, 168, 172), (110, 112, 118), (175, 30, 30),
               (35, 60, 150), (110, 20, 30), (40, 90, 60), (200, 170, 40), (60, 60, 70))


@dataclass
class SyntheticScene:
    """One scene on a square grid; ``terrain`` is the bare ground the DSM stands on."""

    optical: np.ndarray  # uint8 [3, H, W], RGB
    dsm: np.ndarray  # float32 [H, W], metres above sea level
    labels: np.ndarray  # uint8 [H, W], ISPRS class indices 0-5
    terrain: np.ndarray  # float32 [H, W], metres: the DSM without objects and noise
    gsd: float
    seed: int

    def class_shares(self) -> dict[str, float]:
        counts = np.bincount(self.labels.ravel(), minlength=len(ISPRS_CLASSES))[: len(ISPRS_CLASSES)]
        return {c.name: float(n) / self.labels.size for c, n in zip(ISPRS_CLASSES, counts, strict=True)}


# -- building blocks ---------------------------------------------------------------------------------

@dataclass
class _Footprint:
    """Pixels of a shape inside the scene: a bounding box, a mask in it and local coordinates (metres)."""

    rows: slice
    cols: slice
    inside: np.ndarray  # bool [h, w]
    u: np.ndarray  # along the shape's length
    v: np.ndarray  # across it


def _rectangle(cx: float, cy: float, length: float, width: float, angle: float, size: int,
               gsd: float) -> _Footprint | None:
    """A rotated rectangle centred on pixel (cx, cy); sides in metres, angle in radians."""
    reach = 0.5 * math.hypot(length, width) / gsd + 1
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, size)
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, size)
    if y1 <= y0 or x1 <= x0:
        return None
    ys = ((np.arange(y0, y1, dtype=np.float32) + 0.5 - cy) * gsd)[:, None]
    xs = ((np.arange(x0, x1, dtype=np.float32) + 0.5 - cx) * gsd)[None, :]
    cos, sin = math.cos(angle), math.sin(angle)
    u = xs * cos + ys * sin
    v = -xs * sin + ys * cos
    inside = (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)
    if not inside.any():
        return None
    return _Footprint(slice(y0, y1), slice(x0, x1), inside, u, v)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Unit-scale value noise: random values every ``cell`` pixels, smoothly interpolated."""
    h, w = shape
    grid = rng.standard_normal((int(h / cell) + 3, int(w / cell) + 3)).astype(np.float32)

    def axis(n: int) -> tuple[np.ndarray, np.ndarray]:
        t = np.arange(n, dtype=np.float32) / cell
        index = t.astype(np.int64)
        f = t - index
        return index, (f * f * (3 - 2 * f))[:]

    iy, fy = axis(h)
    ix, fx = axis(w)
    rows = grid[iy] * (1 - fy)[:, None] + grid[iy + 1] * fy[:, None]
    return rows[:, ix] * (1 - fx) + rows[:, ix + 1] * fx


def _terrain(rng: np.random.Generator, size: int, gsd: float) -> np.ndarray:
    """Rolling ground: a few long sine waves (60-200 m) of 0.8-2.5 m each, and a gentle tilt."""
    y = (np.arange(size, dtype=np.float32) * gsd)[:, None]
    x = (np.arange(size, dtype=np.float32) * gsd)[None, :]
    ground = np.full((size, size), GROUND_ELEVATION_M + rng.uniform(-15, 15), dtype=np.float32)
    for _ in range(4):
        angle, wavelength = rng.uniform(0, 2 * math.pi), rng.uniform(60, 200)
        amplitude, phase = rng.uniform(0.8, 2.5), rng.uniform(0, 2 * math.pi)
        ground += amplitude * np.sin(2 * math.pi * (x * math.cos(angle) + y * math.sin(angle)) / wavelength + phase)
    ground += rng.uniform(-0.04, 0.04) * x + rng.uniform(-0.04, 0.04) * y
    return ground


def _grey(rng: np.random.Generator) -> np.ndarray:
    """An asphalt/paving/grey-roof colour: the same distribution for all three."""
    level = rng.uniform(*GREY_RANGE)
    return np.array([level, level + rng.uniform(-3, 3), level + rng.uniform(0, 6)], dtype=np.float32)


# -- the scene ---------------------------------------------------------------------------------------

class _Painter:
    """Draws one scene: labels, surface heights (metres) and albedo (RGB 0-255) layer by layer."""

    def __init__(self, size: int, seed: int, gsd: float):
        self.size, self.gsd, self.seed = size, gsd, seed
        self.rng = np.random.default_rng(seed)
        self.terrain = _terrain(self.rng, size, gsd)
        self.surface = self.terrain.copy()
        self.labels = np.full((size, size), LOW_VEGETATION, dtype=np.uint8)
        # grass: a scene-wide green, patchy (drier and greener parts); grass-coloured crowns reuse it
        green = np.array([95, 125, 62], dtype=np.float32) + self.rng.uniform(-12, 12, 3).astype(np.float32)
        patches = _smooth_noise(self.rng, (size, size), 6.0 / gsd)
        self.grass = green[:, None, None] * (1 + 0.10 * patches)[None] + np.array([8, 4, 0], np.float32)[
            :, None, None] * patches[None]
        self.albedo = self.grass.copy()
        self.road_axes: list[tuple[str, float, float]] = []  # (axis, centre px, carriageway width m)
        self.lots: list[_Footprint] = []

    # roads split the scene into blocks
    def roads(self) -> list[tuple[float, float, float, float]]:
        """Straight roads on both axes, 40-60 m apart; returns the blocks between them (pixel boxes)."""
        extent = self.size * self.gsd
        edges = {}
        for axis in ("x", "y"):
            spans, position = [], self.rng.uniform(10, 35)
            while position < extent - 4:
                carriageway = self.rng.uniform(4.5, 7.0)
                sidewalks = self.rng.uniform(0, 2.0, 2) * (self.rng.random(2) < 0.7)
                spans.append((position, carriageway, sidewalks))
                position += self.rng.uniform(40, 60)
            if not spans:
                spans.append((self.rng.uniform(0.3, 0.7) * extent, self.rng.uniform(4.5, 7.0), np.zeros(2)))
            cuts = [0.0]
            for centre, carriageway, sidewalks in spans:
                low, high = centre - carriageway / 2 - sidewalks[0], centre + carriageway / 2 + sidewalks[1]
                self._band(axis, low, high, _grey(self.rng) + 30)  # sidewalk paving, lighter
                self._band(axis, centre - carriageway / 2, centre + carriageway / 2, _grey(self.rng) - 10)
                self.road_axes.append((axis, centre / self.gsd, carriageway))
                cuts += [low, high]
            cuts.append(extent)
            edges[axis] = [(cuts[i] / self.gsd, cuts[i + 1] / self.gsd) for i in range(0, len(cuts), 2)]
        return [(x0, y0, x1, y1) for x0, x1 in edges["x"] for y0, y1 in edges["y"] if x1 > x0 and y1 > y0]

    def _band(self, axis: str, low_m: float, high_m: float, colour: np.ndarray) -> None:
        lo, hi = max(int(round(low_m / self.gsd)), 0), min(int(round(high_m / self.gsd)), self.size)
        if hi <= lo:
            return
        region = (slice(None), slice(lo, hi)) if axis == "x" else (slice(lo, hi), slice(None))
        self.labels[region] = IMPERVIOUS
        self.albedo[(slice(None), *region)] = colour[:, None, None]

    def _point_in(self, block: tuple[float, float, float, float]) -> tuple[float, float]:
        x0, y0, x1, y1 = block
        return self.rng.uniform(x0, x1), self.rng.uniform(y0, y1)

    def _ground_at(self, cx: float, cy: float) -> float:
        row, col = min(max(int(cy), 0), self.size - 1), min(max(int(cx), 0), self.size - 1)
        return float(self.terrain[row, col])

    def _free(self, fp: _Footprint, allowed: tuple[int, ...]) -> bool:
        return bool(np.isin(self.labels[fp.rows, fp.cols][fp.inside], allowed).all())

    # objects in the blocks
    def buildings(self, block: tuple[float, float, float, float]) -> None:
        """Flat, gabled and shed roofs, 8-25 m; a third grey like the roads, others red, brown or dark."""
        x0, y0, x1, y1 = block
        area = (x1 - x0) * (y1 - y0)
        target, built = self.rng.uniform(0.5, 0.7) * area, 0.0
        for _ in range(200):
            if built >= target:
                break
            length, width = self.rng.uniform(10, 25), self.rng.uniform(8, 14)
            angle = self.rng.choice([0.0, math.pi / 2]) + (self.rng.uniform(-0.45, 0.45) if self.rng.random() < 0.3
                                                           else 0.0)
            cx, cy = self._point_in(block)
            margin = _rectangle(cx, cy, length + 3, width + 3, angle, self.size, self.gsd)
            if margin is None or not self._free(margin, (LOW_VEGETATION,)):
                continue
            parts = [(cx, cy, length, width)]
            if self.rng.random() < 0.25:  # an L-shaped wing at one end
                side = self.rng.choice([-1, 1])
                along = (length / 2 - width / 2) / self.gsd * side
                wing = self.rng.uniform(6, 12)
                across = (width / 2 + wing / 2) / self.gsd
                wx = cx + along * math.cos(angle) - across * math.sin(angle)
                wy = cy + along * math.sin(angle) + across * math.cos(angle)
                wing_margin = _rectangle(wx, wy, width + 3, wing + 3, angle, self.size, self.gsd)
                if wing_margin is not None and self._free(wing_margin, (LOW_VEGETATION,)):
                    parts.append((wx, wy, width, wing))
            built += self._roof(parts, angle)

    def _roof(self, parts: list[tuple[float, float, float, float]], angle: float) -> float:
        rng = self.rng
        eave = self._ground_at(*parts[0][:2]) + rng.uniform(4, 12)
        kind = "flat" if len(parts) > 1 else rng.choice(["flat", "gable", "shed"], p=[0.45, 0.4, 0.15])
        rise = rng.uniform(2, 5) if kind == "gable" else rng.uniform(0.8, 2.5)
        style = rng.random()
        if style < 0.38:
            colour = _grey(rng)
        elif style < 0.75:
            colour = np.array([rng.uniform(140, 185), rng.uniform(55, 85), rng.uniform(40, 65)], np.float32)
        else:
            colour = np.array([rng.uniform(85, 125), rng.uniform(60, 85), rng.uniform(50, 70)], np.float32)
        pixels = 0.0
        for cx, cy, length, width in parts:
            fp = _rectangle(cx, cy, length, width, angle, self.size, self.gsd)
            if fp is None:
                continue
            if kind == "gable":
                height = eave + rise * (1 - np.abs(fp.v) / (width / 2))
            elif kind == "shed":
                height = eave + rise * (fp.v / width + 0.5)
            else:
                height = np.full(fp.inside.shape, eave, np.float32)
            grain = 1 + 0.03 * rng.standard_normal(fp.inside.shape, dtype=np.float32)
            self._put(fp, BUILDING, height, colour[:, None, None] * grain[None])
            pixels += float(fp.inside.sum())
        return pixels

    def _put(self, fp: _Footprint, label: int, height: np.ndarray, colour: np.ndarray) -> None:
        """Write a shape: its label, its surface height and its albedo ([3] or [3, h, w])."""
        rows, cols, inside = fp.rows, fp.cols, fp.inside
        self.labels[rows, cols][inside] = label
        self.surface[rows, cols][inside] = np.asarray(height, np.float32)[inside]
        colour = np.broadcast_to(colour.reshape(3, *([1, 1] if colour.ndim == 1 else colour.shape[1:])),
                                 (3, *inside.shape))
        self.albedo[:, rows, cols][:, inside] = colour[:, inside]

    def paved_areas(self, block: tuple[float, float, float, float]) -> None:
        """Parking lots, yards and driveways: impervious rectangles over the grass left between buildings."""
        x0, y0, x1, y1 = block
        target, paved = self.rng.uniform(0.06, 0.14) * (x1 - x0) * (y1 - y0), 0.0
        for _ in range(30):
            if paved >= target:
                break
            cx, cy = self._point_in(block)
            length, width = self.rng.uniform(6, 20), self.rng.uniform(4, 12)
            fp = _rectangle(cx, cy, length, width, self.rng.choice([0.0, math.pi / 2]), self.size, self.gsd)
            if fp is None:
                continue
            fp.inside &= self.labels[fp.rows, fp.cols] == LOW_VEGETATION
            self._put(fp, IMPERVIOUS, self.terrain[fp.rows, fp.cols], _grey(self.rng))
            self.lots.append(fp)
            paved += float(fp.inside.sum())

    def trees(self, block: tuple[float, float, float, float]) -> None:
        """Round, lumpy crowns 4-9 m wide, 5-14 m high; a third coloured exactly like the grass."""
        x0, y0, x1, y1 = block
        area = (x1 - x0) * (y1 - y0)
        target, grown = self.rng.uniform(0.22, 0.42) * area, 0.0
        for _ in range(400):
            if grown >= target:
                break
            cx, cy = self._point_in(block)
            if self.labels[min(int(cy), self.size - 1), min(int(cx), self.size - 1)] != LOW_VEGETATION:
                continue
            radius = self.rng.uniform(2.0, 4.5)
            fp = _rectangle(cx, cy, 2 * radius + 1, 2 * radius + 1, 0.0, self.size, self.gsd)
            if fp is None:
                continue
            theta = np.arctan2(fp.v, fp.u)
            lumps = sum(self.rng.uniform(0.03, 0.08) * np.sin(k * theta + self.rng.uniform(0, 2 * math.pi))
                        for k in (3, 5, 7))
            r = np.hypot(fp.u, fp.v) / (radius * (1 + lumps))
            fp.inside = r <= 1
            if (self.labels[fp.rows, fp.cols][r <= 1.1] == BUILDING).any():
                continue
            top = self._ground_at(cx, cy) + self.rng.uniform(5, 14)
            crown = top * 1.0 - (top - self._ground_at(cx, cy)) * 0.6 * r ** 2
            crown += 0.35 * _smooth_noise(self.rng, r.shape, 0.5 / self.gsd) + 0.12 * self.rng.standard_normal(
                r.shape, dtype=np.float32)
            fp.inside &= crown > self.surface[fp.rows, fp.cols]  # hidden below a higher neighbour crown
            if self.rng.random() < 0.35:
                colour = self.grass[:, fp.rows, fp.cols].copy()
            else:
                dark = np.array([48, 82, 38], np.float32) + self.rng.uniform(-10, 10, 3).astype(np.float32)
                colour = dark[:, None, None] * (1 + 0.10 * _smooth_noise(self.rng, r.shape, 6.0 / self.gsd))[None]
            self._put(fp, TREE, crown, colour)
            grown += float(fp.inside.sum())

    def cars(self) -> None:
        """Cars in the lanes of every road (about one per 7-15 m) and on parking lots."""
        extent = self.size * self.gsd
        spots = []
        for axis, centre, carriageway in self.road_axes:
            for _ in range(int(extent / self.rng.uniform(7, 15))):
                along = self.rng.uniform(0, self.size)
                across = centre + self.rng.choice([-1, 1]) * carriageway / 4 / self.gsd
                cx, cy = (across, along) if axis == "x" else (along, across)
                angle = (math.pi / 2 if axis == "x" else 0.0) + self.rng.uniform(-0.05, 0.05)
                spots.append((cx, cy, angle))
        for lot in self.lots:
            for _ in range(self.rng.integers(0, 4)):
                cy = self.rng.uniform(lot.rows.start, lot.rows.stop)
                cx = self.rng.uniform(lot.cols.start, lot.cols.stop)
                spots.append((cx, cy, self.rng.choice([0.0, math.pi / 2])))
        for cx, cy, angle in spots:
            length, width = self.rng.uniform(3.8, 5.0), self.rng.uniform(1.7, 2.0)
            margin = _rectangle(cx, cy, length + 1, width + 0.6, angle, self.size, self.gsd)
            if margin is None or not self._free(margin, (IMPERVIOUS,)):
                continue
            fp = _rectangle(cx, cy, length, width, angle, self.size, self.gsd)
            if fp is None:
                continue
            ends = np.clip((np.abs(fp.u) / (length / 2) - 0.45) / 0.55, 0, 1)
            height = self.terrain[fp.rows, fp.cols] + self.rng.uniform(1.35, 1.6) * (1 - 0.4 * ends)
            colour = np.array(CAR_COLOURS[self.rng.integers(len(CAR_COLOURS))], np.float32)
            glass = (np.abs(fp.u) < length * 0.28) & (np.abs(fp.v) < width * 0.4)
            shaded = colour[:, None, None] * (1 - 0.55 * glass)[None]
            self._put(fp, CAR, height, shaded)

    def clutter(self) -> None:
        """Small odd-coloured objects on open ground: half flat (< 0.4 m), half standing (1-3 m)."""
        target, placed = self.rng.uniform(0.012, 0.03) * self.size ** 2, 0.0
        for _ in range(300):
            if placed >= target:
                break
            cx, cy = self.rng.uniform(0, self.size), self.rng.uniform(0, self.size)
            length, width = self.rng.uniform(1.5, 6), self.rng.uniform(1.5, 4.5)
            fp = _rectangle(cx, cy, length, width, self.rng.uniform(0, math.pi), self.size, self.gsd)
            if fp is None or not self._free(fp, (LOW_VEGETATION, IMPERVIOUS)):
                continue
            if self.rng.random() < 0.4:  # round things: heaps, pools, tanks
                fp.inside &= np.hypot(2 * fp.u / length, 2 * fp.v / width) <= 1
            rise = self.rng.uniform(0.05, 0.4) if self.rng.random() < 0.5 else self.rng.uniform(1.0, 3.0)
            colour = self.rng.uniform(30, 230, 3).astype(np.float32)
            self._put(fp, CLUTTER, self.terrain[fp.rows, fp.cols] + rise, colour)
            placed += float(fp.inside.sum())

    # light and sensor
    def image(self) -> np.ndarray:
        """Albedo lit by a random sun (shading from the surface, cast shadows), with texture and noise."""
        rng, size = self.rng, self.size
        azimuth, elevation = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(35, 60))
        sun = np.array([math.sin(azimuth) * math.cos(elevation), -math.cos(azimuth) * math.cos(elevation),
                        math.sin(elevation)])  # x right, y down, z up
        dz_dy, dz_dx = np.gradient(self.surface, self.gsd)
        norm = np.sqrt(dz_dx ** 2 + dz_dy ** 2 + 1)
        direct = (-dz_dx * sun[0] - dz_dy * sun[1] + sun[2]) / norm / sun[2]
        shadow = _cast_shadows(self.surface, self.gsd, azimuth, elevation)
        light = 0.35 + 0.65 * np.clip(direct, 0, 1.4) * ~shadow
        texture = 1 + 0.04 * _smooth_noise(rng, (size, size), 2.0)
        value = self.albedo * (light * texture)[None] + rng.normal(0, 3.0, (3, size, size)).astype(np.float32)
        return np.clip(np.rint(value), 0, 255).astype(np.uint8)

    def dsm(self) -> np.ndarray:
        """Surface plus 4 cm sensor noise, in steps of DSM_STEP_M."""
        noisy = self.surface + self.rng.normal(0, 0.04, self.surface.shape).astype(np.float32)
        return (np.rint(noisy / DSM_STEP_M) * DSM_STEP_M).astype(np.float32)


def _cast_shadows(surface: np.ndarray, gsd: float, azimuth: float, elevation: float) -> np.ndarray:
    """Pixels from which the sun is hidden by a higher surface, found by walking towards the sun."""
    h, w = surface.shape
    dx, dy = math.sin(azimuth), -math.cos(azimuth)
    drop = math.tan(elevation) * gsd  # a ray towards the sun climbs this much per pixel
    reach = int(20.0 / drop) + 1  # objects stand at most ~16 m above their ground
    shadow = np.zeros((h, w), dtype=bool)
    seen = set()
    for step in np.arange(1.0, reach, 1.5):
        ox, oy = int(round(step * dx)), int(round(step * dy))
        if (ox, oy) in seen or max(abs(ox), abs(oy)) >= min(h, w):
            continue
        seen.add((ox, oy))
        here = (slice(max(0, -oy), min(h, h - oy)), slice(max(0, -ox), min(w, w - ox)))
        there = (slice(max(0, oy), min(h, h + oy)), slice(max(0, ox), min(w, w + ox)))
        shadow[here] |= surface[there] - math.hypot(ox, oy) * drop > surface[here] + 0.3
    return shadow


def generate_scene(size: int = 512, seed: int = 0, gsd: float = 0.1) -> SyntheticScene:
    """One deterministic scene of ``size`` x ``size`` pixels at ``gsd`` metres per pixel.

    Scenes of 50 m and more (512 px at 0.1 m) have Vaihingen-like class shares;
    smaller ones are mostly one road and its surroundings.
    """
    if size < 32:
        raise ValueError(f"scene size {size} is too small; use at least 32 pixels")
    painter = _Painter(size, seed, gsd)
    blocks = painter.roads()
    for block in blocks:
        painter.buildings(block)
    for block in blocks:
        painter.paved_areas(block)
    for block in blocks:
        painter.trees(block)
    painter.cars()
    painter.clutter()
    optical = painter.image()
    return SyntheticScene(optical=optical, dsm=painter.dsm(), labels=painter.labels, terrain=painter.terrain,
                          gsd=gsd, seed=seed)


# -- files ---------------------------------------------------------------------------------------------

CREATION_OPTIONS = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE", "ZLEVEL=9"]


def write_scene(scene: SyntheticScene, folder: str | Path, name: str, origin: tuple[float, float] = DEFAULT_ORIGIN,
                epsg: int = DEFAULT_EPSG, outputs: OutputSet | None = None) -> dict[str, Path]:
    """Write ``NAME_optical.tif``, ``NAME_dsm.tif`` and ``NAME_labels.tif``; ``origin`` is the upper-left corner.

    The files join ``outputs`` (committed with it), or are committed together on their own.
    """
    if outputs is None:
        with OutputSet() as own:
            return write_scene(scene, folder, name, origin, epsg, own)
    folder = Path(folder)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    wkt = srs.ExportToWkt()
    geotransform = (float(origin[0]), scene.gsd, 0.0, float(origin[1]), 0.0, -scene.gsd)
    paths = {kind: folder / f"{name}_{kind}.tif" for kind in ("optical", "dsm", "labels")}
    write_geotiff(outputs, paths["optical"], scene.optical, geotransform, wkt,
                  CREATION_OPTIONS + ["PHOTOMETRIC=RGB", "PREDICTOR=2"])
    write_geotiff(outputs, paths["dsm"], scene.dsm[None], geotransform, wkt, CREATION_OPTIONS + ["PREDICTOR=3"],
                  nodata=DSM_NODATA)
    write_geotiff(outputs, paths["labels"], scene.labels[None], geotransform, wkt, CREATION_OPTIONS,
                  nodata=IGNORE_INDEX, classes=([c.name for c in ISPRS_CLASSES], [c.color for c in ISPRS_CLASSES]))
    return paths


def scene_name(prefix: str, index: int, count: int) -> str:
    """``PREFIX_000``, ``PREFIX_001``, ...; a single scene is just ``PREFIX``."""
    return prefix if count == 1 else f"{prefix}_{index:03d}"


def write_scenes(output_dir: str | Path, scenes: int, size: int, seed: int, gsd: float, prefix: str = "scene",
                 epsg: int = DEFAULT_EPSG, progress: Progress | None = None) -> list[dict]:
    """Generate and write ``scenes`` scenes (scene k uses seed ``seed + k``) and a ``manifest.json``.

    Scenes lie side by side, 50 m apart, so their footprints never overlap.
    Returns one dict per scene: name, seed, paths ``optical``/``dsm``/``labels``,
    origin and class shares. ``progress`` is an optional `Progress`. All files
    (and the folder, when new) appear together once all are written.
    """
    output_dir = Path(output_dir)
    entries = []
    task = progress.task(scenes, "Generating scenes", unit="scene") if progress is not None else None
    with OutputSet() as outputs:
        try:
            for index in range(scenes):
                scene = generate_scene(size, seed + index, gsd)
                origin = (DEFAULT_ORIGIN[0] + index * (size * gsd + SCENE_SPACING_M), DEFAULT_ORIGIN[1])
                name = scene_name(prefix, index, scenes)
                paths = write_scene(scene, output_dir, name, origin=origin, epsg=epsg, outputs=outputs)
                entries.append({"name": name, "seed": seed + index, **paths, "origin": list(origin),
                                "class_shares": scene.class_shares()})
                if task is not None:
                    task.update()
        finally:
            if task is not None:
                task.close()
        manifest = {
            "generator": "mobanet synth", "size": size, "gsd": gsd, "epsg": epsg, "seed": seed,
            "classes": [{"index": i, "name": c.name, "color": list(c.color)} for i, c in enumerate(ISPRS_CLASSES)],
            "scenes": [{k: (v.name if isinstance(v, Path) else v) for k, v in e.items()} for e in entries],
        }
        outputs.write_text(output_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return entries
