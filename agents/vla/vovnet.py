"""VoVNetV2 (VoVNet with eSE attention and identity mapping; Lee & Park, CenterMask, CVPR 2020) in plain torch.

* stem: 3x3 s2 -> 3x3 -> 3x3 s2 (stride 4);
* stage 2 keeps the resolution, stages 3..5 start with a 3x3 s2 max pool (ceil mode);
* OSA module: ``layers_per_block`` 3x3 conv-BN-ReLU layers in sequence, the block input and every layer output
  concatenated once, a 1x1 conv-BN-ReLU projection, eSE (global average -> 1x1 conv without reduction ->
  hard sigmoid -> channel scale), and an identity skip on every block of a stage but the first.

Parameter names are this module's own (``stem.0.conv``, ``stages.0.blocks.0.layers.1.bn``, ``...concat``,
``...ese.fc``); :func:`load_external_weights` maps the two published layouts onto them: vovnet-detectron2 /
DETR3D / BEVFormer / StreamPETR checkpoints (``stem.stem_1/conv.weight``, ``stage2.OSA2_1.layers.0.OSA2_1_0/norm``)
and timm (``stem.0.conv.weight``, ``stages.0.blocks.0.conv_mid.0.bn``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from agents.vla.config import BackboneConfig


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)


class HardSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class EffectiveSE(nn.Module):
    """eSE: one fully connected (1x1) layer without channel reduction, so no channel information is lost."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)
        self.gate = HardSigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc(x.mean(dim=(2, 3), keepdim=True)))


class OSABlock(nn.Module):
    def __init__(self, cin: int, conv_ch: int, out_ch: int, layers: int, identity: bool):
        super().__init__()
        self.identity = identity
        self.layers = nn.ModuleList(ConvBNReLU(cin if i == 0 else conv_ch, conv_ch) for i in range(layers))
        self.concat = ConvBNReLU(cin + layers * conv_ch, out_ch, kernel=1)
        self.ese = EffectiveSE(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        y = x
        for layer in self.layers:
            y = layer(y)
            outputs.append(y)
        y = self.ese(self.concat(torch.cat(outputs, dim=1)))
        return y + x if self.identity else y


class OSAStage(nn.Module):
    def __init__(self, cin: int, conv_ch: int, out_ch: int, blocks: int, layers: int, downsample: bool):
        super().__init__()
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True) if downsample else nn.Identity()
        # Identity mapping needs equal widths, hence from the second block on (VoVNetV2).
        self.blocks = nn.ModuleList(OSABlock(cin if i == 0 else out_ch, conv_ch, out_ch, layers, identity=i > 0)
                                    for i in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        for block in self.blocks:
            x = block(x)
        return x


class VoVNet(nn.Module):
    """Returns the feature maps of every stage (strides 4, 8, 16, 32 for stages 2..5)."""

    def __init__(self, config: BackboneConfig):
        super().__init__()
        cfg = config.resolved()
        if not 1 <= cfg.num_stages <= len(cfg.stage_out):
            raise ValueError(f"num_stages must be in 1..{len(cfg.stage_out)}, got {cfg.num_stages}")
        if not (len(cfg.stage_conv) == len(cfg.stage_out) == len(cfg.blocks_per_stage)):
            raise ValueError("stage_conv, stage_out and blocks_per_stage must have the same length")
        self.config = cfg
        s0, s1, s2 = cfg.stem
        self.stem = nn.Sequential(ConvBNReLU(3, s0, stride=2), ConvBNReLU(s0, s1), ConvBNReLU(s1, s2, stride=2))
        stages = []
        cin = s2
        for i in range(cfg.num_stages):
            stages.append(OSAStage(cin, cfg.stage_conv[i], cfg.stage_out[i], cfg.blocks_per_stage[i],
                                   cfg.layers_per_block, downsample=i > 0))
            cin = cfg.stage_out[i]
        self.stages = nn.ModuleList(stages)
        self.strides = tuple(4 * 2 ** i for i in range(cfg.num_stages))
        self.channels = tuple(cfg.stage_out[:cfg.num_stages])
        for m in self.modules():
            if isinstance(m, ConvBNReLU):  # eSE keeps torch's default init: its gate starts near 0.5
                nn.init.kaiming_normal_(m.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------------------------------------------
# External weights

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_PREFIXES = ("module.", "img_backbone.", "backbone.bottom_up.", "backbone.body.", "backbone.", "model.", "encoder.")


def _detectron2_name(key: str) -> str | None:
    """vovnet-detectron2 / DETR3D style key -> this module's key (None: not a backbone parameter)."""
    m = re.fullmatch(r"stem\.stem_(\d)/(conv|norm)\.(\w+)", key)
    if m:
        return f"stem.{int(m[1]) - 1}.{'conv' if m[2] == 'conv' else 'bn'}.{m[3]}"
    m = re.fullmatch(r"stage(\d)\.OSA\d_(\d+)\.layers\.(\d+)\.OSA\d_\d+_\d+/(conv|norm)\.(\w+)", key)
    if m:
        part = "conv" if m[4] == "conv" else "bn"
        return f"stages.{int(m[1]) - 2}.blocks.{int(m[2]) - 1}.layers.{m[3]}.{part}.{m[5]}"
    m = re.fullmatch(r"stage(\d)\.OSA\d_(\d+)\.concat\.OSA\d_\d+_concat/(conv|norm)\.(\w+)", key)
    if m:
        part = "conv" if m[3] == "conv" else "bn"
        return f"stages.{int(m[1]) - 2}.blocks.{int(m[2]) - 1}.concat.{part}.{m[4]}"
    m = re.fullmatch(r"stage(\d)\.OSA\d_(\d+)\.ese\.fc\.(weight|bias)", key)
    if m:
        return f"stages.{int(m[1]) - 2}.blocks.{int(m[2]) - 1}.ese.fc.{m[3]}"
    return None


def _timm_name(key: str) -> str | None:
    """timm ``vovnet`` / ``ese_vovnet`` key -> this module's key."""
    m = re.fullmatch(r"stem\.(\d)\.(conv|bn)\.(\w+)", key)
    if m:
        return f"stem.{m[1]}.{m[2]}.{m[3]}"
    m = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.conv_mid\.(\d+)\.(conv|bn)\.(\w+)", key)
    if m:
        return f"stages.{m[1]}.blocks.{m[2]}.layers.{m[3]}.{m[4]}.{m[5]}"
    m = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.conv_concat\.(conv|bn)\.(\w+)", key)
    if m:
        return f"stages.{m[1]}.blocks.{m[2]}.concat.{m[3]}.{m[4]}"
    m = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.attn\.fc\.(weight|bias)", key)
    if m:
        return f"stages.{m[1]}.blocks.{m[2]}.ese.fc.{m[3]}"
    return None


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


@dataclass
class LoadReport:
    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ours, not in the file
    unexpected: list[str] = field(default_factory=list)  # the file's, not mappable onto ours
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)


def map_external_keys(state: Mapping[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor], list[str]]:
    """(layout, our-key -> tensor, keys that map to nothing); the layout is guessed from the keys."""
    stripped = {_strip(k): v for k, v in state.items()}
    if any("OSA" in k or "stem_1/" in k for k in stripped):
        layout, rename = "detectron2", _detectron2_name
    elif any(".conv_mid." in k for k in stripped):
        layout, rename = "timm", _timm_name
    else:
        layout, rename = "native", (lambda k: k)
    mapped, unknown = {}, []
    for key, value in stripped.items():
        ours = rename(key)
        if ours is None:
            unknown.append(key)
        else:
            mapped[ours] = value
    return layout, mapped, unknown


def load_external_weights(model: VoVNet, source: str | Path | Mapping[str, torch.Tensor], *,
                          strict: bool = False) -> LoadReport:
    """Load VoVNet weights from a checkpoint path or state dict in any supported layout.

    Tensors whose shapes differ from ours (another variant, a width-scaled model) are skipped and reported,
    not forced; ``strict`` raises when anything of ours stayed unloaded.
    """
    if isinstance(source, (str, Path)):
        payload = torch.load(source, map_location="cpu", weights_only=True)
        state = payload.get("state_dict", payload.get("model", payload)) if isinstance(payload, dict) else payload
    else:
        state = source
    layout, mapped, unknown = map_external_keys(state)
    own = model.state_dict()
    report = LoadReport(layout, unexpected=sorted(unknown))
    update = {}
    for key, value in mapped.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(own[key].shape) != tuple(value.shape):
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            update[key] = value.to(own[key].dtype)
            report.loaded.append(key)
    report.missing = sorted(k for k in own if k not in update)
    if strict and (report.missing or report.mismatched):
        raise ValueError(f"VoVNet weights ({layout} layout): {len(report.missing)} missing, "
                         f"{len(report.mismatched)} with other shapes, e.g. {(report.missing + report.mismatched)[:3]}")
    model.load_state_dict(update, strict=False)
    return report


def to_detectron2_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our keys -> the vovnet-detectron2 layout (for exporting, and for testing the loader's mapping)."""
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"stem\.(\d)\.(conv|bn)\.(\w+)", key)
        if m:
            out[f"stem.stem_{int(m[1]) + 1}/{'conv' if m[2] == 'conv' else 'norm'}.{m[3]}"] = value
            continue
        m = re.fullmatch(r"stages\.(\d+)\.blocks\.(\d+)\.(layers\.(\d+)|concat|ese\.fc)\.?(conv|bn)?\.?(\w+)", key)
        if not m:
            raise KeyError(key)
        stage, block = int(m[1]) + 2, int(m[2]) + 1
        name = f"OSA{stage}_{block}"
        part = "conv" if m[5] == "conv" else "norm"
        if m[4] is not None:
            out[f"stage{stage}.{name}.layers.{m[4]}.{name}_{m[4]}/{part}.{m[6]}"] = value
        elif m[3] == "concat":
            out[f"stage{stage}.{name}.concat.{name}_concat/{part}.{m[6]}"] = value
        else:
            out[f"stage{stage}.{name}.ese.fc.{m[6]}"] = value
    return out
