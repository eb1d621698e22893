"""SQL over a results store (DuckDB) and query output as a text table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, get_args

import duckdb
import pyarrow as pa
from tabulate import tabulate

from orchestrator.store.results import ResultsStore, latest_trials
from orchestrator.store.schema import EpochRecord, arrow_schema

# The tables a query reads; every hint that names them (the CLI's, the demo's) says all three.
QUERY_TABLES = ("trials", "epochs", "all_trials")


def query(
    uri: str, sql: str | None = None, storage_options: dict[str, Any] | None = None
) -> pa.Table:
    """Run DuckDB SQL over the store's tables; ``sql=None`` returns every (latest) trial.

    Tables: ``trials`` (latest row per trial key), ``all_trials`` (every row, retries included)
    and ``epochs``. The connection has no file-system access: queries read, never write.
    """
    store = ResultsStore(uri, storage_options)
    every_trial = store.read_trials(latest_only=False)
    trials = latest_trials(every_trial)
    if sql is None:
        return trials
    connection = duckdb.connect(config={"enable_external_access": False})
    connection.register("trials", trials)
    connection.register("all_trials", every_trial)
    epochs = (
        store.read_epochs() if "epochs" in sql.lower() else arrow_schema(EpochRecord).empty_table()
    )
    connection.register("epochs", epochs)
    try:
        relation = connection.sql(sql)
        if relation is None:
            raise ValueError(f"query returned no result; use a SELECT statement: {sql!r}")
        return relation.to_arrow_table()
    except duckdb.Error as error:
        paragraph = str(error).strip().split("\n\n")[0]
        raise ValueError(f"query failed: {'; '.join(paragraph.splitlines())}") from None
    finally:
        connection.close()


OutputFormat = Literal["table", "csv", "json"]


def _plain(value: Any) -> Any:
    """A JSON-ready value: datetimes as ISO text, NaN as None, Decimals (DuckDB sums) as numbers."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _cell(value: Any, width: int = 48) -> Any:
    """A table cell: long text cut, lists shown inline, None blank."""
    value = _plain(value)
    if isinstance(value, list):
        value = "[" + ", ".join(str(_cell(item, width)) for item in value) + "]"
    if isinstance(value, str) and len(value) > width:
        return value[: width - 3] + "..."
    return value


def _text_table(table: pa.Table) -> str:
    rows = [[_cell(row[name]) for name in table.column_names] for row in table.to_pylist()]
    # Text cells stay as written (a query's printf('%.3f') keeps its digits); numbers are
    # formatted here.
    text = tabulate(rows, headers=table.column_names, floatfmt=".4g", missingval="",
                    disable_numparse=True)
    return f"{text}\n({table.num_rows} row{'' if table.num_rows == 1 else 's'})\n"


def format_table(table: pa.Table, fmt: OutputFormat) -> str:
    """Render a query result as an aligned text table, CSV or a JSON array of objects.

    In CSV, list columns are written as JSON arrays; in the text table long cells are cut.
    """
    if fmt == "table":
        return _text_table(table)
    rows = [{name: _plain(value) for name, value in row.items()} for row in table.to_pylist()]
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in rows:
            writer.writerow(
                "" if value is None else json.dumps(value) if isinstance(value, list) else value
                for value in row.values()
            )
        return buffer.getvalue()
    raise ValueError(f"unknown format {fmt!r}; valid formats are {list(get_args(OutputFormat))}")
