"""Training losses; every weight comes from ``LossWeights``.

* planner (every cascade layer, DiffusionDrive): the positive anchor is the one closest to the logged future
  (mean xy distance); sigmoid focal loss on the confidences with it as the only positive, L1 between the
  positive candidate and the logged future (metres; headings weighted by ``heading``);
* segmentation: per-class BCE plus soft Dice (the object classes cover well under 1 % of the cells);
* detection and map: Hungarian matching (class probability + L1 box / point cost), cross-entropy with a
  down-weighted no-object class and L1 on matched boxes / polylines, BCE on lane existence;
* commands: cross-entropy on the derived speed and path commands.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from agents.vla.config import DET_CLASSES, VLAConfig
from agents.vla.model import SceneFeatures
from agents.vla.planner import DecoderOutput, TrajectoryPlanner

NO_OBJECT_WEIGHT = 0.1


def sigmoid_focal(logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return (a_t * ce * (1 - p_t) ** gamma).sum(dim=-1).mean()


def positive_anchor(anchors: torch.Tensor, trajectory: torch.Tensor) -> torch.Tensor:
    """(B,) index of the anchor closest to each logged trajectory (mean xy distance over the poses)."""
    d = torch.linalg.norm(anchors[None, :, :, :2] - trajectory[:, None, :, :2], dim=-1).mean(-1)
    return d.argmin(dim=1)


def planner_loss(planner: TrajectoryPlanner, out: DecoderOutput, trajectory: torch.Tensor,
                 config: VLAConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(classification, regression, L1 of the last layer's positive candidate in metres for logging)."""
    w = config.loss
    pos = positive_anchor(planner.anchors, trajectory)
    b = trajectory.shape[0]
    rows = torch.arange(b, device=trajectory.device)
    col_w = torch.tensor([1.0, 1.0, w.heading], device=trajectory.device)
    cls = reg = 0.0
    last_l1 = None
    for x0, logits in zip(out.x0, out.logits):
        target = F.one_hot(pos, logits.shape[1]).to(logits.dtype)
        cls = cls + sigmoid_focal(logits, target, w.focal_alpha, w.focal_gamma)
        chosen = planner.denormalize(x0[rows, pos])
        diff = chosen - trajectory
        diff = torch.cat([diff[..., :2], torch.atan2(torch.sin(diff[..., 2:]), torch.cos(diff[..., 2:]))], -1)
        reg = reg + (diff.abs() * col_w).mean()
        last_l1 = diff[..., :2].abs().mean().detach()
    n = len(out.x0)
    return cls / n, reg / n, last_l1


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(0, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3)) + 1)
    return bce + dice.mean()


def _box_cost(pred: torch.Tensor, target: torch.Tensor, scale: float) -> torch.Tensor:
    """(Q, G) L1 cost over x, y (per ``scale`` metres), heading (sin, cos) and size."""
    xy = torch.cdist(pred[:, :2] / scale, target[:, :2] / scale, p=1)
    hp = torch.stack([torch.sin(pred[:, 2]), torch.cos(pred[:, 2])], -1)
    ht = torch.stack([torch.sin(target[:, 2]), torch.cos(target[:, 2])], -1)
    size = torch.cdist(pred[:, 3:5] / scale, target[:, 3:5] / scale, p=1)
    return xy + 0.1 * torch.cdist(hp, ht, p=1) + size


def detection_loss(boxes: torch.Tensor, logits: torch.Tensor, gt_boxes: torch.Tensor, gt_cls: torch.Tensor,
                   scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    b, q, _ = boxes.shape
    no_object = len(DET_CLASSES)
    cls_target = torch.full((b, q), no_object, dtype=torch.long, device=boxes.device)
    matched_pred, matched_gt = [], []
    probs = logits.detach().softmax(-1)
    for i in range(b):
        valid = gt_cls[i] >= 0
        if not valid.any():
            continue
        tb, tc = gt_boxes[i][valid], gt_cls[i][valid]
        cost = _box_cost(boxes[i].detach(), tb, scale) - probs[i][:, tc]
        r, c = linear_sum_assignment(cost.cpu().numpy())
        r, c = torch.as_tensor(r, device=boxes.device), torch.as_tensor(c, device=boxes.device)
        cls_target[i, r] = tc[c]
        matched_pred.append(boxes[i, r])
        matched_gt.append(tb[c])
    weight = torch.ones(no_object + 1, device=boxes.device)
    weight[no_object] = NO_OBJECT_WEIGHT
    cls_loss = F.cross_entropy(logits.reshape(-1, no_object + 1), cls_target.reshape(-1), weight=weight)
    if not matched_pred:
        return cls_loss, boxes.sum() * 0.0
    p, t = torch.cat(matched_pred), torch.cat(matched_gt)
    box = ((p[:, :2] - t[:, :2]).abs().sum(-1) / scale
           + (torch.sin(p[:, 2]) - torch.sin(t[:, 2])).abs() + (torch.cos(p[:, 2]) - torch.cos(t[:, 2])).abs()
           + (p[:, 3:5] - t[:, 3:5]).abs().sum(-1) / scale).mean()
    return cls_loss, box


def map_loss(points: torch.Tensor, logits: torch.Tensor, gt_points: torch.Tensor, gt_valid: torch.Tensor,
             scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    b, m = logits.shape
    target = torch.zeros_like(logits)
    matched_pred, matched_gt = [], []
    for i in range(b):
        valid = gt_valid[i].bool()
        if not valid.any():
            continue
        tp = gt_points[i][valid]
        cost = torch.cdist(points[i].detach().flatten(1), tp.flatten(1), p=1) / (tp.shape[1] * scale)
        cost = cost - torch.sigmoid(logits[i].detach())[:, None]
        r, c = linear_sum_assignment(cost.cpu().numpy())
        target[i, torch.as_tensor(r, device=logits.device)] = 1.0
        matched_pred.append(points[i, torch.as_tensor(r, device=logits.device)])
        matched_gt.append(tp[torch.as_tensor(c, device=logits.device)])
    cls_loss = F.binary_cross_entropy_with_logits(logits, target)
    if not matched_pred:
        return cls_loss, points.sum() * 0.0
    pts = (torch.cat(matched_pred) - torch.cat(matched_gt)).abs().mean() / scale
    return cls_loss, pts


def total_loss(planner: TrajectoryPlanner, features: SceneFeatures, out: DecoderOutput,
               batch: dict[str, torch.Tensor], config: VLAConfig) -> tuple[torch.Tensor, dict[str, float]]:
    w = config.loss
    scale = 10.0  # metres: box and point errors enter the losses per 10 m
    traj = batch["trajectory"].float()
    plan_cls, plan_reg, l1 = planner_loss(planner, out, traj, config)
    seg = segmentation_loss(features.seg_logits.float(), batch["seg"])
    det_cls, det_box = detection_loss(features.det_boxes.float(), features.det_logits.float(),
                                      batch["det_boxes"].float(), batch["det_classes"], scale)
    map_cls, map_pts = map_loss(features.map_points.float(), features.map_logits.float(),
                                batch["map_points"].float(), batch["map_valid"], scale)
    cmd = (F.cross_entropy(features.speed_logits.float(), batch["speed_command"])
           + F.cross_entropy(features.path_logits.float(), batch["path_command"]))
    total = (w.anchor_cls * plan_cls + w.trajectory * plan_reg + w.segmentation * seg + w.det_cls * det_cls
             + w.det_box * det_box + w.map_cls * map_cls + w.map_pts * map_pts + w.command * cmd)
    parts = {"loss": total, "plan_cls": plan_cls, "plan_reg": plan_reg, "plan_l1_m": l1, "seg": seg,
             "det_cls": det_cls, "det_box": det_box, "map_cls": map_cls, "map_pts": map_pts, "command": cmd}
    return total, {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in parts.items()}


def segmentation_iou(logits: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """(intersection, union) per class, summed over the batch, at a 0.5 threshold: (2, classes)."""
    pred = torch.sigmoid(logits) > 0.5
    t = target.bool()
    inter = (pred & t).sum(dim=(0, 2, 3)).cpu().numpy()
    union = (pred | t).sum(dim=(0, 2, 3)).cpu().numpy()
    return np.stack([inter, union]).astype(np.float64)
