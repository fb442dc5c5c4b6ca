"""Benchmark: how long ``jiliang demo --scale city`` takes to build the simulated city (模拟城市), against the
naive way (one ORM ``save()`` per object), on SQLite.  The issue's bar: under 90 s on a 2-core machine.

    .venv/bin/python bench/demo_build.py [--scale city] [--seed 20261123] [--naive-instruments 2000]

Everything runs against fresh SQLite files in a temp directory (``DATABASE_URL`` is set before
``django.setup()``):

1. ``jiliang demo --scale SCALE --no-serve`` as a subprocess on a fresh file, wall-clock time — the
   acceptance figure (includes interpreter start and migrating the empty database);
2. ``build_demo()`` in this process after ``migrate`` — the build alone, with instruments/s;
3. the naive way on a sample: about ``--naive-instruments`` instruments spread over the city plus the
   places and organisations they need, each object validated, saved and change-logged on its own
   (bench/naive_orm.py).  Per-kind rates are extrapolated to the whole city (plus the time to generate
   it) and compared with (2).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def run_cli(directory: Path, scale: str, seed: int) -> float:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{directory / 'cli.sqlite3'}", "JILIANG_HOME": str(directory)}
    cmd = [sys.executable, "-m", "jiliang.cli", "demo", "--scale", scale, "--seed", str(seed), "--no-serve"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603 (fixed argv)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"jiliang demo failed (exit {proc.returncode})")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="city", choices=["small", "city", "large"])
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--naive-instruments", type=int, default=2000)
    p.add_argument("--no-cli", action="store_true", help="skip the end-to-end `jiliang demo` subprocess")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="jiliang-bench-demo-") as tmp:
        directory = Path(tmp)
        cli_seconds = None if args.no_cli else run_cli(directory, args.scale, args.seed)

        os.environ["DATABASE_URL"] = f"sqlite:///{directory / 'demo.sqlite3'}"
        os.environ["JILIANG_HOME"] = str(directory)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jiliang.config.settings")
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import transaction
        from naive_orm import save_instrument, save_organization, save_place

        from jiliang.accounts.models import SystemPrincipal
        from jiliang.simulation.city import generate_city
        from jiliang.simulation.demo import build_demo, reset_demo_data

        t = time.perf_counter()
        call_command("migrate", interactive=False, verbosity=0)
        migrate_seconds = time.perf_counter() - t

        # the registry and verification history alone: the same work the naive way below does
        summary = build_demo(scale=args.scale, seed=args.seed, fresh=True, progress=False, with_telemetry=False)
        fast_seconds = summary.seconds

        t = time.perf_counter()
        city = generate_city(args.scale, args.seed)
        generate_seconds = time.perf_counter() - t
        stride = max(1, len(city.instruments) // args.naive_instruments)
        instruments = city.instruments[::stride][: args.naive_instruments]
        place_keys = {i["place_key"] for i in instruments if i["place_key"]}
        places = [p for p in city.places if p["key"] in place_keys]
        needed = ({i["maker_uscc"] for i in instruments} | {i["owner_uscc"] for i in instruments}
                  | {p["operator_uscc"] for p in places})
        orgs = [o for o in city.organizations if o["uscc"] in needed]

        with transaction.atomic():
            reset_demo_data()
        actor = SystemPrincipal("system:bench")
        rates: dict[str, float] = {}
        for kind, rows, save in (("organizations", orgs, save_organization), ("places", places, save_place),
                                 ("instruments", instruments, save_instrument)):
            t = time.perf_counter()
            for row in rows:
                save(row, actor)
            rates[kind] = len(rows) / (time.perf_counter() - t)

    full = {"organizations": len(city.organizations), "places": len(city.places),
            "instruments": len(city.instruments)}
    naive_seconds = generate_seconds + sum(full[k] / rates[k] for k in full)
    n = summary.instrument_total

    def line(label: str, seconds: float, rate: bool = True) -> None:
        tail = f"   {n / seconds:9,.0f} instruments/s" if rate else ""
        print(f"  {label:<70}{seconds:8.1f} s{tail}")

    print(f"demo build, scale {args.scale}: {n:,} instruments, {summary.place_total:,} places, "
          f"{summary.organizations:,} organizations, {len(summary.users)} users — SQLite")
    if cli_seconds is not None:
        line(f"jiliang demo --scale {args.scale} --no-serve, end to end, fresh file", cli_seconds, rate=False)
    line(f"build_demo(), registry + verifications, in process (after migrate, {migrate_seconds:.1f} s)",
         fast_seconds)
    print(f"  naive, one ORM save() per object: sample of {len(instruments):,} instruments, {len(places):,} places, "
          f"{len(orgs):,} organizations")
    print("      " + ", ".join(f"{k} {v:,.0f}/s" for k, v in rates.items()))
    line(f"naive, extrapolated to the whole city (+ {generate_seconds:.1f} s generating it)", naive_seconds)
    print(f"  {'ratio naive / build_demo':<70}{naive_seconds / fast_seconds:8.1f} ×")

if __name__ == "__main__":
    main()
