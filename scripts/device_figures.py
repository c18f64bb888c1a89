#!/usr/bin/env python
"""Re-derive the IBM noise presets from the calibration snapshots that Qiskit ships.

qiskit-ibm-runtime carries, for its fake backends, a copy of a real device's
calibration (``props_<name>.json``: per-qubit T1 and readout error, per-gate error
and length, with the date it was taken). The ``ibm-eagle`` and ``ibm-heron`` presets
of :mod:`qdistill.quantum.noise_model` are the medians of those snapshots, rounded to
two significant digits. This script recomputes the medians and compares:

    pip install --no-deps qiskit-ibm-runtime==0.51.0    # 2 MB; only its JSON files are read
    python scripts/device_figures.py                     # exit 1 if a preset is off by > 5 %

The package is located without importing it (its imports need many dependencies).
IonQ and Quantinuum publish no such files: their presets cite a page or paper
(see ``DEVICES`` in noise_model.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path

from qdistill.quantum.noise_model import DEVICES

# Preset -> the fake backends (device snapshots) it summarises.
SNAPSHOTS = {"ibm-eagle": ("brisbane", "sherbrooke"), "ibm-heron": ("fez", "marrakesh")}
FIELDS = ("error_1q", "error_2q", "readout", "t1_s", "gate_1q_s")


def backends_dir() -> Path:
    spec = importlib.util.find_spec("qiskit_ibm_runtime")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("qiskit-ibm-runtime is not installed: "
                         "pip install --no-deps qiskit-ibm-runtime==0.51.0")
    return Path(next(iter(spec.submodule_search_locations))) / "fake_provider" / "backends"


def snapshot_medians(names: tuple[str, ...], root: Path) -> tuple[dict[str, float], list[str]]:
    """Medians over every qubit / gate of the named snapshots (pooled), and their dates.

    1q error and length: the SX gate (RZ is virtual, X = 2 SX); 2q error: ECR (Eagle) or
    CZ (Heron), entries with error >= 1 (a broken pair) left out; times in seconds."""
    values: dict[str, list[float]] = {f: [] for f in FIELDS}
    dates = []
    for name in names:
        props = json.loads((root / name / f"props_{name}.json").read_text())
        dates.append(f"{name} {props['last_update_date'][:10]}")
        for qubit in props["qubits"]:
            for item in qubit:
                if item["name"] == "T1":
                    values["t1_s"].append(item["value"] * 1e-6)  # stored in us
                elif item["name"] == "readout_error":
                    values["readout"].append(item["value"])
        for gate in props["gates"]:
            par = {p["name"]: p["value"] for p in gate["parameters"]}
            if "gate_error" not in par:
                continue
            if gate["gate"] == "sx":
                values["error_1q"].append(par["gate_error"])
                values["gate_1q_s"].append(par["gate_length"] * 1e-9)  # stored in ns
            elif gate["gate"] in ("ecr", "cz") and par["gate_error"] < 1:
                values["error_2q"].append(par["gate_error"])
    return {f: statistics.median(v) for f, v in values.items()}, dates


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--tolerance", type=float, default=0.05,
                    help="largest relative difference preset vs median (default 0.05)")
    args = ap.parse_args(argv)
    root, worst = backends_dir(), 0.0
    for preset, names in SNAPSHOTS.items():
        med, dates = snapshot_medians(names, root)
        print(f"{preset}: snapshots {', '.join(dates)}")
        print(f"  {'field':10} {'median':>10} {'preset':>10} {'rel.diff':>9}")
        for f in FIELDS:
            have = getattr(DEVICES[preset], f)
            rel = abs(have - med[f]) / med[f]
            worst = max(worst, rel)
            print(f"  {f:10} {med[f]:10.3g} {have:10.3g} {rel:9.1%}")
    print(f"largest difference {worst:.1%} (tolerance {args.tolerance:.0%})")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
