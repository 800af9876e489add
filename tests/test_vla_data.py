"""Inputs and labels built from a generated world: camera geometry after crop / resize, BEV segmentation, detection
and map targets, commands, the resumable cache and the k-means anchors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_vla_fixtures import sample_cache, tiny_config, vla_world

from agents.base import CAMERA_NAMES, SensorConfig
from agents.inputs import build_agent_input
from agents.vla.commands import derive_commands
from agents.vla.config import SEG_CLASSES
from agents.vla.data import (SampleStore, build_cache, camera_arrays, cache_key, cell_centres, sample_arrays,
                             split_scenes, trajectory_anchors)
from irlvla_bench.caching.scene import load_scene
from irlvla_bench.io.nuplan_map import load_map
from irlvla_bench.io.sensors import LIDAR_TO_EGO_TRANSLATION


def _scene(index: int = 3, split: str = "navtrain"):
    listing, scenes = split_scenes(vla_world(), split)
    ref, sensor_root = scenes[index]
    scene = load_scene(ref)
    return scene, sensor_root, load_map(listing.paths.maps_root, scene.map_name)


def test_cropped_resized_camera_projects_like_the_original():
    scene, sensor_root, _ = _scene()
    cfg = tiny_config()
    agent_input = build_agent_input(scene, SensorConfig(cameras=CAMERA_NAMES), sensor_root)
    images, intrinsics, cam2ego = camera_arrays(agent_input, cfg)
    assert images.shape == (2, 3, cfg.image.height, cfg.image.width) and images.dtype == np.uint8
    for i, name in enumerate(cfg.image.cameras):
        cam = agent_input.cameras[-1][name]
        src_h, src_w = cam.image.shape[:2]
        top = round(cfg.image.crop_top * src_h)
        # An ego point ahead of the camera, projected with the original and with the new camera model.
        p_cam = np.array([0.7, 0.4, 9.0])
        p_ego = cam.sensor2lidar_rotation @ p_cam + cam.sensor2lidar_translation + LIDAR_TO_EGO_TRANSLATION
        uv = cam.intrinsic @ p_cam
        u0, v0 = uv[:2] / uv[2]
        back = np.linalg.inv(cam2ego[i]) @ np.append(p_ego, 1.0)
        uv1 = intrinsics[i] @ back[:3]
        u1, v1 = uv1[:2] / uv1[2]
        assert u1 == pytest.approx(u0 * cfg.image.width / src_w, abs=1e-3)
        assert v1 == pytest.approx((v0 - top) * cfg.image.height / (src_h - top), abs=1e-3)


def test_labels_of_a_training_scene():
    cfg = tiny_config()
    for index in range(len(split_scenes(vla_world(), "navtrain")[1])):  # the first scene with objects in the grid
        scene, sensor_root, nmap = _scene(index)
        s = sample_arrays(scene, sensor_root, nmap, cfg)
        if s is not None and (s["det_classes"] == 0).any():
            break
    nx, ny = cfg.bev.grid_shape()
    assert s["seg"].shape == (len(SEG_CLASSES), nx, ny) and s["seg"].dtype == np.uint8
    assert s["ego"].shape == (4 * 7 + 4,) and s["trajectory"].shape == (8, 3)
    # The ego drives on the road: a cell centre next to the rear axle is drivable and a lane runs nearby.
    x, y = cell_centres(cfg)
    near = np.hypot(x, y) <= cfg.bev.resolution
    assert s["seg"][SEG_CLASSES.index("drivable_area")][near].any()
    assert s["seg"][SEG_CLASSES.index("lanes")].any()
    # Detection targets: inside the grid, nearest first, padding at the end; vehicles are painted in the BEV.
    cls = s["det_classes"]
    valid = cls >= 0
    assert valid.any() and not (valid[1:] & ~valid[:-1]).any()
    boxes = s["det_boxes"][valid]
    assert np.all(np.diff(np.hypot(boxes[:, 0], boxes[:, 1])) >= -1e-4)
    assert np.all((boxes[:, 0] >= cfg.bev.x_range[0]) & (boxes[:, 0] < cfg.bev.x_range[1]))
    vehicles = s["seg"][SEG_CLASSES.index("vehicles")]
    for box in boxes[cls[valid] == 0]:
        i = int((box[0] - cfg.bev.x_range[0]) // cfg.bev.resolution)
        j = int((box[1] - cfg.bev.y_range[0]) // cfg.bev.resolution)
        assert vehicles[i, j] == 1
    # Map polylines: inside the grid, resampled evenly.
    pts = s["map_points"][s["map_valid"]]
    assert len(pts) and np.all((pts[..., 0] >= cfg.bev.x_range[0] - 1e-4) & (pts[..., 0] <= cfg.bev.x_range[1]))
    steps = np.hypot(*np.diff(pts, axis=1).transpose(2, 0, 1))
    assert np.allclose(steps, steps[:, :1], atol=0.3)
    # Commands: the rules applied to the logged future.
    assert (int(s["speed_command"]), int(s["path_command"])) == derive_commands(s["trajectory"],
                                                                                scene.current.ego_velocity)


def test_trajectory_label_is_the_logged_future():
    from agents.baselines.ego_mlp_data import future_poses

    scene, sensor_root, nmap = _scene(5)
    s = sample_arrays(scene, sensor_root, nmap, tiny_config())
    assert np.allclose(s["trajectory"], future_poses(scene), atol=1e-4)


def test_cache_is_resumable_and_keyed_by_what_changes_a_sample(tmp_path):
    cfg = tiny_config()
    folder = build_cache(vla_world(), "navtrain", cfg, tmp_path)
    index = json.loads((folder / "index.json").read_text())
    store = SampleStore(folder)
    assert len(store) == len(index["samples"]) > 0 and not list(folder.glob("*.tmp"))
    # An interrupted build (index never written, one sample missing) redoes only what is missing.
    (folder / "index.json").unlink()
    missing = folder / index["samples"][2]["file"]
    missing.unlink()
    others = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npz")}
    build_cache(vla_world(), "navtrain", cfg, tmp_path)
    assert missing.exists()
    assert all(p.stat().st_mtime_ns == others[p.name] for p in folder.glob("*.npz") if p.name in others)
    again = SampleStore(folder)
    assert again.tokens == store.tokens
    assert all(np.array_equal(again.arrays[k], store.arrays[k]) for k in store.arrays)
    # Training-only fields do not invalidate the cache; the image size does.
    from dataclasses import replace

    assert cache_key(vla_world(), "navtrain", replace(cfg, train=replace(cfg.train, lr=1.0))) == \
        cache_key(vla_world(), "navtrain", cfg)
    assert cache_key(vla_world(), "navtrain", replace(cfg, image=replace(cfg.image, width=64))) != \
        cache_key(vla_world(), "navtrain", cfg)


def test_anchors_are_seeded_kmeans_centres():
    store = SampleStore(next(sample_cache().iterdir()))
    trajectories = store.arrays["trajectory"]
    a = trajectory_anchors(trajectories, 4, seed=0)
    assert a.shape == (4, 8, 3) and np.array_equal(a, trajectory_anchors(trajectories, 4, seed=0))
    # Each training trajectory is nearer its own centre than the mean of all is to it (the clustering helps).
    d = np.linalg.norm(trajectories[:, None, :, :2] - a[None, :, :, :2], axis=-1).mean(-1).min(1)
    d_mean = np.linalg.norm(trajectories[:, :, :2] - trajectories[:, :, :2].mean(0), axis=-1).mean(-1)
    assert d.mean() < d_mean.mean()
    with pytest.raises(ValueError):
        trajectory_anchors(trajectories[:2], 4)


# ----------------------------------------------------------------------------------------------------------------
# Start-pose augmentation


def _augmented(probability: float = 1.0, seed: int = 0):
    import torch

    from agents.vla.augment import augment_batch
    from agents.vla.config import AugmentConfig
    from agents.vla.model import to_tensors

    store = SampleStore(next(sample_cache().iterdir()))
    cfg = tiny_config()
    cfg = type(cfg)(**{**cfg.__dict__, "augment": AugmentConfig(probability=probability, min_speed=0.0)})
    batch = to_tensors(store.batch(range(len(store))))
    return cfg, batch, augment_batch(batch, cfg, torch.Generator().manual_seed(seed))


def test_augmentation_moves_the_ego_frame_consistently():
    import torch

    from agents.vla.augment import to_new_frame

    cfg, batch, out = _augmented()
    moved = ~torch.isclose(out["cam2ego"], batch["cam2ego"].float()).flatten(1).all(1)
    assert moved.any()
    i = int(torch.nonzero(moved)[0])
    # A world point projects to the same pixel through the old and the new camera poses.
    point = torch.tensor([12.0, -3.0, 0.5])
    dy, dh = out_dy(batch, out, i)
    new_point = torch.cat([to_new_frame(point[None, None, :2], dy, dh)[0, 0], point[2:]])
    for cam in range(batch["cam2ego"].shape[1]):
        old_c = torch.linalg.inv(batch["cam2ego"][i, cam].double()) @ torch.cat([point, torch.ones(1)]).double()
        new_c = torch.linalg.inv(out["cam2ego"][i, cam].double()) @ torch.cat([new_point, torch.ones(1)]).double()
        assert torch.allclose(old_c, new_c, atol=1e-4)
    # The recovery target starts at the new pose's side of the logged path and ends on the logged path.
    traj, new = batch["trajectory"][i].double(), out["trajectory"][i].double()
    dy, dh = out_dy(batch, out, i)
    logged_end = to_new_frame(traj[None, -1:, :2].float(), dy, dh)[0, 0].double()
    assert torch.allclose(new[-1, :2], logged_end, atol=1e-4)
    assert float(torch.linalg.norm(new[0, :2] - traj[0, :2])) < 1.5 + float(torch.linalg.norm(traj[0, :2])) * 0.2


def out_dy(batch, out, i):
    """(dy, dh) of sample ``i`` recovered from its camera transform (rotation angle and shift)."""
    import torch

    t = out["cam2ego"][i, 0].double() @ torch.linalg.inv(batch["cam2ego"][i, 0].double())
    dh = -torch.atan2(t[1, 0], t[0, 0])
    shift = -(t[:2, :2].T @ t[:2, 3])  # t = [R^T, -R^T s]
    return shift[1:2].float(), dh[None].float()


def test_augmentation_labels_follow_the_frame_and_zero_probability_is_identity():
    import torch

    cfg, batch, out = _augmented(probability=0.0)
    assert out is batch
    cfg, batch, out = _augmented(probability=1.0, seed=3)
    assert out["seg"].dtype == batch["seg"].dtype and out["seg"].shape == batch["seg"].shape
    # A box centre keeps its class cell: the vehicles label under a moved box centre is still set.
    for i in range(len(out["det_classes"])):
        for box, cls in zip(out["det_boxes"][i], out["det_classes"][i]):
            if int(cls) != 0:
                continue
            x = int((float(box[0]) - cfg.bev.x_range[0]) // cfg.bev.resolution)
            y = int((float(box[1]) - cfg.bev.y_range[0]) // cfg.bev.resolution)
            nx, ny = cfg.bev.grid_shape()
            if 0 < x < nx - 1 and 0 < y < ny - 1:
                assert out["seg"][i, SEG_CLASSES.index("vehicles"), x - 1:x + 2, y - 1:y + 2].any()
    # Commands follow the new targets.
    from agents.vla.commands import derive_commands

    for i in range(len(out["trajectory"])):
        v = batch["ego"][i, 3 * 7 + 3:3 * 7 + 5].double().numpy() * 10.0
        assert (int(out["speed_command"][i]), int(out["path_command"][i])) == \
            derive_commands(out["trajectory"][i].double().numpy(), v)
    assert torch.isfinite(out["trajectory"]).all()
