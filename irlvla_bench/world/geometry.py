"""Planar polyline helpers for building road geometry (all arrays are (N, 2) metres unless noted)."""

from __future__ import annotations

import numpy as np
from numba import njit


def resample(points: np.ndarray, step: float = 1.0) -> np.ndarray:
    """Evenly spaced points along a polyline, first and last kept exactly (>= 3 points, as nuPlan's IDM needs)."""
    points = np.asarray(points, dtype=np.float64)
    seg = np.hypot(*np.diff(points, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(np.ceil(s[-1] / step)), 2) + 1
    targets = np.linspace(0.0, s[-1], n)
    out = np.column_stack([np.interp(targets, s, points[:, 0]), np.interp(targets, s, points[:, 1])])
    out[0], out[-1] = points[0], points[-1]
    return out


def arc_length(points: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])


def tangents(points: np.ndarray) -> np.ndarray:
    """Unit tangents; central differences inside so that offset curves stay parallel on arcs."""
    d = np.empty_like(points)
    d[1:-1] = points[2:] - points[:-2]
    d[0] = points[1] - points[0]
    d[-1] = points[-1] - points[-2]
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def offset(points: np.ndarray, distance: float) -> np.ndarray:
    """Parallel curve, positive to the left of the driving direction."""
    t = tangents(points)
    normal = np.column_stack([-t[:, 1], t[:, 0]])
    return points + distance * normal


def rounded_path(corners: np.ndarray, radius: float, step: float = 1.0) -> np.ndarray:
    """Polyline through ``corners`` with circular fillets of ``radius`` at inner corners, sampled every ``step``."""
    corners = np.asarray(corners, dtype=np.float64)
    pts = [corners[0]]
    for i in range(1, len(corners) - 1):
        a, b, c = corners[i - 1], corners[i], corners[i + 1]
        u = (a - b) / np.linalg.norm(a - b)
        v = (c - b) / np.linalg.norm(c - b)
        half = 0.5 * np.arccos(np.clip(np.dot(u, v), -1.0, 1.0))
        if half > np.pi / 2 - 1e-6:  # collinear
            pts.append(b)
            continue
        cut = radius / np.tan(half)
        p1, p2 = b + u * cut, b + v * cut
        bis = (u + v) / np.linalg.norm(u + v)
        center = b + bis * radius / np.sin(half)
        a1 = np.arctan2(*(p1 - center)[::-1])
        a2 = np.arctan2(*(p2 - center)[::-1])
        sweep = (a2 - a1 + np.pi) % (2 * np.pi) - np.pi
        n = max(int(np.ceil(abs(sweep) * radius / step)), 2)
        angles = a1 + sweep * np.linspace(0.0, 1.0, n + 1)
        pts.extend(center + radius * np.column_stack([np.cos(angles), np.sin(angles)]))
    pts.append(corners[-1])
    return resample(_dedupe(np.asarray(pts)), step)


def _dedupe(points: np.ndarray) -> np.ndarray:
    keep = np.concatenate([[True], np.hypot(*np.diff(points, axis=0).T) > 1e-9])
    return points[keep]


def bezier(p0: np.ndarray, h0: float, p1: np.ndarray, h1: float, step: float = 1.0) -> np.ndarray:
    """Cubic Bezier leaving ``p0`` along ``h0`` and arriving at ``p1`` along ``h1``; end points exact."""
    chord = float(np.linalg.norm(p1 - p0))
    k = 0.45 * chord
    c0 = p0 + k * np.array([np.cos(h0), np.sin(h0)])
    c1 = p1 - k * np.array([np.cos(h1), np.sin(h1)])
    t = np.linspace(0.0, 1.0, 200)[:, None]
    dense = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * c0 + 3 * (1 - t) * t**2 * c1 + t**3 * p1
    out = resample(dense, step)
    if len(out) < 3:
        out = resample(dense, chord / 3.0)
    return out


def headings(points: np.ndarray) -> np.ndarray:
    """Heading to the next vertex, the last repeating the previous (nuPlan's discrete path)."""
    d = np.diff(points, axis=0)
    h = np.arctan2(d[:, 1], d[:, 0])
    return np.append(h, h[-1])


@njit(cache=True)
def interpolate_pose(s_cum: np.ndarray, pts: np.ndarray, hdg: np.ndarray, s: float) -> tuple:
    """(x, y, heading) at arc length ``s`` on a polyline; heading of the containing segment (continuous-ish)."""
    n = s_cum.shape[0]
    if s <= 0.0:
        return pts[0, 0], pts[0, 1], hdg[0]
    if s >= s_cum[n - 1]:
        return pts[n - 1, 0], pts[n - 1, 1], hdg[n - 2]
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if s_cum[mid] <= s:
            lo = mid
        else:
            hi = mid
    seg = s_cum[hi] - s_cum[lo]
    w = (s - s_cum[lo]) / seg if seg > 0 else 0.0
    x = pts[lo, 0] + w * (pts[hi, 0] - pts[lo, 0])
    y = pts[lo, 1] + w * (pts[hi, 1] - pts[lo, 1])
    return x, y, hdg[lo]


def wrap(angle):
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def quaternion_from_yaw(yaw: float) -> np.ndarray:
    """(w, x, y, z), pyquaternion order, for a planar rotation."""
    return np.array([np.cos(yaw / 2.0), 0.0, 0.0, np.sin(yaw / 2.0)])


def yaw_from_quaternion(q) -> float:
    """pyquaternion's ``yaw_pitch_roll[0]`` after normalisation."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q)
    w, x, y, z = q
    return float(np.arctan2(2 * (w * z - x * y), 1 - 2 * (y * y + z * z)))
