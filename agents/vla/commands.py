"""Meta-action commands of IRL-VLA's VLM stage: 13 speed and 9 path commands.

Three parts:
* **label rules** (numpy, no torch): the commands a logged future implies, from its speed profile (mean
  acceleration, peak deceleration, linearity, jerk) and its geometry (heading change, lateral offset);
* **the trained command head** (torch): logits over both vocabularies from the scene tokens;
* **the language backend**: prompts a local Hugging Face causal LM / vision-language checkpoint from a path
  (``local_files_only``: nothing is downloaded), parses its ``"<Speed>, <Path>"`` answer and falls back to the
  head when the answer does not parse.

Label rules, applied to the 8 future poses at 0.5 s (ego frame of the current frame) and the current speed.
Speeds: ``v_0`` = current speed, ``v_k`` = |p_k - p_{k-1}| / 0.5 (p_0 = origin), k = 1..8; accelerations
``a_k = (v_k - v_{k-1}) / 0.5``; jerks ``j_k = (a_k - a_{k-1}) / 0.5``; ``a_mean = (v_8 - v_0) / 4 s``; the profile
is *linear* when no speed deviates more than ``LINEAR_TOL`` from the straight line v_0 -> v_8. First match wins:

====  ==========================  ===========================================================
 #    speed command               rule
====  ==========================  ===========================================================
 1    Full Stop                   v_8 < 0.5 m/s (ends at, or stays at, a standstill)
 2    Emergency Decel             min a_k < -4.0 m/s^2
 3    Creeping                    max v_k < 2.5 m/s
 4    Aggressive Accel            a_mean > 1.5 m/s^2
 5    Controlled Decel            a_mean < -1.5 m/s^2
 6    Regenerative Braking        -1.5 <= a_mean < -0.8
 7    Mild Decel Linear           -0.8 <= a_mean < -0.25 and linear
 8    Mild Decel                  -0.8 <= a_mean < -0.25
 9    Mild Accel Linear           0.25 < a_mean <= 1.5 and linear
 10   Mild Accel NonLinear        0.25 < a_mean <= 1.5 and max |j_k| > 2.0 m/s^3
 11   Mild Accel                  0.25 < a_mean <= 1.5
 12   Constant Speed Strict       |a_mean| <= 0.25 and max v_k - min v_k < 0.5 m/s
 13   Constant Speed Loose        otherwise
====  ==========================  ===========================================================

Path, from the final heading change ``dh`` (rad, left positive), final lateral offset ``y_8`` and the largest
lateral excursion ``y_max = max |y_k|`` (first match wins):

====  ======================  =================================================================
 1    Sharp Left Turn         dh > 0.6 (about 35 deg within 4 s: a junction turn)
 2    Sharp Right Turn        dh < -0.6
 3    Swerving                y_max > 1.0 m and |y_8| < 0.4 y_max (out and back within 4 s)
 4    Left LaneChange         y_8 > 2.0 m and |dh| < 0.25
 5    Right LaneChange        y_8 < -2.0 m and |dh| < 0.25
 6    Slight Left Turn        dh > 0.15
 7    Slight Right Turn       dh < -0.15
 8    Lane Micro Adjust       |y_8| > 0.5 m
 9    Straight Strict         otherwise
====  ======================  =================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # torch stays out of the label rules' import
    import torch

SPEED_COMMANDS = (
    "Emergency Decel", "Full Stop", "Creeping", "Regenerative Braking", "Controlled Decel", "Mild Decel Linear",
    "Mild Decel", "Mild Accel", "Mild Accel NonLinear", "Mild Accel Linear", "Aggressive Accel",
    "Constant Speed Loose", "Constant Speed Strict",
)
PATH_COMMANDS = (
    "Swerving", "Sharp Left Turn", "Slight Left Turn", "Sharp Right Turn", "Slight Right Turn", "Straight Strict",
    "Left LaneChange", "Right LaneChange", "Lane Micro Adjust",
)
DT = 0.5
LINEAR_TOL = 0.4  # m/s
STOP_SPEED = 0.5
CREEP_SPEED = 2.5
EMERGENCY_DECEL = -4.0
MILD = 0.25
STRONG = 1.5
REGEN = 0.8
JERKY = 2.0
STRICT_RANGE = 0.5  # m/s
SHARP_TURN = 0.6
SLIGHT_TURN = 0.15
LANE_CHANGE_OFFSET = 2.0
LANE_CHANGE_HEADING = 0.25
SWERVE_EXCURSION = 1.0
SWERVE_RETURN = 0.4
MICRO_OFFSET = 0.5


def speed_profile(future: np.ndarray, current_speed: float) -> np.ndarray:
    """(9,) speeds: the current one, then the mean speed over each 0.5 s interval of the future."""
    future = np.asarray(future, dtype=np.float64)
    points = np.vstack([np.zeros(2), future[:, :2]])
    return np.concatenate([[float(current_speed)], np.hypot(*np.diff(points, axis=0).T) / DT])


def speed_command(future: np.ndarray, current_speed: float) -> int:
    v = speed_profile(future, current_speed)
    a = np.diff(v) / DT
    jerk = np.diff(a) / DT
    a_mean = (v[-1] - v[0]) / (DT * (len(v) - 1))
    line = np.linspace(v[0], v[-1], len(v))
    linear = bool(np.max(np.abs(v - line)) <= LINEAR_TOL)
    if v[-1] < STOP_SPEED:
        name = "Full Stop"
    elif a.min() < EMERGENCY_DECEL:
        name = "Emergency Decel"
    elif v.max() < CREEP_SPEED:
        name = "Creeping"
    elif a_mean > STRONG:
        name = "Aggressive Accel"
    elif a_mean < -STRONG:
        name = "Controlled Decel"
    elif a_mean < -REGEN:
        name = "Regenerative Braking"
    elif a_mean < -MILD:
        name = "Mild Decel Linear" if linear else "Mild Decel"
    elif a_mean > MILD:
        if linear:
            name = "Mild Accel Linear"
        elif np.abs(jerk).max() > JERKY:
            name = "Mild Accel NonLinear"
        else:
            name = "Mild Accel"
    elif v.max() - v.min() < STRICT_RANGE:
        name = "Constant Speed Strict"
    else:
        name = "Constant Speed Loose"
    return SPEED_COMMANDS.index(name)


def path_command(future: np.ndarray) -> int:
    future = np.asarray(future, dtype=np.float64)
    dh = float(np.arctan2(np.sin(future[-1, 2]), np.cos(future[-1, 2])))
    y = future[:, 1]
    y_end, y_max = float(y[-1]), float(np.abs(y).max())
    if dh > SHARP_TURN:
        name = "Sharp Left Turn"
    elif dh < -SHARP_TURN:
        name = "Sharp Right Turn"
    elif y_max > SWERVE_EXCURSION and abs(y_end) < SWERVE_RETURN * y_max:
        name = "Swerving"
    elif y_end > LANE_CHANGE_OFFSET and abs(dh) < LANE_CHANGE_HEADING:
        name = "Left LaneChange"
    elif y_end < -LANE_CHANGE_OFFSET and abs(dh) < LANE_CHANGE_HEADING:
        name = "Right LaneChange"
    elif dh > SLIGHT_TURN:
        name = "Slight Left Turn"
    elif dh < -SLIGHT_TURN:
        name = "Slight Right Turn"
    elif abs(y_end) > MICRO_OFFSET:
        name = "Lane Micro Adjust"
    else:
        name = "Straight Strict"
    return PATH_COMMANDS.index(name)


def derive_commands(future: np.ndarray, current_velocity: Sequence[float]) -> tuple[int, int]:
    """(speed index, path index) of a logged future (8, 3) given the current ego velocity (vx, vy)."""
    return speed_command(future, float(np.hypot(*np.asarray(current_velocity, dtype=np.float64)[:2]))), \
        path_command(future)


def format_command(speed: int, path: int) -> str:
    return f"{SPEED_COMMANDS[speed]}, {PATH_COMMANDS[path]}"


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


# Longest names first so that "Mild Accel Linear" is not read as "Mild Accel".
_SPEED_KEYS = sorted(((_normalise(n), i) for i, n in enumerate(SPEED_COMMANDS)), key=lambda t: -len(t[0]))
_PATH_KEYS = sorted(((_normalise(n), i) for i, n in enumerate(PATH_COMMANDS)), key=lambda t: -len(t[0]))


def parse_command(text: str) -> tuple[int, int] | None:
    """``"<Speed>, <Path>"`` (case, spacing and punctuation inside names ignored; the first line holding both
    wins) -> (speed, path); None when no line names one command of each vocabulary."""
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) < 2:
            continue
        speed_part, path_part = _normalise(parts[0].split(":")[-1]), _normalise(",".join(parts[1:]))
        speed = next((i for key, i in _SPEED_KEYS if speed_part == key), None)
        path = next((i for key, i in _PATH_KEYS if path_part.startswith(key)), None)
        if speed is not None and path is not None:
            return speed, path
    return None


# --------------------------------------------------------------------------------------------------------------
# Trained head (torch imported lazily so the label rules stay importable without it)


def command_head(in_dim: int, hidden: int):
    """MLP over the pooled scene tokens -> (13 + 9) logits."""
    from torch import nn

    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, len(SPEED_COMMANDS) + len(PATH_COMMANDS)))


def split_logits(logits: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    return logits[..., :len(SPEED_COMMANDS)], logits[..., len(SPEED_COMMANDS):]


# --------------------------------------------------------------------------------------------------------------
# Language backend


@dataclass(frozen=True)
class CommandChoice:
    speed: int
    path: int
    source: str  # "head" | "language" | "fallback"
    text: str = ""

    @property
    def label(self) -> str:
        return format_command(self.speed, self.path)


DRIVING_COMMAND_WORDS = ("turn left", "go straight", "turn right", "follow the road")


def build_prompt(speed: float, acceleration: float, driving_command: np.ndarray) -> str:
    """The text prompt: ego state, navigation command, both vocabularies and the required answer format."""
    nav = DRIVING_COMMAND_WORDS[int(np.argmax(driving_command))] if np.any(driving_command) else "follow the road"
    return (
        "You are the driver of an autonomous car. "
        f"Current speed {speed:.1f} m/s, acceleration {acceleration:+.1f} m/s^2, navigation: {nav}.\n"
        f"Speed commands: {'; '.join(SPEED_COMMANDS)}.\n"
        f"Path commands: {'; '.join(PATH_COMMANDS)}.\n"
        "Answer with one speed command and one path command as 'Speed, Path'.\nAnswer:"
    )


class LanguageCommandBackend:
    """A local Hugging Face checkpoint (causal LM, or a vision-language model with an image processor) asked for
    the commands; ``transformers`` is an optional dependency (extra ``vlm``)."""

    def __init__(self, model_path: str | Path, *, max_new_tokens: int = 16, device: str = "cpu"):
        try:
            import transformers
        except ImportError as exc:
            raise ImportError("the language command backend needs transformers: pip install 'irlvla-bench[vlm]'") \
                from exc
        path = Path(model_path)
        if not path.is_dir():
            raise FileNotFoundError(f"language model folder {path} does not exist (models are never downloaded)")
        self.path = path
        self.max_new_tokens = max_new_tokens
        self.device = device
        self.processor = None
        self.tokenizer = None
        self.is_vision = (path / "preprocessor_config.json").exists()
        if self.is_vision:
            self.processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
            loader = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
            self.model = loader.from_pretrained(path, local_files_only=True)
        else:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        self.model.to(device).eval()

    def generate(self, prompt: str, image: np.ndarray | None = None) -> str:
        """Greedy decoding (deterministic); only the newly generated text is returned."""
        import torch

        with torch.no_grad():
            if self.is_vision and image is not None:
                inputs = self.processor(text=prompt, images=image, return_tensors="pt").to(self.device)
                prompt_len = inputs["input_ids"].shape[1]
                out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
                return self.processor.batch_decode(out[:, prompt_len:], skip_special_tokens=True)[0]
            tokenizer = self.tokenizer if self.tokenizer is not None else self.processor.tokenizer
            inputs = tokenizer(prompt, return_tensors="pt").to(self.device)
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=pad)
            return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def choose(self, prompt: str, fallback: tuple[int, int], image: np.ndarray | None = None) -> CommandChoice:
        text = self.generate(prompt, image)
        parsed = parse_command(text)
        if parsed is None:
            return CommandChoice(fallback[0], fallback[1], "fallback", text)
        return CommandChoice(parsed[0], parsed[1], "language", text)
