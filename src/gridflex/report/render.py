"""Pieces shared by the HTML reports: minute means, dates, PNG plots embedded inline, tables, pages."""

from __future__ import annotations

import base64
import html
import io
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PLOT_RESOLUTION_S = 60.0


def minute_means(t_s: np.ndarray, values: np.ndarray, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Means over consecutive `PLOT_RESOLUTION_S` blocks (rows of `values` follow `t_s`)."""
    per = max(1, int(round(PLOT_RESOLUTION_S / step_s)))
    n = len(t_s) // per
    if n == 0:
        return t_s, values
    shape = (n, per) + values.shape[1:]
    with warnings.catch_warnings():  # a block with no value (a job not yet there) is NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return t_s[: n * per : per], np.nanmean(values[: n * per].reshape(shape), axis=1)


def dates(t_s: np.ndarray, tz) -> list[datetime]:
    return [datetime.fromtimestamp(float(t), UTC).astimezone(tz) for t in t_s]


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return "—" if v is None else str(v)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%}.warn{color:#a40}"""


def page(title: str, sections: Sequence[str]) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
    )
