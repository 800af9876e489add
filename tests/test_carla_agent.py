"""The CARLA leaderboard adapter: sensor rig, input conversion, route commands, 40 offline ticks with ``carla``."""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pytest

from agents.carla import (CAMERA_IDS, AdapterConfig, CarlaAgentInput, RoadOption, SensorConfigurationInvalid,
                          SensorDataInvalid, TrajectoryAgentAdapter, bench2drive_rig, missing_dependencies,
                          trajectory_poses, validate_sensor_configuration)
from agents.carla.protocol import driving_command_one_hot
from agents.carla.route import (RouteNode, RoutePlanner, downsample_route, gps_to_location, location_to_gps,
                                solve_geo_reference)


def _carla_or_skip():
    try:
        return importlib.import_module("carla")
    except ImportError as exc:
        pytest.skip(f"the carla client package is not installed (pip install carla==0.9.16): {exc}")


# ---------------------------------------------------------------------------------------- no carla needed

def test_package_imports_and_reports_missing_leaderboard():
    import agents.carla.leaderboard_agent as entry

    assert entry.get_entry_point() == "IrlvlaTrajectoryAgent"
    missing = missing_dependencies()
    if missing:  # the class needs carla and the leaderboard: the error names the first thing missing
        with pytest.raises(ImportError) as excinfo:
            getattr(entry, entry.get_entry_point())
        assert str(excinfo.value).split(" (")[0] == missing[0].split(" (")[0]
    with pytest.raises(AttributeError):
        entry.not_an_attribute  # noqa: B018


def test_bench2drive_rig_validates_like_the_leaderboard():
    rig = bench2drive_rig()
    validate_sensor_configuration(rig)
    types = [s["type"] for s in rig]
    assert types.count("sensor.camera.rgb") == 6
    assert {"sensor.other.imu", "sensor.other.gnss", "sensor.speedometer"} <= set(types)
    assert [s["id"] for s in rig[:6]] == list(CAMERA_IDS)
    with_bev = bench2drive_rig(include_bev=True)
    with pytest.raises(SensorConfigurationInvalid, match="radius"):
        validate_sensor_configuration(with_bev)  # z = 50 m needs SAVE_PATH (100 m radius)
    validate_sensor_configuration(with_bev, save_path_set=True)
    with pytest.raises(SensorConfigurationInvalid, match="Duplicated"):
        validate_sensor_configuration(rig + [dict(rig[0])])
    too_many = rig + [dict(rig[0], id=f"extra{i}") for i in range(3)]
    with pytest.raises(SensorConfigurationInvalid, match="Too many sensor.camera.rgb"):
        validate_sensor_configuration(too_many)
    with pytest.raises(SensorConfigurationInvalid, match="opendrive"):
        validate_sensor_configuration(rig + [{"type": "sensor.opendrive_map", "id": "map"}])


def test_gps_round_trip_and_reference_recovery():
    for lat_ref, lon_ref in ((0.0, 0.0), (42.0, 2.0), (-33.5, 151.2)):
        for x, y in ((0.0, 0.0), (1234.5, -678.9), (-4000.0, 6000.0)):
            lat, lon = location_to_gps(x, y, lat_ref, lon_ref)
            assert np.allclose(gps_to_location(lat, lon, lat_ref, lon_ref), [x, y], atol=1e-6)
        x0, y0 = 2500.0, -3100.0
        lat0, lon0 = location_to_gps(x0, y0, lat_ref, lon_ref)
        got = solve_geo_reference(lat0, lon0, x0, y0)
        assert got == pytest.approx((lat_ref, lon_ref), abs=1e-9)


class _Loc:
    def __init__(self, x, y):
        self.x, self.y = x, y


class _Tf:
    def __init__(self, x, y):
        self.location = _Loc(x, y)


def test_downsample_keeps_option_changes_and_every_50m():
    route = [(_Tf(float(i), 0.0), RoadOption.LANEFOLLOW) for i in range(120)]
    route += [(_Tf(120.0 + i, 0.0), RoadOption.LEFT) for i in range(5)]
    route += [(_Tf(125.0 + i, 0.0), RoadOption.LANEFOLLOW) for i in range(10)]
    ids = downsample_route(route, 50.0)
    assert ids[0] == 0 and 120 in ids and 125 in ids and ids[-1] == len(route) - 1
    kept_straight = [i for i in ids if i < 120]
    assert all(b - a <= 52 for a, b in zip(kept_straight, kept_straight[1:]))


def test_route_planner_pops_reached_nodes_and_reports_next_command():
    nodes = [RouteNode(np.array([0.0, 0.0]), RoadOption.LANEFOLLOW),
             RouteNode(np.array([20.0, 0.0]), RoadOption.LEFT),
             RouteNode(np.array([30.0, -10.0]), RoadOption.LANEFOLLOW),
             RouteNode(np.array([80.0, -10.0]), RoadOption.LANEFOLLOW)]
    planner = RoutePlanner(nodes)
    assert planner.run_step(np.array([1.0, 0.0])).option == RoadOption.LEFT
    nxt = planner.run_step(np.array([18.0, 0.0]))  # within 4 m of the turn node: it is popped
    assert nxt.option == RoadOption.LANEFOLLOW and nxt.position.tolist() == [30.0, -10.0]
    assert planner.run_step(np.array([79.0, -10.0])).position.tolist() == [80.0, -10.0]  # keeps two nodes
    assert driving_command_one_hot(RoadOption.LEFT).tolist() == [1, 0, 0, 0]
    assert driving_command_one_hot(RoadOption.LANEFOLLOW).tolist() == [0, 1, 0, 0]
    assert driving_command_one_hot(RoadOption.VOID).tolist() == [0, 0, 0, 1]


def test_trajectory_output_validation():
    assert trajectory_poses(np.zeros((8, 3))).shape == (8, 3)

    class Traj:
        poses = np.ones((8, 3))

    assert trajectory_poses(Traj()).sum() == 24
    with pytest.raises(ValueError, match="shape"):
        trajectory_poses(np.zeros((6, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        trajectory_poses(np.full((8, 3), np.nan))


# ------------------------------------------------------------------------------------------ with carla

LAT_REF, LON_REF = 0.0, 0.0


class RouteFollower:
    """A trajectory agent: 8 poses every 2.5 m (5 m/s) along the route nodes it is given."""

    def __init__(self):
        self.inputs: list[CarlaAgentInput] = []

    def compute_trajectory(self, agent_input: CarlaAgentInput) -> np.ndarray:
        self.inputs.append(agent_input)
        pts = np.vstack([[0.0, 0.0], agent_input.route_ahead])
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        cum = np.r_[0.0, np.cumsum(seg)]
        s = 2.5 * np.arange(1, 9)
        xy = np.column_stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])])
        heading = np.arctan2(np.gradient(xy[:, 1]), np.gradient(xy[:, 0]))
        return np.column_stack([xy, heading])


def _global_plan(carla):
    """A 1 m dense route along +x (CARLA map frame), then a left bend (towards -y)."""
    world, gps = [], []
    pts = [(float(i), 0.0, RoadOption.LANEFOLLOW) for i in range(130)]
    pts += [(130.0 + 10 * math.sin(a), -10 + 10 * math.cos(a), RoadOption.LEFT)
            for a in np.linspace(0, math.pi / 2, 16)]
    pts += [(140.0, -10.0 - i, RoadOption.LANEFOLLOW) for i in range(1, 40)]
    for x, y, opt in pts:
        world.append((carla.Transform(carla.Location(x=x, y=y, z=0.0)), opt))
        lat, lon = location_to_gps(x, y, LAT_REF, LON_REF)
        gps.append(({"lat": lat, "lon": lon, "z": 0.0}, opt))
    return gps, world


def _sensor_data(frame: int, x: float, y: float, yaw: float, speed: float, rig, compass_nan: bool = False):
    image = np.empty((900, 1600, 4), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2], image[..., 3] = 10, 20, 30, 255  # BGRA
    data = {cid: (frame, image) for cid in CAMERA_IDS}
    lat, lon = location_to_gps(x, y, LAT_REF, LON_REF)
    compass = float("nan") if compass_nan else (yaw + math.pi / 2) % (2 * math.pi)
    data["IMU"] = (frame, np.array([0.3, -0.1, 9.81, 0.0, 0.0, 0.02, compass]))
    data["GPS"] = (frame, np.array([lat, lon, 0.0]))
    data["SPEED"] = (frame, {"speed": speed})
    assert set(data) == {s["id"] for s in rig}
    return data


class FakeHero:
    """Just enough of carla.Vehicle for get_metric_info."""

    def __init__(self, carla):
        self.carla = carla
        self.x = self.y = self.yaw = 0.0

    def get_acceleration(self):
        return self.carla.Vector3D(0.5, 0.0, 0.0)

    def get_angular_velocity(self):
        return self.carla.Vector3D(0.0, 0.0, 0.3)

    def get_transform(self):
        return self.carla.Transform(self.carla.Location(x=self.x, y=self.y, z=0.0),
                                    self.carla.Rotation(yaw=math.degrees(self.yaw)))


def test_adapter_runs_40_ticks_offline(tmp_path, monkeypatch):
    carla = _carla_or_skip()
    monkeypatch.setenv("SAVE_PATH", str(tmp_path / "save"))
    agent = RouteFollower()
    hero = FakeHero(carla)
    adapter = TrajectoryAgentAdapter("localhost", 2000, trajectory_agent=agent, hero_actor=hero)
    gps, world = _global_plan(carla)
    adapter.set_global_plan(gps, world)  # the leaderboard calls it before setup
    adapter.setup("+RouteScenario_1_rep0_Town01_X_1_1_01_01_00_00_00")
    sensors = adapter.sensors()
    validate_sensor_configuration(sensors, save_path_set=True)

    x, y, yaw, v = 0.0, 0.6, 0.0, 0.0  # 0.6 m right of the route
    controls = []
    for tick in range(40):
        data = _sensor_data(tick + 1, x, y, yaw, v, sensors, compass_nan=(tick == 0))
        control = adapter(data, 0.05 * tick)
        assert isinstance(control, carla.VehicleControl)
        assert control.manual_gear_shift is False
        controls.append((control.steer, control.throttle, control.brake))
        wheel = control.steer * 0.61
        accel = 4.0 * control.throttle - 8.0 * control.brake
        x += v * math.cos(yaw) * 0.05
        y += v * math.sin(yaw) * 0.05
        yaw += v / 2.9 * math.tan(wheel) * 0.05  # CARLA map frame: positive steer turns towards +y
        v = max(0.0, v + accel * 0.05)
        hero.x, hero.y, hero.yaw = x, y, yaw
    adapter.destroy()

    c = np.array(controls)
    assert np.isfinite(c).all()
    assert np.all(np.abs(c[:, 0]) <= 1.0)
    assert np.all((c[:, 1] >= 0.0) & (c[:, 1] <= 0.75))
    assert np.all((c[:, 2] >= 0.0) & (c[:, 2] <= 1.0))
    assert c[:, 1].max() > 0.1 and x > 2.0  # it drives off
    assert c[:5, 0].mean() < 0.0  # steers left (towards the route at y = 0) while offset to the right
    assert abs(y) < 0.6

    assert len(agent.inputs) == 40
    first, last = agent.inputs[0], agent.inputs[-1]
    assert set(first.cameras) == set(CAMERA_IDS)
    assert first.cameras["CAM_FRONT"].shape == (900, 1600, 3)
    assert first.cameras["CAM_FRONT"][0, 0].tolist() == [30, 20, 10]  # BGRA -> RGB
    assert first.road_option == RoadOption.LANEFOLLOW and first.driving_command.tolist() == [0, 1, 0, 0]
    # Next route node (downsampled every ~50 m) straight ahead, slightly left of an ego 0.6 m to the right.
    assert 45.0 < first.target_point[0] < 55.0 and first.target_point[1] == pytest.approx(0.6, abs=0.05)
    assert np.allclose(first.ego_status.pose, [0.0, -0.6, 0.0], atol=1e-6)  # right-handed world frame
    assert last.ego_status.speed == pytest.approx(v, abs=1.0)
    assert last.ego_status.acceleration.tolist() == [0.3, 0.1]  # IMU y (right) -> ego y (left)
    assert last.ego_status.yaw_rate == pytest.approx(-0.02)

    from evaluators.bench2drive.comfort import route_smoothness_many
    from evaluators.bench2drive.metric_logs import load_metric_log

    log_path = tmp_path / "save" / "RouteScenario_1_rep0_Town01_X_1_1_01_01_00_00_00" / "metric_info.json"
    log = load_metric_log(log_path)  # the evaluator reads what the adapter wrote
    assert log.n_steps == 40
    assert list(json.loads(log_path.read_text())) == [str(i) for i in range(40)]
    assert route_smoothness_many([log])[0] in (0.0, 0.5, 1.0)


def test_adapter_rejects_bad_sensor_data():
    carla = _carla_or_skip()
    adapter = TrajectoryAgentAdapter(trajectory_agent=RouteFollower(),
                                     config=AdapterConfig(camera_width=160, camera_height=90))
    gps, world = _global_plan(carla)
    adapter.set_global_plan(gps, world)
    adapter.setup("")
    data = {cid: (1, np.zeros((90, 160, 4), np.uint8)) for cid in CAMERA_IDS}
    data.update(IMU=(1, np.zeros(7)), GPS=(1, np.array([0.0, 0.0, 0.0])), SPEED=(1, {"speed": 0.0}))
    assert isinstance(adapter.run_step(data, 0.0), carla.VehicleControl)
    bad = dict(data, CAM_BACK=(2, np.zeros((90, 160, 3), np.uint8)))
    with pytest.raises(SensorDataInvalid, match="CAM_BACK"):
        adapter.run_step(bad, 0.05)
    missing = {k: v for k, v in data.items() if k != "SPEED"}
    with pytest.raises(SensorDataInvalid, match="SPEED"):
        adapter.run_step(missing, 0.1)


def test_setup_loads_an_agent_from_the_config_string(tmp_path, monkeypatch):
    module = tmp_path / "my_traj_agent.py"
    module.write_text("import numpy as np\n"
                      "class Straight:\n"
                      "    def __init__(self, speed=5.0):\n        self.speed = speed\n"
                      "    def compute_trajectory(self, agent_input):\n"
                      "        s = self.speed * 0.5 * np.arange(1, 9)\n"
                      "        return np.column_stack([s, np.zeros(8), np.zeros(8)])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    conf = tmp_path / "agent.json"
    conf.write_text(json.dumps({"agent": "my_traj_agent:Straight", "kwargs": {"speed": 3.0},
                                "controller": {"speed_cap": 5.0}}))
    adapter = TrajectoryAgentAdapter()
    adapter.setup(f"{conf}+RouteScenario_9_rep0_save")
    assert adapter.save_name == "RouteScenario_9_rep0_save"
    assert adapter._trajectory_agent.speed == 3.0
    assert adapter._config.controller.speed_cap == 5.0
    adapter2 = TrajectoryAgentAdapter()
    adapter2.setup("my_traj_agent:Straight")
    assert adapter2._trajectory_agent.speed == 5.0
    with pytest.raises(ValueError, match="no trajectory agent"):
        TrajectoryAgentAdapter().setup("")
