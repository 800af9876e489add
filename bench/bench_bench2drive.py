"""Time to score a 220-route Bench2Drive result set, ours against the official tools.

    python bench/bench_bench2drive.py [--official-tools DIR] [--repeat 3] [--keep DIR]

Sets timed:
* ``synthetic-220``: built here from the official ``bench2drive220.xml`` (8 task files, realistic status mix and
  metric-log lengths, deterministic seed);
* every ``shared/golden/bench2drive/*.tar.gz`` set, when the shared folder is present.

``--official-tools DIR`` points at a folder holding Bench2Drive 0.0.4's ``merge_route_json.py``,
``ability_benchmark.py`` and ``efficiency_smoothness_benchmark.py`` (not part of this project).  They are run
unmodified in a subprocess on a copy of each golden set; ``ability_benchmark.py`` gets the golden set's fake
CARLA maps through ``CARLA_ROOT`` and a stand-in ``agents.navigation.global_route_planner`` written to a temp
folder (the pip ``carla`` wheel lacks CARLA's ``agents`` package).  Its ``trace_route(a, b)`` returns one
waypoint at ``a``, in a junction when ``a`` lies in one of the discs the fake map lists in its
``b2d_oracle_junctions`` user data: the contract the golden sets were produced with.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluators.bench2drive import score_results  # noqa: E402
from evaluators.bench2drive.config import DEFAULT_CONFIG, INFRACTION_KEYS  # noqa: E402
from evaluators.bench2drive.routes import load_routes  # noqa: E402

GOLDEN = ROOT.parent / "shared" / "golden" / "bench2drive"
TS_TYPES = dict(DEFAULT_CONFIG.ability_types)["Traffic_Signs"]

GRP_STANDIN = '''
import ast, math, re
class _Wp:
    def __init__(self, loc, junction):
        self.transform = type("T", (), {"location": loc})()
        self.is_junction = junction
class GlobalRoutePlanner:
    def __init__(self, wmap, sampling_resolution):
        m = re.search(r'code="b2d_oracle_junctions" value="([^"]*)"', wmap.to_opendrive())
        self.discs = ast.literal_eval(m.group(1)) if m else []
    def trace_route(self, a, b):
        inside = any(math.hypot(a.x - cx, a.y - cy) <= r for cx, cy, r in self.discs)
        return [(_Wp(a, inside), None)]
'''


def _msg(v: float) -> str:
    return f"Average speed is {v}% of the surrounding traffic's one"


def build_synthetic_set(routes_xml: Path, out: Path, seed: int = 220,
                        xodr_template: str | None = None) -> dict[str, Path]:
    """A 220-route result set shaped like a real run, laid out like a golden set (``out/inputs/...``).

    With ``xodr_template`` (a fake-map OpenDRIVE file of a golden set) it also writes fake town maps whose
    junction discs agree with the junction table, so the official ability tool can run on the set.
    """
    import numpy as np

    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    routes = load_routes(routes_xml)
    inputs = out / "inputs"
    eval_dir, metric_dir = inputs / "eval_json", inputs / "metric"
    eval_dir.mkdir(parents=True)
    metric_dir.mkdir()
    shutil.copyfile(routes_xml, inputs / "routes.xml")
    keypoints = _keypoints(routes_xml)
    discs: dict[str, list[list[float]]] = {}
    tasks: list[list[dict]] = [[] for _ in range(8)]
    junctions = {}
    for n, route in enumerate(routes):
        kind = rng.choices(["ok", "collide", "blocked", "tick", "deviate"], [55, 12, 18, 10, 5])[0]
        rc = 100 if kind in ("ok", "collide") else round(rng.uniform(5, 95), 2)
        inf = {k: [] for k in INFRACTION_KEYS}
        penalty = 1.0
        if kind == "collide":
            inf["collisions_vehicle"].append("Agent collided against object with type=vehicle.x and id=1 at (x=0)")
            penalty = 0.6
        if kind == "blocked":
            inf["vehicle_blocked"].append("Agent got blocked at (x=0, y=0, z=0)")
        if kind == "deviate":
            inf["route_dev"].append("Agent deviated from the route at (x=0, y=0, z=0)")
        inf["min_speed_infractions"] = [_msg(round(rng.lognormvariate(4.4, 0.5), 2))
                                        for _ in range(int(rc // 5))]
        status = {"ok": "Completed", "collide": "Completed", "blocked": "Failed - Agent got blocked",
                  "tick": "Failed - TickRuntime", "deviate": "Failed - Agent deviated from the route"}[kind]
        rid = f"RouteScenario_{route.route_id}_rep0"
        save_name = f"{rid}_{route.town}_{route.scenario_name}_1_01_01_00_00_{n % 60:02d}"
        task = tasks[n % 8]
        task.append({"index": len(task), "route_id": rid, "scenario_name": route.scenario_name, "weather_id": "1",
                     "save_name": save_name, "status": status,
                     "num_infractions": sum(len(v) for v in inf.values()), "infractions": inf,
                     "scores": {"score_route": rc, "score_penalty": penalty,
                                "score_composed": round(max(rc * penalty, 0.0), 6)},
                     "meta": {"route_length": 300.0, "duration_game": 60.0, "duration_system": 300.0},
                     "town_name": route.town})
        steps = 4000 if kind == "tick" else int(rng.uniform(300, 1600))
        acc = nrng.normal(0, 0.6, (steps, 3)).round(5)
        ang = nrng.normal(0, 0.3, (steps, 3)).round(4)
        yaw = np.cumsum(nrng.normal(0, 0.002, steps))
        fwd = np.column_stack([np.cos(yaw), np.sin(yaw), np.zeros(steps)]).round(6)
        right = np.column_stack([-np.sin(yaw), np.cos(yaw), np.zeros(steps)]).round(6)
        log = {str(i): {"acceleration": acc[i].tolist(), "angular_velocity": ang[i].tolist(),
                        "forward_vector": fwd[i].tolist(), "right_vector": right[i].tolist(),
                        "location": [float(i), 0.0, 0.0], "rotation": [0.0, 0.0, float(yaw[i])]}
               for i in range(steps)}
        (metric_dir / save_name).mkdir()
        (metric_dir / save_name / "metric_info.json").write_text(json.dumps(log))
        if route.scenario_type in TS_TYPES:
            # The fake-map contract: one trace waypoint per XML keypoint pair, the first junction at `count`.
            kps = keypoints[route.route_id]
            nwp = len(kps) - 1
            count = rng.randint(1, max(1, nwp - 8))
            cx, cy = kps[count - 1]
            discs.setdefault(route.town, []).append([cx, cy, 0.01])
            junctions[f"RouteScenario_{route.route_id}"] = {"num_waypoints": nwp, "first_junction_count": count}
    for k, recs in enumerate(tasks):
        data = {"_checkpoint": {"global_record": {}, "progress": [len(recs), len(recs)], "records": recs},
                "entry_status": "Finished", "eligible": True, "sensors": [], "values": [], "labels": []}
        (eval_dir / f"eval_bench2drive220_{k}.json").write_text(json.dumps(data, indent=4))
    (inputs / "junction_table.json").write_text(json.dumps(junctions))
    if xodr_template is not None:
        maps = inputs / "carla_root" / "CarlaUE4" / "Content" / "Carla" / "Maps" / "OpenDrive"
        maps.mkdir(parents=True)
        for town in {r.town for r in routes}:
            text = re.sub(r'name="[^"]*"', f'name="{town}"', xodr_template, count=1)
            text = re.sub(r'(code="b2d_oracle_junctions" value=")[^"]*"',
                          lambda m: m.group(1) + json.dumps(discs.get(town, [])) + '"', text)
            (maps / f"{town}.xodr").write_text(text)
    return {"eval": eval_dir, "routes": inputs / "routes.xml", "junctions": inputs / "junction_table.json",
            "metric": metric_dir}


def _keypoints(routes_xml: Path) -> dict[str, list[tuple[float, float]]]:
    root = ET.parse(routes_xml).getroot()
    return {r.get("id"): [(float(p.get("x")), float(p.get("y"))) for p in r.find("waypoints").findall("position")]
            for r in root.findall("route")}


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def time_ours(paths: dict[str, Path], repeat: int) -> tuple[float, float, int]:
    def in_process():
        return score_results(paths["eval"], paths["routes"], junctions=paths["junctions"],
                             metric_dir=paths["metric"])

    records = in_process().merge.eval_num
    warm = _best(in_process, repeat)
    cmd = [sys.executable, "-c", "from evaluators.bench2drive.cli import app; app()", "score", str(paths["eval"]),
           "--routes", str(paths["routes"]), "--junctions", str(paths["junctions"]),
           "--metric-dir", str(paths["metric"]), "--out", os.devnull]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    cold = _best(lambda: subprocess.run(cmd, env=env, capture_output=True, check=False), repeat)
    return warm, cold, records


def time_official(tools: Path, case_root: Path, repeat: int) -> tuple[float, dict] | None:
    """merge + ability + efficiency/smoothness, unmodified, each in its own interpreter (as users run them).

    Returns the best time and the numbers the tools produced, or None when a tool fails on the set.
    """
    inputs = case_root / "inputs"
    with tempfile.TemporaryDirectory(prefix="b2d_official_") as tmp:
        tmp_path = Path(tmp)
        nav = tmp_path / "shim" / "agents" / "navigation"
        nav.mkdir(parents=True)
        (tmp_path / "shim" / "agents" / "__init__.py").write_text("")
        (nav / "__init__.py").write_text("")
        (nav / "global_route_planner.py").write_text(GRP_STANDIN)
        env = dict(os.environ, PYTHONPATH=str(tmp_path / "shim"), CARLA_ROOT=str(inputs / "carla_root"))
        work = tmp_path / "eval_json"
        stdout: dict[str, str] = {}

        def run_all() -> bool:
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(inputs / "eval_json", work)
            for args in (["merge_route_json.py", "-f", str(work)],
                         ["ability_benchmark.py", "-f", str(inputs / "routes.xml"), "-r", str(work / "merged.json")],
                         ["efficiency_smoothness_benchmark.py", "-f", str(work / "merged.json"), "-m",
                          str(inputs / "metric")]):
                proc = subprocess.run([sys.executable, str(tools / args[0]), *args[1:]], env=env, cwd=tmp,
                                      capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    return False
                stdout[args[0]] = proc.stdout
            return True

        if not run_all():
            return None
        best = _best(run_all, repeat)
        merged = json.loads((work / "merged.json").read_text())
        numbers = {"driving score": merged["driving score"], "success rate": merged["success rate"],
                   "ability": json.loads((work / "merged_ability.json").read_text()),
                   "order": [n for n in os.listdir(work) if n.endswith(".json") and "merged" not in n]}
        for line in stdout["efficiency_smoothness_benchmark.py"].splitlines():
            key, _, value = line.partition("=")
            numbers[key] = float(value)
        return best, numbers


def same_numbers(paths: dict[str, Path], official: dict) -> bool:
    """Our numbers equal the official tools' (merged in the order their glob saw the files)."""
    ours = score_results(paths["eval"], paths["routes"], junctions=paths["junctions"], metric_dir=paths["metric"],
                         file_order=official["order"])
    ability = {**dict(ours.abilities.scores), "mean": ours.abilities.mean,
               "crashed": [list(c) for c in ours.abilities.crashed]}
    return (ours.merge.driving_score == official["driving score"]
            and ours.merge.success_rate == official["success rate"]
            and ability == official["ability"]
            and ours.efficiency.value == official["Driving Efficiency"]
            and ours.smoothness.value == official["Driving Smoothness"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-tools", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="build the synthetic set here and keep it")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="b2d_bench_") as tmp:
        sets: list[tuple[str, Path]] = []
        extracted = []
        for tarball in sorted(GOLDEN.glob("*.tar.gz")) if GOLDEN.is_dir() else []:
            dest = Path(tmp) / tarball.name
            with tarfile.open(tarball) as tar:
                tar.extractall(dest, filter="data")
            extracted.append(next(p for p in dest.iterdir() if p.is_dir()))
        routes_gz = GOLDEN / "routes" / "bench2drive220.xml.gz"
        if routes_gz.exists():
            routes_xml = Path(tmp) / "bench2drive220.xml"
            routes_xml.write_bytes(gzip.decompress(routes_gz.read_bytes()))
            template = next((p for root in extracted for p in sorted(root.glob("inputs/carla_root/**/*.xodr"))),
                            None)
            synth_dir = args.keep or Path(tmp) / "synthetic-220"
            t = time.perf_counter()
            build_synthetic_set(routes_xml, synth_dir, xodr_template=None if template is None else
                                template.read_text())
            print(f"built synthetic-220 in {time.perf_counter() - t:.1f} s", flush=True)
            sets.append(("synthetic-220", synth_dir))
        sets += [(root.name, root) for root in extracted]
        for name, root in sets:
            inputs = root / "inputs"
            paths = {"eval": inputs / "eval_json", "routes": inputs / "routes.xml",
                     "junctions": inputs / "junction_table.json", "metric": inputs / "metric"}
            warm, cold, n = time_ours(paths, args.repeat)
            official = None
            if args.official_tools and (inputs / "carla_root").is_dir():
                official = time_official(args.official_tools, root, args.repeat)
            same = None if official is None else same_numbers(paths, official[1])
            rows.append((name, n, warm, cold, None if official is None else official[0], same))

    header = (f"{'result set':<30} {'records':>7} {'ours (s)':>9} {'ours CLI (s)':>12} {'official (s)':>12} "
              f"{'ratio':>6} {'same numbers':>12}")
    print(header)
    print("-" * len(header))
    for name, n, warm, cold, official, same in rows:
        off = "n/a" if official is None else f"{official:.2f}"
        ratio = "n/a" if official is None else f"{official / cold:.1f}x"
        print(f"{name:<30} {n:>7} {warm:>9.2f} {cold:>12.2f} {off:>12} {ratio:>6} "
              f"{'n/a' if same is None else ('yes' if same else 'NO'):>12}")
    print("ours: in-process score_results (warm, all metrics); ours CLI: a fresh `b2d score` process; official: "
          "merge + ability + efficiency/smoothness scripts, three processes; ratio = official / ours CLI; "
          f"best of {args.repeat}. 'n/a' official: no --official-tools, or a tool fails on that set.")


if __name__ == "__main__":
    main()
