"""Seed systems (issue 9): per model and exporter, channel groups, prunable groups, and the parameter and MAC
fractions removed when every prunable group loses 30% / 50% of its units. Writes
benchmarks/results_seed_systems.md. Run: python -m benchmarks.seed_systems"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnxprune as op
from onnxprune import models
from onnxprune.analysis.stats import count_macs, count_params
from tests.seed_systems.seed_check import ratio_plan

SEEDS = ("gcn", "gat", "dgcnn", "yolov8", "yolo11", "unet2d")


def main() -> None:
    """Measure and write the table."""
    rows = ["| model | exporter | groups | prunable | params removed 0.3 | params removed 0.5 | MACs removed 0.5 |",
            "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in SEEDS:
            for exporter in models.EXPORTERS:
                path = models.export(name, Path(tmp) / f"{name}.{exporter}.onnx", exporter, keep_bn=False)
                dg = op.analyse_model(path)
                params, macs = count_params(dg.graph), count_macs(dg.graph)
                cells = []
                for ratio in (0.3, 0.5):
                    result = op.apply_plan(dg, ratio_plan(dg, ratio))
                    cells.append(f"{1 - count_params(result.graph) / params:.1%}")
                cells.append(f"{1 - count_macs(result.graph) / macs:.1%}")
                rows.append(f"| {name} | {exporter} | {len(dg.channel_groups())} | {len(dg.prunable_groups())} | "
                            + " | ".join(cells) + " |")
                print(rows[-1])
    Path(__file__).with_name("results_seed_systems.md").write_text(
        "# Seed systems: what prunes\n\nEvery prunable group loses 30% / 50% of its units (random units; the "
        "fractions depend only on counts). Narrow models from `models/` (graph_nets, detectors, diffusion), "
        "keep_bn=False exports, CPU.\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
