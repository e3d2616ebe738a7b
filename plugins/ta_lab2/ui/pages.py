"""Server-rendered HTML of the Warehouse page and the chart page (no JavaScript, no build).

Every link is relative, so the pages work under any mount prefix and inside the Airflow UI's
iframe. Each asset row carries ``data-*`` attributes (id, status, last day, gaps, rejects)
so tests and scripts can read the table without scraping cell text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from urllib.parse import urlencode

from ta_lab2.ops.overview import COMPONENTS, AssetStatus
from ta_lab2.registry import BAR_FAMILY_NAMES

STYLE = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#1e1e1e;background:#fff}
h1{font-size:18px;margin:0 0 4px} .meta{color:#666;margin:0 0 12px}
table{border-collapse:collapse;width:100%} th,td{padding:4px 8px;border-bottom:1px solid #e5e5e5;text-align:left;
white-space:nowrap} th a{color:inherit;text-decoration:none} th a:hover{text-decoration:underline}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.st{display:inline-block;padding:1px 7px;border-radius:9px;font-weight:600;font-size:12px}
.st-failed{background:#fbd5d5;color:#9b1c1c}.st-stale{background:#fdf0c4;color:#8a5a00}
.st-skipped{background:#e6e6fa;color:#3c3c8c}.st-ok{background:#d4f4dd;color:#176b2c}.st-norun{background:#eee;color:#555}
.c{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:2px;vertical-align:middle}
.c-ok{background:#2ec27e}.c-failed{background:#e01b24}.c-not_run{background:#f66151}.c-skipped{background:#a5a5d6}
.c-none{background:#ddd} tr.failed td{background:#fff6f6} .legend{color:#666;margin-top:10px}
form.chart{margin:8px 0 12px} form.chart label{margin-right:10px} .err{color:#9b1c1c;font-weight:600}
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def _age(a: AssetStatus) -> str:
    if a.age_hours is None:
        return "no bars"
    return f"{a.age_hours:,.0f} h / {a.threshold_hours:g} h"


def _components(a: AssetStatus) -> str:
    cells = []
    for comp in COMPONENTS:
        st = a.components.get(comp, "none")
        tip = f"{comp}: {st}" + (f" — {a.errors[comp]}" if comp in a.errors else "")
        cells.append(f"<span class='c c-{escape(st)}' title='{escape(tip, quote=True)}'></span>")
    return "".join(cells)


def overview_html(items: Sequence[AssetStatus], *, sort: str, desc: bool, now: datetime) -> str:
    """The Warehouse page: one row per asset, sorted as given; headers re-sort."""
    def head(key: str, label: str) -> str:
        flip = "1" if key == sort and not desc else ""
        arrow = (" ▼" if desc else " ▲") if key == sort else ""
        return f"<th><a href='?{urlencode({'sort': key, 'desc': flip})}'>{escape(label)}{arrow}</a></th>"

    rows = []
    for a in items:
        first_error = next(iter(a.errors.values()), "")
        rows.append(
            f"<tr class='{escape(a.status.replace(' ', ''))}' data-asset-id='{a.id}' data-status='{escape(a.status)}' "
            f"data-last-day='{a.last_day or ''}' data-gaps='{a.gaps}' data-rejects='{a.rejects}' "
            f"data-symbol='{escape(a.symbol, quote=True)}'>"
            f"<td class='num'>{a.id}</td><td><b>{escape(a.symbol)}</b> <span class='meta'>{escape(a.name)}</span></td>"
            f"<td><span class='st st-{escape(a.status.replace(' ', ''))}' title='{escape(first_error, quote=True)}'>"
            f"{escape(a.status)}</span></td>"
            f"<td>{a.last_day or '—'}</td><td class='num'>{_age(a)}</td><td>{_components(a)}</td>"
            f"<td class='num'>{a.rejects:,} <span class='meta'>({a.rejects_1d:,} 1d, {a.rejects_ema:,} EMA)</span></td>"
            f"<td class='num'>{a.gaps:,}</td><td><a href='chart/{a.id}'>chart</a></td></tr>")
    counts = {s: sum(1 for a in items if a.status == s) for s in ("failed", "stale", "skipped", "ok")}
    header = "".join([head("id", "id"), head("symbol", "asset"), head("status", "status"),
                      head("last_day", "last 1d day"), head("age", "age / threshold"),
                      "<th>last run: " + " ".join(escape(c) for c in ("bars", "freshness", "emas")) + "</th>",
                      head("rejects", "rejects"), head("gaps", "gaps"), "<th></th>"])
    legend = " ".join(f"<span class='c c-{s}'></span>{s}" for s in ("ok", "failed", "not_run", "skipped", "none"))
    body = (f"<h1>ta_lab2 warehouse</h1><p class='meta'>{len(items)} active assets · failed {counts['failed']} · "
            f"stale {counts['stale']} · skipped {counts['skipped']} · ok {counts['ok']} · at {now:%Y-%m-%d %H:%M} UTC"
            f" · sort: {escape(sort)}{' desc' if desc else ''} (<a href='?'>failed and stale first</a>)</p>"
            f"<table id='assets'><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<p class='legend'>last run, one square per component ({escape(', '.join(COMPONENTS))}): {legend}. "
            f"Hover a square for its error.</p>")
    return _page("ta_lab2 warehouse", body)


def chart_html(asset_id: int, symbol: str, family: str, tf: str, periods: str, bars: int, tfs: Sequence[str],
               svg: str | None, message: str | None = None) -> str:
    """The chart page: a form (family, timeframe, periods, bars) and the inline SVG chart."""
    fam = "".join(f"<option{' selected' if f == family else ''}>{escape(f)}</option>" for f in BAR_FAMILY_NAMES)
    tf_opts = "".join(f"<option{' selected' if t == tf else ''}>{escape(t)}</option>" for t in tfs)
    body = (f"<p><a href='../'>← warehouse</a></p><h1>{escape(symbol)} (id {asset_id})</h1>"
            f"<form class='chart' method='get'><label>family <select name='family'>{fam}</select></label>"
            f"<label>timeframe <select name='tf'>{tf_opts}</select></label>"
            f"<label>EMA periods <input name='periods' value='{escape(periods, quote=True)}' size='8'></label>"
            f"<label>bars <input name='bars' value='{bars}' size='4'></label><button>draw</button></form>"
            + (f"<p class='err'>{escape(message)}</p>" if message else "")
            + (f"<div id='chart'>{svg}</div>" if svg else ""))
    return _page(f"{symbol} chart", body)
