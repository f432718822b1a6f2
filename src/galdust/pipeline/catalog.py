"""The run catalogue: one row per input in ``DIR/catalog.parquet``, written so that no row is lost or
written twice whatever moment a run is killed.

How
---
* A worker that finishes a batch writes its rows to a new *part* file
  ``DIR/.galdust-run/parts/<unique>.parquet`` (temporary file, then rename), after the batch's output
  files are in place. A row therefore exists only once its products do.
* The driver *consolidates* now and then and at the end: it reads ``catalog.parquet`` and every part,
  keeps one row per ``name`` (an ``ok`` row wins over an ``error`` row; among equals the latest
  ``finished``), writes ``catalog.parquet`` atomically and only then deletes the parts it read. A kill
  between the two steps leaves rows that the next consolidation deduplicates.
* Resuming reads the same union, so an object is re-done only if it has no row (or an ``error`` row and
  ``--retry-errors``). An object killed between its outputs and its row is fitted again and its files
  replaced atomically: never a second row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..io import atomic_path

__all__ = ["BASE_FIELDS", "schema", "write_part", "read_rows", "consolidate", "state_dir", "CATALOG"]

CATALOG = "catalog.parquet"
STATE = ".galdust-run"

# Columns every task has; the task adds its summary scalars after ``error``.
BASE_FIELDS: list[tuple[str, pa.DataType]] = [
    ("name", pa.string()),
    ("input", pa.string()),
    ("status", pa.string()),  # ok | error
    ("error", pa.string()),
]
TAIL_FIELDS: list[tuple[str, pa.DataType]] = [
    ("runtime_s", pa.float64()),  # this object's share of its batch's wall time, I/O included
    ("worker", pa.string()),
    ("finished", pa.timestamp("us", tz="UTC")),
    ("galdust_version", pa.string()),
]


def schema(task_fields: Sequence[tuple[str, pa.DataType]]) -> pa.Schema:
    return pa.schema(BASE_FIELDS + list(task_fields) + TAIL_FIELDS)


def state_dir(out: str | Path) -> Path:
    return Path(out) / STATE


def _parts_dir(out) -> Path:
    return state_dir(out) / "parts"


def write_part(out: str | Path, rows: list[dict], sch: pa.Schema) -> Path | None:
    """Write ``rows`` as one new part file (atomic); returns its path (None for no rows)."""
    if not rows:
        return None
    d = _parts_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in sch} for r in rows], schema=sch)
    path = d / f"{uuid.uuid4().hex}.parquet"
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def _dedup(table: pa.Table) -> pa.Table:
    """One row per name: ``ok`` before ``error``, then the latest ``finished``."""
    if table.num_rows == 0:
        return table
    import numpy as np

    names = table.column("name").to_pylist()
    ok = np.array([s == "ok" for s in table.column("status").to_pylist()])
    fin = table.column("finished").cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    order = np.lexsort((fin, ok))  # ascending: the last index per name is the one to keep
    keep: dict[str, int] = {}
    for i in order:
        keep[names[i]] = int(i)
    idx = [keep[n] for n in sorted(keep)]  # sorted by name
    return table.take(pa.array(idx, pa.int64()))


def _conform(table: pa.Table, sch: pa.Schema) -> pa.Table:
    """``table`` in the schema ``sch``: its columns cast, those it lacks (rows written by an older
    galdust, before a column was added) null."""
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
            for f in sch]
    return pa.Table.from_arrays(cols, schema=sch)


def read_rows(out: str | Path, sch: pa.Schema) -> tuple[pa.Table, list[Path]]:
    """The deduplicated union of ``catalog.parquet`` and the parts, and the part files read."""
    out = Path(out)
    tables, parts = [], []
    cat = out / CATALOG
    if cat.exists():
        tables.append(_conform(pq.read_table(cat), sch))
    d = _parts_dir(out)
    if d.is_dir():
        for p in sorted(d.glob("*.parquet")):
            try:
                tables.append(_conform(pq.read_table(p), sch))
            except (OSError, pa.ArrowInvalid):  # cannot happen with atomic writes; never lose the others
                continue
            parts.append(p)
    if not tables:
        return sch.empty_table(), parts
    return _dedup(pa.concat_tables(tables)), parts


def consolidate(out: str | Path, sch: pa.Schema) -> pa.Table:
    """Fold the parts into ``catalog.parquet`` (atomic) and delete them; returns the catalogue."""
    out = Path(out)
    table, parts = read_rows(out, sch)
    if parts or not (out / CATALOG).exists():
        with atomic_path(out / CATALOG, overwrite=True) as tmp:
            pq.write_table(table, tmp)
        for p in parts:
            p.unlink(missing_ok=True)
    return table
