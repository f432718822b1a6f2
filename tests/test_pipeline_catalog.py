"""galdust.pipeline.catalog: one row per object, the best and latest, even when a consolidation is killed."""

from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq

from galdust.pipeline import catalog as cat
from galdust.pipeline.tasks import FitTask


def _row(name, status, minutes):
    return dict(name=name, input=f"{name}.fits", status=status, error=None if status == "ok" else "boom",
                finished=datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=minutes))


def test_catalog_dedup_prefers_ok_then_latest_and_survives_a_kill_during_consolidation(tmp_path):
    sch = cat.schema(FitTask.fields)
    cat.write_part(tmp_path, [_row("a", "error", 0), _row("b", "ok", 0)], sch)
    cat.write_part(tmp_path, [_row("a", "ok", 1), _row("b", "error", 5), _row("c", "error", 0)], sch)
    cat.write_part(tmp_path, [_row("c", "error", 3)], sch)
    parts = sorted((tmp_path / ".galdust-run" / "parts").glob("*.parquet"))
    saved = {p: p.read_bytes() for p in parts}
    t = cat.consolidate(tmp_path, sch)
    assert t.column("name").to_pylist() == ["a", "b", "c"]
    assert t.column("status").to_pylist() == ["ok", "ok", "error"]
    assert t.column("finished").to_pylist()[2].minute == 3
    assert not list((tmp_path / ".galdust-run" / "parts").glob("*.parquet"))
    for p, b in saved.items():  # a kill after the rename, before the parts were deleted
        p.write_bytes(b)
    t2 = cat.consolidate(tmp_path, sch)
    assert t2.num_rows == 3 and t2.equals(t)
    assert pq.read_table(tmp_path / "catalog.parquet").schema == sch
