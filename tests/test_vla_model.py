"""VoVNetV2 (published spec sizes, external weight layouts), lift-splat geometry, BEV sampling, the planner's
deterministic and stochastic paths, and the whole model's forward / backward on the test config."""

from __future__ import annotations

import re

import pytest
import torch
from test_vla_fixtures import tiny_config

from agents.vla.bev import LiftSplat, sample_bev
from agents.vla.config import BackboneConfig, VLAConfig, small_config
from agents.vla.model import IRLVLAModel
from agents.vla.vovnet import VoVNet, count_parameters, load_external_weights, to_detectron2_keys

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------------------------------
# VoVNetV2


@pytest.mark.parametrize("arch, params", [("V-19-slim", 2_653_136), ("V-39", 25_184_128), ("V-99", 69_523_520)])
def test_vovnet_specs_have_the_published_topology(arch, params):
    """eSE on every OSA block (as in vovnet-detectron2, whose V-99 checkpoints DETR3D / BEVFormer use)."""
    net = VoVNet(BackboneConfig(arch=arch))
    assert count_parameters(net) == params
    assert net.channels == BackboneConfig(arch=arch).resolved().stage_out
    assert net.strides == (4, 8, 16, 32)


def test_vovnet_blocks_and_feature_strides():
    net = VoVNet(BackboneConfig(arch="V-39")).eval()
    blocks = [[b.identity for b in stage.blocks] for stage in net.stages]
    assert blocks == [[False], [False], [False, True], [False, True]]  # identity from the second block on
    first = net.stages[0].blocks[0]
    assert len(first.layers) == 5 and first.concat.conv.in_channels == 128 + 5 * 128
    assert isinstance(first.ese.gate, torch.nn.Module) and first.ese.fc.in_channels == first.ese.fc.out_channels
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape[1:]) for o in outs] == [(256, 16, 24), (512, 8, 12), (768, 4, 6), (1024, 2, 3)]


def _same_outputs(a: VoVNet, b: VoVNet) -> bool:
    x = torch.randn(2, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return all(torch.equal(p, q) for p, q in zip(a.eval()(x), b.eval()(x)))


def test_external_weights_in_the_detectron2_layout_load_by_key_mapping():
    cfg = small_config().backbone
    src = VoVNet(cfg)
    for m in src.modules():  # non-trivial BN statistics, so that a dropped buffer would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    external = {f"img_backbone.{k}": v for k, v in to_detectron2_keys(src.state_dict()).items()}
    assert "img_backbone.stem.stem_1/conv.weight" in external
    assert "img_backbone.stage2.OSA2_1.layers.0.OSA2_1_0/norm.running_var" in external
    assert "img_backbone.stage3.OSA3_1.concat.OSA3_1_concat/conv.weight" in external
    assert "img_backbone.stage4.OSA4_1.ese.fc.bias" in external
    dst = VoVNet(cfg)
    report = load_external_weights(dst, {**external, "img_neck.lateral.weight": torch.zeros(1)}, strict=True)
    assert report.layout == "detectron2" and not report.missing and not report.mismatched
    assert report.unexpected == ["img_neck.lateral.weight"]
    assert _same_outputs(src, dst)


def test_external_weights_in_the_timm_layout_and_shape_mismatches():
    cfg = small_config().backbone
    src = VoVNet(cfg)
    timm = {}
    for key, value in src.state_dict().items():
        key = re.sub(r"\.layers\.(\d+)\.", r".conv_mid.\1.", key)
        key = key.replace(".concat.", ".conv_concat.").replace(".ese.fc.", ".attn.fc.")
        timm[key] = value
    dst = VoVNet(cfg)
    report = load_external_weights(dst, timm, strict=True)
    assert report.layout == "timm" and _same_outputs(src, dst)
    # Another variant's tensors are reported, not forced in.
    other = VoVNet(BackboneConfig(arch="V-19-slim"))
    report = load_external_weights(VoVNet(cfg), to_detectron2_keys(other.state_dict()))
    assert report.mismatched and "stem.0.conv.weight" in report.missing
    with pytest.raises(ValueError, match="missing"):
        load_external_weights(VoVNet(cfg), to_detectron2_keys(other.state_dict()), strict=True)


# ----------------------------------------------------------------------------------------------------------------
# Lift-splat geometry


def _front_camera(config: VLAConfig, height_m: float = 1.5):
    """One forward-looking camera (OpenCV axes) at ``height_m`` above the rear axle, 1 m ahead of it."""
    h, w = config.image.height, config.image.width
    f = w / 2
    k = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    rot = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # camera x right, y down, z forward -> ego
    t = torch.eye(4)
    t[:3, :3] = rot
    t[:3, 3] = torch.tensor([1.0, 0.0, height_m])
    return k[None, None], t[None, None]


def test_frustum_points_lie_on_the_pixel_rays():
    cfg = tiny_config()
    lift = LiftSplat(cfg, 16)
    k, t = _front_camera(cfg)
    points, rays = lift.frustum((4, 8), (cfg.image.height, cfg.image.width), k, t)
    depths = lift.depths
    # Depth is along the optical axis (ego x here): every point's x is 1 m + its bin depth.
    assert torch.allclose(points[0, 0, :, :, :, 0], 1.0 + depths[:, None, None].expand(-1, 4, 8))
    # Pixel columns left of the centre look left (+y), rows below the centre look down.
    assert (points[0, 0, 5, :, :4, 1] > 0).all() and (points[0, 0, 5, :, 4:, 1] < 0).all()
    assert (points[0, 0, 5, 2:, :, 2] < 1.5).all() and (points[0, 0, 5, :2, :, 2] > 1.5).all()
    assert torch.allclose(rays[..., 0], torch.ones_like(rays[..., 0]))


def test_ground_prior_peaks_where_the_ray_meets_the_ground():
    cfg = tiny_config()
    lift = LiftSplat(cfg, 16)
    k, t = _front_camera(cfg)
    points, rays = lift.frustum((4, 8), (cfg.image.height, cfg.image.width), k, t)
    prior = lift.ground_prior(rays, t)[0, 0]  # (D, h, w)
    z = points[0, 0, :, :, :, 2]  # (D, h, w)
    below = rays[0, 0, :, :, 2] < -1e-3
    best = prior.argmax(dim=0)
    closest = z.abs().argmin(dim=0)
    assert below.any() and (~below).any()
    assert torch.equal(best[below], closest[below])
    assert (prior[:, ~below] == 0).all()  # sky rays: no prior


def test_splat_puts_context_in_the_cell_of_its_point():
    cfg = tiny_config()
    lift = LiftSplat(cfg, 16)
    nx, ny = cfg.bev.grid_shape()
    d = lift.num_depth
    volume = torch.zeros(1, 1, d, lift.channels, 1, 1)
    volume[0, 0, 3, 2] = 5.0
    points = torch.zeros(1, 1, d, 1, 1, 3)
    points[0, 0, :, 0, 0] = torch.tensor([10.0, -7.0, 0.0])
    points[0, 0, 0, 0, 0] = torch.tensor([200.0, 0.0, 0.0])  # out of the grid: dropped
    bev = lift.splat(volume, points, 1)
    ix = int((10.0 - cfg.bev.x_range[0]) // cfg.bev.resolution)
    iy = int((-7.0 - cfg.bev.y_range[0]) // cfg.bev.resolution)
    assert bev.shape == (1, lift.channels, nx, ny)
    assert bev[0, 2, ix, iy] == 5.0 and bev.sum() == 5.0


def test_sample_bev_reads_the_cell_at_an_ego_point():
    cfg = tiny_config().bev
    nx, ny = cfg.grid_shape()
    xs = cfg.x_range[0] + (torch.arange(nx) + 0.5) * cfg.resolution
    ys = cfg.y_range[0] + (torch.arange(ny) + 0.5) * cfg.resolution
    bev = torch.stack([xs[:, None].expand(nx, ny), ys[None, :].expand(nx, ny)])[None]  # channels = (x, y)
    pts = torch.tensor([[[6.0, 2.0], [30.0, -14.0], [-10.0, 22.0]]])
    out = sample_bev(bev, pts, cfg)
    assert torch.allclose(out, pts, atol=1e-5)
    assert torch.equal(sample_bev(bev, torch.tensor([[[500.0, 0.0]]]), cfg), torch.zeros(1, 1, 2))


# ----------------------------------------------------------------------------------------------------------------
# Planner


def _model_and_inputs(batch: int = 2, seed: int = 0):
    cfg = tiny_config()
    torch.manual_seed(seed)
    model = IRLVLAModel(cfg).eval()
    anchors = torch.stack([
        torch.stack([torch.linspace(2, 16, 8) * s, torch.linspace(0, c, 8), torch.linspace(0, c / 8, 8)], -1)
        for s, c in ((1, 0), (2, 0), (1.5, 4), (1.5, -4))])
    model.planner.set_anchors(anchors)
    g = torch.Generator().manual_seed(seed)
    n = len(cfg.image.cameras)
    k = torch.tensor([[16.0, 0, 16], [0, 16, 8], [0, 0, 1]]).expand(batch, n, 3, 3)
    t = torch.eye(4).expand(batch, n, 4, 4).clone()
    t[..., :3, :3] = torch.tensor([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    t[..., 2, 3] = 1.5
    inputs = {"images": torch.randint(0, 255, (batch, n, 3, cfg.image.height, cfg.image.width), generator=g,
                                      dtype=torch.uint8),
              "intrinsics": k, "cam2ego": t, "ego": torch.randn(batch, 4 * 7 + 4, generator=g)}
    return model, inputs


def test_plan_is_deterministic_and_batch_independent():
    model, inputs = _model_and_inputs(3)
    _, a = model.plan(inputs, torch.Generator().manual_seed(4))
    _, b = model.plan(inputs, torch.Generator().manual_seed(4))
    assert torch.equal(a.trajectory, b.trajectory) and a.trajectories.shape == (3, 4, 8, 3)
    one = {k: v[1:2] for k, v in inputs.items()}
    _, c = model.plan(one, torch.Generator().manual_seed(4))
    assert torch.allclose(c.trajectory[0], a.trajectory[1], atol=1e-4)
    assert torch.equal(a.trajectory, a.trajectories[torch.arange(3), a.best])


def test_sampled_chain_log_probs_are_reproduced_and_differentiable():
    model, inputs = _model_and_inputs(2)
    planner = model.planner
    with torch.no_grad():
        features = model.scene_features(inputs)
    sample = planner.sample_with_log_probs(features, torch.Generator().manual_seed(1), min_std=0.05)
    s = planner.cfg.inference_steps
    assert sample.chain.shape == (2, s + 1, 4, 8, 3) and sample.means.shape == (2, s, 4, 8, 3)
    assert sample.timesteps.tolist() == [50, 25, 0] and (sample.stds >= 0.05).all()
    assert sample.step_log_probs.shape == (2, s, 4) and sample.mode.shape == (2,)
    assert torch.allclose(sample.log_prob, sample.step_log_probs.sum((1, 2)) + sample.mode_log_prob)
    assert torch.allclose(planner.denormalize(sample.chain[:, -1]), sample.trajectories)
    again = planner.evaluate_log_probs(features, sample.chain, sample.mode, sample.timesteps, min_std=0.05)
    assert torch.allclose(again.log_prob, sample.log_prob, atol=1e-3)
    assert torch.allclose(again.means, sample.means, atol=1e-5)
    again.log_prob.sum().backward()
    grads = [p.grad for p in planner.layers.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    # A seeded generator reproduces the chain; the floor of the std holds on the last (mean = x0) step too.
    twice = planner.sample_with_log_probs(features, torch.Generator().manual_seed(1), min_std=0.05)
    assert torch.equal(twice.chain, sample.chain) and float(sample.stds[-1]) == pytest.approx(0.05)


def test_model_forward_backward_and_command_conditioning():
    from agents.vla.commands import PATH_COMMANDS, SPEED_COMMANDS

    model, inputs = _model_and_inputs(2)
    model.train()
    features, out = model(inputs, torch.Generator().manual_seed(0))
    cfg = model.config
    nx, ny = cfg.bev.grid_shape()
    assert features.seg_logits.shape == (2, 6, nx, ny) and features.det_boxes.shape == (2, 30, 5)
    assert features.context.shape == (2, 30 + cfg.heads.map_queries + 1, cfg.heads.d_model)
    assert len(out.x0) == cfg.planner.decoder_layers and out.x0[0].shape == (2, 4, 8, 3)
    loss = sum(x.square().mean() for x in out.x0) + features.seg_logits.mean() + features.speed_logits.mean()
    loss.backward()
    assert model.backbone.stem[0].conv.weight.grad is not None
    model.eval()
    speed = torch.nn.functional.one_hot(torch.tensor([2, 7]), len(SPEED_COMMANDS)).float()
    path = torch.nn.functional.one_hot(torch.tensor([5, 1]), len(PATH_COMMANDS)).float()
    with torch.no_grad():
        plain = model.scene_features(inputs)
        direct = model.scene_features(inputs, commands=(speed, path))
        swapped = model.condition(plain, (speed, path))
    assert torch.allclose(swapped.ego_token, direct.ego_token, atol=1e-5)
    assert not torch.allclose(plain.ego_token, direct.ego_token)
