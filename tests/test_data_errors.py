"""Bad data gets an ``InputError`` naming the file and the key; caching carries on past bad tokens."""

from __future__ import annotations

import pickle
import shutil
import sqlite3
import warnings
from pathlib import Path

import pyogrio
import pytest
from test_data_fixtures import tiny_world

from irlvla_bench.caching import NothingCachedError, cache_split
from irlvla_bench.errors import InputError
from irlvla_bench.io.navsim_logs import read_log, read_synthetic_scene
from irlvla_bench.io.nuplan_map import load_map, map_path, read_gpkg
from irlvla_bench.io.splits import list_scenes, load_split

LOCATION = "us-nv-las-vegas-strip"


def _first_log(root: Path) -> Path:
    return sorted((root / "navsim_logs" / "test").glob("*.pkl"))[0]


def _copy_dataset(tmp_path: Path) -> Path:
    """A writable copy of the tiny world without sensor blobs (caching does not read them)."""
    root, _ = tiny_world()
    dst = tmp_path / "data"
    shutil.copytree(root, dst, ignore=shutil.ignore_patterns("sensor_blobs"))
    return dst


def test_truncated_log_pickle(tmp_path):
    src = _first_log(tiny_world()[0])
    bad = tmp_path / src.name
    bad.write_bytes(src.read_bytes()[:1000])
    with pytest.raises(InputError) as err:
        read_log(bad)
    assert str(bad) in str(err.value) and "truncated or corrupt pickle" in str(err.value)


@pytest.mark.parametrize("key", ["anns", "ego2global_rotation", "lidar_path", "cams"])
def test_frame_missing_key(tmp_path, key):
    src = _first_log(tiny_world()[0])
    frames = pickle.loads(src.read_bytes())
    del frames[2][key]
    bad = tmp_path / src.name
    bad.write_bytes(pickle.dumps(frames))
    with pytest.raises(InputError) as err:
        read_log(bad)
    assert err.value.source == str(bad) and err.value.field == f"frame[2].{key}"


def test_annotation_problems_are_named(tmp_path):
    src = _first_log(tiny_world()[0])
    frames = pickle.loads(src.read_bytes())
    frames[1]["anns"]["gt_names"][0] = "car"
    bad = tmp_path / src.name
    bad.write_bytes(pickle.dumps(frames))
    with pytest.raises(InputError, match=r"frame\[1\]\.anns\.gt_names\[0\]: unknown category 'car'"):
        read_log(bad)
    frames = pickle.loads(src.read_bytes())
    frames[3]["anns"]["track_tokens"] = frames[3]["anns"]["track_tokens"][:-1]
    bad.write_bytes(pickle.dumps(frames))
    with pytest.raises(InputError, match=r"frame\[3\]\.anns: annotation lists differ in length"):
        read_log(bad)


def test_log_name_must_match_file_name(tmp_path):
    src = _first_log(tiny_world()[0])
    renamed = tmp_path / "renamed.pkl"
    renamed.write_bytes(src.read_bytes())
    with pytest.raises(InputError, match=r"frame\[0\]\.log_name: .* differs from the file name 'renamed'"):
        read_log(renamed)


def _drop_layer(path: Path, layer: str) -> None:
    con = sqlite3.connect(path)
    con.execute(f'DROP TABLE "{layer}"')
    for table in ("gpkg_contents", "gpkg_geometry_columns"):
        con.execute(f"DELETE FROM {table} WHERE table_name = ?", (layer,))
    con.commit()
    con.close()


def test_map_missing_layer(tmp_path):
    src = map_path(tiny_world()[0] / "maps", LOCATION)
    bad = tmp_path / "map.gpkg"
    shutil.copy(src, bad)
    _drop_layer(bad, "lanes_polygons")
    with pytest.raises(InputError) as err:
        read_gpkg(bad, LOCATION)
    assert err.value.source == str(bad) and err.value.field == "layer lanes_polygons"


def test_map_real_typed_id_column(tmp_path):
    src = map_path(tiny_world()[0] / "maps", LOCATION)
    bad = tmp_path / "map.gpkg"
    for name, _ in pyogrio.list_layers(src):
        df = pyogrio.read_dataframe(src, layer=name, fid_as_index=True)
        if name == "lane_connectors":
            df["entry_lane_fid"] = df["entry_lane_fid"].astype(float)  # nuPlan would silently cut the centerline
        df = df.reset_index()
        kwargs = {"geometry_type": None} if "geometry" not in df else {}
        pyogrio.write_dataframe(df, bad, layer=name, append=bad.exists(), **kwargs)
    with pytest.raises(InputError) as err:
        read_gpkg(bad, LOCATION)
    assert err.value.field == "lane_connectors.entry_lane_fid" and "INTEGER" in err.value.problem


def test_unknown_map_name_and_missing_version_file(tmp_path):
    root, _ = tiny_world()
    with pytest.raises(InputError, match="unknown map name 'las_vegas'"):
        load_map(root / "maps", "las_vegas")
    with pytest.raises(InputError, match="nuplan-maps-v1.0.json"):
        load_map(tmp_path, LOCATION)


def test_split_errors(tmp_path):
    root, _ = tiny_world()
    with pytest.raises(InputError, match=r"unknown split 'navmystery'.*navhard_two_stage.*navtest"):
        load_split("navmystery", root)
    split = load_split("navtest", root)
    with pytest.raises(InputError) as err:
        list_scenes(root, split, tokens=["0123456789abcdef"])
    assert err.value.field == "tokens" and "not in split 'navtest'" in err.value.problem
    data = _copy_dataset(tmp_path)
    yaml_path = data / "navsim_config" / "train_test_split" / "scene_filter" / "navtest.yaml"
    text = yaml_path.read_text().replace(f"'{split.scene_filter.tokens[0]}'", "1234567890123456")
    yaml_path.write_text(text)
    with pytest.raises(InputError, match=r"tokens\[0\]: expected a quoted string token, got int"):
        load_split("navtest", data)


def test_synthetic_scene_with_short_future_fails_cleanly(tmp_path):
    from irlvla_bench.io import nuplan_pickle

    root, _ = tiny_world()
    src = sorted((root / "navhard_two_stage" / "synthetic_scene_pickles").glob("*.pkl"))[0]
    with open(src, "rb") as handle:
        scene = nuplan_pickle.load(handle)
    scene["extended_detections_tracks"] = scene["extended_detections_tracks"][:7]
    bad = tmp_path / src.name
    bad.write_bytes(nuplan_pickle.dumps(scene))
    assert len(read_synthetic_scene(bad).extended_tracks) == 7
    from irlvla_bench.caching.objects import interpolate_objects
    from irlvla_bench.caching.scene import load_scene
    from irlvla_bench.io.splits import SceneRef

    loaded = load_scene(SceneRef(scene["scene_metadata"]["initial_token"], "x", "synthetic", str(bad)))
    with pytest.raises(InputError, match="iteration 8 is out of the scene") as err:
        interpolate_objects(loaded)
    assert err.value.source == str(bad)


def test_caching_carries_on_past_bad_tokens(tmp_path):
    data = _copy_dataset(tmp_path)
    logs = sorted((data / "navsim_logs" / "test").glob("*.pkl"))
    frames = pickle.loads(logs[0].read_bytes())
    del frames[3]["ego_dynamic_state"]  # the current frame of the log's first navtest scene
    logs[0].write_bytes(pickle.dumps(frames))
    logs[1].write_bytes(logs[1].read_bytes()[:500])  # a whole log unreadable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        summary = cache_split(data, "navtest", tmp_path / "cache")
    failed = [o for o in summary.outcomes if o.status == "failed"]
    assert len(failed) == 1 and "frame[3].ego_dynamic_state: missing key" in failed[0].reason
    assert str(logs[0]) in failed[0].reason
    assert summary.cached >= 1
    assert summary.problems and str(logs[1]) in summary.problems[0][0]
    report = (tmp_path / "cache" / "cache_summary.json").read_text()
    assert "ego_dynamic_state" in report and "truncated or corrupt pickle" in report


def test_caching_zero_tokens_is_an_error(tmp_path):
    data = _copy_dataset(tmp_path)
    for log in (data / "navsim_logs" / "test").glob("*.pkl"):
        frames = pickle.loads(log.read_bytes())
        for f in frames:
            f["roadblock_ids"] = ["999999"]  # not on the map: every scene fails
        log.write_bytes(pickle.dumps(frames))
    with pytest.raises(NothingCachedError, match="cached zero tokens .*999999"):
        cache_split(data, "navtest", tmp_path / "cache")
