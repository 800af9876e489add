"""``irlvla-bench train rwm``: train the reward world model on label folders (``irlvla-bench label``).

No torch at import time: ``register(app)`` only adds the command; torch loads when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def rwm(
    labels: List[Path] = typer.Option(..., "--labels", help="Label folder(s) of the training split (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Run folder: rwm.pt, rwm_last.pt, train_log.csv."),
    preset: str = typer.Option("default", "--preset", help="Config preset: default or tiny."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Scene encoder: raster, sensors or il."),
    il_checkpoint: Optional[str] = typer.Option(None, "--il-checkpoint", help="IL policy checkpoint (encoder il)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Training steps (overrides the preset)."),
    preference: Optional[float] = typer.Option(None, "--preference", min=0.0,
                                               help="Weight of the Bradley-Terry expert-preference term."),
    seed: Optional[int] = typer.Option(None, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
    features_cache: Optional[Path] = typer.Option(None, "--features-cache",
                                                  help="Where scene inputs are cached (default: in the label folder)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/rwm_last.pt."),
) -> None:
    """Train the RWM (resumable; launch under torchrun for DDP with the gloo backend)."""
    from dataclasses import replace

    from agents.rwm.config import preset as get_preset
    from agents.rwm.train import train_rwm

    try:
        cfg = get_preset(preset)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset") from None
    if encoder is not None:
        cfg = replace(cfg, encoder=replace(cfg.encoder, kind=encoder))
    if il_checkpoint is not None:
        cfg = replace(cfg, encoder=replace(cfg.encoder, il=replace(cfg.encoder.il, checkpoint=il_checkpoint)))
    train = {k: v for k, v in {"steps": steps, "seed": seed, "threads": threads}.items() if v is not None}
    if train:
        cfg = replace(cfg, train=replace(cfg.train, **train))
    if preference is not None:
        cfg = replace(cfg, loss=replace(cfg.loss, preference=preference))
    try:
        cfg = type(cfg).from_dict(cfg.to_dict())  # validates the encoder kind etc.
        summary = train_rwm(cfg, labels, out, resume=resume, features_cache=features_cache,
                            log=lambda line: typer.echo(line, err=True))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"trained {summary['steps']} steps in {summary['seconds']:.0f} s on {summary['train_scenes']} scenes "
               f"-> {out / 'rwm.pt'}")


def register(app: typer.Typer) -> None:
    """Add ``rwm`` to the ``train`` sub-app."""
    app.command("rwm")(rwm)
