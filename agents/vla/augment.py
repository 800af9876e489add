"""Start-pose augmentation in the BEV frame, with recovery targets.

Logged driving is always centred in its lane, so a policy imitating it never sees what to do from an offset
start, which is exactly what navhard's second stage asks (synthetic starts 0.3-1.2 m beside the logged pose,
headings perturbed by ~0.08 rad). Re-rendering cameras is not possible in general, but lift-splat does not need
it: the images stay what they are (the world did not change) and only the *ego frame* moves. For a perturbed ego
pose P = (0, dy, dh) in the logged ego frame E, every camera's ``cam2ego`` becomes ``T(E -> P) cam2ego``; the BEV
then shows the world as seen from P (BEVDet's BEV-space augmentation, here a rigid ego shift). Labels move with
it: segmentation maps are resampled, boxes and lane polylines transformed. The ego history is left as it is:
navhard's synthetic scenes shift the whole history window with the start pose, so relative to the current pose
it looks like ordinary driving.

The trajectory target becomes a *recovery*: the logged future expressed in P, plus the start offset fading out
with a smoothstep over ``recovery_s`` (PilotNet-style shifted-view targets), headings corrected by the change of
the path's direction. Stationary samples (speed below ``min_speed``) are never shifted: a car cannot move sideways
on the spot. Commands are re-derived from the new target with the same label rules.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from agents.vla.commands import derive_commands
from agents.vla.config import AugmentConfig, VLAConfig
from agents.vla.data import VEL_SCALE

MIN_STEP = 0.2  # m: below this per-pose displacement the path direction is noise; headings are kept


def _rot(theta: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (B, 2, 2)


def draw_perturbations(batch: dict, aug: AugmentConfig, history_frames: int, gen: torch.Generator):
    """(lateral offsets (B,), heading offsets (B,)) in metres / rad; zero for samples left alone."""
    b = batch["ego"].shape[0]
    use = torch.rand(b, generator=gen) < aug.probability
    lateral = (torch.rand(b, generator=gen) * 2 - 1) * aug.lateral
    heading = (torch.randn(b, generator=gen) * aug.heading).clamp(-2.5 * aug.heading, 2.5 * aug.heading)
    v = batch["ego"][:, (history_frames - 1) * 7 + 3:(history_frames - 1) * 7 + 5].float() * VEL_SCALE
    use &= v.norm(dim=-1).cpu() >= aug.min_speed
    return torch.where(use, lateral, torch.zeros_like(lateral)), torch.where(use, heading, torch.zeros_like(heading))


def to_new_frame(xy: torch.Tensor, dy: torch.Tensor, dh: torch.Tensor) -> torch.Tensor:
    """Points (B, ..., 2) of the logged ego frame -> the frame of the pose (0, dy, dh)."""
    shape = xy.shape
    pts = xy.reshape(shape[0], -1, 2) - torch.stack([torch.zeros_like(dy), dy], -1)[:, None]
    return (pts @ _rot(dh)).reshape(shape)  # row vectors times R == R^T applied: rotation by -dh


def recovery_targets(trajectory: torch.Tensor, dy: torch.Tensor, dh: torch.Tensor, recovery_s: float,
                     interval_s: float = 0.5) -> torch.Tensor:
    """(B, P, 3) targets that start at the new pose and merge smoothly into the logged future."""
    b, p, _ = trajectory.shape
    logged = to_new_frame(trajectory[..., :2], dy, dh)
    origin = to_new_frame(torch.zeros(b, 1, 2, dtype=trajectory.dtype), dy, dh)  # the logged start, seen from P
    t = torch.arange(1, p + 1, dtype=trajectory.dtype) * interval_s
    s = (t / recovery_s).clamp(max=1.0)
    fade = 1 - s * s * (3 - 2 * s)  # smoothstep: 1 at the start, 0 once recovered
    xy = logged - fade[None, :, None] * origin
    heading = trajectory[..., 2] - dh[:, None]

    def direction(points):
        full = torch.cat([torch.zeros(b, 1, 2, dtype=points.dtype), points], 1)
        step = full[:, 1:] - full[:, :-1]
        return torch.atan2(step[..., 1], step[..., 0]), step.norm(dim=-1)

    new_dir, new_len = direction(xy)
    old_dir, old_len = direction(logged - origin)  # the logged path moved to start at the origin, no blend
    turn = torch.atan2(torch.sin(new_dir - old_dir), torch.cos(new_dir - old_dir))
    ok = (new_len > MIN_STEP) & (old_len > MIN_STEP)
    heading = heading + torch.where(ok, turn, torch.zeros_like(turn))
    return torch.cat([xy, heading[..., None]], -1)


def _resample_seg(seg: torch.Tensor, dy: torch.Tensor, dh: torch.Tensor, config: VLAConfig) -> torch.Tensor:
    """Nearest-neighbour resampling of (B, C, X, Y) labels into the new frame (outside the old grid: 0)."""
    bev = config.bev
    nx, ny = bev.grid_shape()
    xs = bev.x_range[0] + (torch.arange(nx) + 0.5) * bev.resolution
    ys = bev.y_range[0] + (torch.arange(ny) + 0.5) * bev.resolution
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    new = torch.stack([gx, gy], -1).reshape(1, -1, 2).expand(seg.shape[0], -1, -1)
    old = new @ _rot(dh).transpose(1, 2) + torch.stack([torch.zeros_like(dy), dy], -1)[:, None]  # P -> E
    u = 2 * (old[..., 1] - bev.y_range[0]) / (bev.y_range[1] - bev.y_range[0]) - 1
    v = 2 * (old[..., 0] - bev.x_range[0]) / (bev.x_range[1] - bev.x_range[0]) - 1
    grid = torch.stack([u, v], -1).reshape(seg.shape[0], nx, ny, 2)
    out = F.grid_sample(seg.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.to(seg.dtype)


def augment_batch(batch: dict[str, torch.Tensor], config: VLAConfig, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A copy of a CPU training batch with some samples' ego frames shifted (see the module docstring)."""
    aug = config.augment
    if aug.probability <= 0:
        return batch
    dy, dh = draw_perturbations(batch, aug, config.history_frames, gen)
    moved = (dy != 0) | (dh != 0)
    if not bool(moved.any()):
        return batch
    out = dict(batch)
    dy, dh = dy.float(), dh.float()
    # cam2ego' = T(E -> P) @ cam2ego
    t = torch.eye(4).repeat(len(dy), 1, 1)
    rot_t = _rot(dh).transpose(1, 2)
    t[:, :2, :2] = rot_t
    t[:, :2, 3] = -(rot_t @ torch.stack([torch.zeros_like(dy), dy], -1)[..., None])[..., 0]
    out["cam2ego"] = t[:, None] @ batch["cam2ego"].float()
    out["seg"] = _resample_seg(batch["seg"], dy, dh, config)
    boxes = batch["det_boxes"].clone()
    boxes[..., :2] = to_new_frame(boxes[..., :2], dy, dh)
    boxes[..., 2] = torch.atan2(torch.sin(boxes[..., 2] - dh[:, None]), torch.cos(boxes[..., 2] - dh[:, None]))
    bev = config.bev
    inside = ((boxes[..., 0] >= bev.x_range[0]) & (boxes[..., 0] < bev.x_range[1])
              & (boxes[..., 1] >= bev.y_range[0]) & (boxes[..., 1] < bev.y_range[1]))
    out["det_boxes"] = boxes
    out["det_classes"] = torch.where(inside, batch["det_classes"], torch.full_like(batch["det_classes"], -1))
    out["map_points"] = to_new_frame(batch["map_points"].float(), dy, dh)
    trajectory = recovery_targets(batch["trajectory"].float(), dy, dh, aug.recovery_s)
    out["trajectory"] = torch.where(moved[:, None, None], trajectory, batch["trajectory"].float())
    h = config.history_frames
    velocity = batch["ego"][:, (h - 1) * 7 + 3:(h - 1) * 7 + 5].double().numpy() * VEL_SCALE
    speed, path = batch["speed_command"].clone(), batch["path_command"].clone()
    for i in np.flatnonzero(moved.numpy()):
        speed[i], path[i] = derive_commands(out["trajectory"][i].double().numpy(), velocity[i])
    out["speed_command"], out["path_command"] = speed, path
    return out
