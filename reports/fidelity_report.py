"""The reward-model fidelity report: an RWM checkpoint against the exact EPDMS labels of held-out scenes.

``build_fidelity_report(rwm, label_dirs, out_dir)`` predicts every labelled candidate with the RWM, computes
the numbers (``fidelity_numbers``, pure) overall, per stage (original / synthetic frames), per scene kind, per
candidate source and per label folder, times the RWM against the exact scorer on the same candidates, and
writes ``fidelity.json`` (every number), ``fidelity.md``, ``fidelity.html`` and PNG figures (matplotlib's Agg
canvas, no pyplot state), each atomically.

What is compared: the sub-metrics *after* the human filter and the EPDMS with EC (what a reward must match),
with the predicted probability of each metric being 1 as the score; NC and DDC (three classes) are judged as
"1 vs below 1" here and by their three-class accuracy. The unfiltered sub-metrics get their own AUROC table
(the RWM's heads before the filter is applied).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evaluators.epdms.score import MULTIPLICATIVE, SUB_METRICS
from irlvla_bench.io.atomic import atomic_path, write_json_atomic, write_text_atomic
from irlvla_bench.labelling.epdms import epdms
from reports import fidelity as fm

EC = "extended_comfort"
BINARY_METRICS = tuple(m for m in SUB_METRICS if m != "ego_progress") + (EC,)
THREE_CLASS = ("no_at_fault_collisions", "driving_direction_compliance")
SHORT = {"no_at_fault_collisions": "NC", "drivable_area_compliance": "DAC", "driving_direction_compliance": "DDC",
         "traffic_light_compliance": "TLC", "ego_progress": "EP", "time_to_collision_within_bound": "TTC",
         "lane_keeping": "LK", "history_comfort": "HC", EC: "EC", "epdms": "EPDMS"}
TARGETS = {"auroc_min": 0.95, "epdms_spearman_min": 0.85, "top1_regret_max_points": 3.0}
PRED = "pred_"
RANK_KS = (1, 5, 10)


def plugin_epdms(table: pd.DataFrame) -> np.ndarray:
    """The RWM's plug-in EPDMS: every multiplicative gate at its most likely value (NC and DDC rounded to the
    nearest of 0, 0.5, 1; DAC and TLC to 0 or 1), times the weighted part from the expected values.

    Why a second estimate: the exact EPDMS is a gated score, 0 for most candidates, and ties cap the rank
    correlation of any continuous score (``spearman_ceiling_untied``). The expected EPDMS (``pred_epdms``, the
    reward PPO uses) is the right score for picking one candidate (it weighs the risk of each gate); the plug-in
    one reproduces the gates' ties, so it is the one to correlate with the exact score across candidates."""
    gated = {m: table[PRED + m].to_numpy(dtype=float) for m in SUB_METRICS}
    for m in MULTIPLICATIVE:
        value = gated[m]
        gated[m] = np.round(value * 2.0) / 2.0 if m in THREE_CLASS else (value >= 0.5).astype(float)
    return epdms(gated, table[PRED + EC].to_numpy(dtype=float))


# ----------------------------------------------------------------------------------------------------------------
# Numbers (pure)


def _metric_block(table: pd.DataFrame) -> dict:
    out: dict = {"rows": int(len(table)), "scenes": int(table["scene"].nunique()), "binary": {}, "raw_auroc": {}}
    for m in BINARY_METRICS:
        y = table[m].to_numpy(dtype=float)
        valid = ~np.isnan(y)
        block = fm.binary_summary(y[valid] >= 1.0, table[PRED + "prob1_" + m].to_numpy(dtype=float)[valid])
        if m in THREE_CLASS:
            classes = np.round(y[valid] * 2).astype(int)
            probs = table[[PRED + f"p{t}_" + m for t in ("0", "05", "1")]].to_numpy(dtype=float)[valid]
            block["accuracy_3class"] = float(np.mean(np.argmax(probs, axis=1) == classes)) if len(classes) else None
        out["binary"][m] = block
        raw = table["raw_" + m].to_numpy(dtype=float) if m != EC else y
        out["raw_auroc"][m] = fm.auroc(raw[valid] >= 1.0, table[PRED + "raw_" + m].to_numpy(dtype=float)[valid])
    ep, ep_hat = table["ego_progress"].to_numpy(float), table[PRED + "ego_progress"].to_numpy(float)
    out["ego_progress"] = {"mae": fm.mae(ep, ep_hat), "r2": fm.r2(ep, ep_hat)}
    out["progress_m"] = {"mae": fm.mae(table["progress_m"], table[PRED + "progress_m"])}
    y, p = table["epdms"].to_numpy(float), table[PRED + "epdms"].to_numpy(float)
    nonzero = y > 0
    out["epdms"] = {"mae": fm.mae(y, p), **fm.correlations(y, p),
                    # Exact EPDMS is 0 for most candidates; a continuous score cannot tie them, which caps Spearman:
                    "exact_zero_fraction": float(np.mean(~nonzero)) if len(y) else float("nan"),
                    "spearman_ceiling_untied": fm.spearman_ceiling_untied(y),
                    "auroc_nonzero": fm.auroc(nonzero, p),
                    "spearman_nonzero": fm.correlations(y[nonzero], p[nonzero])["spearman"]}
    plugin = plugin_epdms(table)
    out["epdms_plugin"] = {"mae": fm.mae(y, plugin), **fm.correlations(y, plugin),
                           "zero_agreement": float(np.mean((plugin == 0) == ~nonzero)) if len(y) else float("nan")}
    ranking = fm.ranking_summary(table["scene"].to_numpy(), y, p, RANK_KS)
    for key in ("top1_regret_mean", "top1_regret_median", "top1_regret_p90"):
        ranking[key + "_points"] = ranking.pop(key) * 100.0
    out["ranking"] = ranking
    return out


def _checks(block: dict) -> dict:
    aurocs = {m: v["auroc"] for m, v in block["binary"].items() if not np.isnan(v["auroc"])}
    return {
        "auroc": {m: {"value": a, "pass": a >= TARGETS["auroc_min"]} for m, a in aurocs.items()},
        # Correlation across candidates is judged on the plug-in estimate (see ``plugin_epdms``); the expected
        # EPDMS's Spearman is reported next to it.
        "epdms_spearman": {"value": block["epdms_plugin"]["spearman"],
                           "pass": block["epdms_plugin"]["spearman"] >= TARGETS["epdms_spearman_min"],
                           "expected_epdms_spearman": block["epdms"]["spearman"]},
        "top1_regret_points": {"value": block["ranking"]["top1_regret_mean_points"],
                               "pass": block["ranking"]["top1_regret_mean_points"] <= TARGETS["top1_regret_max_points"]},
    }


def expert_agreement(table: pd.DataFrame, margin: float = 0.01) -> dict:
    """How the RWM ranks the logged human trajectory against the other candidates of its scene (original
    frames): pairwise accuracy on the pairs where the exact EPDMS prefers the human by more than ``margin``
    (and on those where it prefers the candidate), and the human's mean percentile rank under both scorers."""
    human = table[table["source"] == "human"].set_index("scene")
    rest = table[(table["source"] != "human") & table["scene"].isin(human.index)]
    if human.empty or rest.empty:
        return {}
    exact_gap = human.loc[rest["scene"], "epdms"].to_numpy() - rest["epdms"].to_numpy()
    pred_gap = human.loc[rest["scene"], PRED + "epdms"].to_numpy() - rest[PRED + "epdms"].to_numpy()
    better, worse = exact_gap > margin, exact_gap < -margin
    exact_rank = (exact_gap > 0).astype(float) + 0.5 * (exact_gap == 0)
    pred_rank = (pred_gap > 0).astype(float) + 0.5 * (pred_gap == 0)
    return {"pairs_human_better": int(better.sum()), "pairs_candidate_better": int(worse.sum()),
            "accuracy_human_better": float(np.mean(pred_gap[better] > 0)) if better.any() else None,
            "accuracy_candidate_better": float(np.mean(pred_gap[worse] < 0)) if worse.any() else None,
            "human_percentile_exact": float(exact_rank.mean()), "human_percentile_rwm": float(pred_rank.mean())}


def fidelity_numbers(table: pd.DataFrame, throughput: dict | None = None) -> dict:
    """Every number of the report from a table of label rows with ``pred_*`` columns and a ``scene`` id (see
    ``predict_table``)."""
    numbers: dict = {"targets": TARGETS, "overall": _metric_block(table), "by": {},
                     "expert": expert_agreement(table)}
    for column in ("scene_type", "scene_kind", "source", "label_set"):
        if column in table:
            numbers["by"][column] = {str(k): _metric_block(g) for k, g in table.groupby(column, sort=True)}
    numbers["checks"] = _checks(numbers["overall"])
    numbers["throughput"] = throughput or {}
    return numbers


# ----------------------------------------------------------------------------------------------------------------
# Predictions and timing


def predict_table(rwm, label_dirs: Sequence[str | Path], *, progress: Callable[[int, int], None] | None = None,
                  max_scenes: int | None = None) -> pd.DataFrame:
    """Label rows of every scene with the RWM's predictions of the same candidates as ``pred_*`` columns."""
    from agents.rwm.data import load_inputs, load_store
    from irlvla_bench.labelling.label import load_labels, poses_of

    frames = []
    for folder in label_dirs:
        table = load_labels(folder)
        if max_scenes is not None:
            table = table[table["token"].isin(table["token"].unique()[:max_scenes])]
        # A frame can be in two splits (navhard's first stage is also a navtest frame): a scene is (split, token).
        table = table.assign(label_set=Path(folder).name, scene=Path(folder).name + ":" + table["token"])
        frames.append(table)
    table = pd.concat(frames, ignore_index=True)
    store = load_store(label_dirs, tokens=set(table["token"].unique()))
    inputs = load_inputs(store, rwm.config.encoder)
    by_token = dict(zip(store.tokens, inputs))
    preds = []
    groups = list(table.groupby("token", sort=False))
    for i, (token, rows) in enumerate(groups):
        pred = rwm.predict(by_token[token], poses_of(rows))
        pred.index = rows.index
        preds.append(pred.add_prefix(PRED))
        if progress:
            progress(i + 1, len(groups))
    return table.join(pd.concat(preds))


def measure_throughput(rwm, label_dirs: Sequence[str | Path], scenes: int = 6, repeats: int = 2) -> dict:
    """Trajectories per CPU-second of the exact scorer (labelling mode, with EC) and of the RWM on the same
    candidates of the first ``scenes`` scenes; the RWM both from the case (scene rendering included) and from
    precomputed scene inputs. CPU time of this process (both run on one thread: numba's kernels are serial, torch
    is set to the caller's thread count), so other load on a shared machine does not distort the ratio; best of
    ``repeats`` per scene."""
    from evaluators.epdms import score_frame
    from irlvla_bench.io.scoring_case import load_case
    from irlvla_bench.labelling.epdms import extended_comfort_labels
    from irlvla_bench.labelling.label import load_labels, poses_of
    from irlvla_bench.types import Proposals

    table = load_labels(label_dirs[0])
    tokens = table["token"].unique()[:scenes]
    exact_s = rwm_s = rwm_cached_s = 0.0
    count = 0
    for token in tokens:
        rows = table[table["token"] == token]
        poses = poses_of(rows)
        case = load_case(rows["case_file"].iloc[0])
        proposals = case.with_proposals(Proposals(tuple(rows["candidate_id"]), poses))
        best = [np.inf, np.inf, np.inf]
        for _ in range(repeats):
            t0 = time.process_time()
            scores = score_frame(proposals, mode="labelling")
            extended_comfort_labels(case, scores.simulated_states)
            t1 = time.process_time()
            inputs = rwm.scene_inputs(case)
            rwm.predict(inputs, poses, as_frame=False)
            t2 = time.process_time()
            rwm.predict(inputs, poses, as_frame=False)
            t3 = time.process_time()
            best = [min(best[0], t1 - t0), min(best[1], t2 - t1), min(best[2], t3 - t2)]
        exact_s, rwm_s, rwm_cached_s = exact_s + best[0], rwm_s + best[1], rwm_cached_s + best[2]
        count += len(poses)
    exact, full, cached = count / exact_s, count / rwm_s, count / rwm_cached_s
    import torch

    return {"scenes": int(len(tokens)), "trajectories": int(count), "clock": "process CPU time",
            "torch_threads": torch.get_num_threads(),
            "device": str(rwm.device), "exact_traj_per_s": exact, "rwm_traj_per_s": full,
            "rwm_cached_inputs_traj_per_s": cached, "ratio_rwm_over_exact": full / exact,
            "ratio_cached_over_exact": cached / exact}


# ----------------------------------------------------------------------------------------------------------------
# Figures


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def reliability_figure(table: pd.DataFrame, path: Path) -> Path:
    fig = Figure(figsize=(16, 7.5))
    for i, m in enumerate(BINARY_METRICS):
        ax = fig.add_subplot(2, 4, i + 1)
        y = table[m].to_numpy(float)
        valid = ~np.isnan(y)
        curve = fm.reliability_curve(y[valid] >= 1.0, table[PRED + "prob1_" + m].to_numpy(float)[valid])
        used = curve.count > 0
        ax.plot([0, 1], [0, 1], color="#999999", lw=1, ls="--")
        ax.plot(curve.mean_predicted[used], curve.fraction_positive[used], "o-", color="#4c72b0")
        ax.set_title(f"{SHORT[m]} (ECE {fm.ece(y[valid] >= 1.0, table[PRED + 'prob1_' + m].to_numpy(float)[valid]):.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted P(pass)")
        ax.set_ylabel("observed pass rate")
    fig.tight_layout()
    return _save(fig, path)


def epdms_figure(table: pd.DataFrame, path: Path) -> Path:
    fig = Figure(figsize=(6, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    hb = ax.hexbin(table["epdms"], table[PRED + "epdms"], gridsize=40, bins="log", cmap="viridis",
                   extent=(0, 1, 0, 1))
    fig.colorbar(hb, ax=ax, label="candidates (log)")
    ax.plot([0, 1], [0, 1], color="white", lw=1, ls="--")
    ax.set_xlabel("exact EPDMS")
    ax.set_ylabel("RWM EPDMS")
    return _save(fig, path)


def regret_figure(table: pd.DataFrame, path: Path) -> Path:
    regret = fm.top1_regret(table["scene"].to_numpy(), table["epdms"].to_numpy(float),
                            table[PRED + "epdms"].to_numpy(float)) * 100.0
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(regret, bins=np.linspace(0, max(10.0, float(regret.max()) + 1), 30), color="#dd8452")
    ax.axvline(TARGETS["top1_regret_max_points"], color="black", ls="--", lw=1, label="target (mean)")
    ax.set_xlabel("top-1 regret per scene [EPDMS points]")
    ax.set_ylabel("scenes")
    ax.legend()
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------------------
# Text


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _tables(numbers: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table, shared by Markdown and HTML."""
    overall = numbers["overall"]
    out = []
    rows = [[SHORT[m], _fmt(b["pass_rate"]), _fmt(b["auroc"]), _fmt(b["accuracy"]), _fmt(b.get("accuracy_3class")),
             _fmt(b["f1_violation"]), _fmt(b["brier"]), _fmt(b["ece"]), _fmt(overall["raw_auroc"][m])]
            for m, b in overall["binary"].items()]
    out.append(("Sub-metrics after the human filter (held-out candidates)",
                ["metric", "pass rate", "AUROC", "accuracy", "3-class acc.", "F1 (violation)", "Brier", "ECE",
                 "AUROC unfiltered"], rows))
    e, r = overall["epdms"], overall["ranking"]
    out.append(("EP and EPDMS", ["quantity", "value"], [
        ["EP MAE", _fmt(overall["ego_progress"]["mae"])], ["EP R^2", _fmt(overall["ego_progress"]["r2"])],
        ["raw progress MAE [m]", _fmt(overall["progress_m"]["mae"])], ["EPDMS MAE", _fmt(e["mae"])],
        ["EPDMS Pearson", _fmt(e["pearson"])], ["EPDMS Spearman", _fmt(e["spearman"])],
        ["EPDMS Kendall", _fmt(e["kendall"])],
        ["exact EPDMS = 0 (fraction of candidates)", _fmt(e["exact_zero_fraction"])],
        ["Spearman ceiling of any tie-free score", _fmt(e["spearman_ceiling_untied"])],
        ["AUROC of EPDMS > 0", _fmt(e["auroc_nonzero"])],
        ["plug-in EPDMS (gates at their most likely value) MAE", _fmt(overall["epdms_plugin"]["mae"])],
        ["plug-in EPDMS Pearson", _fmt(overall["epdms_plugin"]["pearson"])],
        ["plug-in EPDMS Spearman", _fmt(overall["epdms_plugin"]["spearman"])],
        ["plug-in EPDMS Kendall", _fmt(overall["epdms_plugin"]["kendall"])],
        ["plug-in EPDMS = 0 exactly where the exact EPDMS = 0 (fraction)",
         _fmt(overall["epdms_plugin"]["zero_agreement"])],
        ["EPDMS Spearman on candidates with EPDMS > 0", _fmt(e["spearman_nonzero"])],
        ["top-1 regret mean [points]", _fmt(r["top1_regret_mean_points"])],
        ["top-1 regret median [points]", _fmt(r["top1_regret_median_points"])],
        ["top-1 regret p90 [points]", _fmt(r["top1_regret_p90_points"])],
        *[[f"NDCG@{k}", _fmt(r[f"ndcg@{k}"])] for k in RANK_KS]]))
    for column, groups in numbers["by"].items():
        header = ["group", "scenes", "rows"] + [f"AUROC {SHORT[m]}" for m in BINARY_METRICS] + \
            ["EP MAE", "EPDMS Spearman", "plug-in Spearman", "regret [pts]", "NDCG@5"]
        rows = []
        for name, block in groups.items():
            rows.append([name, str(block["scenes"]), str(block["rows"])]
                        + [_fmt(block["binary"][m]["auroc"]) for m in BINARY_METRICS]
                        + [_fmt(block["ego_progress"]["mae"]), _fmt(block["epdms"]["spearman"]),
                           _fmt(block["epdms_plugin"]["spearman"]),
                           _fmt(block["ranking"]["top1_regret_mean_points"]), _fmt(block["ranking"]["ndcg@5"])])
        out.append((f"By {column.replace('_', ' ')}", header, rows))
    expert = numbers.get("expert") or {}
    if expert:
        out.append(("The logged human trajectory against the other candidates (original frames)",
                    ["quantity", "value"], [
                        ["pairs where the exact EPDMS prefers the human", str(expert["pairs_human_better"])],
                        ["... RWM agrees", _fmt(expert["accuracy_human_better"])],
                        ["pairs where the exact EPDMS prefers the candidate", str(expert["pairs_candidate_better"])],
                        ["... RWM agrees", _fmt(expert["accuracy_candidate_better"])],
                        ["human percentile, exact", _fmt(expert["human_percentile_exact"])],
                        ["human percentile, RWM", _fmt(expert["human_percentile_rwm"])]]))
    t = numbers.get("throughput") or {}
    if t:
        out.append((f"Throughput (same candidates, trajectories per CPU-second, {t.get('torch_threads', 1)} thread)",
                    ["scorer", "trajectories / s"], [
            ["exact EPDMS (labelling mode, with EC)", f"{t['exact_traj_per_s']:.0f}"],
            ["RWM from the case (scene rendering included)", f"{t['rwm_traj_per_s']:.0f}"],
            ["RWM from precomputed scene inputs", f"{t['rwm_cached_inputs_traj_per_s']:.0f}"],
            ["ratio RWM / exact", f"{t['ratio_rwm_over_exact']:.2f}x"],
            ["ratio RWM (cached inputs) / exact", f"{t['ratio_cached_over_exact']:.2f}x"]]))
    checks = numbers["checks"]
    rows = [[f"AUROC {SHORT[m]} >= {TARGETS['auroc_min']}", _fmt(c["value"]), "pass" if c["pass"] else "MISS"]
            for m, c in checks["auroc"].items()]
    rows.append([f"EPDMS Spearman (plug-in) >= {TARGETS['epdms_spearman_min']}",
                 _fmt(checks["epdms_spearman"]["value"]), "pass" if checks["epdms_spearman"]["pass"] else "MISS"])
    rows.append(["EPDMS Spearman (expected; the reward)", _fmt(checks["epdms_spearman"]["expected_epdms_spearman"]),
                 "info"])
    rows.append([f"top-1 regret <= {TARGETS['top1_regret_max_points']} points",
                 _fmt(checks["top1_regret_points"]["value"]), "pass" if checks["top1_regret_points"]["pass"] else "MISS"])
    out.insert(0, ("Targets", ["target", "value", "status"], rows))
    return out


def to_markdown(numbers: dict, meta: dict, figures: Sequence[Path]) -> str:
    lines = ["# Reward world model fidelity", "", f"RWM `{meta.get('rwm', '')}` against the exact EPDMS labels of "
             f"{', '.join(f'`{d}`' for d in meta.get('labels', []))} ({numbers['overall']['scenes']} held-out scenes, "
             f"{numbers['overall']['rows']} candidates).", "",
             f"Encoder `{meta.get('encoder')}`, object forecasts `{meta.get('object_motion')}`, "
             f"{meta.get('train_steps')} training steps, expert-preference weight {meta.get('preference_weight')}.",
             "Sub-metrics are judged after the human filter as 'pass (== 1) vs not' with the predicted probability "
             "of passing; EPDMS includes EC (against the expert's previous plan) with the evaluator's weights.", ""]
    for title, header, rows in _tables(numbers):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures]
    return "\n".join(lines) + "\n"


def to_html(numbers: dict, meta: dict, figures: Sequence[Path]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>RWM fidelity</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}</style>",
             "</head><body><h1>Reward world model fidelity</h1>",
             f"<p>RWM <code>{html.escape(str(meta.get('rwm', '')))}</code>; {numbers['overall']['scenes']} held-out "
             f"scenes, {numbers['overall']['rows']} candidates.</p>"]
    for title, header, rows in _tables(numbers):
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts += [f"<h2>{html.escape(p.stem)}</h2><img src='{html.escape(p.name)}'>" for p in figures]
    parts.append("</body></html>")
    return "\n".join(parts)


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_fidelity_report(numbers: dict, table: pd.DataFrame, out_dir: str | Path, meta: dict) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = [reliability_figure(table, out / "reliability.png"), epdms_figure(table, out / "epdms_scatter.png"),
               regret_figure(table, out / "top1_regret.png")]
    write_json_atomic(out / "fidelity.json", _json_safe({"meta": meta, **numbers}), indent=2)
    write_text_atomic(out / "fidelity.md", to_markdown(numbers, meta, figures))
    write_text_atomic(out / "fidelity.html", to_html(numbers, meta, figures))
    return [out / "fidelity.json", out / "fidelity.md", out / "fidelity.html", *figures]


@dataclass(frozen=True)
class FidelityResult:
    numbers: dict
    files: list[Path]


def build_fidelity_report(rwm_checkpoint: str | Path, label_dirs: Sequence[str | Path], out_dir: str | Path, *,
                          throughput_scenes: int = 6, max_scenes: int | None = None,
                          progress: Callable[[int, int], None] | None = None, threads: int | None = 1) -> FidelityResult:
    """Predict, measure, time and write the report; returns the numbers and the files written."""
    import torch

    from agents.rwm.predict import RewardModel

    if threads:
        torch.set_num_threads(threads)
    rwm = RewardModel.load(rwm_checkpoint)
    table = predict_table(rwm, label_dirs, progress=progress, max_scenes=max_scenes)
    throughput = measure_throughput(rwm, label_dirs, scenes=throughput_scenes) if throughput_scenes else {}
    numbers = fidelity_numbers(table, throughput)
    cfg = rwm.config
    meta = {"rwm": str(rwm_checkpoint), "labels": [str(d) for d in label_dirs], "encoder": cfg.encoder.kind,
            "object_motion": cfg.encoder.raster.object_motion if cfg.encoder.kind == "raster" else None,
            "train_steps": cfg.train.steps, "preference_weight": cfg.loss.preference}
    files = write_fidelity_report(numbers, table, out_dir, meta)
    return FidelityResult(numbers, files)
