"""Geometry and image-formation helpers shared by the phantom flavours.

Volumes are built in canonical RAS voxel order (X: to the patient's right, Y: anterior, Z: superior) on a
:class:`Grid` of world coordinates in mm centred on 0 (plus an offset). Shapes are smooth star-shaped
"blobs" (ellipsoids whose radius is modulated by a few random waves over the direction) and "tubes" (unions
of such blobs along a polyline); images get partial-volume blur, a smooth multiplicative bias field and
Rician (MRI) or Gaussian (CT) noise. All randomness comes from the ``np.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Grid", "blob", "tube", "smooth_field", "random_rotation", "finish_mri", "finish_ct", "smoothstep"]


@dataclass(frozen=True)
class Grid:
    """A voxel grid in canonical RAS order.

    Args:
        shape: (X, Y, Z) voxels.
        spacing: (X, Y, Z) mm.
        offset: world position (mm) of the grid centre.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World coordinates (mm) of the voxel centres along X, Y, Z, each (n,) float32."""
        return tuple(((np.arange(n) - (n - 1) / 2) * s + o).astype(np.float32)
                     for n, s, o in zip(self.shape, self.spacing, self.offset))  # type: ignore[return-value]

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable (X,1,1), (1,Y,1), (1,1,Z) coordinate arrays."""
        x, y, z = self.axes()
        return x[:, None, None], y[None, :, None], z[None, None, :]


def random_rotation(rng: np.random.Generator, max_deg: tuple[float, float, float]) -> np.ndarray:
    """A rotation matrix (3, 3) from random angles in ±max_deg about X, Y and Z."""
    ax, ay, az = np.deg2rad(rng.uniform(-1, 1, 3) * np.asarray(max_deg))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _box(grid: Grid, center: np.ndarray, extent: float) -> tuple[slice, slice, slice] | None:
    """Index box of the grid within ``extent`` mm of ``center``; None when it misses the grid."""
    box = []
    for axis, (n, s, o) in enumerate(zip(grid.shape, grid.spacing, grid.offset)):
        lo = int(np.floor((center[axis] - extent - o) / s + (n - 1) / 2))
        hi = int(np.ceil((center[axis] + extent - o) / s + (n - 1) / 2)) + 1
        lo, hi = max(lo, 0), min(hi, n)
        if lo >= hi:
            return None
        box.append(slice(lo, hi))
    return tuple(box)  # type: ignore[return-value]


def _waves(rng: np.random.Generator, wobble: float, num_waves: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    directions = rng.normal(size=(num_waves, 3))
    directions *= rng.uniform(1.0, 3.0, (num_waves, 1)) / np.linalg.norm(directions, axis=1, keepdims=True)
    amplitudes = rng.uniform(0.3, 1.0, num_waves) * wobble / np.sqrt(num_waves)
    phases = rng.uniform(0, 2 * np.pi, num_waves)
    return directions.astype(np.float32), amplitudes.astype(np.float32), phases.astype(np.float32)


def blob(grid: Grid, center, radii, rng: np.random.Generator, *, wobble: float = 0.08, num_waves: int = 4,
         rotation: np.ndarray | None = None) -> np.ndarray:
    """Normalised radius ``rho`` of a wobbly ellipsoid: < 1 inside, 1 on the surface (inf far away).

    Args:
        grid: the voxel grid.
        center: (3,) mm.
        radii: (3,) semi-axes in mm (in the rotated frame).
        rng: random generator (draws the waves).
        wobble: relative radius modulation.
        num_waves: waves over the direction.
        rotation: (3, 3) rotation of the ellipsoid, or None.

    Returns:
        (X, Y, Z) float32 ``rho``; ``rho < 1`` is the shape, ``a < rho < 1`` a shell.
    """
    center, radii = np.asarray(center, dtype=np.float32), np.asarray(radii, dtype=np.float32)
    directions, amplitudes, phases = _waves(rng, wobble, num_waves)
    rho = np.full(grid.shape, np.inf, dtype=np.float32)
    box = _box(grid, center, float(radii.max()) * (1 + 2 * wobble) + max(grid.spacing))
    if box is None:
        return rho
    x, y, z = (a[b] - c for a, b, c in zip(grid.axes(), box, center))
    x, y, z = x[:, None, None], y[None, :, None], z[None, None, :]
    frame = np.eye(3, dtype=np.float32) if rotation is None else np.asarray(rotation, dtype=np.float32)
    # shape-frame coordinates scaled by the radii: s_j = sum_i d_i R_ij / r_j, each (x, y, z) broadcast
    scaled = [(x * frame[0, j] + y * frame[1, j] + z * frame[2, j]) / radii[j] for j in range(3)]
    q = np.sqrt(scaled[0] ** 2 + scaled[1] ** 2 + scaled[2] ** 2)
    inv = np.float32(np.pi) / np.maximum(q, np.float32(1e-6))
    modulation = np.ones(q.shape, dtype=np.float32)
    for direction, amplitude, phase in zip(directions, amplitudes, phases):
        angle = (scaled[0] * direction[0] + scaled[1] * direction[1] + scaled[2] * direction[2]) * inv
        modulation += amplitude * np.cos(angle + phase)
    rho[box] = q / np.maximum(modulation, np.float32(0.3))
    return rho


def tube(grid: Grid, points, radii, rng: np.random.Generator, *, wobble: float = 0.06) -> np.ndarray:
    """Normalised radius of a tube along a polyline (union of spheres, radius interpolated).

    Args:
        grid: the voxel grid.
        points: (P, 3) polyline in mm.
        radii: (P,) radius at each point in mm.
        rng: random generator (radius wobble along the tube).
        wobble: relative random change of radius along the tube.

    Returns:
        (X, Y, Z) float32 ``rho`` (< 1 inside).
    """
    points, radii = np.asarray(points, dtype=np.float32), np.asarray(radii, dtype=np.float32)
    lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0], np.cumsum(lengths)])
    step = max(0.35 * float(radii.min()), 0.5 * min(grid.spacing))
    t = np.linspace(0, arc[-1], max(2, int(arc[-1] / step) + 2))
    centres = np.stack([np.interp(t, arc, points[:, k]) for k in range(3)], axis=1)
    r = np.interp(t, arc, radii) * (1 + wobble * np.sin(t / 25.0 + rng.uniform(0, 2 * np.pi)))
    rho = np.full(grid.shape, np.inf, dtype=np.float32)
    axes = grid.axes()
    for c, radius in zip(centres, r):  # each sphere only updates its own small box
        box = _box(grid, c, float(radius) + max(grid.spacing))
        if box is None:
            continue
        x, y, z = (a[b] - float(ci) for a, b, ci in zip(axes, box, c))
        dist = np.sqrt(x[:, None, None] ** 2 + y[None, :, None] ** 2 + z[None, None, :] ** 2) / np.float32(radius)
        np.minimum(rho[box], dist, out=rho[box])
    return rho


def smooth_field(grid: Grid, rng: np.random.Generator, *, wavelength: float = 200.0, num_waves: int = 4) -> np.ndarray:
    """A smooth random field in about [-1, 1] (sum of random plane waves of ~``wavelength`` mm), (X, Y, Z)."""
    x, y, z = grid.axes()
    field = np.zeros(grid.shape, dtype=np.complex64)
    for _ in range(num_waves):  # cos(k.x + p) = Re(e^{i kx x} e^{i (ky y + kz z + p)}), separable
        k = rng.normal(size=3)
        k *= 2 * np.pi / (wavelength * rng.uniform(0.7, 1.4) * np.linalg.norm(k))
        yz = np.exp(1j * (k[1] * y[:, None] + k[2] * z[None, :] + rng.uniform(0, 2 * np.pi))).astype(np.complex64)
        field += np.exp(1j * k[0] * x).astype(np.complex64)[:, None, None] * yz[None]
    return field.real / np.float32(np.sqrt(num_waves / 2))


def smoothstep(t: np.ndarray) -> np.ndarray:
    """0 for t <= 0, 1 for t >= 1, smooth in between."""
    t = np.clip(t, 0, 1)
    return t * t * (3 - 2 * t)


def finish_mri(tissue: np.ndarray, grid: Grid, rng: np.random.Generator, *, noise: float, bias: float,
               blur_vox: tuple[float, float, float]) -> np.ndarray:
    """Partial-volume blur, multiplicative bias field and Rician noise of a noiseless MRI (X, Y, Z)."""
    image = ndimage.gaussian_filter(tissue.astype(np.float32), blur_vox, mode="nearest")
    image *= np.exp(bias * smooth_field(grid, rng, wavelength=300.0, num_waves=3))
    real = image + np.float32(noise) * rng.standard_normal(image.shape, dtype=np.float32)
    imag = np.float32(noise) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)


def finish_ct(hu: np.ndarray, rng: np.random.Generator, *, noise: float,
              blur_vox: tuple[float, float, float]) -> np.ndarray:
    """Partial-volume blur and Gaussian quantum noise (HU) of a noiseless CT (X, Y, Z)."""
    image = ndimage.gaussian_filter(hu.astype(np.float32), blur_vox, mode="nearest")
    grain = ndimage.gaussian_filter(rng.standard_normal(image.shape, dtype=np.float32), (0.7, 0.7, 0))
    return image + noise * grain / max(float(grain.std()), 1e-6)
