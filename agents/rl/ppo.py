"""PPO on the diffusion planner of the IL policy, rewarded by the reward world model (RWM) or by the exact EPDMS
scorer; no simulator. One file in the spirit of cleanrl's ``ppo_continuous_action.py``: an ``Args`` config, a
rollout, then ``update_epochs`` passes of minibatch updates with the clipped surrogate, logged per iteration.

What differs from cleanrl's Gym loop, and why:

* **The decision process is the denoising chain** (DPPO, Ren et al. 2024). The planner turns K noised anchors
  into K candidate trajectories in S stochastic DDIM steps ``x_s ~ N(mean_theta(x_t, t), std_s^2)`` (std floored
  at ``min_std``: the exploration noise), then executes one candidate drawn from the softmax of its confidences.
  Each (step, anchor) Gaussian is one PPO action with its own ratio, as DPPO clips per denoising step rather
  than the product over the chain (whose ratio would explode). The sampled states are stored; re-evaluating their
  log-probabilities under the current parameters gives the ratios.
* **One step, no discounting.** A scene is a one-step bandit: the reward of a candidate is its (predicted or
  exact) score, so the return is the reward and there is no GAE.
* **Every candidate is rewarded.** The RWM (and the exact scorer) score a whole (K, 8, 3) batch per scene at
  once, and at test time the planner may pick any of its K candidates, so every anchor's denoising path is
  credited with its own candidate's reward (the other anchors' states, which it attends to, are treated as part
  of its state). The executed-candidate choice is a categorical action whose every outcome's reward is known: its
  clipped surrogate is taken in expectation over the K candidates (``sum_k pi_old(k) * clip-term_k``, the same
  expectation as from one draw, without the draw's variance); this trains the confidences the test-time planner
  ranks by.
* **Advantages are normalised per scene group**: the ``samples_per_scene`` x K candidates of one scene. Centring on
  the group mean compares candidates of the same scene only (an easy scene must not look like a good action) and
  dividing by the group std (floored: a scene whose candidates all score alike has nothing to teach and must not
  have its noise amplified) gives every scene the same weight. ``baseline="value"`` centres on the value head
  instead (classic PPO). The denoising steps' advantages are centred per anchor by default
  (``step_baseline="anchor"``: on the mean of that anchor's candidates over the scene's chains): most of a
  scene's reward spread is *between* anchors (a left-turn anchor on a straight road scores low whatever its
  noise), which says nothing about how to move that anchor's denoising means; the choice between anchors is the
  executed-candidate action's job.
* **Value head on the frozen scene features** (mean BEV token, ego token), regressed on the candidates' rewards;
  its explained variance says how much of the reward the scene alone predicts.
* **KL toward the frozen IL policy**: per (step, anchor) the closed-form KL between the current and the IL
  Gaussians on the stored state (same std, so ``|mean - mean_IL|^2 / 2 std^2``) plus the categorical KL of the
  confidences; it keeps the fine-tuned planner near its imitation start, where the RWM's reward is trustworthy.
* **Frozen trunk.** PPO changes the planner only (and trains the value head); the perception trunk is frozen,
  so the scene features are computed once per scene and the update touches only the cheap decoder.
* **Distributed** (``torchrun``): every process samples its own scenes with its own generator, gradients are
  averaged over processes (one flat all-reduce per minibatch, gloo on CPU) and the logged numbers are averaged.
* **Resumable, atomic checkpoints** every ``checkpoint_every`` iterations (parameters, optimiser, every process'
  RNG states), and a CSV log truncated back to the checkpoint on resume, so an interrupted run continues with the
  same numbers it would have produced uninterrupted.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from agents.vla.model import SceneFeatures
from agents.vla.planner import TrajectoryPlanner
from irlvla_bench.io.atomic import atomic_path, write_text_atomic

TRAIN_FORMAT = "irlvla-rl-train/v1"
CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.csv"
REWARD_KINDS = ("rwm", "exact")
BASELINES = ("group", "value")
STEP_BASELINES = ("anchor", "group")
# Args fields that may change when a run is resumed (they do not change what an iteration computes).
RESUMABLE_CHANGES = ("iterations", "checkpoint_every", "threads", "eval_every")
# The planner and value head read these SceneFeatures fields; the others are replaced by empty tensors in the
# stored features (the depth distributions are the biggest tensors of a scene and PPO never reads them).
FEATURE_FIELDS = ("bev", "tokens", "agent_queries", "map_queries", "ego_token", "seg_logits")
LOG_COLUMNS = (
    "iteration", "candidates", "reward_mean", "reward_std", "executed_reward", "executed_exact_epdms",
    "eval_reward", "eval_exact_epdms", "policy_loss", "mode_loss", "value_loss", "kl_il", "kl_il_mode",
    "approx_kl", "old_approx_kl", "clipfrac", "mode_approx_kl", "mode_clipfrac", "entropy", "mode_entropy",
    "explained_variance", "epochs", "learning_rate", "seconds",
)


@dataclass(frozen=True)
class Args:
    """Everything an iteration computes from. Paths (``il``, ``rwm``, ``data``) are used by ``run`` only."""

    # Inputs (``run``): IL checkpoint, RWM checkpoint, dataset root and training split, metric-cache folder.
    il: str = ""
    rwm: str = ""
    data: str = ""
    split: str = "navtrain"
    cache_dir: str = ""  # scoring cases of the split; "" = <out>/../metric_cache/<split>
    max_scenes: int = 0  # 0: every scene of the split with 8 future frames
    # Run
    seed: int = 0
    iterations: int = 40
    threads: int = 0  # torch CPU threads per process, 0: torch's default
    checkpoint_every: int = 1
    eval_every: int = 5  # greedy (test-time) planner on eval_scenes every N iterations, 0: never
    eval_scenes: int = 32  # N training scenes spread over the split
    # Reward: "rwm" (the reward world model's prediction) or "exact" (the EPDMS scorer in labelling mode).
    reward: str = "rwm"
    # Empty: the (predicted) EPDMS. Otherwise sum of weight x value over (name, weight) pairs, names among the
    # sub-metrics, "extended_comfort" and "epdms".
    reward_weights: tuple[tuple[str, float], ...] = ()
    exact_logging: bool = True  # exact EPDMS of the executed candidates in the log (cheap: ~0.1 ms each)
    # EC against the policy's own (greedy) plan at the scene's previous frame, as the evaluator's two-stage EC
    # does, where that frame is a training scene; else (and when False) against the expert's previous plan.
    own_previous_plan: bool = True
    # Rollout: per process and iteration, scenes x samples_per_scene denoising chains of K candidates each.
    scenes_per_iteration: int = 16
    samples_per_scene: int = 2
    denoising_steps: int = 0  # 0: the planner's inference_steps
    eta: float = 1.0  # DDIM eta of the stochastic chain (1: DDPM-like posterior std)
    min_std: float = 0.03  # std floor in normalised units (0.03 = 0.9 m along, 0.6 m across, 0.03 rad)
    temperature: float = 1.0  # of the executed-candidate softmax
    # PPO
    learning_rate: float = 1e-4  # planner (measured on the generated world: approx-KL ~0.015, clipfrac ~0.15)
    value_learning_rate: float = 1e-3
    anneal_lr: bool = False
    update_epochs: int = 4
    num_minibatches: int = 4
    clip_coef: float = 0.2
    mode_coef: float = 1.0  # weight of the executed-candidate (confidence) surrogate
    baseline: str = "group"  # "group": group mean; "value": the value head
    # Centre of the denoising steps' advantages: "anchor" = the mean of the same anchor's candidates over the
    # scene's samples_per_scene chains (needs >= 2), "group" = as for the executed-candidate choice.
    step_baseline: str = "anchor"
    adv_std_floor: float = 0.02  # reward units: floor of the group std that advantages are divided by
    ent_coef: float = 0.0  # on the confidence entropy (the Gaussian entropy is fixed by the std schedule)
    vf_coef: float = 0.5
    kl_coef: float = 0.01
    max_grad_norm: float = 1.0
    target_kl: float | None = None
    value_hidden: int = 128

    def __post_init__(self) -> None:
        if self.reward not in REWARD_KINDS:
            raise ValueError(f"reward must be one of {REWARD_KINDS}, got {self.reward!r}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.step_baseline not in STEP_BASELINES:
            raise ValueError(f"step_baseline must be one of {STEP_BASELINES}, got {self.step_baseline!r}")
        if self.step_baseline == "anchor" and self.samples_per_scene < 2:
            raise ValueError("step_baseline 'anchor' compares a scene's chains anchor by anchor: it needs "
                             "samples_per_scene >= 2")
        for name in ("iterations", "scenes_per_iteration", "samples_per_scene", "update_epochs", "num_minibatches",
                     "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_minibatches > self.scenes_per_iteration * self.samples_per_scene:
            raise ValueError("num_minibatches exceeds the chains per iteration (scenes_per_iteration x "
                             "samples_per_scene)")
        if self.min_std <= 0 or self.temperature <= 0:
            raise ValueError("min_std and temperature must be positive")
        object.__setattr__(self, "reward_weights", tuple((str(k), float(w)) for k, w in self.reward_weights))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Args":
        from irlvla_bench.dataclass_dict import dataclass_from_dict

        return dataclass_from_dict(cls, data)


# ----------------------------------------------------------------------------------------------------------------
# The problem: frozen scene features and a reward over candidate poses


class RewardFn(Protocol):
    def __call__(self, scenes: np.ndarray, poses: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        """(n,) scene indices, (n, M, 8, 3) ego-frame candidate poses and optionally (n, 8, 3) the policy's plans at
        each scene's previous frame (NaN rows: none; see ``agents.rl.rewards``) -> (n, M) rewards (float64)."""


@dataclass
class Problem:
    """What PPO trains on: ``features`` of N scenes (stored, see FEATURE_FIELDS), the reward, optionally the exact
    EPDMS (same signature) for logging when the reward is the RWM's, and ``previous`` (N,): the index of each
    scene's previous frame (0.5 s earlier) among the scenes, -1 for none."""

    features: SceneFeatures
    reward: RewardFn
    exact_epdms: RewardFn | None = None
    tokens: Sequence[str] = ()
    previous: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.features.bev.shape[0])


def slim_features(features: SceneFeatures) -> SceneFeatures:
    """A copy holding only what PPO reads (FEATURE_FIELDS), detached; other fields become (B, 0) tensors."""
    b = features.bev.shape[0]
    values = {f.name: (getattr(features, f.name).detach() if f.name in FEATURE_FIELDS
                       else features.bev.new_zeros(b, 0)) for f in fields(SceneFeatures)}
    return SceneFeatures(**values)


def select_features(features: SceneFeatures, index: torch.Tensor | np.ndarray) -> SceneFeatures:
    index = torch.as_tensor(np.asarray(index), dtype=torch.long)
    return SceneFeatures(**{f.name: getattr(features, f.name)[index] for f in fields(SceneFeatures)})


def cat_features(parts: Sequence[SceneFeatures]) -> SceneFeatures:
    return SceneFeatures(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(SceneFeatures)})


# ----------------------------------------------------------------------------------------------------------------
# Policy: the planner being fine-tuned plus a value head


class PPOPolicy(nn.Module):
    def __init__(self, planner: TrajectoryPlanner, feature_dim: int, hidden: int = 128):
        super().__init__()
        self.planner = planner
        self.value = nn.Sequential(nn.Linear(feature_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                   nn.Linear(hidden, 1))

    def value_of(self, features: SceneFeatures) -> torch.Tensor:
        """(B,) predicted reward of a scene's candidates."""
        return self.value(features.pooled().detach())[:, 0]


# ----------------------------------------------------------------------------------------------------------------
# Small pieces with known answers (tested on constructed numbers)


def group_advantages(rewards: torch.Tensor, baseline: torch.Tensor | None = None,
                     std_floor: float = 0.0) -> torch.Tensor:
    """(n, M) rewards of n scene groups -> advantages: centred on the group mean (or on ``baseline`` (n,)) and
    divided by max(group std, ``std_floor``) (population std, so a group of two is +-1)."""
    centre = rewards.mean(dim=1, keepdim=True) if baseline is None else baseline[:, None]
    scale = rewards.std(dim=1, unbiased=False, keepdim=True).clamp_min(max(std_floor, 1e-12))
    return (rewards - centre) / scale


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip: float) -> torch.Tensor:
    """Elementwise PPO loss ``max(-A r, -A clip(r, 1 - c, 1 + c))`` (pessimistic bound; minimise its mean)."""
    return torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip))


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    var = float(np.var(target))
    return float("nan") if var == 0.0 else 1.0 - float(np.var(target - predicted)) / var


def gaussian_entropy(stds: torch.Tensor, dims: int) -> float:
    """Entropy of one candidate's chain: sum over steps of ``dims`` independent Gaussians of std ``stds[s]``."""
    return float((dims * (0.5 * math.log(2 * math.pi * math.e) + torch.log(stds))).sum())


# ----------------------------------------------------------------------------------------------------------------
# Rollout


@dataclass
class Rollout:
    scenes: np.ndarray  # (n,) scene indices of the groups
    chain_scene: torch.Tensor  # (B,) scene index of every chain, B = n x samples_per_scene
    timesteps: torch.Tensor  # (S + 1,)
    chain: torch.Tensor  # (B, S + 1, K, P, 3) stored states (normalised)
    mode: torch.Tensor  # (B,) executed candidate
    step_log_probs: torch.Tensor  # (B, S, K) at sampling
    mode_log_probs: torch.Tensor  # (B, K) log-softmax of the confidences at sampling
    il_means: torch.Tensor  # (B, S, K, P, 3) the frozen IL policy's means on the stored states
    il_mode_log_probs: torch.Tensor  # (B, K)
    stds: torch.Tensor  # (S,)
    rewards: torch.Tensor  # (B, K)
    values: torch.Tensor  # (n,) value head at sampling
    advantages: torch.Tensor  # (B, K) group-centred (the executed-candidate choice)
    step_advantages: torch.Tensor  # (B, K) for the denoising steps (see Args.step_baseline)
    executed_exact: np.ndarray | None  # (n, samples_per_scene) exact EPDMS of the executed candidates


def _sampling_kwargs(args: Args) -> dict:
    return {"steps": args.denoising_steps or None, "eta": args.eta, "min_std": args.min_std,
            "temperature": args.temperature}


def previous_plans(planner: TrajectoryPlanner, problem: Problem, scenes: np.ndarray, seed: int) -> np.ndarray | None:
    """(n, 8, 3) the planner's deterministic plan at each scene's previous frame (NaN rows where it has none), or
    None when the problem has no previous frames. ``seed`` draws the anchor noise, as the agent's seed does."""
    if problem.previous is None:
        return None
    prev = problem.previous[scenes]
    have = prev >= 0
    out = np.full((len(scenes), 8, 3), np.nan)
    if have.any():
        out[have] = greedy_trajectories(planner, select_features(problem.features, prev[have]), seed)
    return out


@torch.no_grad()
def collect(args: Args, policy: PPOPolicy, reference: TrajectoryPlanner, problem: Problem, scenes: np.ndarray,
            generator: torch.Generator) -> Rollout:
    g = args.samples_per_scene
    n = len(scenes)
    previous = None
    if args.own_previous_plan:
        # Fresh anchor noise every iteration: the evaluator plans the previous frame with its own seed, so the
        # policy should be consistent with itself whatever that noise.
        seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
        previous = previous_plans(policy.planner, problem, scenes, seed)
    chain_scene = torch.as_tensor(np.repeat(scenes, g), dtype=torch.long)
    features = select_features(problem.features, chain_scene)
    kw = _sampling_kwargs(args)
    sample = policy.planner.sample_with_log_probs(features, generator, **kw)
    ref = reference.evaluate_log_probs(features, sample.chain, sample.mode, sample.timesteps, eta=args.eta,
                                       min_std=args.min_std, temperature=args.temperature)
    k = sample.trajectories.shape[1]
    poses = sample.trajectories.reshape(n, g * k, *sample.trajectories.shape[2:]).double().numpy()
    rewards = torch.as_tensor(np.asarray(problem.reward(scenes, poses, previous), dtype=np.float64),
                              dtype=torch.float32)
    if rewards.shape != (n, g * k):
        raise ValueError(f"the reward returned shape {tuple(rewards.shape)}, expected {(n, g * k)}")
    values = policy.value_of(select_features(problem.features, scenes))
    advantages = group_advantages(rewards, values if args.baseline == "value" else None, args.adv_std_floor)
    if args.step_baseline == "anchor":
        per_anchor = rewards.reshape(n, g, k)
        scale = rewards.std(dim=1, unbiased=False).clamp_min(max(args.adv_std_floor, 1e-12))
        step_advantages = (per_anchor - per_anchor.mean(dim=1, keepdim=True)) / scale[:, None, None]
    else:
        step_advantages = advantages
    executed_exact = None
    if problem.exact_epdms is not None and args.exact_logging:
        executed = sample.trajectory.reshape(n, g, *sample.trajectory.shape[1:]).double().numpy()
        executed_exact = np.asarray(problem.exact_epdms(scenes, executed, previous), dtype=np.float64)
    return Rollout(
        scenes=np.asarray(scenes), chain_scene=chain_scene, timesteps=sample.timesteps, chain=sample.chain,
        mode=sample.mode, step_log_probs=sample.step_log_probs,
        mode_log_probs=(sample.logits / args.temperature).log_softmax(dim=1),
        il_means=ref.means, il_mode_log_probs=(ref.logits / args.temperature).log_softmax(dim=1),
        stds=sample.stds, rewards=rewards.reshape(n * g, k), values=values,
        advantages=advantages.reshape(n * g, k), step_advantages=step_advantages.reshape(n * g, k),
        executed_exact=executed_exact,
    )


# ----------------------------------------------------------------------------------------------------------------
# Update


@dataclass
class LossTerms:
    loss: torch.Tensor
    policy_loss: torch.Tensor
    mode_loss: torch.Tensor
    value_loss: torch.Tensor
    kl_il: torch.Tensor
    kl_il_mode: torch.Tensor
    mode_entropy: torch.Tensor
    approx_kl: torch.Tensor
    old_approx_kl: torch.Tensor
    clipfrac: torch.Tensor
    mode_approx_kl: torch.Tensor
    mode_clipfrac: torch.Tensor
    max_ratio_error: torch.Tensor  # max |ratio - 1| over the minibatch (0 before the first step: tested)


def ppo_losses(args: Args, policy: PPOPolicy, problem: Problem, rollout: Rollout, mb: np.ndarray) -> LossTerms:
    """The loss of minibatch ``mb`` (chain indices) and its diagnostics."""
    idx = torch.as_tensor(mb, dtype=torch.long)
    features = select_features(problem.features, rollout.chain_scene[idx])
    new = policy.planner.evaluate_log_probs(features, rollout.chain[idx], rollout.mode[idx], rollout.timesteps,
                                            eta=args.eta, min_std=args.min_std, temperature=args.temperature)
    adv = rollout.advantages[idx]  # (mb, K)

    # Denoising steps: one clipped ratio per (chain, step, anchor), the anchor's advantage on every step.
    logratio = new.step_log_probs - rollout.step_log_probs[idx]
    ratio = logratio.exp()
    policy_loss = clipped_surrogate(ratio, rollout.step_advantages[idx][:, None, :], args.clip_coef).mean()

    # Executed-candidate choice: the clipped surrogate in expectation over the old softmax.
    new_mode = (new.logits / args.temperature).log_softmax(dim=1)
    old_mode = rollout.mode_log_probs[idx]
    mode_logratio = new_mode - old_mode
    mode_ratio = mode_logratio.exp()
    old_p = old_mode.exp()
    mode_loss = (old_p * clipped_surrogate(mode_ratio, adv, args.clip_coef)).sum(dim=1).mean()
    new_p = new_mode.exp()
    mode_entropy = -(new_p * new_mode).sum(dim=1).mean()

    # KL toward the frozen IL policy on the stored states: Gaussians of equal std, and the confidences.
    var = (new.stds ** 2).view(1, -1, 1, 1, 1)
    kl_il = ((new.means - rollout.il_means[idx]) ** 2 / (2 * var)).sum(dim=(-2, -1)).mean()
    kl_il_mode = (new_p * (new_mode - rollout.il_mode_log_probs[idx])).sum(dim=1).mean()

    values = policy.value_of(features)
    value_loss = 0.5 * ((values[:, None] - rollout.rewards[idx]) ** 2).mean()

    loss = (policy_loss + args.mode_coef * mode_loss - args.ent_coef * mode_entropy + args.vf_coef * value_loss
            + args.kl_coef * (kl_il + kl_il_mode))
    with torch.no_grad():
        # http://joschu.net/blog/kl-approx.html, as cleanrl logs it
        approx_kl = ((ratio - 1) - logratio).mean()
        old_approx_kl = (-logratio).mean()
        clipfrac = ((ratio - 1.0).abs() > args.clip_coef).float().mean()
        mode_approx_kl = (old_p * ((mode_ratio - 1) - mode_logratio)).sum(dim=1).mean()
        mode_clipfrac = (old_p * ((mode_ratio - 1.0).abs() > args.clip_coef).float()).sum(dim=1).mean()
        max_ratio_error = (ratio - 1.0).abs().max()
    return LossTerms(loss, policy_loss, mode_loss, value_loss, kl_il, kl_il_mode, mode_entropy, approx_kl,
                     old_approx_kl, clipfrac, mode_approx_kl, mode_clipfrac, max_ratio_error)


def _allreduce_mean_(tensors: Sequence[torch.Tensor], world: int) -> None:
    if world <= 1:
        return
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def update(args: Args, policy: PPOPolicy, optimizer: torch.optim.Optimizer, problem: Problem, rollout: Rollout,
           rng: np.random.Generator, world: int = 1) -> dict[str, float]:
    """``update_epochs`` passes over the rollout's chains in ``num_minibatches`` shuffled minibatches."""
    params = [p for p in policy.parameters() if p.requires_grad]
    for p in params:
        # Parameters off the loss' path (e.g. the first cascade layer's confidence head) get zero gradients, so
        # that every process all-reduces the same flat vector.
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    batch = rollout.chain.shape[0]
    sums: dict[str, float] = {}
    count = 0
    epochs = 0
    last_kl = 0.0
    for _ in range(args.update_epochs):
        epochs += 1
        kls = []
        for mb in np.array_split(rng.permutation(batch), args.num_minibatches):
            terms = ppo_losses(args, policy, problem, rollout, mb)
            optimizer.zero_grad(set_to_none=False)
            terms.loss.backward()
            _allreduce_mean_([p.grad for p in params], world)
            nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            optimizer.step()
            for name in ("policy_loss", "mode_loss", "value_loss", "kl_il", "kl_il_mode", "mode_entropy",
                         "approx_kl", "old_approx_kl", "clipfrac", "mode_approx_kl", "mode_clipfrac"):
                sums[name] = sums.get(name, 0.0) + float(getattr(terms, name).detach())
            kls.append(float(terms.approx_kl))
            count += 1
        last_kl = float(np.mean(kls))
        if args.target_kl is not None:
            # Every process must take the same decision, or the next all-reduce would hang.
            kl = torch.tensor([last_kl])
            _allreduce_mean_([kl], world)
            if float(kl) > args.target_kl:
                break
    stats = {k: v / count for k, v in sums.items()}
    stats["epochs"] = float(epochs)
    return stats


# ----------------------------------------------------------------------------------------------------------------
# Greedy (test-time) evaluation: the deterministic planner the agent runs


@torch.no_grad()
def greedy_trajectories(planner: TrajectoryPlanner, features: SceneFeatures, seed: int) -> np.ndarray:
    """(n, 8, 3) the deterministic plan (DDIM eta = 0, argmax confidence) with the agent's seeded anchor noise."""
    out = planner.plan(features, torch.Generator().manual_seed(seed), seg_logits=features.seg_logits)
    return out.trajectory.double().numpy()


def greedy_scores(args: Args, planner: TrajectoryPlanner, problem: Problem,
                  scenes: np.ndarray) -> tuple[float, float]:
    if len(scenes) == 0:
        return float("nan"), float("nan")
    poses = greedy_trajectories(planner, select_features(problem.features, scenes), args.seed)[:, None]
    # The previous frames get other anchor noise than the current ones, as per-token seeds give them.
    previous = previous_plans(planner, problem, scenes, args.seed + 1) if args.own_previous_plan else None
    reward = float(np.mean(problem.reward(scenes, poses, previous)))
    exact = (float(np.mean(problem.exact_epdms(scenes, poses, previous))) if problem.exact_epdms is not None
             else float("nan"))
    return reward, exact


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints and the log


def rng_state(generator: torch.Generator, rng: np.random.Generator) -> dict:
    return {"rollout": generator.get_state(), "numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def set_rng_state(state: dict, generator: torch.Generator, rng: np.random.Generator) -> None:
    generator.set_state(state["rollout"])
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Atomic: a reader (or a resume after a kill) sees the previous checkpoint or the complete new one."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict:
    payload = torch.load(path, map_location="cpu", weights_only=True)  # plain data only: no code from the file
    if not isinstance(payload, dict) or payload.get("format") != TRAIN_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: not an RL training checkpoint (format {found!r}, expected {TRAIN_FORMAT!r})")
    return payload


def check_resume(saved: Args, current: Args, path: Path) -> None:
    """A resumed run must compute what the interrupted one would have: only RESUMABLE_CHANGES may differ."""
    a, b = saved.to_dict(), current.to_dict()
    changed = [k for k in a if k not in RESUMABLE_CHANGES and a[k] != b[k]]
    if changed:
        details = ", ".join(f"{k}: {a[k]!r} -> {b[k]!r}" for k in changed)
        raise ValueError(f"{path}: cannot resume with different settings ({details}); use a new --out folder")


def read_log(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_log(path: Path, rows: list[dict]) -> None:
    lines = [",".join(LOG_COLUMNS)]
    for row in rows:
        lines.append(",".join(_fmt(row.get(c, "")) for c in LOG_COLUMNS))
    write_text_atomic(path, "\n".join(lines) + "\n")


def _fmt(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


# ----------------------------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    out_dir: Path
    iteration: int
    rows: list[dict] = field(default_factory=list)
    resumed_from: int = 0


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(args: Args, policy: PPOPolicy, reference: TrajectoryPlanner, problem: Problem, out_dir: str | Path, *,
          on_iteration: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Run (or resume) PPO until ``args.iterations``; ``out_dir`` holds ``checkpoint.pt`` and ``log.csv``.

    ``policy.planner`` starts as a copy of ``reference`` (the frozen IL planner); on resume its state, the value
    head, the optimiser and the RNG states come from the checkpoint."""
    rank, world = _distributed()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / CHECKPOINT_NAME, out / LOG_NAME
    reference.eval().requires_grad_(False)
    policy.eval()  # no dropout / batch statistics anywhere in the update: sampling and re-evaluation agree

    # TRY NOT TO MODIFY: seeding (one stream per process; every stream is checkpointed)
    generator = torch.Generator().manual_seed(args.seed * 7919 + rank)
    rng = np.random.default_rng([args.seed, rank])
    torch.manual_seed(args.seed + rank)
    optimizer = torch.optim.Adam([
        {"params": list(policy.planner.parameters()), "lr": args.learning_rate},
        {"params": list(policy.value.parameters()), "lr": args.value_learning_rate},
    ], eps=1e-5)
    base_lrs = [args.learning_rate, args.value_learning_rate]

    start = 0
    rows: list[dict] = []
    if ckpt_path.exists():
        payload = load_checkpoint(ckpt_path)
        check_resume(Args.from_dict(payload["args"]), args, ckpt_path)
        if payload["world_size"] != world:
            raise ValueError(f"{ckpt_path}: written by {payload['world_size']} process(es), resumed with {world}; "
                             "resume with the same number of processes (the RNG streams are per process)")
        policy.load_state_dict(payload["policy"])
        optimizer.load_state_dict(payload["optimizer"])
        set_rng_state(payload["rng"][rank], generator, rng)
        start = int(payload["iteration"])
        rows = [r for r in read_log(log_path) if int(r["iteration"]) <= start]
        if rank == 0:
            write_log(log_path, rows)  # drop rows of the iteration that was running when the run stopped
    elif rank == 0:
        write_log(log_path, [])

    n_scenes = len(problem)
    # Spread over the split: consecutive scenes of one log are near-duplicates.
    eval_set = np.unique(np.linspace(0, n_scenes - 1, min(args.eval_scenes, n_scenes)).round().astype(np.int64))
    for iteration in range(start + 1, args.iterations + 1):
        t0 = time.perf_counter()
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.iterations
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = frac * lr
        eval_reward = eval_exact = float("nan")
        if rank == 0 and args.eval_every and (iteration - 1) % args.eval_every == 0:
            # Before this iteration's update: row 1 holds the IL policy's greedy score.
            eval_reward, eval_exact = greedy_scores(args, policy.planner, problem, eval_set)

        # ALGO LOGIC: rollout
        scenes = rng.choice(n_scenes, size=args.scenes_per_iteration, replace=n_scenes < args.scenes_per_iteration)
        rollout = collect(args, policy, reference, problem, np.sort(scenes), generator)

        # ALGO LOGIC: optimise
        stats = update(args, policy, optimizer, problem, rollout, rng, world)

        rewards = rollout.rewards.numpy()
        values = rollout.values.numpy()
        g = args.samples_per_scene
        per_chain_values = np.repeat(values, g)[:, None].repeat(rewards.shape[1], axis=1)
        executed = rewards[np.arange(len(rewards)), rollout.mode.numpy()]
        local = {
            "candidates": float(rewards.size),
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()),
            "executed_reward": float(executed.mean()),
            "executed_exact_epdms": (float(rollout.executed_exact.mean()) if rollout.executed_exact is not None
                                     else float("nan")),
            "explained_variance": explained_variance(per_chain_values.ravel(), rewards.ravel()),
            "entropy": gaussian_entropy(rollout.stds, int(np.prod(rollout.chain.shape[-2:]))),
            **stats,
        }
        names = sorted(local)
        vector = torch.tensor([local[k] for k in names], dtype=torch.float64)
        _allreduce_mean_([vector], world)
        row = dict(zip(names, vector.tolist()))
        row["candidates"] = row["candidates"] * world
        row.update(iteration=iteration, eval_reward=eval_reward, eval_exact_epdms=eval_exact,
                   learning_rate=optimizer.param_groups[0]["lr"], seconds=time.perf_counter() - t0)
        rows.append(row)

        if iteration % args.checkpoint_every == 0 or iteration == args.iterations:
            states = [rng_state(generator, rng)]
            if world > 1:
                import torch.distributed as dist

                gathered: list = [None] * world
                dist.all_gather_object(gathered, states[0])
                states = gathered
            if rank == 0:
                # Log first, checkpoint second: a kill in between leaves a log row beyond the checkpoint, which
                # the resume drops and recomputes identically.
                write_log(log_path, rows)
                save_checkpoint(ckpt_path, {"format": TRAIN_FORMAT, "iteration": iteration, "args": args.to_dict(),
                                            "policy": policy.state_dict(), "optimizer": optimizer.state_dict(),
                                            "rng": states, "world_size": world})
            if world > 1:
                import torch.distributed as dist

                dist.barrier()
        elif rank == 0:
            write_log(log_path, rows)
        if on_iteration is not None:
            on_iteration(iteration, row)
    return TrainResult(out, args.iterations, rows, start)


# ----------------------------------------------------------------------------------------------------------------
# From checkpoints and a dataset: ``irlvla-bench train rl``


POLICY_NAME = "policy.pt"


def run(args: Args, out_dir: str | Path, *, say: Callable[[str], None] = print) -> TrainResult:
    """Load the IL policy (and the RWM), build the training scenes, run ``train`` and write ``policy.pt`` (the
    fine-tuned policy as an agent checkpoint: ``irlvla_rl:<out>/policy.pt``)."""
    import copy

    from agents.rl.rewards import ExactScorer, RWMScorer, ScoreReward
    from agents.rl.world import cached_scene_set, default_cache_dir, load_policy_model, save_policy, sha256_file

    if not args.il:
        raise ValueError("Args.il (the IL checkpoint) is required")
    if args.reward == "rwm" and not args.rwm:
        raise ValueError("reward 'rwm' needs Args.rwm (the reward world model checkpoint)")
    if not args.data:
        raise ValueError("Args.data (the dataset root) is required")
    rank, world = _distributed()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(out_dir)
    model, _ = load_policy_model(args.il)
    rwm = None
    if args.reward == "rwm":
        from agents.rwm.predict import RewardModel

        rwm = RewardModel.load(args.rwm)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir(out, args.split)

    il_sha = sha256_file(args.il)

    def build():
        t0 = time.perf_counter()
        needs_inputs = rwm is not None and rwm.config.encoder.kind != "raster"
        built, hit = cached_scene_set(model, il_sha, args.data, args.split, cache, max_scenes=args.max_scenes,
                                      keep_inputs=needs_inputs)
        say(f"{len(built)} training scenes of {args.split} ({'cached, ' if hit else ''}"
            f"{time.perf_counter() - t0:.1f} s)")
        return built

    if world > 1:
        import torch.distributed as dist

        # The metric cache is written by the first process only; the others read it once it is complete.
        scenes = build() if rank == 0 else None
        dist.barrier()
        if scenes is None:
            scenes = build()
    else:
        scenes = build()

    exact = ExactScorer(scenes.cases)
    scorer = exact if rwm is None else RWMScorer(rwm, scenes.cases, scenes.agent_inputs)
    problem = Problem(features=scenes.features, reward=ScoreReward(scorer, args.reward_weights),
                      exact_epdms=ScoreReward(exact), tokens=scenes.tokens, previous=scenes.previous)
    say(f"{int((problem.previous >= 0).sum())} of {len(scenes)} scenes have their previous frame among the scenes "
        f"(EC against the policy's own previous plan: {args.own_previous_plan})")
    reference = model.planner
    torch.manual_seed(args.seed)  # the value head starts identical in every process
    policy = PPOPolicy(copy.deepcopy(reference), int(scenes.features.pooled().shape[-1]), args.value_hidden)

    def report(iteration: int, row: dict) -> None:
        if rank == 0:
            say(f"iteration {iteration}/{args.iterations}: reward {row['reward_mean']:.4f} executed "
                f"{row['executed_reward']:.4f} exact {row['executed_exact_epdms']:.4f} approx_kl "
                f"{row['approx_kl']:.4f} clipfrac {row['clipfrac']:.3f} kl_il {row['kl_il']:.3f} "
                f"({row['seconds']:.1f} s)")

    result = train(args, policy, reference, problem, out, on_iteration=report)
    if rank == 0:
        model.planner.load_state_dict(policy.planner.state_dict())
        meta = {"args": args.to_dict(), "iterations": result.iteration, "il_checkpoint": str(Path(args.il).absolute()),
                "il_sha256": il_sha, "rwm_checkpoint": str(Path(args.rwm).absolute()) if rwm is not None else None,
                "rwm_sha256": sha256_file(args.rwm) if rwm is not None else None, "tokens": list(scenes.tokens),
                "final": {k: v for k, v in (result.rows[-1].items() if result.rows else [])}}
        save_policy(out / POLICY_NAME, model, meta)
    return result
