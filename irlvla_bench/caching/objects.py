"""Objects and traffic lights at 10 Hz, the way NAVSIM's ``MetricCacheProcessor`` derives them from 2 Hz key frames:
per track token linear interpolation of (x, y, unwrapped heading, vx, vy); a track seen in one key frame only is
repeated unchanged in every frame; a track exists only between its first and last key frame; box size and type
from its first appearance; light status of key frame k held for frames 5k .. 5k+4."""

from __future__ import annotations

import numpy as np

from irlvla_bench.caching.scene import SceneData
from irlvla_bench.types import NUM_SCORING_FRAMES

AGENT_NAMES = ("vehicle", "pedestrian", "bicycle", "ego")
# nuPlan's TrackedObjectType values: TrackedObjects sorts each key frame by them (stable).
TYPE_ORDER = {"vehicle": 0, "pedestrian": 1, "bicycle": 2, "traffic_cone": 3, "barrier": 4, "czone_sign": 5,
              "generic_object": 6, "ego": 7}
KEY_FRAMES = 9  # t = 0 .. 4 s at 2 Hz
STEPS_PER_KEY = 5


def normalize_angle(a):
    return np.arctan2(np.sin(a), np.cos(a))


def interpolate_objects(scene: SceneData) -> list[list[dict]]:
    """41 frames of scoring-case ``TrackedObject`` dicts (global frame, box centre)."""
    states: dict[str, list[np.ndarray]] = {}
    first: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}  # name, box, velocity of the first appearance
    for k in range(KEY_FRAMES):
        objs = scene.objects(k)
        order = sorted(range(len(objs.tokens)), key=lambda i: TYPE_ORDER.get(objs.names[i], 99))
        for i in order:
            token, name, box, vel = objs.tokens[i], objs.names[i], objs.boxes[i], objs.velocities[i]
            v = vel if name in AGENT_NAMES else np.zeros(2)
            state = np.array([k * 0.5, box[0], box[1], box[2], v[0], v[1]])
            if token not in states:
                states[token] = [state]
                first[token] = (name, box, v)
            else:
                states[token].append(state)
    frames: list[list[dict]] = [[] for _ in range(NUM_SCORING_FRAMES)]
    for token, rows in states.items():
        arr = np.array(rows)
        t = arr[:, 0]
        vals = arr[:, 1:].copy()
        vals[:, 2] = np.unwrap(vals[:, 2])
        name, box0, vel0 = first[token]
        for f in range(NUM_SCORING_FRAMES):
            time_s = f * 0.1
            if t[0] == t[-1]:
                box, vel = box0, vel0
            elif t[0] <= time_s <= t[-1]:
                # scipy interp1d (linear): searchsorted left, clipped, y_lo + slope * (x - x_lo)
                hi = int(np.clip(np.searchsorted(t, time_s, side="left"), 1, len(t) - 1))
                lo = hi - 1
                slope = (vals[hi] - vals[lo]) / (t[hi] - t[lo])
                s = vals[lo] + slope * (time_s - t[lo])
                box = np.array([s[0], s[1], normalize_angle(s[2]), box0[3], box0[4], box0[5]])
                vel = s[3:5] if name in AGENT_NAMES else np.zeros(2)
            else:
                continue
            frames[f].append({"token": token, "type": name, "box": [float(x) for x in box],
                              "velocity": [float(vel[0]), float(vel[1])]})
    # nuPlan's TrackedObjects keeps every frame sorted by type (stable): the order NAVSIM's metric cache has,
    # which order-sensitive consumers (the reactive IDM agents) see.
    return [sorted(frame, key=lambda o: TYPE_ORDER.get(o["type"], 99)) for frame in frames]


def red_connectors_per_frame(scene: SceneData, allowed: set[str]) -> list[list[str]]:
    """Red lane connectors per 10 Hz frame, restricted to ``allowed`` (NAVSIM: on-route connectors only)."""
    out: list[list[str]] = []
    for k in range(KEY_FRAMES):
        red = [cid for cid, is_red in scene.lights(k) if is_red and cid in allowed]
        out.extend([red] * STEPS_PER_KEY)
    return [list(r) for r in out[:NUM_SCORING_FRAMES]]
