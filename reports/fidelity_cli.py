"""``irlvla-bench report fidelity``: the RWM's fidelity to the exact EPDMS on held-out labelled scenes.

``register(app)`` adds the command to the ``report`` sub-app; nothing heavy is imported until it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def fidelity(
    rwm: Path = typer.Option(..., "--rwm", help="RWM checkpoint (rwm.pt from `irlvla-bench train rwm`)."),
    labels: List[Path] = typer.Option(..., "--labels", help="Label folder(s) of held-out scenes (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Report folder (fidelity.md/.html/.json, PNG figures)."),
    throughput_scenes: int = typer.Option(6, "--throughput-scenes", min=0, help="Scenes timed (0: skip timing)."),
    max_scenes: Optional[int] = typer.Option(None, "--max-scenes", min=1, help="Only the first scenes per folder."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads (1: as the exact scorer uses)."),
) -> None:
    """Per-sub-metric AUROC / calibration, EP and EPDMS agreement, ranking regret, RWM vs exact throughput."""
    from reports.fidelity_report import build_fidelity_report

    for path in [rwm, *labels]:
        if not path.exists():
            typer.echo(f"error: {path}: no such file or folder", err=True)
            raise typer.Exit(2)
    try:
        result = build_fidelity_report(rwm, labels, out, throughput_scenes=throughput_scenes, max_scenes=max_scenes,
                                       threads=threads)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    checks = result.numbers["checks"]
    for name, check in checks["auroc"].items():
        typer.echo(f"AUROC {name}: {check['value']:.3f} {'pass' if check['pass'] else 'MISS'}")
    for name in ("epdms_spearman", "top1_regret_points"):
        typer.echo(f"{name}: {checks[name]['value']:.3f} {'pass' if checks[name]['pass'] else 'MISS'}")
    typer.echo(f"wrote {len(result.files)} files to {out}")


def register(app: typer.Typer) -> None:
    """Add ``fidelity`` to the ``report`` sub-app."""
    app.command("fidelity")(fidelity)
