"""Per-scene structures, built once and shared by every proposal of the scene.

``PreparedScene`` holds the drivable map (NAVSIM's ``PDMDrivableMap``) as a bucketed ``PolygonSet`` with one
kind flag per polygon, the on-route red-light polygons per frame, the centerline index for lane keeping, the
10 Hz PDM reference poses and the history states for comfort. Building it is the only per-scene cost; the
per-proposal path only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.epdms.config import EPDMSConfig
from evaluators.epdms.geometry import CellGrid, PolygonSet, PolylineIndex
from evaluators.epdms.history import history_states
from irlvla_bench.types import NUM_SCORING_FRAMES, MapLayer, ScoringCase, VehicleParameters

# Kinds of drivable-map polygons (bit flags: one polygon can be several).
KIND_LANE = 1  # lane or lane connector: multiple-lanes flag
KIND_ON_ROUTE = 2  # lane/connector on the route: oncoming-traffic flag
KIND_DRIVABLE = 4  # roadblock, intersection, carpark, drivable area: drivable-area compliance
KIND_INTERSECTION = 8  # intersections: DDC, LK and TTC exemptions

_DRIVABLE_LAYERS = (MapLayer.ROADBLOCK, MapLayer.INTERSECTION, MapLayer.CARPARK_AREA, MapLayer.DRIVABLE_AREA)
# PDMDrivableMap.from_simulation's order; roadblock connectors are deliberately absent (only their lane
# connectors are in NAVSIM's map), so junctions are drivable only through intersection polygons.
_DRIVABLE_MAP_ORDER = (
    MapLayer.ROADBLOCK,
    MapLayer.LANE,
    MapLayer.LANE_CONNECTOR,
    MapLayer.INTERSECTION,
    MapLayer.CARPARK_AREA,
    MapLayer.DRIVABLE_AREA,
)


@dataclass(frozen=True)
class PreparedScene:
    case: ScoringCase
    config: EPDMSConfig
    vehicle: VehicleParameters
    ego_radius: float  # half diagonal of the ego box: the collision checks' broad phase
    drivable: PolygonSet
    drivable_grid: CellGrid
    drivable_kinds: np.ndarray  # (P,) int64 bit flags
    drivable_ids: tuple[str, ...]
    red_lights: PolygonSet  # on-route lane connectors that are red in some frame
    red_light_ids: tuple[str, ...]
    red_active: np.ndarray  # (F, R) bool
    centerline: np.ndarray  # (K, 2)
    centerline_index: PolylineIndex
    history: np.ndarray | None  # (H, 11) human past states for history comfort
    initial_state: np.ndarray  # (11,)


def prepare_scene(case: ScoringCase, config: EPDMSConfig) -> PreparedScene:
    by_layer: dict[MapLayer, list] = {layer: [] for layer in MapLayer}
    for obj in case.map_objects:
        by_layer[obj.layer].append(obj)

    polygons, kinds, ids = [], [], []
    for layer in _DRIVABLE_MAP_ORDER:
        for obj in by_layer[layer]:
            kind = 0
            if layer in (MapLayer.LANE, MapLayer.LANE_CONNECTOR):
                kind |= KIND_LANE
                if obj.id in case.route_lane_ids:
                    kind |= KIND_ON_ROUTE
            if layer in _DRIVABLE_LAYERS:
                kind |= KIND_DRIVABLE
            if layer == MapLayer.INTERSECTION:
                kind |= KIND_INTERSECTION
            polygons.append((obj.polygon, obj.holes))
            kinds.append(kind)
            ids.append(obj.id)

    # NAVSIM only builds red-light polygons for on-route lane connectors (route_lane_dict).
    connectors = {obj.id: obj for obj in by_layer[MapLayer.LANE_CONNECTOR] if obj.id in case.route_lane_ids}
    red_ids = sorted({rid for frame in case.red_lane_connectors for rid in frame if rid in connectors})
    red_active = np.zeros((NUM_SCORING_FRAMES, len(red_ids)), dtype=np.bool_)
    for f, frame in enumerate(case.red_lane_connectors[:NUM_SCORING_FRAMES]):
        for r, rid in enumerate(red_ids):
            red_active[f, r] = rid in frame

    centerline = np.ascontiguousarray(case.centerline[:, :2])
    history = history_states(case.human_past) if case.human_past else None
    drivable = PolygonSet.build(polygons)
    return PreparedScene(
        case=case,
        config=config,
        vehicle=case.vehicle,
        ego_radius=float(np.hypot(case.vehicle.half_length, case.vehicle.half_width)),
        drivable=drivable,
        drivable_grid=CellGrid.build(drivable),
        drivable_kinds=np.asarray(kinds, dtype=np.int64),
        drivable_ids=tuple(ids),
        red_lights=PolygonSet.build([(connectors[r].polygon, ()) for r in red_ids]),
        red_light_ids=tuple(red_ids),
        red_active=red_active,
        centerline=centerline,
        centerline_index=PolylineIndex.build(centerline, config.lane_keeping_deviation_m),
        history=history,
        initial_state=case.ego.to_state_array(),
    )
