"""The PPO-fine-tuned IRL-VLA policy as an agent: ``irlvla_rl:<run>/policy.pt``.

It is the IL agent (``agents.vla.agent``: same inputs, same deterministic planner, DDIM eta = 0 from the seeded
noisy anchors, argmax of the confidences) with the fine-tuned weights. It also loads an IL checkpoint, so the IL
start and its RL fine-tune can be evaluated through one code path: any difference between them is the weights.
"""

from __future__ import annotations

from pathlib import Path

from agents.vla.agent import IRLVLAAgent


class IRLVLARLAgent(IRLVLAAgent):
    name = "irlvla_rl"
    missing_checkpoint = ("irlvla_rl needs a checkpoint: use 'irlvla_rl:PATH' (train one with `irlvla-bench "
                          "train rl --il CKPT --rwm CKPT --data ROOT --out DIR`, then PATH = DIR/policy.pt)")

    @staticmethod
    def load(checkpoint: Path, device: str) -> tuple:
        """An RL policy checkpoint (``agents.rl.world.save_policy``) or an IL one, in eval mode on ``device``."""
        from agents.rl.world import load_policy_model

        model, payload = load_policy_model(checkpoint)
        return model.to(device), payload
