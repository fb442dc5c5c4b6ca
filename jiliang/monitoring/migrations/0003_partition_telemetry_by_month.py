"""PostgreSQL only: the telemetry tables become partitioned by month of their time column (ADR 0010).

SQLite keeps plain tables, and Django's model state does not change (the tables keep their names, columns
and index names), so ``makemigrations --check`` stays clean.  On PostgreSQL a partitioned table's unique
indexes must contain the partition key, so the primary key becomes (id, time) and each (device, seq) key
becomes (device, seq, time); ids still come from one sequence per table.  Existing rows are copied into
monthly partitions.  Not reversible in place: the reverse step leaves the tables partitioned.
"""

from django.db import migrations

TABLES = {
    "monitoring_scaletxn": "ts", "monitoring_scaleevent": "ts", "monitoring_scalerecheck": "ts",
    "monitoring_chargersession": "start_ts", "monitoring_dispensersale": "ts", "monitoring_tankreading": "ts",
    "monitoring_tankdelivery": "ts", "monitoring_meterreading": "ts",
}


def partition(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cur:
        for table, tcol in TABLES.items():
            cur.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s)", [table])
            if cur.fetchone():
                continue
            cur.execute("SELECT conname, contype, array_agg(a.attname ORDER BY k.ord) FROM pg_constraint c "
                        "CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) "
                        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
                        "WHERE c.conrelid = to_regclass(%s) AND c.contype IN ('p', 'u') GROUP BY conname, contype",
                        [table])
            constraints = cur.fetchall()
            cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
                        "(SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s))", [table, table])
            indexes = cur.fetchall()
            cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
            seq = cur.fetchone()[0]
            cur.execute(f"SELECT last_value FROM {seq}")  # noqa: S608
            last = cur.fetchone()[0]
            new = f"{table}__partitioned"
            cur.execute(f'CREATE TABLE "{new}" (LIKE "{table}" INCLUDING DEFAULTS) PARTITION BY RANGE ("{tcol}")')
            cur.execute(f"SELECT DISTINCT date_trunc('month', \"{tcol}\" AT TIME ZONE 'UTC') FROM \"{table}\"")  # noqa: S608
            for (month,) in cur.fetchall():
                y, m = month.year, month.month
                ny, nm = y + m // 12, m % 12 + 1
                cur.execute(f'CREATE TABLE "{table}_p{y:04d}{m:02d}" PARTITION OF "{new}" FOR VALUES FROM '
                            f"('{y:04d}-{m:02d}-01 00:00:00+00') TO ('{ny:04d}-{nm:02d}-01 00:00:00+00')")
            cur.execute(f'INSERT INTO "{new}" SELECT * FROM "{table}"')  # noqa: S608
            cur.execute(f'DROP TABLE "{table}"')
            cur.execute(f'ALTER TABLE "{new}" RENAME TO "{table}"')
            cur.execute(f'CREATE SEQUENCE "{table}_id_seq" OWNED BY "{table}"."id"')
            cur.execute(f"""ALTER TABLE "{table}" ALTER COLUMN "id" SET DEFAULT nextval('"{table}_id_seq"')""")
            cur.execute(f"""SELECT setval('"{table}_id_seq"', GREATEST(%s, (SELECT COALESCE(MAX(id), 1)
                            FROM "{table}")))""", [last])  # noqa: S608
            for name, kind, cols in constraints:
                cols = list(cols) if tcol in cols else [*cols, tcol]
                what = "PRIMARY KEY" if kind == "p" else "UNIQUE"
                cur.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {what} ({", ".join(cols)})')
            for _name, definition in indexes:
                cur.execute(definition)


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0002_alerts_and_detectors"),
    ]

    operations = [
        migrations.RunPython(partition, migrations.RunPython.noop, elidable=False),
    ]
