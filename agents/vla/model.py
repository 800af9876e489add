"""The IL VLA policy as one module: cameras -> VoVNetV2 -> lift-splat BEV -> perception heads -> commands ->
truncated-diffusion planner.

:meth:`IRLVLAModel.scene_features` is the shared trunk (what a value head or the reward world model reuses):
BEV features, BEV tokens, agent and map query embeddings, the ego token (ego status + command embedding) and the
perception / command outputs. :meth:`IRLVLAModel.plan` adds the deterministic planner; the planner's stochastic
path for PPO is ``model.planner.sample_with_log_probs(features, generator)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from agents.vla.bev import BEVEncoder, LiftSplat, Neck
from agents.vla.commands import PATH_COMMANDS, SPEED_COMMANDS, command_head, split_logits
from agents.vla.config import VLAConfig
from agents.vla.data import ego_feature_size
from agents.vla.heads import DetectionHead, EgoEncoder, MapHead, SegmentationHead
from agents.vla.planner import DecoderOutput, PlanOutput, TrajectoryPlanner
from agents.vla.vovnet import VoVNet

INPUT_KEYS = ("images", "intrinsics", "cam2ego", "ego")


@dataclass
class SceneFeatures:
    bev: torch.Tensor  # (B, C, X, Y) full-resolution BEV features (segmentation and trajectory sampling)
    tokens: torch.Tensor  # (B, T, d) coarse BEV tokens with positions
    agent_queries: torch.Tensor  # (B, Q, d) detection query embeddings
    map_queries: torch.Tensor  # (B, M, d) lane query embeddings
    ego_token: torch.Tensor  # (B, d) ego status + command embedding
    seg_logits: torch.Tensor  # (B, classes, X, Y)
    det_boxes: torch.Tensor  # (B, Q, 5) x, y, heading, length, width
    det_logits: torch.Tensor  # (B, Q, classes + 1)
    map_points: torch.Tensor  # (B, M, P, 2)
    map_logits: torch.Tensor  # (B, M)
    speed_logits: torch.Tensor  # (B, 13)
    path_logits: torch.Tensor  # (B, 9)
    depth: torch.Tensor  # (B, N, D, h, w) depth distributions of the lift step

    @property
    def context(self) -> torch.Tensor:
        """What the planner cross-attends: agent queries, map queries and the ego token."""
        return torch.cat([self.agent_queries, self.map_queries, self.ego_token[:, None]], dim=1)

    def pooled(self) -> torch.Tensor:
        """(B, 2d) a fixed-size summary (mean BEV token, ego token) for value heads."""
        return torch.cat([self.tokens.mean(dim=1), self.ego_token], dim=-1)


class IRLVLAModel(nn.Module):
    def __init__(self, config: VLAConfig):
        super().__init__()
        self.config = config
        d = config.heads.d_model
        self.backbone = VoVNet(config.backbone)
        bb = config.backbone
        self.neck = Neck(self.backbone.channels, self.backbone.strides, bb.fuse_strides, bb.out_stride,
                         bb.neck_channels)
        self.lift = LiftSplat(config, bb.neck_channels)
        self.bev_encoder = BEVEncoder(config, d)
        self.seg_head = SegmentationHead(self.bev_encoder.out_channels)
        self.det_head = DetectionHead(config)
        self.map_head = MapHead(config)
        self.ego_encoder = EgoEncoder(ego_feature_size(config), d)
        cmd = config.command
        self.command_head = command_head(2 * d, cmd.hidden)
        self.speed_embed = nn.Linear(len(SPEED_COMMANDS), cmd.embed_dim, bias=False)
        self.path_embed = nn.Linear(len(PATH_COMMANDS), cmd.embed_dim, bias=False)
        self.command_proj = nn.Linear(2 * cmd.embed_dim, d)
        self.planner = TrajectoryPlanner(config.planner, config.bev, self.bev_encoder.out_channels, d)
        self.register_buffer("pixel_mean", torch.tensor(config.image.mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.image.std).view(1, 3, 1, 1) * 255, persistent=False)

    def scene_features(self, inputs: dict[str, torch.Tensor], *,
                       commands: tuple[torch.Tensor, torch.Tensor] | None = None,
                       teacher_mask: torch.Tensor | None = None) -> SceneFeatures:
        """The shared trunk. ``commands`` (speed (B, 13), path (B, 9) probabilities or one-hot) replaces the
        command head's prediction in the ego token (the language backend; teacher forcing where ``teacher_mask``
        (B,) is true, the head's prediction elsewhere)."""
        images = inputs["images"]
        b, n, _, h, w = images.shape
        x = (images.reshape(b * n, 3, h, w).float() - self.pixel_mean) / self.pixel_std
        feats = self.neck(self.backbone(x), (h, w))
        bev, depth = self.lift(feats, (h, w), inputs["intrinsics"], inputs["cam2ego"])
        fused, tokens = self.bev_encoder(bev)
        seg = self.seg_head(fused)
        agent_q, boxes, det_logits = self.det_head(tokens)
        map_q, map_pts, map_logits = self.map_head(tokens)
        ego_state = self.ego_encoder(inputs["ego"].float())
        speed_logits, path_logits = split_logits(self.command_head(torch.cat([tokens.mean(dim=1), ego_state], -1)))
        # Detached: the command head stays a classifier of the derived commands; the planner reads its beliefs.
        predicted = (speed_logits.softmax(-1).detach(), path_logits.softmax(-1).detach())
        if commands is None:
            commands = predicted
        elif teacher_mask is not None:
            m = teacher_mask.to(speed_logits.device)[:, None]
            commands = tuple(torch.where(m, c.to(p.dtype), p) for c, p in zip(commands, predicted))
        return SceneFeatures(fused, tokens, agent_q, map_q, self.command_token(ego_state, commands), seg, boxes,
                             det_logits, map_pts, map_logits, speed_logits, path_logits, depth)

    def command_token(self, ego_state: torch.Tensor, commands: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        cmd = torch.cat([self.speed_embed(commands[0].to(ego_state.dtype)),
                         self.path_embed(commands[1].to(ego_state.dtype))], dim=-1)
        return ego_state + self.command_proj(cmd)

    def condition(self, features: SceneFeatures, commands: tuple[torch.Tensor, torch.Tensor]) -> SceneFeatures:
        """The same scene with other commands in the ego token, without a second trunk pass. The command
        embedding is affine in the command distributions, so swapping the head's beliefs (what
        :meth:`scene_features` put in without ``commands``) for ``commands`` is adding the linear part of the
        difference."""
        old = (features.speed_logits.softmax(-1), features.path_logits.softmax(-1))
        delta = torch.cat([self.speed_embed((commands[0] - old[0]).to(old[0].dtype)),
                           self.path_embed((commands[1] - old[1]).to(old[1].dtype))], dim=-1)
        return replace(features, ego_token=features.ego_token + delta @ self.command_proj.weight.T)

    def forward(self, inputs: dict[str, torch.Tensor], generator: torch.Generator | None = None,
                commands: tuple[torch.Tensor, torch.Tensor] | None = None,
                teacher_mask: torch.Tensor | None = None) -> tuple[SceneFeatures, DecoderOutput]:
        """Training pass: scene features and the planner's cascade outputs on randomly noised anchors."""
        features = self.scene_features(inputs, commands=commands, teacher_mask=teacher_mask)
        return features, self.planner.forward_train(features, generator)

    @torch.no_grad()
    def plan(self, inputs: dict[str, torch.Tensor], generator: torch.Generator | None = None,
             commands: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[SceneFeatures, PlanOutput]:
        features = self.scene_features(inputs, commands=commands)
        return features, self.planner.plan(features, generator, seg_logits=features.seg_logits)


def to_tensors(arrays: dict, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """numpy batch -> tensors on ``device`` (uint8 images stay uint8 until the model normalises them)."""
    return {k: torch.as_tensor(v).to(device) for k, v in arrays.items()}
