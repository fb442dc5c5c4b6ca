"""Compress detectors' states with lz4 on PostgreSQL (PostgreSQL 14+).

A meter detector's state holds every meter's last reading (~2.6 MB of JSON for the city's 80,000 meters)
and is rewritten after every chunk of a detector run; the default pglz compression took about two thirds
of each write (0.15 s → 0.05 s measured).  The JSON is unchanged.  Skipped where lz4 is not available."""

from typing import Any

from django.db import migrations


def lz4_state(apps: Any, schema_editor: Any) -> None:
    conn = schema_editor.connection
    if conn.vendor != "postgresql" or conn.pg_version < 140000:
        return
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)")
        if cur.fetchone():
            cur.execute('ALTER TABLE "monitoring_detectorcursor" ALTER COLUMN "state" SET COMPRESSION lz4')


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0004_telemetry_drop_device_index"),
    ]

    operations = [
        migrations.RunPython(lz4_state, migrations.RunPython.noop),
    ]
