"""Bird's-eye view of one token: map, objects at t = 0, the ego and both agents' trajectories.

The scene comes from the cached scoring case (``<cache_dir>/<log_name>/<token>.json.gz``). Agent poses in
``rows.parquet`` are ego-frame rear-axle poses; they are moved to the global frame with the case's ego pose,
and the plot is drawn in the global orientation with the origin shifted to the ego's rear axle (raw UTM
coordinates make unreadable ticks). When the case cannot be read, the trajectories are drawn in the ego frame
with a note on the figure: a report must not die because one cache file went missing.

Figures are built with ``matplotlib.figure.Figure`` on the Agg canvas, never pyplot, so nothing global (the
backend, the current figure) changes for the caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Polygon as PolygonPatch

from irlvla_bench.errors import InputError
from irlvla_bench.io.atomic import atomic_path
from irlvla_bench.io.scoring_case import load_case
from irlvla_bench.types import NUM_TRAJECTORY_POSES, PACIFICA, MapLayer, ObjectType, ScoringCase

CASE_SUFFIX = ".json.gz"  # as written by irlvla_bench.caching.runner
VIEW_MARGIN_M = 15.0
MIN_HALF_VIEW_M = 25.0

_AREA_LAYERS = {
    MapLayer.ROADBLOCK: "#e6e6e6", MapLayer.ROADBLOCK_CONNECTOR: "#e6e6e6", MapLayer.INTERSECTION: "#dcdcdc",
    MapLayer.CARPARK_AREA: "#ececec", MapLayer.DRIVABLE_AREA: "#e6e6e6", MapLayer.WALKWAYS: "#f3efe4",
    MapLayer.CROSSWALK: "#f5f5c8",
}
_OBJECT_COLOURS = {
    ObjectType.VEHICLE: "#4c72b0", ObjectType.PEDESTRIAN: "#dd8452", ObjectType.BICYCLE: "#55a868",
    ObjectType.TRAFFIC_CONE: "#c44e52", ObjectType.BARRIER: "#8172b3", ObjectType.CZONE_SIGN: "#937860",
    ObjectType.GENERIC_OBJECT: "#8c8c8c",
}
TRAJECTORY_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


@dataclass(frozen=True)
class SceneLookup:
    """A cached case, or the reason there is none (shown on the figure)."""

    case: ScoringCase | None
    note: str = ""


def case_path(cache_dir: str | Path, log_name: str, token: str) -> Path:
    return Path(cache_dir) / log_name / f"{token}{CASE_SUFFIX}"


def find_scene(cache_dir: str | Path | None, log_name: str, token: str) -> SceneLookup:
    """Load the cached scoring case of a token; a missing or unreadable file gives a note, not an error."""
    if not cache_dir:
        return SceneLookup(None, "no cache_dir in summary.json: trajectories only (ego frame)")
    path = case_path(cache_dir, log_name, token)
    if not path.is_file():
        return SceneLookup(None, f"scene not found ({path}): trajectories only (ego frame)")
    try:
        case = load_case(path)
    except InputError as exc:  # load_case reports unreadable and invalid files as InputError
        return SceneLookup(None, f"scene unreadable ({exc}): trajectories only (ego frame)")
    return SceneLookup(case)


def parse_poses(text: object) -> np.ndarray | None:
    """The (8, 3) ego-frame poses of a ``rows.poses`` cell, or None when the cell is empty or malformed."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        poses = np.asarray(json.loads(text), dtype=float)
    except (json.JSONDecodeError, ValueError, TypeError):
        return None
    if poses.ndim != 2 or poses.shape[1] != 3 or len(poses) != NUM_TRAJECTORY_POSES or not np.isfinite(poses).all():
        return None
    return poses


def ego_to_global(poses: np.ndarray, ego_pose: np.ndarray) -> np.ndarray:
    """Ego-frame (x, y, heading) -> global, for an ego rear-axle pose (x, y, heading)."""
    c, s = np.cos(ego_pose[2]), np.sin(ego_pose[2])
    x = ego_pose[0] + c * poses[:, 0] - s * poses[:, 1]
    y = ego_pose[1] + s * poses[:, 0] + c * poses[:, 1]
    return np.column_stack([x, y, poses[:, 2] + ego_pose[2]])


def box_corners(x: float, y: float, heading: float, length: float, width: float) -> np.ndarray:
    c, s = np.cos(heading), np.sin(heading)
    local = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], dtype=float) * [length / 2.0, width / 2.0]
    return np.column_stack([x + c * local[:, 0] - s * local[:, 1], y + s * local[:, 0] + c * local[:, 1]])


def _draw_map(ax, case: ScoringCase, origin: np.ndarray) -> None:
    for obj in case.map_objects:
        ring = obj.polygon - origin
        if obj.layer in _AREA_LAYERS:
            hatch = "///" if obj.layer == MapLayer.CROSSWALK else None
            ax.add_patch(PolygonPatch(ring, closed=True, facecolor=_AREA_LAYERS[obj.layer], edgecolor="#c8c8c8",
                                      linewidth=0.4, hatch=hatch, zorder=1))
        elif obj.layer in (MapLayer.LANE, MapLayer.LANE_CONNECTOR):
            on_route = obj.id in case.route_lane_ids
            ax.add_patch(PolygonPatch(ring, closed=True, facecolor="#dbe9f6" if on_route else "none",
                                      edgecolor="#b0b0b0", linewidth=0.4, zorder=2))
            if obj.baseline is not None:
                line = obj.baseline - origin
                ax.plot(line[:, 0], line[:, 1], color="#a0a0a0", linewidth=0.6, linestyle=(0, (4, 4)), zorder=3)
        elif obj.layer == MapLayer.STOP_LINE:
            ax.add_patch(PolygonPatch(ring, closed=True, facecolor="#c44e52", alpha=0.5, linewidth=0, zorder=3))


def _draw_objects(ax, case: ScoringCase, origin: np.ndarray) -> None:
    tracked = case.tracked_objects
    if tracked.num_objects == 0:
        return
    present = tracked.present[0]
    for o in np.flatnonzero(present):
        x, y, heading, length, width, _ = tracked.boxes[0, o]
        kind = ObjectType(int(tracked.types[o]))
        corners = box_corners(x - origin[0], y - origin[1], heading, length, width)
        ax.add_patch(PolygonPatch(corners, closed=True, facecolor=_OBJECT_COLOURS[kind], alpha=0.75,
                                  edgecolor="black", linewidth=0.5, zorder=5))
        vx, vy = tracked.velocities[0, o]
        if kind.is_agent and np.hypot(vx, vy) > 0.2:
            # One second of motion: shows where the object is heading without cluttering the plot.
            ax.annotate("", xy=(x - origin[0] + vx, y - origin[1] + vy), xytext=(x - origin[0], y - origin[1]),
                        arrowprops={"arrowstyle": "->", "color": _OBJECT_COLOURS[kind], "lw": 0.8}, zorder=5)


def _draw_ego(ax, case: ScoringCase | None, origin: np.ndarray) -> None:
    vehicle = case.vehicle if case is not None else PACIFICA
    heading = float(case.ego.rear_axle[2]) if case is not None else 0.0
    # Boxes are centred on the vehicle centre, the ego pose is the rear axle.
    offset = vehicle.rear_axle_to_center
    cx, cy = offset * np.cos(heading), offset * np.sin(heading)
    corners = box_corners(cx, cy, heading, vehicle.length, vehicle.width)
    ax.add_patch(PolygonPatch(corners, closed=True, facecolor="#2b2b2b", alpha=0.85, edgecolor="black",
                              linewidth=0.6, zorder=6, label="ego"))


def render_bev(
    out_path: str | Path,
    *,
    scene: SceneLookup,
    trajectories: Mapping[str, np.ndarray | None],
    title: str = "",
    subtitle: str = "",
    dpi: int = 110,
) -> Path:
    """Draw one token and write it as a PNG (atomically); ``trajectories`` are ego-frame (8, 3) poses."""
    case = scene.case
    notes = [scene.note] if scene.note else []
    if case is not None:
        ego_pose = np.asarray(case.ego.rear_axle, dtype=float)
        origin = ego_pose[:2]
    else:
        ego_pose, origin = np.zeros(3), np.zeros(2)

    fig = Figure(figsize=(6.4, 6.4), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if case is not None:
        _draw_map(ax, case, origin)
        _draw_objects(ax, case, origin)
        if case.human_future is not None:
            human = np.vstack([[0.0, 0.0], ego_to_global(case.human_future, ego_pose)[:, :2] - origin])
            ax.plot(human[:, 0], human[:, 1], color="#7f7f7f", linestyle="--", linewidth=1.2, zorder=7,
                    label="human")
    _draw_ego(ax, case, origin)

    extent = [np.zeros(2)]
    for (label, poses), colour in zip(trajectories.items(), TRAJECTORY_COLOURS):
        if poses is None:
            notes.append(f"{label}: no poses in rows.parquet")
            continue
        xy = ego_to_global(poses, ego_pose)[:, :2] - origin
        path = np.vstack([[0.0, 0.0], xy])  # trajectories start at the ego's rear axle (t = 0)
        ax.plot(path[:, 0], path[:, 1], color=colour, linewidth=2.0, marker="o", markersize=3.5, zorder=8,
                label=label)
        extent.append(xy.min(axis=0))
        extent.append(xy.max(axis=0))

    points = np.vstack(extent)
    centre = (points.min(axis=0) + points.max(axis=0)) / 2.0
    half = max(MIN_HALF_VIEW_M, float(np.max(points.max(axis=0) - points.min(axis=0))) / 2.0 + VIEW_MARGIN_M)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal")
    frame = "global orientation, metres from the ego rear axle" if case is not None else "ego frame, metres"
    ax.set_xlabel(frame, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(loc="upper right", fontsize=7, framealpha=0.85)
    if title:
        ax.set_title(title, fontsize=9)
    text = "\n".join(filter(None, [subtitle, *notes]))
    if text:
        ax.text(0.01, 0.01, text, transform=ax.transAxes, fontsize=6.5, va="bottom", ha="left", wrap=True,
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "#cccccc"}, zorder=10)
    fig.tight_layout()
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png")
    return out_path
