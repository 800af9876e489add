"""The IL VLA policy's full configuration: parameter counts, and one forward + backward pass on a batch of six
cameras at 256 x 704 (random images, the OpenScene rig's geometry), timed.

    python bench/bench_vla_full.py                 # CPU, batch 1
    python bench/bench_vla_full.py --device cuda --batch 4 --steps 5 --amp    # GPU throughput

Prints a table and, with --json, writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch


def rig_inputs(config, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    from agents.vla.data import LIDAR_TO_EGO_TRANSLATION
    from irlvla_bench.io.sensors import camera_rig

    img = config.image
    rig = camera_rig(img.width, img.height)
    cams = [rig[name] for name in img.cameras]
    k = np.stack([c.intrinsic for c in cams])
    t = np.tile(np.eye(4), (len(cams), 1, 1))
    t[:, :3, :3] = np.stack([c.sensor2lidar_rotation for c in cams])
    t[:, :3, 3] = np.stack([c.sensor2lidar_translation for c in cams]) + LIDAR_TO_EGO_TRANSLATION
    g = torch.Generator().manual_seed(0)
    ego_dim = config.history_frames * 7 + 4
    return {
        "images": torch.randint(0, 256, (batch, len(cams), 3, img.height, img.width), generator=g,
                                dtype=torch.uint8).to(device),
        "intrinsics": torch.as_tensor(k, dtype=torch.float32).expand(batch, -1, -1, -1).to(device),
        "cam2ego": torch.as_tensor(t, dtype=torch.float32).expand(batch, -1, -1, -1).to(device),
        "ego": torch.randn(batch, ego_dim, generator=g).to(device),
    }


def fake_targets(config, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    nx, ny = config.bev.grid_shape()
    g = torch.Generator().manual_seed(1)
    q, m, p = config.heads.det_queries, config.heads.map_queries, config.heads.map_points
    t = torch.linspace(0.5, 4.0, 8)
    trajectory = torch.stack([t * 8.0, torch.zeros(8), torch.zeros(8)], -1).expand(batch, -1, -1)
    classes = torch.full((batch, q), -1, dtype=torch.long)
    classes[:, :5] = torch.randint(0, 4, (batch, 5), generator=g)
    return {k: v.to(device) for k, v in {
        "trajectory": trajectory, "seg": (torch.rand(batch, 6, nx, ny, generator=g) > 0.8).to(torch.uint8),
        "det_boxes": torch.rand(batch, q, 5, generator=g) * 10, "det_classes": classes,
        "map_points": torch.rand(batch, m, p, 2, generator=g) * 20, "map_valid": torch.arange(m).expand(batch, -1) < 6,
        "speed_command": torch.randint(0, 13, (batch,), generator=g),
        "path_command": torch.randint(0, 9, (batch,), generator=g)}.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="full")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1, help="timed forward+backward passes (after one warm-up "
                                                              "on GPU)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from agents.vla.config import preset
    from agents.vla.losses import total_loss
    from agents.vla.model import IRLVLAModel
    from agents.vla.vovnet import count_parameters

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = preset(args.config)
    torch.manual_seed(0)
    model = IRLVLAModel(config).to(device).train()
    inputs = rig_inputs(config, args.batch, device)
    targets = fake_targets(config, args.batch, device)
    batch = {**inputs, **targets}
    params = {name: count_parameters(module) for name, module in model.named_children()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    warmup = 1 if device.type == "cuda" else 0
    for i in range(args.steps + warmup):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=args.amp):
            features, out = model(batch, torch.Generator().manual_seed(i))
            loss, parts = total_loss(model.planner, features, out, batch, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    grads = all(p.grad is not None for p in model.backbone.parameters())
    result = {
        "config": config.name, "device": str(device), "batch": args.batch,
        "cameras": len(config.image.cameras), "image": [config.image.height, config.image.width],
        "bev_grid": list(config.bev.grid_shape()), "backbone": config.backbone.arch,
        "backbone_parameters": params["backbone"], "total_parameters": count_parameters(model),
        "parameters_by_module": params, "loss": float(loss.detach()), "finite": bool(torch.isfinite(loss)),
        "backbone_has_gradients": grads, "seconds_per_step": float(np.mean(times)),
        "samples_per_second": args.batch / float(np.mean(times)),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    if device.type == "cuda":
        result["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
