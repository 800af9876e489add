"""Scene encoders of the RWM behind one interface: a BEV array in, a feature map and a scene vector out.

All three kinds (``raster``, ``sensors``, ``il``) hand the model a (C, H, W) BEV array on an ego-frame grid
(``agents.rwm.features``, ``agents.rwm.sensors_bev``, ``agents.rwm.il_adapter``); what differs is what the
channels mean, which ``BEVLayout`` records: which raw channels the trajectory queries read directly at the
ego-box points (exact distance fields of the raster; the lifted colours of the cameras; none of the IL
features, whose channels have no fixed meaning) and which channels are object fields per future time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from agents.rwm.config import EncoderConfig
from agents.rwm.features import MAP_CHANNELS


@dataclass(frozen=True)
class BEVLayout:
    body: tuple[int, ...]  # raw channels read at every ego-box point
    ttc: tuple[int, ...]  # raw channels read at the TTC projections (besides the time channels)
    time_channels: tuple[int, ...]  # object fields at ``times`` (read at the query's own time)
    times: tuple[float, ...]


def layout_for(cfg: EncoderConfig, channels: int) -> BEVLayout:
    if cfg.kind == "raster":
        num_map = len(MAP_CHANNELS)
        expected = num_map + len(cfg.raster.object_times_s)
        if channels != expected:
            raise ValueError(f"raster BEV has {channels} channels, the config implies {expected}")
        objects = (MAP_CHANNELS.index("stopped_agents"), MAP_CHANNELS.index("static_objects"))
        return BEVLayout(tuple(range(num_map)), objects, tuple(range(num_map, channels)),
                         tuple(cfg.raster.object_times_s))
    if cfg.kind == "sensors":
        return BEVLayout(tuple(range(channels)), tuple(range(channels)), (), ())
    return BEVLayout((), (), (), ())


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.GroupNorm(min(8, cout), cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(min(8, cout), cout),
                         nn.ReLU(inplace=True))


class BEVEncoder(nn.Module):
    """A light CNN: a stride-2 stem, then stride-2 stages; the query map is the stem's output fused with the
    upsampled deeper stages (local detail + context), the scene vector pools the deepest."""

    def __init__(self, in_channels: int, cfg: EncoderConfig):
        super().__init__()
        widths = cfg.cnn_channels
        # Stride 2 from the start: the raw distance fields already carry the sub-cell geometry the queries need,
        # the CNN adds context (what is around), for which half resolution is plenty and 4x cheaper.
        self.stem = _block(in_channels, widths[0], 2)
        self.stages = nn.ModuleList(_block(a, b, 2) for a, b in zip(widths[:-1], widths[1:]))
        self.fuse = nn.Conv2d(sum(widths), widths[-1], 1)
        self.scene = nn.Sequential(nn.Linear(2 * widths[-1], cfg.scene_dim), nn.ReLU(inplace=True))
        self.out_channels = widths[-1]
        self.scene_dim = cfg.scene_dim

    def forward(self, bev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(bev)
        outs = [x]
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        size = outs[0].shape[-2:]
        fused = torch.cat([outs[0]] + [nn.functional.interpolate(o, size=size, mode="bilinear", align_corners=False)
                                       for o in outs[1:]], dim=1)
        deep = outs[-1]
        vector = torch.cat([deep.mean(dim=(2, 3)), deep.amax(dim=(2, 3))], dim=1)
        return self.fuse(fused), self.scene(vector)


def build_encoder(cfg: EncoderConfig, in_channels: int) -> BEVEncoder:
    """The same light CNN for every kind; for ``il`` it is the small adapter on top of the frozen policy's
    BEV features (the heavy part, the policy itself, runs once per scene in the featurizer)."""
    return BEVEncoder(in_channels, cfg)
