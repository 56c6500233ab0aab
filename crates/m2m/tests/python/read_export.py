"""Reads the tables of `m2m export --format parquet` with pyarrow, as a
researcher would, and prints them as one JSON object for the Rust test
(crates/m2m/tests/export.rs) to compare with what the store holds.

Output: {"readers": [...], "games": TABLE, "samples": TABLE}, where TABLE is
{"columns": [[name, arrow type, nullable], ...], "rows": [[cell, ...], ...]}.
A cell is null, a string, an integer, ["f", the 64 bits of a double as an
unsigned integer] (so no value is rounded on its way through JSON), or
["t", microseconds since the Unix epoch] for a timestamp.

When pandas or DuckDB can be imported, they read both files too and must
find the same number of rows; "readers" names those that did.

Usage: read_export.py DIR
"""

import json
import struct
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def cells(column):
    """A column's values as JSON cells."""
    if pa.types.is_timestamp(column.type):
        return [None if v is None else ["t", v] for v in column.cast(pa.int64()).to_pylist()]
    values = column.to_pylist()
    if pa.types.is_floating(column.type):
        return [
            None if v is None else ["f", struct.unpack("<Q", struct.pack("<d", v))[0]]
            for v in values
        ]
    return values


def table(path):
    t = pq.read_table(path)
    columns = [[f.name, str(f.type), f.nullable] for f in t.schema]
    by_column = [cells(t.column(i)) for i in range(t.num_columns)]
    rows = [list(row) for row in zip(*by_column)] if by_column else []
    return t.num_rows, {"columns": columns, "rows": rows}


def main():
    if len(sys.argv) != 2:
        print("usage: read_export.py DIR", file=sys.stderr)
        sys.exit(64)
    directory = sys.argv[1]
    out = {"readers": ["pyarrow"]}
    counts = {}
    for name in ("games", "samples"):
        counts[name], out[name] = table(f"{directory}/{name}.parquet")
    try:
        import pandas
    except ImportError:
        pandas = None
    if pandas is not None:
        for name, n in counts.items():
            frame = pandas.read_parquet(f"{directory}/{name}.parquet")
            assert len(frame) == n, f"pandas reads {len(frame)} rows of {name}, pyarrow {n}"
        out["readers"].append("pandas")
    try:
        import duckdb
    except ImportError:
        duckdb = None
    if duckdb is not None:
        for name, n in counts.items():
            path = f"{directory}/{name}.parquet".replace("'", "''")
            [(rows,)] = duckdb.connect().execute(
                f"SELECT count(*) FROM read_parquet('{path}')"
            ).fetchall()
            assert rows == n, f"DuckDB reads {rows} rows of {name}, pyarrow {n}"
        out["readers"].append("duckdb")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
