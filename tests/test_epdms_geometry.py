"""The EPDMS point-in-polygon structures against shapely's ``contains`` (what NAVSIM's drivable map uses):
polygons with holes, open and closed rings, long thin road-like shapes, points on vertices and edges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluators.epdms.geometry import CELL_BOUNDARY, CELL_INSIDE, CellGrid, PolygonSet, cell_of, classify_cells, \
    point_in_polygon

shapely = pytest.importorskip("shapely")

OFFSET = np.array([664000.3, 3997000.7])  # UTM-like coordinates, as in the logs


def _star(rng, centre, radius, n):
    angle = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = radius * rng.uniform(0.5, 1.0, n)
    return centre + np.stack([r * np.cos(angle), r * np.sin(angle)], -1)


def _polygons(seed):
    """Stars with star-shaped holes, stretched road strips; half the rings closed, half open."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(int(rng.integers(1, 6))):
        centre = OFFSET + rng.uniform(-50, 50, 2)
        outer = _star(rng, centre, rng.uniform(10, 30), int(rng.integers(3, 60)))
        if rng.random() < 0.5:
            outer = outer * np.array([rng.uniform(1, 8), 1.0]) - centre * np.array([rng.uniform(1, 8) - 1, 0.0])
        if not shapely.Polygon(outer).is_valid:  # a star whose points span less than a half-turn can cross
            continue
        holes = []
        for _ in range(int(rng.integers(0, 3))):
            hole = _star(rng, centre + rng.uniform(-2, 2, 2), rng.uniform(1, 4), int(rng.integers(3, 12)))
            # Only valid polygons (holes inside and apart): shapely's answer is undefined for invalid ones.
            if shapely.Polygon(outer, holes + [hole]).is_valid:
                holes.append(hole)
        rings = [outer] + holes
        rings = [np.vstack([r, r[:1]]) if rng.random() < 0.5 else r for r in rings]
        out.append((rings[0], rings[1:]))
    return out


def _probe_points(rng, polygons):
    points = [OFFSET + rng.uniform(-120, 120, (400, 2))]
    for exterior, holes in polygons:
        for ring in (exterior, *holes):
            points.append(ring)  # vertices: boundary
            t = rng.uniform(0, 1, (len(ring), 1))
            points.append(ring + t * (np.roll(ring, -1, axis=0) - ring))  # on (or within 1 ulp of) the edges
            points.append(ring + rng.normal(0, 1e-9, ring.shape))
    return np.vstack(points)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_point_in_polygon_is_shapely_contains(seed):
    polygons = _polygons(seed)
    polygon_set = PolygonSet.build(polygons)
    points = _probe_points(np.random.default_rng(seed + 1), polygons)
    for p, (exterior, holes) in enumerate(polygons):
        theirs = shapely.contains_xy(shapely.Polygon(exterior, holes), points[:, 0], points[:, 1])
        ours = np.array([point_in_polygon(x, y, p, *polygon_set.arrays) for x, y in points])
        assert np.array_equal(ours, theirs), (seed, p, np.flatnonzero(ours != theirs)[:5])


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_cell_grid_states_agree_with_the_exact_test(seed):
    """A cell the grid calls inside (outside) holds only inside (outside) points; only boundary cells defer."""
    polygons = _polygons(seed)
    polygon_set = PolygonSet.build(polygons)
    grid = CellGrid.build(polygon_set, cell=2.0)
    points = _probe_points(np.random.default_rng(seed + 2), polygons)
    classify_cells(points, *grid.arrays, *polygon_set.arrays)
    for x, y in points:
        i, j = cell_of(x, y, grid.origin, grid.cell, grid.states)
        for p in range(len(polygon_set)):
            exact = point_in_polygon(x, y, p, *polygon_set.arrays)
            state = grid.states[p, i, j] if i >= 0 else 0
            assert state == CELL_BOUNDARY or exact == (state == CELL_INSIDE), (seed, p, x, y, state)


def test_polygon_set_layout():
    square = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 1.0], [0.0, 1.0]])
    closed_hole = np.array([[1.0, 0.25], [2.0, 0.25], [2.0, 0.75], [1.0, 0.25]])
    polygon_set = PolygonSet.build([(square, [closed_hole]), (np.vstack([square, square[:1]]) + 10.0, [])])
    # Open ring: 4 edges (closed here); closed rings: one edge per repeated point pair.
    assert polygon_set.edge_ptr.tolist() == [0, 7, 11]
    assert polygon_set.bbox.tolist() == [[0, 0, 4, 1], [10, 10, 14, 11]]
    assert polygon_set.swap.tolist() == [True, True]  # wider than tall: bucketed along x
    assert polygon_set.bucket_count.tolist() == [3, 2] and polygon_set.bucket_base.tolist() == [0, 3]
    assert len(polygon_set.bucket_ptr) == 6 and polygon_set.bucket_ptr[-1] == len(polygon_set.bucket_items)
    empty = PolygonSet.build([])
    assert len(empty) == 0 and empty.edges.shape == (0, 4) and empty.bucket_ptr.tolist() == [0]
    with pytest.raises(ValueError, match="3 points"):
        PolygonSet.build([(square, [square[:2]])])


def _ego_coordinates_numpy(states, vehicle):
    """NAVSIM's ego corners in its NumPy operation order (the kernel must round exactly like this)."""
    heading = states[..., 2]
    cos, sin = np.cos(heading), np.sin(heading)
    center = states[..., :2] + np.stack([vehicle.rear_axle_to_center * cos, vehicle.rear_axle_to_center * sin], -1)
    coords = np.empty(states.shape[:2] + (5, 2))
    coords[..., 4, :] = center
    for index, (lon, lat) in enumerate(((vehicle.half_length, vehicle.half_width),
                                        (-vehicle.half_length, vehicle.half_width),
                                        (-vehicle.half_length, -vehicle.half_width),
                                        (vehicle.half_length, -vehicle.half_width))):
        coords[..., index, 0] = center[..., 0] + (lat * np.cos(heading + np.pi / 2) + lon * cos)
        coords[..., index, 1] = center[..., 1] + (lat * np.sin(heading + np.pi / 2) + lon * sin)
    return coords


def test_ego_corners_round_like_navsims_numpy_arithmetic():
    from evaluators.epdms.score import ego_coordinates
    from irlvla_bench.types import PACIFICA

    rng = np.random.default_rng(3)
    states = np.zeros((64, 41, 11))
    states[..., :2] = OFFSET + rng.uniform(-500, 500, (64, 41, 2))
    states[..., 2] = rng.uniform(-4 * np.pi, 4 * np.pi, (64, 41))
    states[:4, :, 2] = np.array([0.0, np.pi / 2, -np.pi, np.pi])[:, None]  # axis-aligned: exact cancellations
    vehicle = PACIFICA
    assert np.array_equal(ego_coordinates(states, vehicle), _ego_coordinates_numpy(states, vehicle))


def test_object_box_corners_round_like_the_numpy_formula():
    from evaluators.epdms.traffic.base import box_corners

    rng = np.random.default_rng(4)
    boxes = np.zeros((7, 41, 9, 6))
    boxes[..., :2] = OFFSET + rng.uniform(-300, 300, (7, 41, 9, 2))
    boxes[..., 2] = rng.uniform(-4 * np.pi, 4 * np.pi, (7, 41, 9))
    boxes[..., 3:5] = rng.uniform(0.3, 20.0, (7, 41, 9, 2))
    boxes[0, :, 0, 2] = 0.0
    x, y, h = boxes[..., 0], boxes[..., 1], boxes[..., 2]
    half_l, half_w = boxes[..., 3] / 2.0, boxes[..., 4] / 2.0
    c, s = np.cos(h), np.sin(h)
    expected = np.empty(boxes.shape[:-1] + (4, 2))
    for i, (lon, lat) in enumerate(((1, 1), (-1, 1), (-1, -1), (1, -1))):
        expected[..., i, 0] = x + lon * half_l * c - lat * half_w * s
        expected[..., i, 1] = y + lon * half_l * s + lat * half_w * c
    assert np.array_equal(box_corners(boxes), expected)
    assert box_corners(boxes[:, :, :0]).shape == (7, 41, 0, 4, 2)
