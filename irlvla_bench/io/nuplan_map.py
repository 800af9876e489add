"""nuPlan GeoPackage maps: the writer (layers, columns and SQLite types of nuPlan's ``GPKGMapsDB``) and a reader
that turns a ``map.gpkg`` into typed lane / roadblock objects with a spatial index.

Semantics follow nuplan-devkit's ``NuPlanMap`` (``nuplan/common/maps/nuplan_map/``): ids are ``str(fid)``; a
roadblock's interior edges are its lanes in table order; a lane's outgoing edges are the lane connectors whose
``exit_lane_fid`` is the lane; proximity queries use a square patch and ``intersects``. The on-disk traps (INTEGER
id columns, one CRS for every layer, all four locations present) are listed in ``shared/spec/navsim-data-format.md``.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import shapely

from irlvla_bench.errors import InputError

MAP_VERSION_NAME = "nuplan-maps-v1.0"
MAP_VERSION_FILE = f"{MAP_VERSION_NAME}.json"
DEFAULT_VERSION = "synthetic-1.0"
# The UTM zone nuPlan's real files use for each city; NAVSIM asserts the map name is one of these four.
MAP_LOCATIONS: dict[str, str] = {
    "sg-one-north": "EPSG:32648",
    "us-ma-boston": "EPSG:32619",
    "us-nv-las-vegas-strip": "EPSG:32611",
    "us-pa-pittsburgh-hazelwood": "EPSG:32617",
}

# Column kinds: "int" INTEGER NOT NULL in practice, "int_null" INTEGER with NULLs, "float_null" REAL, "text" TEXT.
# Only integer storage keeps nuPlan's ``str(row[col])`` / ``astype(int)`` lookups working.
LAYER_SCHEMA: dict[str, tuple[str, dict[str, str]]] = {
    "lanes_polygons": (
        "Polygon",
        {
            "lane_fid": "int",
            "lane_group_fid": "int",
            "speed_limit_mps": "float_null",
            "lane_index": "int",
            "left_boundary_fid": "int",
            "right_boundary_fid": "int",
            "width": "float_null",
        },
    ),
    "lane_groups_polygons": ("Polygon", {"left_boundary_fid": "int", "right_boundary_fid": "int"}),
    "lane_connectors": (
        "LineString",
        {
            "exit_lane_fid": "int",
            "entry_lane_fid": "int",
            "lane_group_connector_fid": "int",
            "speed_limit_mps": "float_null",
            "traffic_light_stop_line_fids": "text",
            "exit_lane_group_fid": "int",
            "entry_lane_group_fid": "int",
            "intersection_fid": "int",
            "turn_type_fid": "int",
        },
    ),
    "gen_lane_connectors_scaled_width_polygons": ("Polygon", {"lane_connector_fid": "int"}),
    "lane_group_connectors": (
        "Polygon",
        {"from_lane_group_fid": "int", "to_lane_group_fid": "int", "intersection_fid": "int"},
    ),
    "baseline_paths": ("LineString", {"lane_fid": "int_null", "lane_connector_fid": "int_null"}),
    "boundaries": ("LineString", {"boundary_type_fid": "int"}),
    "stop_polygons": ("Polygon", {"stop_polygon_type_fid": "int"}),
    "intersections": ("Polygon", {"intersection_type_fid": "int", "is_mini": "int"}),
    "carpark_areas": ("Polygon", {"heading": "float_null"}),
    "crosswalks": ("Polygon", {"is_marked": "int"}),
    "walkways": ("Polygon", {}),
    "traffic_lights": ("Point", {"ori_mean_yaw": "float_null", "lane_connector_fid": "int"}),
}
# Layers NAVSIM's metric caching opens (missing ones are a DataLayerError there); the rest are optional.
REQUIRED_LAYERS = (
    "lanes_polygons",
    "lane_groups_polygons",
    "lane_connectors",
    "lane_group_connectors",
    "gen_lane_connectors_scaled_width_polygons",
    "baseline_paths",
    "boundaries",
    "stop_polygons",
    "intersections",
    "carpark_areas",
)
# Columns the reader needs (the ones nuPlan's code paths used by NAVSIM read).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "lanes_polygons": ("lane_fid", "lane_group_fid", "speed_limit_mps"),
    "lane_groups_polygons": (),
    "lane_connectors": ("exit_lane_fid", "entry_lane_fid", "lane_group_connector_fid", "speed_limit_mps"),
    "gen_lane_connectors_scaled_width_polygons": ("lane_connector_fid",),
    "lane_group_connectors": ("from_lane_group_fid", "to_lane_group_fid"),
    "baseline_paths": ("lane_fid", "lane_connector_fid"),
    "boundaries": (),
    "stop_polygons": ("stop_polygon_type_fid",),
    "intersections": (),
    "carpark_areas": (),
}


# --------------------------------------------------------------------------------------------------------------
# Writing


def _typed_frame(layer: str, rows: pd.DataFrame | list[dict], crs: str):
    """A GeoDataFrame with the schema's columns and dtypes (missing optional columns are filled)."""
    import geopandas as gpd

    geom_type, columns = LAYER_SCHEMA[layer]
    df = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.copy()
    if len(df) == 0:
        df = _empty_rows(layer)
    if "fid" not in df.columns or "geometry" not in df.columns:
        raise ValueError(f"layer {layer}: rows need 'fid' and 'geometry'")
    out = {"fid": pd.array(df["fid"].astype("int64"), dtype="int64")}
    for col, kind in columns.items():
        values = df[col] if col in df.columns else pd.Series([None] * len(df), dtype=object)
        if kind == "int":
            values = values.fillna(0) if col not in df.columns else values
            out[col] = pd.array(values.astype("int64"), dtype="int64")
        elif kind == "int_null":
            out[col] = pd.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v) for v in values], dtype="Int64")
        elif kind == "float_null":
            out[col] = pd.array([np.nan if v is None else float(v) for v in values], dtype="float64")
        else:
            out[col] = pd.array(["" if v is None else str(v) for v in values], dtype=object)
    return gpd.GeoDataFrame(out, geometry=gpd.GeoSeries(list(df["geometry"]), crs=crs)), geom_type


def write_map(maps_root: str | Path, location: str, layers: Mapping[str, pd.DataFrame | list[dict]], *,
              version: str = DEFAULT_VERSION) -> Path:
    """Write ``<maps_root>/<location>/<version>/map.gpkg`` with every schema layer (absent ones empty).

    Each row needs ``fid`` (unique across layers, as in real nuPlan maps) and a ``geometry`` in the location's
    projected CRS. Also writes stubs for the other three locations and the version file, which nuPlan's
    ``GPKGMapsDB`` insists on (it opens ``lane_connectors`` of every location).
    """
    import pyogrio

    if location not in MAP_LOCATIONS:
        raise ValueError(f"unknown map location {location!r}; nuPlan/NAVSIM accept {sorted(MAP_LOCATIONS)}")
    maps_root = Path(maps_root)
    crs = MAP_LOCATIONS[location]
    path = maps_root / location / version / "map.gpkg"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("map.tmp.gpkg")
    if tmp.exists():
        tmp.unlink()
    _write_meta(tmp, crs)
    for layer in LAYER_SCHEMA:
        gdf, geom_type = _typed_frame(layer, layers.get(layer, []), crs)
        pyogrio.write_dataframe(gdf, tmp, layer=layer, driver="GPKG", geometry_type=geom_type, append=True)
    os.replace(tmp, path)
    for other in MAP_LOCATIONS:
        if other != location and not (maps_root / other / version / "map.gpkg").exists():
            _write_stub(maps_root, other, version)
    _update_version_file(maps_root, {location: version})
    return path


def _empty_rows(layer: str) -> pd.DataFrame:
    columns = ["fid", "geometry", *LAYER_SCHEMA[layer][1]]
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})


def _write_meta(path: Path, crs: str) -> None:
    import pyogrio

    meta = pd.DataFrame({"key": ["projectedCoordSystem", "geographicCoordSystem"], "value": [crs, "EPSG:4326"]})
    pyogrio.write_dataframe(meta, path, layer="meta", driver="GPKG")


def _write_stub(maps_root: Path, location: str, version: str) -> None:
    """A location nobody drives in: ``meta`` plus an empty ``lane_connectors`` layer is what nuPlan opens."""
    import pyogrio

    path = maps_root / location / version / "map.gpkg"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("map.tmp.gpkg")
    if tmp.exists():
        tmp.unlink()
    _write_meta(tmp, MAP_LOCATIONS[location])
    gdf, geom_type = _typed_frame("lane_connectors", _empty_rows("lane_connectors"), MAP_LOCATIONS[location])
    pyogrio.write_dataframe(gdf, tmp, layer="lane_connectors", driver="GPKG", geometry_type=geom_type, append=True)
    os.replace(tmp, path)
    _update_version_file(maps_root, {location: version})


def _update_version_file(maps_root: Path, versions: Mapping[str, str]) -> None:
    path = maps_root / MAP_VERSION_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    for location, version in versions.items():
        data[location] = {"version": version, "layers": {}}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class LaneEdge:
    """A lane or a lane connector (nuPlan ``LaneGraphEdgeMapObject``)."""

    id: str
    is_connector: bool
    roadblock_id: str
    polygon: shapely.Polygon
    baseline: np.ndarray  # (M, 3) nuPlan discrete path: x, y, heading to the next vertex (last repeats)
    speed_limit_mps: float | None
    incoming: tuple[str, ...]
    outgoing: tuple[str, ...]

    @property
    def length(self) -> float:
        return float(np.sum(np.hypot(*np.diff(self.baseline[:, :2], axis=0).T)))


@dataclass(frozen=True)
class Block:
    """A roadblock (lane group) or roadblock connector (lane group connector)."""

    id: str
    is_connector: bool
    polygon: shapely.Polygon
    lane_ids: tuple[str, ...]
    incoming: tuple[str, ...]
    outgoing: tuple[str, ...]


# Public layer names (``irlvla_bench.types.MapLayer`` names, lower case) -> where their polygons live.
_AREA_LAYERS = {
    "intersection": "intersections",
    "carpark_area": "carpark_areas",
    "crosswalk": "crosswalks",
    "walkways": "walkways",
    "stop_line": "stop_polygons",
}


class NuPlanMap:
    """One location's vector map, indexed for square-patch queries (``NuPlanMap.get_proximal_map_objects``)."""

    def __init__(self, location: str, source: str, lanes: dict[str, LaneEdge], blocks: dict[str, Block],
                 areas: dict[str, dict[str, shapely.Polygon]], stop_line_types: dict[str, int] | None = None):
        self.location = location
        self.source = source
        self.lanes = lanes
        self.blocks = blocks
        self.areas = areas
        self.stop_line_types = stop_line_types or {}
        self._index: dict[str, tuple[list[str], shapely.STRtree]] = {}
        self._build_index()

    def _build_index(self) -> None:
        groups: dict[str, tuple[list[str], list]] = {
            "roadblock": ([], []),
            "roadblock_connector": ([], []),
            "lane": ([], []),
            "lane_connector": ([], []),
        }
        for block in self.blocks.values():
            ids, geoms = groups["roadblock_connector" if block.is_connector else "roadblock"]
            ids.append(block.id)
            geoms.append(block.polygon)
        for lane in self.lanes.values():
            ids, geoms = groups["lane_connector" if lane.is_connector else "lane"]
            ids.append(lane.id)
            geoms.append(lane.polygon)
        for name, polys in self.areas.items():
            groups[name] = (list(polys), list(polys.values()))
        for name, (ids, geoms) in groups.items():
            self._index[name] = (ids, shapely.STRtree(geoms))

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self._index)

    def polygon(self, layer: str, obj_id: str) -> shapely.Polygon:
        if layer in ("roadblock", "roadblock_connector"):
            return self.blocks[obj_id].polygon
        if layer in ("lane", "lane_connector"):
            return self.lanes[obj_id].polygon
        return self.areas[layer][obj_id]

    def proximal(self, x: float, y: float, radius: float, layers: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
        """Ids per layer whose geometry intersects the square ``[x +- radius] x [y +- radius]``, in table order."""
        patch = shapely.box(x - radius, y - radius, x + radius, y + radius)
        out: dict[str, list[str]] = {}
        for layer in layers:
            if layer not in self._index:
                raise KeyError(f"map {self.location}: unknown layer {layer!r}; have {self.layers}")
            ids, tree = self._index[layer]
            hits = np.sort(tree.query(patch, predicate="intersects"))
            out[layer] = [ids[i] for i in hits]
        return out

    def containing(self, x: float, y: float, layer: str) -> list[str]:
        """Ids whose polygon intersects the point (boundary included, like ``PDMOccupancyMap.intersects``)."""
        ids, tree = self._index[layer]
        hits = np.sort(tree.query(shapely.Point(x, y), predicate="intersects"))
        return [ids[i] for i in hits]

    def nearest(self, x: float, y: float, layer: str) -> tuple[str | None, float]:
        """Closest object of a layer (first in table order on ties, like nuPlan's stable sort)."""
        ids, tree = self._index[layer]
        if not ids:
            return None, float("inf")
        geoms = tree.geometries
        dist = shapely.distance(shapely.Point(x, y), geoms)
        i = int(np.argmin(dist))
        return ids[i], float(dist[i])


_CACHE: dict[tuple[str, float], NuPlanMap] = {}
_CACHE_LOCK = threading.Lock()


def map_path(maps_root: str | Path, location: str) -> Path:
    """``<root>/<location>/<version>/map.gpkg`` with the version from ``nuplan-maps-v1.0.json``."""
    maps_root = Path(maps_root)
    version_file = maps_root / MAP_VERSION_FILE
    if not version_file.exists():
        raise InputError(str(version_file), "<file>", "map version file missing (NAVSIM hard-codes this name)")
    try:
        versions = json.loads(version_file.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(str(version_file), f"line {exc.lineno}", f"invalid JSON: {exc.msg}") from None
    if location not in MAP_LOCATIONS:
        raise InputError(str(version_file), "map_location",
                         f"unknown map name {location!r}; nuPlan/NAVSIM accept {sorted(MAP_LOCATIONS)}")
    if location not in versions or not isinstance(versions[location], dict) or "version" not in versions[location]:
        raise InputError(str(version_file), f"{location}.version", "missing")
    return maps_root / location / str(versions[location]["version"]) / "map.gpkg"


def load_map(maps_root: str | Path, location: str) -> NuPlanMap:
    """Read and index a location's map; cached per process (keyed by path and modification time)."""
    path = map_path(maps_root, location)
    if not path.exists():
        raise InputError(str(path), "<file>", f"map file of {location!r} missing")
    key = (str(path.resolve()), path.stat().st_mtime)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    nmap = read_gpkg(path, location)
    with _CACHE_LOCK:
        _CACHE[key] = nmap
    return nmap


def _read_layer(path: Path, layer: str, available: set[str], crs: str):
    import pyogrio

    if layer not in available:
        raise InputError(str(path), f"layer {layer}", "missing (nuPlan's GPKGMapsDB opens it)")
    df = pyogrio.read_dataframe(path, layer=layer, fid_as_index=True)
    if df.crs is None and len(df):
        raise InputError(str(path), f"layer {layer}", "geometry has no CRS (nuPlan cannot transform naive geometries)")
    if df.crs is not None and len(df) and df.crs != crs:
        df = df.to_crs(crs)
    df.index = df.index.astype(str)
    for col in REQUIRED_COLUMNS.get(layer, ()):
        if col not in df.columns:
            raise InputError(str(path), f"{layer}.{col}", "missing column")
    return df


def _id_column(path: Path, df, layer: str, col: str, *, nullable: bool = False) -> list[str | None]:
    """Integer id column -> str ids; REAL storage is rejected because nuPlan's str() lookups break on '12.0'."""
    values = df[col]
    if values.dtype.kind == "f":
        finite = values.dropna()
        if not nullable or len(finite) == 0 or not np.all(np.equal(np.mod(finite, 1), 0)):
            if not nullable:
                raise InputError(str(path), f"{layer}.{col}", "must be stored as INTEGER (REAL ids break nuPlan's lookups)")
        return [None if pd.isna(v) else str(int(v)) for v in values]
    if values.dtype.kind not in "iu":
        raise InputError(str(path), f"{layer}.{col}", f"must be stored as INTEGER, got {values.dtype}")
    return [str(int(v)) for v in values]


def _discrete_path(coords: np.ndarray) -> np.ndarray:
    vectors = np.diff(coords, axis=0)
    headings = np.arctan2(vectors[:, 1], vectors[:, 0])
    headings = np.append(headings, headings[-1])
    return np.column_stack([coords, headings])


def _polygon(path: Path, layer: str, fid: str, geom) -> shapely.Polygon:
    if geom is None or geom.geom_type != "Polygon":
        kind = None if geom is None else geom.geom_type
        raise InputError(str(path), f"{layer}[fid={fid}].geometry", f"expected a Polygon, got {kind}")
    return geom


def read_gpkg(path: str | Path, location: str) -> NuPlanMap:
    """Parse one GeoPackage into a ``NuPlanMap``; every inconsistency names the layer, fid and column."""
    import geopandas as gpd
    import pyogrio

    path = Path(path)
    try:
        available = {str(name) for name, _ in pyogrio.list_layers(path)}
    except Exception as exc:  # GDAL raises its own types for corrupt files
        raise InputError(str(path), "<file>", f"not a readable GeoPackage: {exc}") from None
    if "meta" not in available:
        raise InputError(str(path), "layer meta", "missing (nuPlan reads projectedCoordSystem from it)")
    meta = gpd.read_file(path, layer="meta")
    if "key" not in meta.columns or "value" not in meta.columns:
        raise InputError(str(path), "meta", "needs columns key and value")
    crs_rows = meta.loc[meta["key"] == "projectedCoordSystem", "value"]
    if crs_rows.empty:
        raise InputError(str(path), "meta.projectedCoordSystem", "missing row")
    crs = str(crs_rows.iloc[0])

    frames = {layer: _read_layer(path, layer, available, crs) for layer in REQUIRED_LAYERS}

    # Baselines: exactly one per lane and per connector.
    bl = frames["baseline_paths"]
    bl_lane = _id_column(path, bl, "baseline_paths", "lane_fid", nullable=True)
    bl_conn = _id_column(path, bl, "baseline_paths", "lane_connector_fid", nullable=True)
    baselines: dict[str, np.ndarray] = {}
    for fid, lane_id, conn_id, geom in zip(bl.index, bl_lane, bl_conn, bl.geometry):
        owner = lane_id if lane_id is not None else conn_id
        if owner is None:
            continue
        if owner in baselines:
            raise InputError(str(path), f"baseline_paths[fid={fid}]", f"second baseline for lane {owner}")
        if geom is None or geom.geom_type != "LineString" or len(geom.coords) < 2 or geom.length <= 0:
            raise InputError(str(path), f"baseline_paths[fid={fid}].geometry", "expected a LineString of positive length")
        baselines[owner] = _discrete_path(np.asarray(geom.coords, dtype=np.float64)[:, :2])

    lanes_df = frames["lanes_polygons"]
    lane_group = _id_column(path, lanes_df, "lanes_polygons", "lane_group_fid")
    lc = frames["lane_connectors"]
    lc_exit = _id_column(path, lc, "lane_connectors", "exit_lane_fid")
    lc_entry = _id_column(path, lc, "lane_connectors", "entry_lane_fid")
    lc_group = _id_column(path, lc, "lane_connectors", "lane_group_connector_fid")
    gen = frames["gen_lane_connectors_scaled_width_polygons"]
    gen_owner = _id_column(path, gen, "gen_lane_connectors_scaled_width_polygons", "lane_connector_fid")
    conn_poly: dict[str, shapely.Polygon] = {}
    for fid, owner, geom in zip(gen.index, gen_owner, gen.geometry):
        conn_poly[owner] = _polygon(path, "gen_lane_connectors_scaled_width_polygons", fid, geom)

    lgc = frames["lane_group_connectors"]
    lgc_from = _id_column(path, lgc, "lane_group_connectors", "from_lane_group_fid")
    lgc_to = _id_column(path, lgc, "lane_group_connectors", "to_lane_group_fid")
    groups = frames["lane_groups_polygons"]

    lane_ids = set(lanes_df.index)
    group_ids = set(groups.index)
    conn_group_ids = set(lgc.index)

    outgoing: dict[str, list[str]] = {}
    incoming: dict[str, list[str]] = {}
    for fid, ex, en in zip(lc.index, lc_exit, lc_entry):
        for col, ref in (("exit_lane_fid", ex), ("entry_lane_fid", en)):
            if ref not in lane_ids:
                raise InputError(str(path), f"lane_connectors[fid={fid}].{col}", f"refers to unknown lane {ref}")
        outgoing.setdefault(ex, []).append(fid)
        incoming.setdefault(en, []).append(fid)

    def speed(v) -> float | None:
        return None if v is None or pd.isna(v) else float(v)

    lanes: dict[str, LaneEdge] = {}
    for fid, group, geom, spd in zip(lanes_df.index, lane_group, lanes_df.geometry, lanes_df["speed_limit_mps"]):
        if group not in group_ids:
            raise InputError(str(path), f"lanes_polygons[fid={fid}].lane_group_fid", f"refers to unknown lane group {group}")
        if fid not in baselines:
            raise InputError(str(path), f"baseline_paths.lane_fid={fid}", "lane has no baseline")
        lanes[fid] = LaneEdge(fid, False, group, _polygon(path, "lanes_polygons", fid, geom), baselines[fid], speed(spd),
                              tuple(incoming.get(fid, ())), tuple(outgoing.get(fid, ())))
    for fid, ex, en, group, spd in zip(lc.index, lc_exit, lc_entry, lc_group, lc["speed_limit_mps"]):
        if group not in conn_group_ids:
            raise InputError(str(path), f"lane_connectors[fid={fid}].lane_group_connector_fid",
                             f"refers to unknown lane group connector {group}")
        if fid not in baselines:
            raise InputError(str(path), f"baseline_paths.lane_connector_fid={fid}", "lane connector has no baseline")
        if fid not in conn_poly:
            raise InputError(str(path), f"gen_lane_connectors_scaled_width_polygons.lane_connector_fid={fid}",
                             "lane connector has no polygon")
        lanes[fid] = LaneEdge(fid, True, group, conn_poly[fid], baselines[fid], speed(spd), (ex,), (en,))

    blocks: dict[str, Block] = {}
    block_lanes: dict[str, list[str]] = {}
    for lane in lanes.values():
        block_lanes.setdefault(lane.roadblock_id, []).append(lane.id)
    b_out: dict[str, list[str]] = {}
    b_in: dict[str, list[str]] = {}
    for fid, src, dst in zip(lgc.index, lgc_from, lgc_to):
        for col, ref in (("from_lane_group_fid", src), ("to_lane_group_fid", dst)):
            if ref not in group_ids:
                raise InputError(str(path), f"lane_group_connectors[fid={fid}].{col}", f"refers to unknown lane group {ref}")
        b_out.setdefault(src, []).append(fid)
        b_in.setdefault(dst, []).append(fid)
    for fid, geom in zip(groups.index, groups.geometry):
        blocks[fid] = Block(fid, False, _polygon(path, "lane_groups_polygons", fid, geom), tuple(block_lanes.get(fid, ())),
                            tuple(b_in.get(fid, ())), tuple(b_out.get(fid, ())))
    for fid, src, dst, geom in zip(lgc.index, lgc_from, lgc_to, lgc.geometry):
        if fid in blocks:
            raise InputError(str(path), f"lane_group_connectors[fid={fid}]", "fid collides with a lane group fid")
        blocks[fid] = Block(fid, True, _polygon(path, "lane_group_connectors", fid, geom), tuple(block_lanes.get(fid, ())),
                            (src,), (dst,))

    areas: dict[str, dict[str, shapely.Polygon]] = {}
    for name, layer in _AREA_LAYERS.items():
        if layer in frames:
            df = frames[layer]
        elif layer in available:
            df = _read_layer(path, layer, available, crs)
        else:
            areas[name] = {}
            continue
        areas[name] = {fid: geom for fid, geom in zip(df.index, df.geometry) if geom is not None}
    stop = frames["stop_polygons"]
    stop_types = {fid: int(v) for fid, v in zip(stop.index, stop["stop_polygon_type_fid"])}
    return NuPlanMap(location, str(path), lanes, blocks, areas, stop_types)
