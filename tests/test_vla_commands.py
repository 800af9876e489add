"""Command label rules on constructed futures (every command reachable, first-match order), the answer parser,
and the language backend with a tiny randomly initialised local model (skipped without ``transformers``)."""

from __future__ import annotations

import numpy as np
import pytest

from agents.vla.commands import (PATH_COMMANDS, SPEED_COMMANDS, build_prompt, derive_commands, format_command,
                                 parse_command, path_command, speed_command, speed_profile)


def straight(speeds: list[float]) -> np.ndarray:
    """(8, 3) future along +x whose interval speeds are ``speeds`` (8 values, m/s)."""
    x = np.cumsum(np.asarray(speeds, dtype=float) * 0.5)
    return np.column_stack([x, np.zeros(8), np.zeros(8)])


def curve(final_heading: float, final_y: float, speed: float = 8.0) -> np.ndarray:
    t = np.linspace(1 / 8, 1, 8)
    x = speed * 4 * t
    return np.column_stack([x, final_y * t ** 2, final_heading * t])


SPEED_CASES = {
    "Full Stop": (straight([3, 2, 1, 0.5, 0.2, 0.1, 0.0, 0.0]), 4.0),
    "Emergency Decel": (straight([8, 5, 3, 2, 2, 2, 2, 2]), 10.0),
    "Creeping": (straight([1.5, 1.6, 1.7, 1.8, 1.8, 1.9, 2.0, 2.0]), 1.5),
    "Aggressive Accel": (straight([4, 5, 6, 7, 8, 9, 10, 11]), 3.0),
    "Controlled Decel": (straight([13, 12, 11, 10, 9, 8, 7, 6]), 14.0),
    "Regenerative Braking": (straight([11.5, 11, 10.5, 10, 9.5, 9, 8.5, 8]), 12.0),
    "Mild Decel Linear": (straight([9.8, 9.6, 9.4, 9.2, 9.0, 8.8, 8.6, 8.4]), 10.0),
    "Mild Decel": (straight([10, 10, 10, 10, 10, 9, 8.5, 8.0]), 10.0),
    "Mild Accel Linear": (straight([8.2, 8.4, 8.6, 8.8, 9.0, 9.2, 9.4, 9.6]), 8.0),
    "Mild Accel NonLinear": (straight([8, 8, 9.5, 9.5, 9.5, 9.5, 10, 10]), 8.0),
    "Mild Accel": (straight([8.0, 8.05, 8.2, 8.45, 8.8, 9.2, 9.6, 10.0]), 8.0),
    "Constant Speed Strict": (straight([10, 10.1, 10, 10.1, 10, 10.1, 10, 10.0]), 10.0),
    "Constant Speed Loose": (straight([10, 10.6, 10.9, 10.6, 10, 9.6, 9.5, 10.0]), 10.0),
}

PATH_CASES = {
    "Sharp Left Turn": curve(1.2, 12.0),
    "Sharp Right Turn": curve(-1.2, -12.0),
    "Swerving": np.column_stack([np.arange(1, 9) * 4.0, [0.5, 1.2, 1.6, 1.4, 1.0, 0.6, 0.3, 0.2], np.zeros(8)]),
    "Left LaneChange": curve(0.05, 3.5),
    "Right LaneChange": curve(-0.05, -3.5),
    "Slight Left Turn": curve(0.3, 1.5),
    "Slight Right Turn": curve(-0.3, -1.5),
    "Lane Micro Adjust": curve(0.02, 0.8),
    "Straight Strict": curve(0.0, 0.1),
}


def test_vocabularies_have_the_papers_sizes():
    assert len(SPEED_COMMANDS) == 13 and len(PATH_COMMANDS) == 9
    assert len(set(SPEED_COMMANDS)) == 13 and len(set(PATH_COMMANDS)) == 9


@pytest.mark.parametrize("name", list(SPEED_CASES))
def test_every_speed_command_follows_its_rule(name):
    future, v0 = SPEED_CASES[name]
    assert SPEED_COMMANDS[speed_command(future, v0)] == name


@pytest.mark.parametrize("name", list(PATH_CASES))
def test_every_path_command_follows_its_rule(name):
    assert PATH_COMMANDS[path_command(PATH_CASES[name])] == name


def test_rules_apply_in_order_and_use_the_current_speed():
    # A standstill at the end wins over the emergency-level deceleration that led to it.
    future, _ = SPEED_CASES["Full Stop"]
    assert SPEED_COMMANDS[speed_command(future, 12.0)] == "Full Stop"
    # The same future reads as acceleration or deceleration depending on the current speed.
    future = straight([10] * 8)
    assert SPEED_COMMANDS[speed_command(future, 3.0)] == "Aggressive Accel"
    assert SPEED_COMMANDS[speed_command(future, 10.0)] == "Constant Speed Strict"
    assert np.allclose(speed_profile(future, 3.0), [3] + [10] * 8)
    speed, path = derive_commands(future, [3.0, 0.0])
    assert format_command(speed, path) == "Aggressive Accel, Straight Strict"


@pytest.mark.parametrize("text, expected", [
    ("Mild Accel Linear, Straight Strict", ("Mild Accel Linear", "Straight Strict")),
    ("mild accel, slight left turn.", ("Mild Accel", "Slight Left Turn")),
    ("Answer: Full Stop, Lane Micro Adjust", ("Full Stop", "Lane Micro Adjust")),
    ("blah\nConstant Speed Loose , Right LaneChange\n", ("Constant Speed Loose", "Right LaneChange")),
    ("EMERGENCY-DECEL, SWERVING", ("Emergency Decel", "Swerving")),
])
def test_parser_reads_speed_and_path(text, expected):
    speed, path = parse_command(text)
    assert (SPEED_COMMANDS[speed], PATH_COMMANDS[path]) == expected


@pytest.mark.parametrize("text", ["", "go fast", "Mild Accel", "Straight Strict, Mild Accel", "Fast, Left"])
def test_parser_rejects_what_is_not_a_command_pair(text):
    assert parse_command(text) is None


def test_prompt_names_the_state_and_both_vocabularies():
    prompt = build_prompt(7.25, -0.5, np.array([1, 0, 0, 0]))
    assert "7.2 m/s" in prompt and "turn left" in prompt and "'Speed, Path'" in prompt
    assert all(name in prompt for name in SPEED_COMMANDS + PATH_COMMANDS)


# ----------------------------------------------------------------------------------------------------------------
# Language backend with a tiny local model


def _tiny_language_model(folder):
    """A randomly initialised 2-layer GPT-2 with a word-level tokenizer over the command words, saved to a local
    folder (config -> model -> save_pretrained); nothing is downloaded."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    import torch

    words = sorted({w.lower() for text in SPEED_COMMANDS + PATH_COMMANDS for w in text.split()}
                   | {",", ".", ":", "answer", "speed", "path"})
    vocab = {"[UNK]": 0, "[PAD]": 1, "[EOS]": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.Lowercase()
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                eos_token="[EOS]")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=512, n_embd=16, n_layer=2, n_head=2,
                                     bos_token_id=2, eos_token_id=2, pad_token_id=1)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_language_backend_falls_back_to_the_head_on_unparsable_output(tmp_path):
    from agents.vla.commands import LanguageCommandBackend

    folder = _tiny_language_model(tmp_path / "lm")
    backend = LanguageCommandBackend(folder, max_new_tokens=6)
    prompt = build_prompt(5.0, 0.0, np.array([0, 1, 0, 0]))
    text = backend.generate(prompt)
    assert isinstance(text, str)
    assert backend.generate(prompt) == text  # greedy: deterministic
    choice = backend.choose(prompt, fallback=(3, 5))
    if parse_command(text) is None:  # a random model almost surely babbles
        assert (choice.speed, choice.path, choice.source) == (3, 5, "fallback")
    else:
        assert choice.source == "language"


def test_language_backend_uses_a_parsable_answer(tmp_path, monkeypatch):
    from agents.vla.commands import LanguageCommandBackend

    backend = LanguageCommandBackend(_tiny_language_model(tmp_path / "lm"))
    monkeypatch.setattr(backend, "generate", lambda prompt, image=None: " Creeping, Slight Right Turn")
    choice = backend.choose("?", fallback=(0, 0))
    assert (choice.label, choice.source) == ("Creeping, Slight Right Turn", "language")


def test_language_backend_never_downloads(tmp_path):
    from agents.vla.commands import LanguageCommandBackend

    pytest.importorskip("transformers")
    with pytest.raises(FileNotFoundError):
        LanguageCommandBackend(tmp_path / "not-there")
