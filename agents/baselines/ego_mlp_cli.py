"""``irlvla-bench train ego-mlp``: train the ego-status MLP on a split of a NAVSIM-layout dataset.

Registered into the ``train`` sub-app by ``irlvla_bench.train_cli``; torch is imported inside the command so
that ``irlvla-bench --help`` stays fast and works without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

_err = Console(stderr=True)
_out = Console()


def ego_mlp(
    data: Path = typer.Option(..., "--data", help="Dataset root (NAVSIM layout, e.g. `irlvla-bench data generate`)."),
    out: Path = typer.Option(..., "--out", help="Checkpoint file to write (atomically)."),
    split: str = typer.Option("navtrain", "--split", help="Training split (name or YAML path)."),
    epochs: int = typer.Option(300, "--epochs", min=1),
    hidden: int = typer.Option(128, "--hidden", min=1, help="Width of the hidden layers."),
    layers: int = typer.Option(3, "--layers", min=1, help="Number of hidden layers."),
    history_frames: int = typer.Option(4, "--history-frames", min=1, help="Ego statuses fed to the MLP."),
    lr: float = typer.Option(3e-3, "--lr", min=0.0),
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's)."),
) -> None:
    """Train the ego-status MLP baseline (seconds on the generated world) and write its checkpoint."""
    import torch

    from agents.baselines.ego_mlp import EgoMLPConfig, TrainConfig, save_checkpoint, train_ego_mlp
    from agents.baselines.ego_mlp_data import training_set
    from irlvla_bench.errors import InputError

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        model_config = EgoMLPConfig(history_frames=history_frames, hidden=hidden, layers=layers)
        train_config = TrainConfig(epochs=epochs, lr=lr, seed=seed)
        data_set = training_set(data, split, history_frames=history_frames)
        model, result = train_ego_mlp(data_set, model_config, train_config)
    except (InputError, ValueError) as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for token, why in data_set.skipped[:5]:
        _err.print(f"skipped {token}: {why}")
    save_checkpoint(out, model, train_config, result, meta={"data": str(data), "split": split,
                                                            "tokens": list(data_set.tokens)})
    table = Table(title=f"ego_mlp trained on {split}")
    for column in ("samples", "skipped", "epochs", "first loss", "final loss", "train L1", "seconds"):
        table.add_column(column, justify="right")
    table.add_row(str(result.samples), str(len(data_set.skipped)), str(epochs), f"{result.losses[0]:.4f}",
                  f"{result.losses[-1]:.4f}", f"{result.final_l1:.3f}", f"{result.seconds:.1f}")
    _out.print(table)
    _out.print(f"checkpoint {out} (use it as --agent ego_mlp:{out})")


def register(app: typer.Typer) -> None:
    app.command("ego-mlp")(ego_mlp)
