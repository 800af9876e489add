"""Truncated-diffusion planner (DiffusionDrive, Liao et al. 2025) with a cascade decoder, and the stochastic
sampling path a DPPO-style PPO fine-tunes (Ren et al., "Diffusion Policy Policy Optimization", 2024).

* **Anchors**: K trajectories (8 poses x (x, y, heading)) from k-means on the training trajectories, kept in the
  state dict (``anchors`` buffer, metres).
* **Truncated diffusion**: trajectories are normalised per column (``norm_offset`` / ``norm_scale``); training
  noises the anchors to a random step t in [1, ``truncation_step``] of a linear-beta DDPM schedule and the decoder
  predicts the clean trajectory of every anchor (x0-prediction) and a confidence; at test time the anchors are
  noised to ``truncation_step`` and ``inference_steps`` DDIM steps (eta = 0, deterministic) lead to step 0.
* **Cascade decoder**: per layer, one query per anchor gets the encoded reference trajectory and the BEV
  features (plus the segmentation probabilities with ``read_segmentation``) bilinearly sampled at its 8 points and
  at ``lateral_offsets`` across the path at each point, attends to the other anchors, then to the scene context (agent
  queries, map queries, ego token); a FiLM of the diffusion time modulates it; it regresses an offset and a
  confidence logit. The first layer reads the noisy trajectory and offsets its anchor; each further layer reads
  and offsets the previous layer's prediction (detached).
* **Stochastic path** (:meth:`TrajectoryPlanner.sample_with_log_probs`): every denoising step is a Gaussian
  ``x_s ~ N(mean, std^2)`` with the DDIM(eta) mean and std, the std floored at ``min_std`` (also on the last step,
  whose mean is the predicted clean trajectory), and the executed candidate is drawn from the softmax of the final
  confidences. :meth:`TrajectoryPlanner.evaluate_log_probs` recomputes the same log-probabilities for a stored
  chain under the current parameters. The initial noisy anchors carry no parameters, so their density is left
  out (as in DPPO).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.vla.bev import sample_bev
from agents.vla.config import BEVConfig, PlannerConfig, SEG_CLASSES
from agents.vla.heads import mlp

if TYPE_CHECKING:
    from agents.vla.model import SceneFeatures

CLAMP = 3.0  # normalised units: noisy states are clipped here (DiffusionDrive clips to its normalised range)


class TimeEmbedding(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.d_model = d_model
        self.net = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.d_model // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]
        emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
        if emb.shape[-1] < self.d_model:
            emb = F.pad(emb, (0, self.d_model - emb.shape[-1]))
        return self.net(emb)


class CascadeLayer(nn.Module):
    def __init__(self, cfg: PlannerConfig, bev_channels: int):
        super().__init__()
        d, p = cfg.d_model, cfg.num_poses
        self.poses = p
        self.register_buffer("offsets", torch.tensor(cfg.lateral_offsets, dtype=torch.float32), persistent=False)
        self.traj_enc = mlp(p * 3, d, d)
        self.bev_enc = mlp(p * len(cfg.lateral_offsets) * bev_channels, d, d)
        self.self_attn = nn.MultiheadAttention(d, cfg.num_heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, cfg.num_heads, batch_first=True)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(4))
        self.film = nn.Linear(d, 2 * d)
        nn.init.zeros_(self.film.weight)  # starts as the identity: time modulation is learned, not imposed
        nn.init.zeros_(self.film.bias)
        self.ffn = mlp(d, d * cfg.ffn_mult, d)
        self.reg = mlp(d, d, p * 3)
        with torch.no_grad():  # small first offsets: the cascade starts close to its reference trajectory
            self.reg[-1].weight.mul_(0.1)
            self.reg[-1].bias.zero_()
        self.cls = mlp(d, d, 1)

    def forward(self, query, ref_norm, ref, base_norm, bev, bev_cfg, context, t_emb):
        """``ref_norm`` is read (encoded, BEV sampled around the points of ``ref``, metres / rad); ``base_norm`` is
        what the offset is added to."""
        b, k = ref_norm.shape[:2]
        left = torch.stack([-torch.sin(ref[..., 2]), torch.cos(ref[..., 2])], dim=-1)  # (B, K, P, 2)
        points = ref[..., None, :2] + self.offsets[:, None] * left[..., None, :]  # (B, K, P, O, 2)
        sampled = sample_bev(bev, points, bev_cfg)  # (B, K, P, O, C)
        q = query + self.traj_enc(ref_norm.reshape(b, k, -1)) + self.bev_enc(sampled.reshape(b, k, -1))
        h = self.norms[0](q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        h = self.norms[1](q)
        q = q + self.cross_attn(h, context, context, need_weights=False)[0]
        scale, shift = self.film(t_emb).chunk(2, dim=-1)
        q = q * (1 + scale[:, None]) + shift[:, None]
        q = q + self.ffn(self.norms[2](q))
        h = self.norms[3](q)
        x0 = base_norm + self.reg(h).view(b, k, self.poses, 3)
        return q, x0, self.cls(h)[..., 0]


@dataclass
class DecoderOutput:
    x0: list[torch.Tensor]  # per cascade layer (B, K, P, 3), normalised
    logits: list[torch.Tensor]  # per cascade layer (B, K)


@dataclass
class PlanOutput:
    trajectories: torch.Tensor  # (B, K, P, 3) metres / rad, ego frame
    logits: torch.Tensor  # (B, K) confidences (logits) of the last step
    scores: torch.Tensor  # (B, K) logits after the perception checks (== logits when disabled)
    best: torch.Tensor  # (B,) chosen candidate
    trajectory: torch.Tensor  # (B, P, 3) the chosen one


@dataclass
class SampleChain:
    """One stochastic denoising run. ``chain[:, 0]`` are the noised anchors, ``chain[:, -1]`` the final
    candidates (normalised units); means/stds are per step; log-probs sum over poses and columns."""

    timesteps: torch.Tensor  # (S + 1,) diffusion steps of the chain states, e.g. [50, 25, 0]
    chain: torch.Tensor  # (B, S + 1, K, P, 3)
    means: torch.Tensor  # (B, S, K, P, 3)
    stds: torch.Tensor  # (S,) per-step std (floored), shared by all elements of a step
    step_log_probs: torch.Tensor  # (B, S, K)
    logits: torch.Tensor  # (B, K) final confidences
    mode: torch.Tensor  # (B,) executed candidate
    mode_log_prob: torch.Tensor  # (B,)
    log_prob: torch.Tensor  # (B,) = step_log_probs.sum((1, 2)) + mode_log_prob
    trajectories: torch.Tensor  # (B, K, P, 3) metres
    trajectory: torch.Tensor  # (B, P, 3) metres, the executed candidate


@dataclass
class LogProbs:
    means: torch.Tensor
    stds: torch.Tensor
    step_log_probs: torch.Tensor
    logits: torch.Tensor
    mode_log_prob: torch.Tensor
    log_prob: torch.Tensor


class TrajectoryPlanner(nn.Module):
    def __init__(self, cfg: PlannerConfig, bev_cfg: BEVConfig, bev_channels: int, context_dim: int):
        super().__init__()
        self.cfg = cfg
        self.bev_cfg = bev_cfg
        d = cfg.d_model
        self.register_buffer("anchors", torch.zeros(cfg.num_anchors, cfg.num_poses, 3))
        self.register_buffer("norm_offset", torch.tensor(cfg.norm_offset, dtype=torch.float32), persistent=False)
        self.register_buffer("norm_scale", torch.tensor(cfg.norm_scale, dtype=torch.float32), persistent=False)
        betas = torch.linspace(cfg.beta_start, cfg.beta_end, cfg.train_timesteps, dtype=torch.float64)
        alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
        self.register_buffer("alpha_bar", alpha_bar.float(), persistent=False)  # index t, alpha_bar[0] = 1
        self.context_proj = nn.Linear(context_dim, d) if context_dim != d else nn.Identity()
        self.ego_proj = nn.Linear(context_dim, d)
        self.time = TimeEmbedding(d)
        sampled = bev_channels + (len(SEG_CLASSES) if cfg.read_segmentation else 0)
        self.layers = nn.ModuleList(CascadeLayer(cfg, sampled) for _ in range(cfg.decoder_layers))

    # ---- anchors and normalisation -------------------------------------------------------------------------

    def set_anchors(self, anchors: np.ndarray | torch.Tensor) -> None:
        anchors = torch.as_tensor(np.asarray(anchors), dtype=torch.float32)
        if tuple(anchors.shape) != tuple(self.anchors.shape):
            raise ValueError(f"anchors must have shape {tuple(self.anchors.shape)}, got {tuple(anchors.shape)}")
        self.anchors.copy_(anchors)

    def normalize(self, poses: torch.Tensor) -> torch.Tensor:
        return (poses - self.norm_offset) / self.norm_scale

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.norm_scale + self.norm_offset

    def inference_timesteps(self, steps: int | None = None) -> torch.Tensor:
        steps = steps or self.cfg.inference_steps
        return torch.linspace(self.cfg.truncation_step, 0, steps + 1).round().long()

    def noised_anchors(self, batch: int, t: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Anchors (normalised) noised to step ``t`` (B,); ``noise`` None keeps the scaled anchors."""
        a = self.normalize(self.anchors)[None].expand(batch, -1, -1, -1)
        ab = self.alpha_bar[t].view(-1, 1, 1, 1)
        x = ab.sqrt() * a
        if noise is not None:
            x = x + (1 - ab).sqrt() * noise
        return x.clamp(-CLAMP, CLAMP)

    # ---- decoder -------------------------------------------------------------------------------------------

    def context(self, features: "SceneFeatures") -> tuple[torch.Tensor, torch.Tensor]:
        ctx = self.context_proj(features.context)
        return ctx, self.ego_proj(features.ego_token)

    def sampled_map(self, features: "SceneFeatures") -> torch.Tensor:
        """What the cascade samples at trajectory points: the BEV features, plus the (detached) segmentation
        probabilities when ``read_segmentation``."""
        if not self.cfg.read_segmentation:
            return features.bev
        return torch.cat([features.bev, torch.sigmoid(features.seg_logits.detach()).to(features.bev.dtype)], dim=1)

    def decode(self, features: "SceneFeatures", x_t: torch.Tensor, t: torch.Tensor) -> DecoderOutput:
        """Every cascade layer's clean-trajectory prediction (normalised) and confidence for noisy ``x_t``."""
        ctx, ego = self.context(features)
        bev = self.sampled_map(features)
        t_emb = self.time(t)
        query = ego[:, None].expand(-1, x_t.shape[1], -1)
        ref = x_t
        # The first layer reads the noisy trajectory but predicts an offset to its (clean) anchor: cancelling
        # metres of noise through a residual on x_t is slow to learn, an anchor-relative offset is not.
        base = self.normalize(self.anchors)[None].expand(x_t.shape[0], -1, -1, -1)
        outs, logits = [], []
        for layer in self.layers:
            query, x0, logit = layer(query, ref, self.denormalize(ref), base, bev, self.bev_cfg, ctx, t_emb)
            outs.append(x0)
            logits.append(logit)
            ref = base = x0.detach()  # cascade: the next layer refines this one's prediction (DiffusionDrive)
        return DecoderOutput(outs, logits)

    # ---- training ------------------------------------------------------------------------------------------

    def forward_train(self, features: "SceneFeatures", generator: torch.Generator | None = None) -> DecoderOutput:
        """Decode anchors noised to random truncated steps; ``generator`` makes the noise reproducible."""
        b = features.bev.shape[0]
        dev = features.bev.device
        t = torch.randint(1, self.cfg.truncation_step + 1, (b,), generator=generator, device="cpu").to(dev)
        noise = torch.randn((b,) + tuple(self.anchors.shape), generator=generator, device="cpu").to(dev)
        return self.decode(features, self.noised_anchors(b, t, noise), t)

    # ---- deterministic inference ---------------------------------------------------------------------------

    def _ddim(self, x_t, x0, t: int, s: int, eta: float) -> tuple[torch.Tensor, float]:
        """DDIM(eta) mean and std of x_s given x_t and the predicted x0 (s = 0: the mean is x0, std 0)."""
        if s == 0:
            return x0, 0.0
        ab_t, ab_s = float(self.alpha_bar[t]), float(self.alpha_bar[s])
        eps = (x_t - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
        std = eta * math.sqrt((1 - ab_s) / (1 - ab_t)) * math.sqrt(1 - ab_t / ab_s)
        mean = math.sqrt(ab_s) * x0 + math.sqrt(max(1 - ab_s - std ** 2, 0.0)) * eps
        return mean, std

    def initial_noise(self, batch: int, generator: torch.Generator | None, device) -> torch.Tensor | None:
        """Per-sample noise drawn from a copy of ``generator``'s state, so a sample's noise does not depend on
        its position in the batch (batched and one-by-one inference agree)."""
        if not self.cfg.test_noise or generator is None:
            return None
        state = generator.get_state()
        noise = []
        for _ in range(batch):
            generator.set_state(state)
            noise.append(torch.randn(tuple(self.anchors.shape), generator=generator))
        return torch.stack(noise).to(device)

    @torch.no_grad()
    def plan(self, features: "SceneFeatures", generator: torch.Generator | None = None,
             seg_logits: torch.Tensor | None = None, steps: int | None = None) -> PlanOutput:
        b = features.bev.shape[0]
        dev = features.bev.device
        ts = self.inference_timesteps(steps)
        x = self.noised_anchors(b, ts[0].repeat(b).to(dev), self.initial_noise(b, generator, dev))
        logits = None
        for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
            out = self.decode(features, x, torch.full((b,), t, device=dev, dtype=torch.long))
            x0, logits = out.x0[-1], out.logits[-1]
            x, _ = self._ddim(x, x0, t, s, 0.0)
            x = x.clamp(-CLAMP, CLAMP)
        trajectories = self.denormalize(x)
        scores = self.rerank(trajectories, logits, seg_logits)
        best = scores.argmax(dim=1)
        return PlanOutput(trajectories, logits, scores, best, trajectories[torch.arange(b, device=dev), best])

    def rerank(self, trajectories: torch.Tensor, logits: torch.Tensor, seg_logits: torch.Tensor | None):
        """Confidence logits minus the perception checks: mean log-probability of leaving the predicted drivable
        area and of running into predicted vehicles / pedestrians along each candidate."""
        cfg = self.cfg
        if seg_logits is None or (cfg.drivable_penalty == 0 and cfg.collision_penalty == 0):
            return logits
        probs = torch.sigmoid(seg_logits)
        at = sample_bev(probs, trajectories[..., :2], self.bev_cfg)  # (B, K, P, classes)
        drivable = at[..., SEG_CLASSES.index("drivable_area")].clamp(1e-4, 1.0)
        occupied = torch.maximum(at[..., SEG_CLASSES.index("vehicles")], at[..., SEG_CLASSES.index("pedestrians")])
        free = (1 - occupied).clamp(1e-4, 1.0)
        return logits + cfg.drivable_penalty * drivable.log().mean(-1) + cfg.collision_penalty * free.log().mean(-1)

    # ---- stochastic path for PPO ---------------------------------------------------------------------------

    def _step_distribution(self, features, x, t: int, s: int, eta: float, min_std: float):
        b, dev = x.shape[0], x.device
        out = self.decode(features, x, torch.full((b,), t, device=dev, dtype=torch.long))
        mean, std = self._ddim(x, out.x0[-1], t, s, eta)
        return mean, max(std, min_std), out.logits[-1]

    def sample_with_log_probs(self, features: "SceneFeatures", generator: torch.Generator | None = None, *,
                              steps: int | None = None, eta: float = 1.0, min_std: float | None = None,
                              temperature: float = 1.0, deterministic_mode: bool = False) -> SampleChain:
        """Sample a denoising chain and the executed candidate; differentiable in the parameters through the
        means and logits (the sampled states themselves are detached, as in DPPO)."""
        min_std = self.cfg.min_std if min_std is None else float(min_std)
        b, dev = features.bev.shape[0], features.bev.device
        ts = self.inference_timesteps(steps)
        shape = (b,) + tuple(self.anchors.shape)
        x = self.noised_anchors(b, ts[0].repeat(b).to(dev),
                                torch.randn(shape, generator=generator, device="cpu").to(dev))
        chain, means, stds, logps = [x], [], [], []
        logits = None
        for t, s in zip(ts[:-1].tolist(), ts[1:].tolist()):
            mean, std, logits = self._step_distribution(features, x, t, s, eta, min_std)
            x = (mean + std * torch.randn(shape, generator=generator, device="cpu").to(dev)).detach()
            logps.append(_gaussian_log_prob(x, mean, std))
            chain.append(x)
            means.append(mean)
            stds.append(std)
        scaled = logits / temperature
        if deterministic_mode:
            mode = scaled.argmax(dim=1)
        else:
            mode = torch.multinomial(scaled.softmax(dim=1).detach().cpu().float(), 1, generator=generator)[:, 0]
            mode = mode.to(dev)
        mode_logp = scaled.log_softmax(dim=1).gather(1, mode[:, None])[:, 0]
        step_logps = torch.stack(logps, dim=1)
        trajectories = self.denormalize(x)
        return SampleChain(ts, torch.stack(chain, dim=1), torch.stack(means, dim=1),
                           torch.tensor(stds, device=dev), step_logps, logits, mode, mode_logp,
                           step_logps.sum(dim=(1, 2)) + mode_logp, trajectories,
                           trajectories[torch.arange(b, device=dev), mode])

    def evaluate_log_probs(self, features: "SceneFeatures", chain: torch.Tensor, mode: torch.Tensor,
                           timesteps: torch.Tensor, *, eta: float = 1.0, min_std: float | None = None,
                           temperature: float = 1.0) -> LogProbs:
        """Log-probabilities of a stored chain (B, S + 1, K, P, 3) and executed ``mode`` (B,) under the current
        parameters (same ``eta`` / ``min_std`` / ``temperature`` as when sampling)."""
        min_std = self.cfg.min_std if min_std is None else float(min_std)
        means, stds, logps = [], [], []
        logits = None
        ts = timesteps.tolist()
        for i, (t, s) in enumerate(zip(ts[:-1], ts[1:])):
            mean, std, logits = self._step_distribution(features, chain[:, i], t, s, eta, min_std)
            logps.append(_gaussian_log_prob(chain[:, i + 1], mean, std))
            means.append(mean)
            stds.append(std)
        scaled = logits / temperature
        mode_logp = scaled.log_softmax(dim=1).gather(1, mode[:, None])[:, 0]
        step_logps = torch.stack(logps, dim=1)
        return LogProbs(torch.stack(means, dim=1), torch.tensor(stds, device=chain.device), step_logps, logits,
                        mode_logp, step_logps.sum(dim=(1, 2)) + mode_logp)


def _gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Sum over poses and columns of log N(x | mean, std^2) -> (B, K)."""
    var = std ** 2
    lp = -0.5 * (x - mean) ** 2 / var - math.log(std) - 0.5 * math.log(2 * math.pi)
    return lp.sum(dim=(-2, -1))
