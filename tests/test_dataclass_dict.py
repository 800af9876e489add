"""The one rebuild of frozen config dataclasses from their asdict/JSON form."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import pytest

from irlvla_bench.dataclass_dict import dataclass_from_dict


@dataclass(frozen=True)
class Inner:
    pairs: tuple[tuple[str, float], ...] = (("a", 1.0),)
    size: int = 3


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    ranges: tuple[float, float] = (0.0, 1.0)
    name: str = "x"


def test_round_trip_through_json_restores_nested_dataclasses_and_tuples():
    config = Outer(Inner((("b", 2.0), ("c", 3.0)), 5), (-1.0, 4.0), "y")
    rebuilt = dataclass_from_dict(Outer, json.loads(json.dumps(asdict(config))))
    assert rebuilt == config
    assert isinstance(rebuilt.inner, Inner) and isinstance(rebuilt.inner.pairs[0], tuple)


def test_missing_fields_keep_their_defaults_and_unknown_ones_are_named():
    assert dataclass_from_dict(Outer, {"name": "z"}) == Outer(name="z")
    with pytest.raises(ValueError, match=r"unknown Inner fields: \['nope'\]"):
        dataclass_from_dict(Outer, {"inner": {"nope": 1}})


@pytest.mark.parametrize("name", ["vla", "rwm", "args", "labels"])
def test_every_project_config_round_trips(name):
    if name == "vla":
        from agents.vla.config import config_from_dict, small_config

        config = small_config()
        assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config
        return
    if name == "rwm":
        from agents.rwm.config import RWMConfig, preset as make

        config, kind = make("tiny"), RWMConfig
    elif name == "args":
        pytest.importorskip("torch")
        from agents.rl.ppo import Args

        config, kind = Args(reward="exact", reward_weights=(("epdms", 1.0), ("lane_keeping", 0.5))), Args
    else:
        from irlvla_bench.labelling import LabelConfig

        config, kind = LabelConfig(), LabelConfig
    assert kind.from_dict(json.loads(json.dumps(config.to_dict()))) == config
