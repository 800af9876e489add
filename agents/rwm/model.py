"""The reward world model: scene BEV + candidate trajectory -> every EPDMS sub-metric, and the EPDMS.

Each candidate is first rolled out with the scorer's own ego dynamics (``agents.rwm.rollout``: 10 Hz
resampling, LQR tracker, kinematic bicycle), so the network reads the scene along the path the scorer will
judge, not along the submitted poses. Every ``40 / (steps - 1)`` simulated steps the ego box is laid down and
read from the BEV at 9 points (corners, edge midpoints, centre): raw distance fields (drivable area, lanes,
route, intersections, centerline, red lights, objects *at that instant*) and learned CNN features; the front
edge is also projected 0.3 / 0.6 / 0.9 s ahead at the current speed (TTC). A per-instant MLP and pooling over
time (max, mean, max of a 2 s moving average) turn these reads into a trajectory code, joined with the
kinematics of the rollout (10 Hz extremes of speed, acceleration, jerk, yaw rate: history comfort) and its
differences to the rollout of the previous frame's plan (extended comfort), the 2 Hz kinematics of the poses,
the scene vector and the ego history.

Heads: NC and DDC as three classes {0, 0.5, 1}; DAC, TLC, TTC, LK, HC, EC as probabilities; raw progress in
metres (EP is assembled from it as the evaluator does, see ``assemble``). The heads model the *unfiltered*
metrics (a trajectory's own geometry decides them); the human filter and the EP normaliser are applied by
``assemble`` with the evaluator's rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.rwm.config import GridConfig, RWMConfig
from agents.rwm.encoders import BEVLayout, build_encoder
from agents.rwm.features import EGO_DIM
from irlvla_bench.types import PACIFICA

THREE_CLASS = ("no_at_fault_collisions", "driving_direction_compliance")
BINARY = ("drivable_area_compliance", "traffic_light_compliance", "time_to_collision_within_bound", "lane_keeping",
          "history_comfort", "extended_comfort")
CLASS_VALUES = (0.0, 0.5, 1.0)
HEAD_SIZES = {"no_at_fault_collisions": 3, "driving_direction_compliance": 3, **{m: 1 for m in BINARY}, "progress": 1}
PROGRESS_SCALE_M = 10.0
NUM_KINEMATIC_FEATURES = 88


@dataclass
class SceneEncoding:
    raw: torch.Tensor  # (S, C, H, W) the BEV input itself
    features: torch.Tensor  # (S, F, h, w) CNN features
    vector: torch.Tensor  # (S, D) scene vector
    ego: torch.Tensor  # (S, EGO_DIM)

    def select(self, index: torch.Tensor) -> "SceneEncoding":
        return SceneEncoding(self.raw[index], self.features[index], self.vector[index], self.ego[index])


def _interp_matrix(times: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """(len(times), len(knots)) linear-interpolation weights, clamped at both ends."""
    t = np.clip(times, knots[0], knots[-1])
    hi = np.clip(np.searchsorted(knots, t, side="right"), 1, len(knots) - 1)
    lo = hi - 1
    w = (t - knots[lo]) / (knots[hi] - knots[lo])
    out = np.zeros((len(times), len(knots)))
    out[np.arange(len(times)), lo] = 1.0 - w
    out[np.arange(len(times)), hi] += w
    return out


def _wrap(angle: torch.Tensor) -> torch.Tensor:
    return torch.atan2(torch.sin(angle), torch.cos(angle))


def unwrap_headings(headings: torch.Tensor) -> torch.Tensor:
    """Unwrap along the last axis (consecutive differences wrapped to (-pi, pi])."""
    steps = _wrap(torch.diff(headings, dim=-1))
    return torch.cat([headings[..., :1], headings[..., :1] + torch.cumsum(steps, dim=-1)], dim=-1)


def sample_bev(bev: torch.Tensor, points: torch.Tensor, grid: GridConfig) -> torch.Tensor:
    """Bilinear reads of (S, C, H, W) at ego-frame points (S, ..., 2) -> (S, ..., C); outside: the border value."""
    s = bev.shape[0]
    shape = points.shape[1:-1]
    flat = points.reshape(s, -1, 1, 2)
    gx = 2.0 * (flat[..., 0] - grid.x_range[0]) / (grid.x_range[1] - grid.x_range[0]) - 1.0
    gy = 2.0 * (flat[..., 1] - grid.y_range[0]) / (grid.y_range[1] - grid.y_range[0]) - 1.0
    out = F.grid_sample(bev, torch.stack([gx, gy], dim=-1).to(bev.dtype), mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out[..., 0].transpose(1, 2).reshape(s, *shape, bev.shape[1])


def trajectory_kinematics(poses: torch.Tensor, ego: torch.Tensor, previous: torch.Tensor,
                          has_previous: torch.Tensor) -> torch.Tensor:
    """(S, K, 8, 3) poses -> (S, K, NUM_KINEMATIC_FEATURES) 2 Hz kinematics, scaled to ~unit range.

    ``ego`` (S, EGO_DIM) gives the current speed / acceleration; ``previous`` (S, 9, 3) the previous frame's plan
    at t = -0.5 .. 3.5 s in the current frame (zeros and ``has_previous`` False when unknown)."""
    s, k = poses.shape[:2]
    knots = torch.cat([poses.new_zeros(s, k, 1, 3), poses], dim=2)  # (S, K, 9, 3)
    seg = torch.diff(knots[..., :2], dim=2)
    speed = torch.linalg.norm(seg, dim=-1) / 0.5  # (S, K, 8) mean speed per segment
    v0 = ego[:, None, :1].expand(s, k, 1) * 10.0
    a0 = ego[:, None, 2:3].expand(s, k, 1) * 5.0
    speeds = torch.cat([v0, speed], dim=-1)  # (S, K, 9)
    accel = torch.diff(speeds, dim=-1) / 0.5  # 8
    jerk = torch.diff(torch.cat([a0, accel], dim=-1), dim=-1) / 0.5  # 8
    heading = unwrap_headings(knots[..., 2])
    yaw_rate = torch.diff(heading, dim=-1) / 0.5  # 8
    yaw_acc = torch.diff(yaw_rate, dim=-1) / 0.5  # 7
    direction = torch.atan2(seg[..., 1], seg[..., 0])
    slip = _wrap(direction - heading[..., 1:]) * (speed > 0.5)  # 8: path direction vs pose heading
    lateral = speed * yaw_rate  # 8
    extremes = torch.stack([accel.abs().amax(-1), jerk.abs().amax(-1), yaw_rate.abs().amax(-1),
                            lateral.abs().amax(-1), accel.amin(-1), accel.amax(-1)], dim=-1)  # 6
    end = knots[..., -1, :]  # 3

    prev = previous[:, None].expand(s, k, 9, 3)
    prev_seg = torch.diff(prev[..., :2], dim=2)
    prev_speed = torch.linalg.norm(prev_seg, dim=-1) / 0.5  # (S, K, 8): segments -0.5..3.5 s
    prev_heading = unwrap_headings(prev[..., 2])
    prev_yaw = torch.diff(prev_heading, dim=-1) / 0.5
    # Overlap 0..3.5 s: candidate segments 0..6 against previous segments 1..7.
    d_speed = speed[..., :7] - prev_speed[..., 1:]  # 7
    d_accel = torch.diff(speed[..., :7], dim=-1) - torch.diff(prev_speed[..., 1:], dim=-1)  # 6
    d_yaw = yaw_rate[..., :7] - prev_yaw[..., 1:]  # 7
    mask = has_previous[:, None, None].to(poses.dtype).expand(s, k, 1)
    prev_part = torch.cat([d_speed / 5.0, d_accel / 2.0, d_yaw / 0.2, prev_speed[..., :2] / 10.0], dim=-1) * mask
    features = torch.cat([
        speeds / 10.0, accel / 5.0, jerk / 10.0, yaw_rate / 0.5, yaw_acc / 1.0, slip, lateral / 5.0,
        extremes / torch.tensor([5.0, 10.0, 0.5, 5.0, 5.0, 5.0], device=poses.device, dtype=poses.dtype),
        end[..., :2] / 50.0, end[..., 2:], prev_part, mask,
    ], dim=-1)
    return features


def state_kinematics(states: torch.Tensor, previous: torch.Tensor, has_previous: torch.Tensor) -> torch.Tensor:
    """(S, K, 41, 11) rolled-out states -> (S, K, NUM_STATE_FEATURES): extremes and samples of the 10 Hz speed,
    acceleration, jerk, yaw rate / acceleration, lateral acceleration and steering (what history comfort bounds),
    and the RMS / max differences to the previous plan's rollout (S, 41, 11) over their 3.5 s overlap (what
    extended comfort bounds), masked where there is no previous plan."""
    s, k = states.shape[:2]
    speed = torch.hypot(states[..., 3], states[..., 4])
    ax, yaw, yaw_acc, steer = states[..., 5], states[..., 9], states[..., 10], states[..., 7]
    jerk = torch.diff(ax, dim=-1) / 0.1
    lateral = speed * yaw
    signals = [(speed, 10.0), (ax, 5.0), (jerk, 10.0), (yaw, 0.5), (yaw_acc, 2.0), (lateral, 5.0), (steer, 0.5)]
    parts = []
    for signal, scale in signals:
        parts += [signal.amax(-1) / scale, signal.amin(-1) / scale, signal.mean(-1) / scale]
    parts += [speed[..., i] / 10.0 for i in (10, 20, 30, 40)] + [ax[..., i] / 5.0 for i in (5, 10, 20)]
    parts += [yaw[..., i] / 0.5 for i in (10, 20, 30)]
    overlap = 5
    cur = states[..., : 41 - overlap, :]
    prev = previous[:, None, overlap:, :].expand(s, k, 41 - overlap, previous.shape[-1])

    def ec_signals(x):
        acc = torch.hypot(x[..., 5], x[..., 6])
        return acc, torch.diff(acc, dim=-1) / 0.1, x[..., 9], torch.diff(x[..., 9], dim=-1) / 0.1

    mask = has_previous[:, None].to(states.dtype).expand(s, k)
    for a, b, scale in zip(ec_signals(cur), ec_signals(prev), (0.7, 0.5, 0.1, 0.1)):
        diff = a - b
        parts += [torch.sqrt((diff**2).mean(-1) + 1e-8) / scale * mask, diff.abs().amax(-1) / scale * mask]
    parts += [mask, states[..., -1, 0] / 50.0, states[..., -1, 1] / 50.0, states[..., -1, 2]]
    return torch.stack(parts, dim=-1)


NUM_STATE_FEATURES = 7 * 3 + 4 + 3 + 3 + 8 + 4


class RewardWorldModel(nn.Module):
    def __init__(self, cfg: RWMConfig, bev_channels: int, layout: BEVLayout):
        super().__init__()
        self.cfg = cfg
        self.layout = layout
        self.grid = cfg.encoder.grid()
        self.encoder = build_encoder(cfg.encoder, bev_channels)
        q = cfg.query
        if 40 % (q.steps - 1):
            raise ValueError(f"query steps must split the 40 simulated intervals evenly, got {q.steps}")
        self.steps = q.steps
        times = np.linspace(0.0, 4.0, q.steps)
        self.register_buffer("step_index", torch.arange(0, 41, 40 // (q.steps - 1)), persistent=False)
        self.register_buffer("step_times", torch.tensor(times, dtype=torch.float32), persistent=False)
        body = [(lon, lat) for lon in q.body_lon for lat in q.body_lat]
        centre = (PACIFICA.rear_axle_to_center, 0.0)
        if centre not in body:
            body.append(centre)
        self.register_buffer("body", torch.tensor(body, dtype=torch.float32), persistent=False)
        lon, lat = max(q.body_lon), max(q.body_lat)
        # CNN features (context, the costly reads) at the box centre, the front centre and its TTC projections.
        self.feature_points = [body.index(centre), body.index((lon, 0.0))] if (lon, 0.0) in body else \
            [body.index(centre)]
        self.register_buffer("front", torch.tensor([(lon, -lat), (lon, 0.0), (lon, lat)], dtype=torch.float32),
                             persistent=False)
        self.ttc_offsets = tuple(q.ttc_offsets_s)
        if layout.times:
            body_w = _interp_matrix(times, np.asarray(layout.times))
            ttc_w = np.stack([_interp_matrix(times + dt, np.asarray(layout.times)) for dt in self.ttc_offsets], 1)
        else:
            body_w = np.zeros((q.steps, 0))
            ttc_w = np.zeros((q.steps, len(self.ttc_offsets), 0))
        self.register_buffer("time_weights", torch.tensor(body_w, dtype=torch.float32), persistent=False)
        self.register_buffer("ttc_time_weights", torch.tensor(ttc_w, dtype=torch.float32), persistent=False)

        n_body, n_ttc = len(body), 3 * len(self.ttc_offsets)
        has_time = 1 if layout.time_channels else 0
        fdim = self.encoder.out_channels
        step_in = (n_body * (len(layout.body) + has_time) + n_ttc * (len(layout.ttc) + has_time)
                   + (len(self.feature_points) + len(self.ttc_offsets)) * fdim + 8)
        m = cfg.model
        self.step_mlp = nn.Sequential(nn.Linear(step_in, m.step_hidden), nn.ReLU(inplace=True),
                                      nn.Linear(m.step_hidden, m.step_hidden), nn.ReLU(inplace=True))
        # Time pooling instead of temporal convolutions (those dominated the CPU cost): the max and mean over the
        # horizon, and the max of a moving average over ``window`` steps (2 s: lane keeping's run length).
        self.window = max(1, int(round(2.0 / (4.0 / (q.steps - 1)))))
        self.temporal = nn.Sequential(nn.Linear(3 * m.step_hidden, m.temporal_hidden), nn.ReLU(inplace=True))
        self.kinematics = nn.Sequential(nn.Linear(NUM_KINEMATIC_FEATURES + NUM_STATE_FEATURES + EGO_DIM,
                                                  m.kinematics_hidden * 2),
                                        nn.ReLU(inplace=True), nn.Linear(m.kinematics_hidden * 2, m.kinematics_hidden),
                                        nn.ReLU(inplace=True))
        trunk_in = m.temporal_hidden + m.kinematics_hidden + self.encoder.scene_dim + EGO_DIM
        self.trunk = nn.Sequential(nn.Linear(trunk_in, m.trunk_hidden), nn.ReLU(inplace=True), nn.Dropout(m.dropout),
                                   nn.Linear(m.trunk_hidden, m.trunk_hidden), nn.ReLU(inplace=True))
        self.heads = nn.Linear(m.trunk_hidden, sum(HEAD_SIZES.values()))
        self.reference_head = nn.Sequential(nn.Linear(self.encoder.scene_dim + EGO_DIM, 64), nn.ReLU(inplace=True),
                                            nn.Linear(64, 1))

    # ------------------------------------------------------------------------------------------------------------

    def encode(self, bev: torch.Tensor, ego: torch.Tensor) -> SceneEncoding:
        features, vector = self.encoder(bev)
        return SceneEncoding(bev, features, vector, ego)

    def reference_progress(self, scene: SceneEncoding) -> torch.Tensor:
        """(S,) metres: the scene head's guess of the reference progress (used when no reference is given)."""
        return F.softplus(self.reference_head(torch.cat([scene.vector, scene.ego], -1))[:, 0]) * PROGRESS_SCALE_M

    @staticmethod
    def _channels(raw: torch.Tensor, index: tuple[int, ...]) -> torch.Tensor:
        contiguous = index == tuple(range(index[0], index[0] + len(index)))
        return raw[:, index[0]:index[0] + len(index)] if contiguous else raw[:, list(index)]

    def _step_reads(self, scene: SceneEncoding, states: torch.Tensor) -> torch.Tensor:
        s, k = states.shape[:2]
        sampled = states[:, :, self.step_index]  # (S, K, T, 11): the rollout every 40 / (steps - 1) x 0.1 s
        xy, heading = sampled[..., :2], sampled[..., 2]
        cos, sin = torch.cos(heading)[..., None], torch.sin(heading)[..., None]
        speed = torch.hypot(sampled[..., 3], sampled[..., 4])

        def place(offsets: torch.Tensor) -> torch.Tensor:  # (P, 2) box-frame -> (S, K, T, P, 2)
            x = xy[..., None, 0] + cos * offsets[:, 0] - sin * offsets[:, 1]
            y = xy[..., None, 1] + sin * offsets[:, 0] + cos * offsets[:, 1]
            return torch.stack([x, y], dim=-1)

        body = place(self.body)
        front = place(self.front)  # (S, K, T, 3, 2)
        forward = torch.stack([cos[..., 0], sin[..., 0]], dim=-1) * speed[..., None]  # (S, K, T, 2)
        ttc = torch.stack([front + forward[..., None, :] * dt_k for dt_k in self.ttc_offsets], dim=3)  # (S,K,T,M,3,2)

        layout = self.layout
        parts = []
        # Channels are picked before sampling (grid_sample cost and memory scale with the channels read).
        if layout.body:
            parts.append(sample_bev(self._channels(scene.raw, layout.body), body, self.grid).flatten(-2))
        if layout.ttc:
            parts.append(sample_bev(self._channels(scene.raw, layout.ttc), ttc, self.grid).flatten(-3))
        if layout.time_channels:
            objects = self._channels(scene.raw, layout.time_channels)
            moving = sample_bev(objects, body, self.grid)  # (S, K, T, P, n_times): read at the step's own time
            parts.append(torch.einsum("sktpn,tn->sktp", moving, self.time_weights))
            moving = sample_bev(objects, ttc, self.grid)
            parts.append(torch.einsum("sktmpn,tmn->sktmp", moving, self.ttc_time_weights).flatten(-2))
        feature_xy = torch.cat([body[..., self.feature_points, :], ttc[..., 1, :]], dim=-2)
        parts.append(sample_bev(scene.features, feature_xy, self.grid).flatten(-2))
        time = self.step_times.view(1, 1, -1).expand(s, k, -1)
        parts.append(torch.stack([xy[..., 0] / 50.0, xy[..., 1] / 50.0, cos[..., 0], sin[..., 0], speed / 10.0,
                                  sampled[..., 5] / 5.0, sampled[..., 9] / 0.5, time / 4.0], dim=-1))
        return torch.cat(parts, dim=-1)

    def forward(self, scene: SceneEncoding, poses: torch.Tensor, states: torch.Tensor, previous: torch.Tensor,
                previous_states: torch.Tensor, has_previous: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs for (S, K, 8, 3) candidates and their (S, K, 41, 11) rollouts (``agents.rwm.rollout``):
        logits per metric and ``progress`` in metres, each (S, K[, 3]). ``previous`` (S, 9, 3) is the previous
        frame's plan and ``previous_states`` (S, 41, 11) its rollout."""
        s, k = poses.shape[:2]
        steps = self.step_mlp(self._step_reads(scene, states))  # (S, K, T, H)
        window = min(self.window, self.steps)
        sustained = F.avg_pool1d(steps.reshape(s * k, self.steps, -1).transpose(1, 2), window, stride=1)
        pooled = self.temporal(torch.cat([steps.amax(dim=2), steps.mean(dim=2),
                                          sustained.amax(dim=-1).reshape(s, k, -1)], dim=-1))
        ego = scene.ego[:, None].expand(s, k, -1)
        kin = self.kinematics(torch.cat([trajectory_kinematics(poses, scene.ego, previous, has_previous),
                                         state_kinematics(states, previous_states, has_previous), ego], -1))
        vector = scene.vector[:, None].expand(s, k, -1)
        out = self.heads(self.trunk(torch.cat([pooled, kin, vector, ego], dim=-1)))
        result, start = {}, 0
        for name, size in HEAD_SIZES.items():
            chunk = out[..., start:start + size]
            result[name] = chunk if size > 1 else chunk[..., 0]
            start += size
        result["progress"] = F.softplus(result["progress"]) * PROGRESS_SCALE_M
        return result
