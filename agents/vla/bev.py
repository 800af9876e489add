"""Cameras -> BEV: a small FPN-style neck on the VoVNet stages, lift-splat (Philion & Fidler, ECCV 2020) with the
cameras' own intrinsics and extrinsics from the agent input, and a light BEV encoder.

Lift: every feature pixel predicts a categorical depth distribution over ``depth_range`` bins and a context
vector; their outer product places context at every depth along the pixel's ray. Splat: the frustum points are
moved to the ego frame with ``cam2ego`` and sum-pooled into the BEV cells (``index_add_``). A flat-ground prior
(``ground_prior_sigma``) is added to the depth logits: for a pixel whose ray meets the ground, bins near that
depth start favoured, which is what makes the BEV usable after minutes of CPU training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from agents.vla.config import BEVConfig, VLAConfig

Z_RANGE = (-2.0, 4.0)  # m: frustum points outside this height band (ego frame) are dropped
PRIOR_FLOOR = -8.0  # the prior never pushes a logit below this, so the net can still move mass anywhere


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Neck(nn.Module):
    """Sum of 1x1-projected stages at ``fuse_strides``, resized to ``out_stride``, then a 3x3 conv."""

    def __init__(self, channels: tuple[int, ...], strides: tuple[int, ...], fuse: tuple[int, ...], out_stride: int,
                 out_channels: int):
        super().__init__()
        missing = [s for s in fuse if s not in strides]
        if missing:
            raise ValueError(f"fuse_strides {missing} are not among the backbone strides {strides}")
        self.indices = [strides.index(s) for s in fuse]
        self.lateral = nn.ModuleList(nn.Conv2d(channels[i], out_channels, 1) for i in self.indices)
        self.out_stride = out_stride
        self.smooth = conv_bn_relu(out_channels, out_channels)

    def forward(self, feats: list[torch.Tensor], image_hw: tuple[int, int]) -> torch.Tensor:
        size = (-(-image_hw[0] // self.out_stride), -(-image_hw[1] // self.out_stride))
        out = 0
        for lateral, i in zip(self.lateral, self.indices):
            x = lateral(feats[i])
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            out = out + x
        return self.smooth(out)


class LiftSplat(nn.Module):
    def __init__(self, config: VLAConfig, in_channels: int):
        super().__init__()
        bev = config.bev
        self.bev = bev
        self.stride = config.backbone.out_stride
        self.num_depth = bev.num_depth_bins()
        start, _, step = bev.depth_range
        self.register_buffer("depths", start + step * (torch.arange(self.num_depth, dtype=torch.float32) + 0.5),
                             persistent=False)
        self.channels = bev.channels
        self.head = nn.Sequential(conv_bn_relu(in_channels, in_channels),
                                  nn.Conv2d(in_channels, self.num_depth + bev.channels, 1))

    def frustum(self, feat_hw: tuple[int, int], image_hw: tuple[int, int], intrinsics: torch.Tensor,
                cam2ego: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ego-frame points (B, N, D, h, w, 3) and ray directions in the ego frame (B, N, h, w, 3)."""
        h, w = feat_hw
        sy, sx = image_hw[0] / h, image_hw[1] / w
        dev = intrinsics.device
        v = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) * sy
        u = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) * sx
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        pix = torch.stack([uu, vv, torch.ones_like(uu)], dim=-1)  # (h, w, 3)
        rays_cam = torch.einsum("bnij,hwj->bnhwi", torch.linalg.inv(intrinsics.float()), pix)
        rot, trans = cam2ego[..., :3, :3].float(), cam2ego[..., :3, 3].float()
        rays = torch.einsum("bnij,bnhwj->bnhwi", rot, rays_cam)  # z-depth 1 along the optical axis
        points = trans[:, :, None, None, None, :] + self.depths[None, None, :, None, None, None] * rays[:, :, None]
        return points, rays

    def ground_prior(self, rays: torch.Tensor, cam2ego: torch.Tensor) -> torch.Tensor:
        """(B, N, D, h, w) log-prior: Gaussian in depth around where the ray meets z = 0 (0 for sky rays)."""
        sigma = self.bev.ground_prior_sigma
        height = cam2ego[..., 2, 3].float()[:, :, None, None]
        down = -rays[..., 2]
        hits = down > 1e-3
        ground = torch.where(hits, height / down.clamp(min=1e-3), torch.zeros_like(down))
        diff = (self.depths[None, None, :, None, None] - ground[:, :, None]) / sigma
        prior = (-0.5 * diff ** 2).clamp(min=PRIOR_FLOOR)
        return torch.where(hits[:, :, None], prior, torch.zeros_like(prior))

    def forward(self, feats: torch.Tensor, image_hw: tuple[int, int], intrinsics: torch.Tensor,
                cam2ego: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats`` (B*N, C, h, w) -> (BEV (B, channels, X, Y), depth probabilities (B, N, D, h, w))."""
        b, n = intrinsics.shape[:2]
        out = self.head(feats)
        h, w = out.shape[-2:]
        logits = out[:, :self.num_depth].reshape(b, n, self.num_depth, h, w)
        context = out[:, self.num_depth:].reshape(b, n, self.channels, h, w)
        points, rays = self.frustum((h, w), image_hw, intrinsics, cam2ego)
        if self.bev.ground_prior_sigma > 0:
            logits = logits + self.ground_prior(rays, cam2ego).to(logits.dtype)
        depth = logits.softmax(dim=2)
        volume = depth[:, :, :, None] * context[:, :, None]  # (B, N, D, C, h, w)
        return self.splat(volume, points, b), depth

    def splat(self, volume: torch.Tensor, points: torch.Tensor, batch: int) -> torch.Tensor:
        bev = self.bev
        nx, ny = bev.grid_shape()
        ix = torch.floor((points[..., 0] - bev.x_range[0]) / bev.resolution).long()
        iy = torch.floor((points[..., 1] - bev.y_range[0]) / bev.resolution).long()
        keep = ((ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
                & (points[..., 2] >= Z_RANGE[0]) & (points[..., 2] < Z_RANGE[1]))  # (B, N, D, h, w)
        bidx = torch.arange(batch, device=points.device).view(-1, 1, 1, 1, 1).expand_as(ix)
        flat = (bidx * nx + ix) * ny + iy
        feats = volume.permute(0, 1, 2, 4, 5, 3)[keep]  # (P, C)
        grid = torch.zeros(batch * nx * ny, self.channels, device=volume.device, dtype=volume.dtype)
        grid.index_add_(0, flat[keep], feats)
        return grid.view(batch, nx, ny, self.channels).permute(0, 3, 1, 2).contiguous()


class BEVEncoder(nn.Module):
    """Full-resolution features for segmentation and trajectory sampling, plus coarse tokens for attention.

    Level 0 is one conv at the grid resolution, each further level halves it; the full-resolution output adds the
    deepest level (1x1-projected, upsampled) to level 0, which keeps the cost at full resolution to two thin convs.
    """

    def __init__(self, config: VLAConfig, d_model: int):
        super().__init__()
        bev = config.bev
        chans = bev.encoder_channels
        self.levels = nn.ModuleList([conv_bn_relu(bev.channels, chans[0])])
        for cin, c in zip(chans[:-1], chans[1:]):
            self.levels.append(nn.Sequential(conv_bn_relu(cin, c, stride=2), conv_bn_relu(c, c)))
        self.lateral = nn.Conv2d(chans[-1], chans[0], 1) if len(chans) > 1 else None
        self.token_stride = bev.token_stride
        self.level_stride = 2 ** (len(chans) - 1)
        if self.token_stride % self.level_stride:
            raise ValueError(f"token_stride {self.token_stride} must be a multiple of the encoder stride "
                             f"{self.level_stride}")
        self.to_tokens = nn.Conv2d(chans[-1], d_model, 1)
        self.out_channels = chans[0]
        nx, ny = bev.grid_shape()
        if nx % self.token_stride or ny % self.token_stride:
            raise ValueError(f"BEV grid {nx} x {ny} is not divisible by token_stride {self.token_stride}")
        self.token_hw = (nx // self.token_stride, ny // self.token_stride)
        self.token_pos = nn.Parameter(torch.randn(self.token_hw[0] * self.token_hw[1], d_model) * 0.02)

    def forward(self, bev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, X, Y) -> (fused (B, C0, X, Y), tokens (B, T, d) with positions added)."""
        levels = []
        x = bev
        for level in self.levels:
            x = level(x)
            levels.append(x)
        fused = levels[0]
        if self.lateral is not None:
            up = F.interpolate(self.lateral(levels[-1]), size=fused.shape[-2:], mode="bilinear", align_corners=False)
            fused = torch.relu(fused + up)
        coarse = levels[-1]
        extra = self.token_stride // self.level_stride
        if extra > 1:
            coarse = F.avg_pool2d(coarse, extra)
        tokens = self.to_tokens(coarse).flatten(2).transpose(1, 2)
        return fused, tokens + self.token_pos


def sample_bev(bev: torch.Tensor, xy: torch.Tensor, cfg: BEVConfig) -> torch.Tensor:
    """Bilinear BEV features at ego-frame points: ``bev`` (B, C, X, Y), ``xy`` (B, ..., 2) -> (B, ..., C);
    points outside the grid read zeros."""
    b = bev.shape[0]
    shape = xy.shape[1:-1]
    pts = xy.reshape(b, -1, 1, 2)
    # grid_sample's x indexes the last axis (our y), its y the rows (our x).
    gx = 2 * (pts[..., 1] - cfg.y_range[0]) / (cfg.y_range[1] - cfg.y_range[0]) - 1
    gy = 2 * (pts[..., 0] - cfg.x_range[0]) / (cfg.x_range[1] - cfg.x_range[0]) - 1
    grid = torch.stack([gx, gy], dim=-1).to(bev.dtype)
    out = F.grid_sample(bev, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, C, P, 1)
    return out[..., 0].transpose(1, 2).reshape(b, *shape, bev.shape[1])
