"""Every agent shipped with the project, registered lazily (importing this never imports torch)."""

from agents.base import register_agent

register_agent("constant_velocity", "agents.baselines.constant_velocity:ConstantVelocityAgent")
register_agent("human", "agents.baselines.human:HumanAgent")
register_agent("pdm_closed", "agents.baselines.pdm_closed:PDMClosedAgent")
register_agent("ego_mlp", "agents.baselines.ego_mlp:EgoStatusMLPAgent")
register_agent("irlvla_rl", "agents.rl.agent:IRLVLARLAgent")
register_agent("irlvla_il", "agents.vla.agent:IRLVLAAgent")
