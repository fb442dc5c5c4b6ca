"""Benchmark: detection accuracy against the simulator's ground truth (issue 4 acceptance), with throughput.

Builds the city into a fresh SQLite file (or ``--database-url``), simulates ``--days`` of telemetry
(re-weighs at the fair scales, charger sessions, daily meter readings and ``--hourly-share`` of the water
meters read hourly; scale transactions off unless ``--scale-txns``), then ingests and runs the detectors
**day by day**, as a live deployment would, so the day each fault is first flagged is known.  Prints,
against the ground truth:

- scales: share of cheating scales (inflation >= 5 %) flagged within 7 days of starting to cheat; false
  alarms per 100 scale-months on honest scales (no fault of any kind, zero drift included); how many
  zero-drift scales the shortfall detector flags (a positive zero offset is a shortfall too);
- zero drift: share of zero-drift scales with |offset| >= 20 g flagged by ``scale.zero_drift`` within 7
  days of the shift; its alarms on honest scales (per 100 scale-months) and, separately, on the scales with
  proportional errors (cheating, drifting), which it should leave to the shortfall detector;
- meters: share of stuck / reversed meters flagged within 2 days; leaking hourly meters flagged by
  ``meter.continuous_flow`` within 3 days of the leak's onset; its alarms on sound hourly meters; alerts on
  healthy meters (any meter detector);
- chargers: share of chargers with >= 50 sessions estimated within ±0.5 %; in-class / out-of-class
  verdicts right;
- throughput: ingest and detect records/s, against a per-record Python loop over the same records.

    .venv/bin/python bench/detection_accuracy.py --scale city --days 30
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="city", choices=["small", "city", "large"])
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--scale-txns", type=int, default=0, help="scale transactions per stall per day")
    p.add_argument("--hourly-share", type=float, default=0.1, help="share of water meters read every hour")
    p.add_argument("--database-url", default="")
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="jl-detect-"))
    os.environ["JILIANG_HOME"] = str(home)
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{home}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jiliang.config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    import orjson

    from jiliang.engine.detectors import REGISTRY
    from jiliang.monitoring.detection import run_detectors
    from jiliang.monitoring.estimates import charger_estimates
    from jiliang.monitoring.ingest import ingest_lines, registry_snapshot
    from jiliang.monitoring.models import Alert
    from jiliang.simulation.city import generate_city
    from jiliang.simulation.demo import build_demo
    from jiliang.simulation.telemetry import TelemetrySpec, generate_telemetry

    as_of = dt.date.today()
    build_demo(scale=args.scale, seed=args.seed, fresh=True, progress=False, as_of=as_of, with_telemetry=False)
    city = generate_city(args.scale, args.seed, as_of)
    spec = TelemetrySpec(days=args.days, scale_txns_per_day=args.scale_txns, charger_sessions_per_day=8,
                         hourly_meter_share=args.hourly_share)
    start = as_of - dt.timedelta(days=args.days)
    lines, truth = generate_telemetry(city, seed=args.seed, spec=spec, start=start)
    by_day: dict[int, list[str]] = defaultdict(list)
    for line in lines:
        i = line.find('"ts":"') + 6 if '"ts":"' in line else line.find('"start_ts":"') + 12
        by_day[(dt.date.fromisoformat(line[i : i + 10]) - start).days].append(line)
    print(f"{args.scale} city, {args.days} days: {len(lines):,} records", flush=True)

    snapshot = registry_snapshot()
    first_flag: dict[tuple[str, str], int] = {}
    ingest_s = detect_s = 0.0
    analysed = 0
    for day in sorted(by_day):
        t = time.perf_counter()
        ingest_lines(by_day[day], source=f"sim-day-{day}", snapshot=snapshot)
        ingest_s += time.perf_counter() - t
        t = time.perf_counter()
        analysed += run_detectors().rows
        detect_s += time.perf_counter() - t
        for det, dev in Alert.objects.values_list("detector", "device__device_id"):
            first_flag.setdefault((det, dev), day)
    n_records = len(lines)

    # the naive way on a sample: one ORM object per record, each detector as a per-record Python loop
    from jiliang.monitoring.models import MeterReading
    sample = [orjson.loads(x) for x in lines if '"meter.reading"' in x][:5000]
    ids = {d: i for d, (i, *_r) in ((k, (v.id,)) for k, v in snapshot[0].items())}
    t = time.perf_counter()
    for rec in sample:
        MeterReading(device_id=ids[rec["device"]], ts=dt.datetime.fromisoformat(rec["ts"]), seq=rec["seq"] + 10**6,
                     register_milli=round(rec["register"] * 1000), flags=0).save()
    naive_ingest = len(sample) / (time.perf_counter() - t)
    # the same meter detectors fed one record at a time (a per-record loop) instead of in batches
    import numpy as np

    meter_detectors = [cls() for cls in REGISTRY.values() if cls.kind == "meter.reading"]
    states: list[dict[str, object]] = [{} for _ in meter_detectors]
    t = time.perf_counter()
    for rec in sample:
        one = {"device": np.array([ids[rec["device"]]]), "seq": np.array([rec["seq"]]),
               "ts": np.array([dt.datetime.fromisoformat(rec["ts"]).timestamp()]),
               "register_milli": np.array([round(rec["register"] * 1000)]), "flags": np.array([0]),
               "place": np.array([0]), "max_rate_milli_per_h": np.array([3125.0])}
        for k, det in enumerate(meter_detectors):
            _findings, states[k] = det.run(one, states[k])
    naive_detect = len(sample) * len(meter_detectors) / (time.perf_counter() - t)

    # --- accuracy against the ground truth
    def flagged_within(detector: str, faults: dict[str, int], days: int) -> float:
        ok = [first_flag.get((detector, d), 10**9) - start_day <= days for d, start_day in faults.items()]
        return sum(ok) / len(ok) if ok else float("nan")

    def flagged_by(detector: str, devices: set[str]) -> int:
        return sum(1 for (det, dev) in first_flag if det == detector and dev in devices)

    def delays(detector: str, faults: dict[str, int]) -> dict[str, int]:
        """How many faults were first flagged how many days after they started ("never" when not at all)."""
        out: dict[str, int] = defaultdict(int)
        for d, start_day in faults.items():
            day = first_flag.get((detector, d))
            out["never" if day is None else str(day - start_day)] += 1
        return dict(sorted(out.items(), key=lambda kv: (kv[0] == "never", int(kv[0]) if kv[0] != "never" else 0)))

    cheaters = {d: int(c["from_day"]) for d, c in truth.cheating_scales.items() if c["inflation"] >= 0.05}
    scales = [i["device_id"] for i in city.instruments if i["instrument_type"] == "scale"]
    zero = truth.zero_drift_scales
    honest = (set(scales) - set(truth.cheating_scales) - set(truth.drifting_scales) - truth.padding_scales
              - set(zero))
    proportional = set(truth.cheating_scales) | set(truth.drifting_scales)
    false_scale = flagged_by("scale.recheck_shortfall", honest)
    scale_months = len(honest) * args.days / 30
    zero_big = {d: int(z["from_day"]) for d, z in zero.items() if abs(z["offset_g"]) >= 20}
    zero_pos = {d for d, z in zero.items() if z["offset_g"] > 0}
    meters = [i["device_id"] for i in city.instruments if i["instrument_type"] in ("water_meter", "gas_meter")]
    leaking = truth.leaking_meters
    faulty_meters = set(truth.stuck_meters) | set(truth.reversed_meters) | set(leaking)
    healthy_alerts = sum(1 for (det, dev) in first_flag if det.startswith("meter.") and dev not in faulty_meters)
    sound_hourly = truth.hourly_meters - faulty_meters
    est = {r["device"]: r for r in charger_estimates()}
    many = [d for d, r in est.items() if r["sessions"] >= 50]
    within = sum(abs(est[d]["error_pct"] - truth.charger_error_pct[d]) <= 0.5 for d in many)
    verdict = sum((abs(est[d]["error_pct"]) > est[d]["mpe_pct"])
                  == (abs(truth.charger_error_pct[d]) > est[d]["mpe_pct"]) for d in many)
    result = {
        "records": n_records, "days": args.days, "scale": args.scale,
        "scales_cheating_ge5pct": len(cheaters),
        "scales_caught_within_7_days": flagged_within("scale.recheck_shortfall", cheaters, 7),
        "scale_false_alarms_per_100_scale_months": 100 * false_scale / max(scale_months, 1e-9),
        "honest_scales": len(honest),
        "zero_drift_scales": len(zero), "zero_drift_positive": len(zero_pos),
        "shortfall_flags_zero_drift_positive": flagged_by("scale.recheck_shortfall", zero_pos),
        "shortfall_flags_zero_drift_negative": flagged_by("scale.recheck_shortfall", set(zero) - zero_pos),
        "zero_drift_ge20g": len(zero_big),
        "zero_drift_ge20g_flagged_within_7_days": flagged_within("scale.zero_drift", zero_big, 7),
        "zero_drift_flagged_by_the_end": flagged_by("scale.zero_drift", set(zero)),
        "zero_drift_days_to_flag": delays("scale.zero_drift", {d: int(z["from_day"]) for d, z in zero.items()}),
        "zero_drift_alarms_on_honest_scales": flagged_by("scale.zero_drift", honest),
        "zero_drift_false_alarms_per_100_scale_months":
            100 * flagged_by("scale.zero_drift", honest) / max(scale_months, 1e-9),
        "proportional_error_scales": len(proportional),
        "zero_drift_alarms_on_proportional_error_scales": flagged_by("scale.zero_drift", proportional),
        "zero_drift_alarms_on_padding_scales": flagged_by("scale.zero_drift", truth.padding_scales - set(zero)),
        "stuck_meters": len(truth.stuck_meters),
        "stuck_flagged_within_2_days": flagged_within("meter.stuck_register", truth.stuck_meters, 2),
        "reversed_meters": len(truth.reversed_meters),
        "reversed_flagged_within_2_days": flagged_within("meter.reverse_flow", truth.reversed_meters, 2),
        "hourly_meters": len(truth.hourly_meters), "leaking_meters": len(leaking),
        "leaks_flagged_within_3_days": flagged_within("meter.continuous_flow", leaking, 3),
        "leak_days_to_flag": delays("meter.continuous_flow", leaking),
        "continuous_flow_alarms_on_sound_hourly_meters": flagged_by("meter.continuous_flow", sound_hourly),
        "sound_hourly_meters": len(sound_hourly),
        "continuous_flow_alarms_on_daily_meters": flagged_by("meter.continuous_flow",
                                                             set(meters) - truth.hourly_meters),
        "alerts_on_healthy_meters": healthy_alerts, "healthy_meters": len(meters) - len(faulty_meters),
        "chargers_with_50_sessions": len(many), "chargers_within_0_5pct": within / max(len(many), 1),
        "charger_verdicts_right": verdict / max(len(many), 1),
        "ingest_records_per_s": n_records / ingest_s, "detect_records_per_s": n_records / detect_s,
        "detectors": len(REGISTRY),
        "naive_ingest_records_per_s": naive_ingest,
        "naive_detect_record_detector_pairs_per_s": naive_detect,
        "detect_record_detector_pairs_per_s": analysed / detect_s,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
