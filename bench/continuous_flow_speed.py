"""Benchmark: the continuous-flow detector (连续流量, ``meter.continuous_flow``) alone, on synthetic meter rows.

The throughput benchmark feeds millions of meter readings through every meter detector, so this one must
stay well above 10 M rows/s by itself.  Two batches of ``--rows`` readings each (sorted by device, then
time): 80,000 meters read daily (as in bench/telemetry_throughput.py: no interval is short enough to
count), and 10,000 meters read hourly with household use and 2 % of them leaking (runs, findings, state).
Each is run with an empty state and again with the state of the previous run; the figure is the best of
``--repeat``.  The naive way, a per-reading Python loop keeping the same state, runs on a sample.

    .venv/bin/python bench/continuous_flow_speed.py            # --rows 5000000 --repeat 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jiliang.engine.detectors.meters import MeterContinuousFlow


def batch(rows: int, meters: int, every_h: float, seed: int) -> dict[str, np.ndarray]:
    """``rows`` readings of ``meters`` meters, each read every ``every_h`` hours; households use water in
    most day hours and none in most night hours, 2 % of the meters leak 2–20 L/h."""
    rng = np.random.default_rng(seed)
    per = rows // meters
    dev = np.repeat(np.arange(1, meters + 1, dtype=np.int64), per)
    k = np.tile(np.arange(per), meters)
    ts = 1.8e9 + k * every_h * 3600.0 + (dev % 500)
    hour = (k * every_h) % 24
    use = np.where(rng.random(dev.size) < np.where((hour >= 1) & (hour < 6), 0.05, 0.6),
                   rng.integers(1, 60, dev.size), 0)
    use = use + np.where(dev % 50 == 0, rng.integers(2, 21, dev.size), 0)
    use[k == 0] = 0
    reg = np.cumsum(use)
    reg -= np.repeat(reg[::per] - use[::per], per)
    return {"device": dev, "ts": ts, "seq": k + 1, "register_milli": 100_000 + reg,
            "flags": np.zeros(dev.size, dtype=np.int64)}


def naive(b: dict[str, np.ndarray], det: MeterContinuousFlow) -> float:
    """The same rule as a per-reading Python loop over the rows (state in a dict): rows/s."""
    max_s, min_h = det.params["max_interval_h"] * 3600, det.params["min_hours"]
    last: dict[int, tuple[float, float]] = {}
    start: dict[int, float] = {}
    flagged = set()
    t = time.perf_counter()
    for d, ts, reg in zip(b["device"].tolist(), b["ts"].tolist(), b["register_milli"].tolist(), strict=True):
        prev = last.get(d)
        if prev is not None and 0 < ts - prev[0] <= max_s and reg > prev[1]:
            s = start.setdefault(d, prev[0])
            if ts - s >= min_h * 3600:
                flagged.add(d)
        else:
            start.pop(d, None)
        last[d] = (ts, reg)
    return b["device"].size / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=5_000_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    det = MeterContinuousFlow()
    for label, meters, every in (("daily readings, 80,000 meters", 80_000, 24.0),
                                 ("hourly readings, 10,000 meters", 10_000, 1.0)):
        b = batch(args.rows, meters, every, seed=1)
        later = {k: (v + (b["ts"].max() - b["ts"].min() + every * 3600) if k == "ts" else v) for k, v in b.items()}
        results: dict[str, Any] = {}
        findings, state = det.run(b, {})
        for name, (data, st) in {"empty state": (b, {}), "with state": (later, state)}.items():
            best = min(_timed(det, data, st) for _ in range(args.repeat))
            results[name] = data["device"].size / best
        sample = {k: v[: 200_000] for k, v in b.items()}
        print(f"{label}: {b['device'].size:,} rows, {len(findings):,} findings, state of "
              f"{len(state['flow']):,} meters — {results['empty state'] / 1e6:.1f} M rows/s (empty state), "
              f"{results['with state'] / 1e6:.1f} M rows/s (with state); per-reading loop "
              f"{naive(sample, det) / 1e6:.2f} M rows/s", flush=True)


def _timed(det: MeterContinuousFlow, b: dict[str, np.ndarray], state: dict[str, Any]) -> float:
    t = time.perf_counter()
    det.run(b, state)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
