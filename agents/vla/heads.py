"""Perception heads on the BEV: semantic segmentation, agent detection (DETR-style queries), vectorised lane map,
and the ego encoder. The detection and map query embeddings are what the planner attends to."""

from __future__ import annotations

import torch
from torch import nn

from agents.vla.config import DET_CLASSES, SEG_CLASSES, VLAConfig


def mlp(cin: int, hidden: int, cout: int, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    width = cin
    for _ in range(layers - 1):
        mods += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        width = hidden
    mods.append(nn.Linear(width, cout))
    return nn.Sequential(*mods)


class SegmentationHead(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(channels, len(SEG_CLASSES), 1))

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        return self.net(bev)


def decoder(d_model: int, heads: int, layers: int, dropout: float) -> nn.TransformerDecoder:
    layer = nn.TransformerDecoderLayer(d_model, heads, dim_feedforward=2 * d_model, dropout=dropout,
                                       batch_first=True, norm_first=True)
    return nn.TransformerDecoder(layer, layers)


class QueryHead(nn.Module):
    """Learned queries decoded against the BEV tokens (self- and cross-attention)."""

    def __init__(self, num_queries: int, d_model: int, heads: int, layers: int, dropout: float):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, d_model) * 0.02)
        self.decoder = decoder(d_model, heads, layers, dropout)
        self.norm = nn.LayerNorm(d_model)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        q = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        return self.norm(self.decoder(q, tokens))


class DetectionHead(QueryHead):
    """Boxes (x, y, heading, length, width) in the ego frame and class logits (``DET_CLASSES`` + no-object)."""

    def __init__(self, config: VLAConfig):
        h = config.heads
        super().__init__(h.det_queries, h.d_model, h.num_heads, h.det_layers, h.dropout)
        bev = config.bev
        self.register_buffer("centre", torch.tensor([sum(bev.x_range) / 2, sum(bev.y_range) / 2]), persistent=False)
        self.register_buffer("half_extent", torch.tensor([(bev.x_range[1] - bev.x_range[0]) / 2,
                                                   (bev.y_range[1] - bev.y_range[0]) / 2]), persistent=False)
        self.box = mlp(h.d_model, h.d_model, 6)  # x, y (tanh over the grid), sin, cos, log length, log width
        self.cls = nn.Linear(h.d_model, len(DET_CLASSES) + 1)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self.embed(tokens)
        raw = self.box(q)
        xy = self.centre + self.half_extent * torch.tanh(raw[..., :2])
        heading = torch.atan2(raw[..., 2], raw[..., 3])
        size = torch.exp(raw[..., 4:6].clamp(-3.0, 3.0)) * 2.0  # about 2 m at init
        boxes = torch.cat([xy, heading[..., None], size], dim=-1)
        return q, boxes, self.cls(q)


class MapHead(QueryHead):
    """Lane centerline polylines (``map_points`` points, driving direction) and an existence logit per query."""

    def __init__(self, config: VLAConfig):
        h = config.heads
        super().__init__(h.map_queries, h.d_model, h.num_heads, h.map_layers, h.dropout)
        bev = config.bev
        self.points = h.map_points
        self.register_buffer("centre", torch.tensor([sum(bev.x_range) / 2, sum(bev.y_range) / 2]), persistent=False)
        self.register_buffer("half_extent", torch.tensor([(bev.x_range[1] - bev.x_range[0]) / 2,
                                                   (bev.y_range[1] - bev.y_range[0]) / 2]), persistent=False)
        self.pts = mlp(h.d_model, h.d_model, self.points * 2)
        self.cls = nn.Linear(h.d_model, 1)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self.embed(tokens)
        pts = self.centre + self.half_extent * torch.tanh(self.pts(q).view(*q.shape[:-1], self.points, 2))
        return q, pts, self.cls(q)[..., 0]


class EgoEncoder(nn.Module):
    def __init__(self, in_dim: int, d_model: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, d_model), nn.ReLU(inplace=True), nn.Linear(d_model, d_model),
                                 nn.LayerNorm(d_model))

    def forward(self, ego: torch.Tensor) -> torch.Tensor:
        return self.net(ego)
