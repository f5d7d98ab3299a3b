"""Streaming a run's time series to disk (CSV or Parquet, by the file's suffix) as it runs.

Rows are buffered in small batches and written with Apache Arrow's CSV and Parquet writers, so
that a day at 1-s steps never sits in memory; the schema is fixed by the first batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from gridflex.errors import InputError

FORMATS = {".csv": "csv", ".parquet": "parquet"}
#: Rows buffered before a batch is written.
BATCH_ROWS = 65_536


def check_trace_path(path: Path, option: str) -> Path:
    """The path if its suffix names a format we write, else `InputError` naming the option."""
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"{option}: {path} has an unknown suffix {path.suffix!r}; allowed: {', '.join(FORMATS)}")
    return path


class TraceWriter:
    """Appends column batches (dict of name -> equal-length arrays) to a CSV or Parquet file."""

    def __init__(self, path: Path, option: str = "--trace"):
        self.path = check_trace_path(Path(path), option)
        self.format = FORMATS[self.path.suffix.lower()]
        try:  # fail before the run, not at its end
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        except OSError as e:
            raise InputError(f"{option}: cannot write {self.path}: {e.strerror}") from None
        self._buffer: list[dict[str, np.ndarray]] = []
        self._buffered = 0
        self._writer = None
        self.rows_written = 0

    def write(self, columns: dict) -> None:
        self._buffer.append(columns)
        self._buffered += len(next(iter(columns.values())))
        if self._buffered >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        names = list(self._buffer[0])
        table = pa.table({k: pa.array(np.concatenate([np.asarray(b[k]) for b in self._buffer])) for k in names})
        if self._writer is None:
            table = self._with_utc(table)
            self._schema = table.schema
            self._writer = (pq.ParquetWriter(self.path, self._schema) if self.format == "parquet"
                            else pa_csv.CSVWriter(self.path, self._schema))
        self._writer.write_table(table.cast(self._schema))
        self.rows_written += table.num_rows
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @staticmethod
    def _with_utc(table: pa.Table) -> pa.Table:
        """Time columns as timestamps marked UTC."""
        fields = [pa.field(f.name, pa.timestamp("ms", tz="UTC")) if pa.types.is_timestamp(f.type) else f
                  for f in table.schema]
        return table.cast(pa.schema(fields))
