"""``irlvla-bench train il``: imitation training of the VLA policy (small or full config).

Registered into the ``train`` sub-app by ``irlvla_bench.train_cli``; torch is imported inside the command so that
``irlvla-bench --help`` stays fast and torch-free. Under ``torchrun --nproc_per_node N`` the same command runs
DDP (``python -m torch.distributed.run ... -m irlvla_bench.cli train il ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

_err = Console(stderr=True)
_out = Console()


def il(
    data: Path = typer.Option(..., "--data", help="Dataset root (NAVSIM layout, e.g. `irlvla-bench data generate`)."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoint.pt (resumable), model.pt, train_log.csv."),
    split: str = typer.Option("navtrain", "--split", help="Training split (name or YAML path)."),
    config: str = typer.Option("small", "--config", help="small (2 CPU cores, minutes) or full (the paper's scale)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Global batch size."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0),
    seed: Optional[int] = typer.Option(None, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", min=0, help="torch CPU threads (0: torch's default)."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", min=0.0,
                                                help="Stop with a checkpoint after this many seconds (0: none)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after this many steps."),
    save_every: int = typer.Option(0, "--save-every", min=0, help="Also checkpoint every N steps (0: epochs only)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Preprocessed samples (default OUT/cache)."),
    eval_split: Optional[str] = typer.Option(None, "--eval-split",
                                             help="Report command accuracy and segmentation IoU on this split."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/checkpoint.pt if present."),
) -> None:
    """Train the IL VLA policy (VoVNetV2 cameras -> BEV -> heads, commands, truncated-diffusion planner)."""
    from agents.vla.config import preset, with_overrides
    from agents.vla.train import dist_info, train
    from irlvla_bench.errors import InputError

    try:
        cfg = with_overrides(preset(config), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                             num_threads=threads, time_budget_s=time_budget)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from None
    if not resume and (out / "checkpoint.pt").exists() and dist_info().is_main:
        (out / "checkpoint.pt").unlink()
    try:
        result = train(data, split, cfg, out, cache_dir=cache_dir, resume=resume, max_steps=max_steps,
                       device=device, eval_split=eval_split, save_every=save_every)
    except (InputError, ValueError, FileNotFoundError) as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if not dist_info().is_main:
        return
    table = Table(title=f"irlvla_il ({cfg.name}) trained on {split}")
    for column in ("samples", "steps", "epochs", "final loss", "plan L1 [m]", "seconds", "finished"):
        table.add_column(column, justify="right")
    last = result.losses[-1] if result.losses else {}
    table.add_row(str(result.samples), str(result.steps), str(result.epochs_done),
                  f"{last.get('loss', float('nan')):.3f}", f"{last.get('plan_l1_m', float('nan')):.2f}",
                  f"{result.seconds:.0f}", str(result.finished))
    _out.print(table)
    if result.metrics:
        m = result.metrics
        _out.print(f"{eval_split}: command accuracy {m['command_accuracy']:.3f} "
                   f"(speed {m['speed_command_accuracy']:.3f}, path {m['path_command_accuracy']:.3f}), "
                   f"segmentation mIoU {m['segmentation_miou']:.3f}")
    final = out / "model.pt" if result.finished else out / "checkpoint.pt"
    _out.print(f"checkpoint {final} (use it as --agent irlvla_il:{final})")


def register(app: typer.Typer) -> None:
    app.command("il")(il)
