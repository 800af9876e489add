"""A scene as the metric cache sees it (NAVSIM's ``NavSimScenario``): ego states, objects and traffic lights per
2 Hz iteration relative to the current frame, from an original log window or a synthetic scene pickle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irlvla_bench.errors import InputError
from irlvla_bench.io.navsim_logs import (
    SYNTHETIC_TOKEN_LENGTH,
    LogFrame,
    parse_log_frame,
    read_log_raw,
    read_synthetic_scene,
)
from irlvla_bench.io.splits import SceneRef

ITERATION_US = 500_000  # NAVSIM hard-codes 0.5 s per frame


@dataclass(frozen=True)
class KeyObjects:
    """Objects of one key frame in the global frame."""

    tokens: tuple[str, ...]
    names: tuple[str, ...]
    boxes: np.ndarray  # (N, 6)
    velocities: np.ndarray  # (N, 2)


@dataclass(frozen=True)
class SceneData:
    token: str
    log_name: str
    map_name: str
    frames: tuple[LogFrame, ...]  # history (incl. current) + future frames available in the scene
    num_history: int
    extended_objects: tuple[KeyObjects, ...] = ()  # synthetic: key frames after the last frame
    extended_lights: tuple[tuple[tuple[str, bool], ...], ...] | None = None
    source: str = ""

    @property
    def is_synthetic(self) -> bool:
        return len(self.token) == SYNTHETIC_TOKEN_LENGTH  # NAVSIM's rule, not the file's origin

    @property
    def current(self) -> LogFrame:
        return self.frames[self.num_history - 1]

    def _index(self, iteration: int) -> int:
        return self.num_history - 1 + iteration

    def time_us(self, iteration: int) -> int:
        idx = self._index(iteration)
        if idx < len(self.frames):
            return self.frames[idx].timestamp_us
        last = len(self.frames) - 1
        return self.frames[last].timestamp_us + (idx - last) * ITERATION_US

    def ego_frame(self, iteration: int) -> LogFrame:
        """Frame of the ego state at an iteration; beyond the scene NAVSIM repeats the last state."""
        idx = min(self._index(iteration), len(self.frames) - 1)
        if idx < 0:
            raise InputError(self.source, "frames", f"iteration {iteration} precedes the scene")
        return self.frames[idx]

    def objects(self, iteration: int) -> KeyObjects:
        idx = self._index(iteration)
        if idx < len(self.frames):
            f = self.frames[idx]
            return KeyObjects(f.track_tokens, f.names, f.boxes, f.velocities)
        ext = idx - len(self.frames)
        if ext < len(self.extended_objects):
            return self.extended_objects[ext]
        raise InputError(self.source, "extended_detections_tracks" if self.extended_objects else "frames",
                         f"iteration {iteration} is out of the scene (NAVSIM: 'Iteration is out of scenario')")

    def lights(self, iteration: int) -> tuple[tuple[str, bool], ...]:
        idx = self._index(iteration)
        if idx < len(self.frames):
            return self.frames[idx].traffic_lights
        ext = idx - len(self.frames)
        if self.extended_lights is not None and ext < len(self.extended_lights):
            return self.extended_lights[ext]
        return ()


def load_scene(ref: SceneRef) -> SceneData:
    """Read the frames of one scene; every problem is an ``InputError`` naming the file and frame key."""
    if ref.kind == "synthetic":
        syn = read_synthetic_scene(ref.path)
        ext = tuple(KeyObjects(tuple(t["track_tokens"]), tuple(t["names"]), t["boxes"], t["velocities"])
                    for t in syn.extended_tracks)
        return SceneData(syn.token, syn.metadata["log_name"], syn.metadata["map_name"], syn.frames,
                         len(syn.frames), ext, syn.extended_lights, ref.path)
    raw = read_log_raw(ref.path)
    window = raw[ref.start:ref.start + ref.num_history_frames + ref.num_future_frames]
    if len(window) < ref.num_history_frames:
        raise InputError(ref.path, f"frame[{ref.start}]", "scene window runs past the end of the log")
    frames = tuple(parse_log_frame(f, ref.path, ref.start + i) for i, f in enumerate(window))
    current = frames[ref.num_history_frames - 1]
    if current.token != ref.token:
        raise InputError(ref.path, f"frame[{ref.start + ref.num_history_frames - 1}].token",
                         f"expected {ref.token!r}, found {current.token!r} (log changed since listing?)")
    times = [f.timestamp_us for f in frames]
    if any(b <= a for a, b in zip(times, times[1:])):
        raise InputError(ref.path, "timestamp", "frames of the scene are not in increasing time order")
    return SceneData(ref.token, current.log_name, current.map_location, frames, ref.num_history_frames, source=ref.path)
