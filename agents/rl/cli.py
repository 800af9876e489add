"""``irlvla-bench train rl``: PPO fine-tuning of an IL checkpoint with the RWM (or the exact scorer) as reward.

Registered into the ``train`` sub-app by ``irlvla_bench.train_cli``; torch is imported inside the command so
that ``irlvla-bench --help`` stays fast and works without torch. Under ``torchrun`` every process runs the same
command (gloo on CPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

_err = Console(stderr=True)
_out = Console()


def rl(
    il: Path = typer.Option(..., "--il", help="IL policy checkpoint (`irlvla-bench train vla`)."),
    data: Path = typer.Option(..., "--data", help="Dataset root (NAVSIM layout, e.g. `irlvla-bench data generate`)."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoint.pt, log.csv, policy.pt (resumes if present)."),
    rwm: Optional[Path] = typer.Option(None, "--rwm", help="Reward world model checkpoint (needed by --reward rwm)."),
    split: str = typer.Option("navtrain", "--split", help="Training split (name or YAML path)."),
    reward: str = typer.Option("rwm", "--reward", help="rwm (learned reward) or exact (EPDMS scorer, labelling mode)."),
    reward_weights: str = typer.Option("", "--reward-weights",
                                       help="NAME=W,... weighted sum of (predicted) sub-metrics instead of the EPDMS."),
    iterations: int = typer.Option(40, "--iterations", min=1),
    scenes_per_iteration: int = typer.Option(16, "--scenes-per-iteration", min=1, help="Per process."),
    samples_per_scene: int = typer.Option(2, "--samples-per-scene", min=1, help="Denoising chains per scene."),
    learning_rate: float = typer.Option(1e-4, "--lr", min=0.0),
    kl_coef: float = typer.Option(0.01, "--kl-coef", min=0.0, help="Weight of the KL toward the IL policy."),
    min_std: float = typer.Option(0.03, "--min-std", min=1e-6, help="Exploration std floor (normalised units)."),
    max_scenes: int = typer.Option(0, "--max-scenes", min=0, help="Use at most this many training scenes (0: all)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir",
                                             help="Metric cache of the split (default: <out>/../metric_cache/<split>)."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads per process (0: torch's default)."),
) -> None:
    """Fine-tune the IL policy's diffusion planner with PPO (no simulator) and write DIR/policy.pt."""
    from agents.rl.ppo import Args, run
    from agents.rl.rewards import parse_weights
    from irlvla_bench.errors import InputError

    try:
        args = Args(il=str(il), rwm=str(rwm) if rwm else "", data=str(data), split=split,
                    cache_dir=str(cache_dir) if cache_dir else "", max_scenes=max_scenes, seed=seed,
                    iterations=iterations, threads=threads, reward=reward,
                    reward_weights=parse_weights(reward_weights), scenes_per_iteration=scenes_per_iteration,
                    samples_per_scene=samples_per_scene, learning_rate=learning_rate, kl_coef=kl_coef,
                    min_std=min_std)
        result = run(args, out, say=lambda msg: _err.print(msg))
    except (InputError, ValueError, FileNotFoundError) as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if result.rows:
        last = result.rows[-1]
        _out.print(f"{result.iteration} iterations (resumed from {result.resumed_from}); last reward "
                   f"{float(last['reward_mean']):.4f}")
    _out.print(f"policy {out / 'policy.pt'} (use it as --agent irlvla_rl:{out / 'policy.pt'}); log {out / 'log.csv'}")


def register(app: typer.Typer) -> None:
    app.command("rl")(rl)
