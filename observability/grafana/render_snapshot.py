#!/usr/bin/env python3
"""Renders a Grafana dashboard's panels from a real Prometheus into one PNG (no Grafana needed).

Reads the dashboard JSON, runs every panel target against Prometheus' HTTP API the way Grafana
would (time series and stats: query_range over [--start, --end]; tables with `instant`: an instant
query at --end), and draws the panels on the dashboard's 24-column grid with their titles, units,
legends (legendFormat) and stat thresholds. Kept to what the platform's dashboards use: row,
stat, timeseries and table panels; others are drawn as a titled box.

  render_snapshot.py --prometheus http://127.0.0.1:9090 --dashboard D.json \
      --start 1700000000 --end 1700000600 --out panel.png
  render_snapshot.py --prometheus URL --start S --end E --report   # rules and alerts seen

Needs matplotlib (scripts/dashboard-snapshot.sh installs it with tools_pip).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import urllib.parse
import urllib.request

# Grafana's $__rate_interval with the datasource's 15 s scrape interval (timeInterval in
# grafana/provisioning/datasources): max(4 x scrape interval, step + scrape interval).
RATE_INTERVAL = "1m"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0"]
BG, PANEL, BORDER, TEXT, DIM = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e8e"
THRESHOLD_COLORS = {"green": "#56a64b", "yellow": "#e0b400", "red": "#e02f44", "orange": "#fa6400",
                    "blue": "#3274d9"}


# ------------------------------------------------------------------------------------ Prometheus
class Prom:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def get(self, path: str, **params):
        q = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=30) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def range(self, expr, start, end, step):
        return self.get("/api/v1/query_range", query=expr, start=start, end=end, step=step)["result"]

    def instant(self, expr, at):
        return self.get("/api/v1/query", query=expr, time=at)["result"]


def substitute(expr: str, step: int) -> str:
    expr = re.sub(r"\$\{?__rate_interval\}?", RATE_INTERVAL, expr)
    expr = re.sub(r"\$\{?__interval\}?", f"{step}s", expr)
    return expr


def legend(fmt: str, metric: dict) -> str:
    if fmt:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)
    name = metric.get("__name__", "")
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{labels}}}" if labels else name or "value"


# ------------------------------------------------------------------------------------ units
def fmt_value(v, unit, decimals=None):
    if v is None:
        return "–"
    if unit == "percentunit":
        return f"{v * 100:.{2 if decimals is None else decimals}f}%"
    if unit == "s":
        if v == 0:
            return "0 s"
        if abs(v) < 1:
            return f"{v * 1000:.{1 if decimals is None else decimals}f} ms"
        return f"{v:.{2 if decimals is None else decimals}f} s"
    if unit == "ms":
        return f"{v:.{1 if decimals is None else decimals}f} ms"
    if unit == "reqps":
        return f"{v:.{2 if decimals is None else decimals}f} req/s"
    if decimals is not None:
        return f"{v:.{decimals}f}"
    return f"{v:.3g}"


def axis_formatter(unit):
    from matplotlib.ticker import FuncFormatter

    def f(v, _):
        if unit == "percentunit":
            return f"{v * 100:.1f}%"
        if unit == "s":
            return f"{v * 1000:.0f} ms" if abs(v) < 1 else f"{v:.1f} s"
        if unit == "ms":
            return f"{v:.0f} ms"
        if unit == "reqps":
            return f"{v:.2g}/s"
        return f"{v:.2g}"
    return FuncFormatter(f)


def threshold_color(value, fc):
    steps = (fc.get("thresholds") or {}).get("steps") or []
    color = "green"
    for s in steps:
        if s.get("value") is None or (value is not None and value >= s["value"]):
            color = s.get("color", color)
    return THRESHOLD_COLORS.get(color, color)


# ------------------------------------------------------------------------------------ panels
def panel_series(prom, panel, start, end, step):
    """[(legend, [t], [v])] for a timeseries/stat panel."""
    out = []
    for t in panel.get("targets", []):
        if not t.get("expr"):
            continue
        for s in prom.range(substitute(t["expr"], step), start, end, step):
            ts = [float(x) for x, _ in s["values"]]
            vs = [float(y) for _, y in s["values"]]
            out.append((legend(t.get("legendFormat", ""), s["metric"]), ts, vs))
    return out


def panel_table(prom, panel, end, step):
    """(columns, rows) for a table panel, merging instant results on their common labels."""
    org = next((tr["options"] for tr in panel.get("transformations", []) if tr["id"] == "organize"), {})
    exclude, rename = org.get("excludeByName", {}), org.get("renameByName", {})
    targets = [t for t in panel.get("targets", []) if t.get("expr")]
    merged: dict[tuple, dict] = {}
    label_cols: list[str] = []
    for t in targets:
        col = "Value" if len(targets) == 1 else f"Value #{t['refId']}"
        for s in prom.instant(substitute(t["expr"], step), end):
            labels = dict(s["metric"])
            for k in labels:
                if k not in label_cols:
                    label_cols.append(k)
            # Grafana's merge joins rows whose label columns are all equal, __name__ included.
            key = tuple(sorted(labels.items()))
            row = merged.setdefault(key, dict(labels))
            row[col] = float(s["value"][1])
    value_cols = ["Value"] if len(targets) == 1 else [f"Value #{t['refId']}" for t in targets]
    cols = [c for c in label_cols + value_cols if not exclude.get(c)]
    rows = list(merged.values())
    for sort in panel.get("options", {}).get("sortBy", [])[:1]:
        name = sort.get("displayName")
        key = next((c for c in cols if c == name or rename.get(c) == name), None)
        if key:
            rows.sort(key=lambda r: (r.get(key) is None, r.get(key, 0) if key in value_cols else str(r.get(key))),
                      reverse=False)
            if sort.get("desc"):
                with_v = [r for r in rows if r.get(key) is not None][::-1]
                rows = with_v + [r for r in rows if r.get(key) is None]
    return [(c, rename.get(c, c)) for c in cols], rows


def draw(prom, dash, start, end, step, out, subtitle):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    panels = dash.get("panels", [])
    rows_total = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_h = 0.42  # inches per grid row
    width, header = 18.0, 0.9
    fig = plt.figure(figsize=(width, rows_total * unit_h + header), facecolor=BG)
    fig_h = rows_total * unit_h + header
    fig.text(0.01, 1 - 0.35 / fig_h, dash.get("title", ""), color="white", fontsize=15, weight="bold", va="center")
    fig.text(0.99, 1 - 0.35 / fig_h, subtitle, color=DIM, fontsize=9, ha="right", va="center")
    gap = 0.004

    def rect(gp, pad=gap):
        x0 = gp["x"] / 24 + pad
        w = gp["w"] / 24 - 2 * pad
        top = 1 - (header + gp["y"] * unit_h) / fig_h
        h = gp["h"] * unit_h / fig_h
        return x0, top - h + pad, w, h - 2 * pad

    tz = dt.timezone.utc
    fmt_time = mdates.DateFormatter("%H:%M", tz=tz)
    for p in panels:
        gp = p["gridPos"]
        fc = (p.get("fieldConfig") or {}).get("defaults") or {}
        unit, decimals = fc.get("unit"), fc.get("decimals")
        title = p.get("title", "")
        if p["type"] == "row":
            x0, y0, w, h = rect(gp, 0)
            fig.text(x0 + 0.002, y0 + h / 2, title, color="white", fontsize=12, weight="bold", va="center")
            continue
        x0, y0, w, h = rect(gp)
        frame = fig.add_axes([x0, y0, w, h])
        frame.set_facecolor(PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for sp in frame.spines.values():
            sp.set_color(BORDER)
        title_h = 0.3 / fig_h
        fig.text(x0 + 0.006, y0 + h - title_h / 2 - 0.002, title, color=TEXT, fontsize=10, weight="bold", va="center")
        inner = [x0 + 0.004, y0 + 0.004, w - 0.008, h - title_h - 0.01]

        if p["type"] == "timeseries":
            series = panel_series(prom, p, start, end, step)
            ax = fig.add_axes([inner[0] + 0.03, inner[1] + 0.035, inner[2] - 0.035, inner[3] - 0.045])
            ax.set_facecolor(PANEL)
            for sp in ax.spines.values():
                sp.set_visible(False)
            ax.tick_params(colors=DIM, labelsize=7.5)
            ax.grid(color=BORDER, linewidth=0.6)
            ax.xaxis.set_major_formatter(fmt_time)
            ax.yaxis.set_major_formatter(axis_formatter(unit))
            ax.set_xlim(dt.datetime.fromtimestamp(start, tz), dt.datetime.fromtimestamp(end, tz))
            if not series:
                ax.set_yticks([])
                ax.text(0.5, 0.5, "No data", color=DIM, fontsize=12, ha="center", va="center", transform=ax.transAxes)
                note = p.get("_snapshot_note")
                if note:
                    ax.text(0.5, 0.32, note, color=DIM, fontsize=8, ha="center", va="center", transform=ax.transAxes)
                continue
            for i, (name, ts, vs) in enumerate(series):
                times = [dt.datetime.fromtimestamp(t, tz) for t in ts]
                ax.plot(times, vs, color=PALETTE[i % len(PALETTE)], linewidth=1.4, label=name)
            ax.set_ylim(bottom=0)
            top = max(max(vs) for _, _, vs in series)
            if top == 0:
                ax.set_ylim(0, 1 if unit != "percentunit" else 0.01)
            leg = ax.legend(loc="upper left", fontsize=7, frameon=False, labelcolor=TEXT,
                            ncol=2 if len(series) > 3 else 1, handlelength=1.2)
            leg.set_zorder(5)
        elif p["type"] == "stat":
            series = panel_series(prom, p, start, end, step)
            if not series:
                frame.text(0.5, 0.45, "No data", color=DIM, fontsize=12, ha="center", va="center",
                           transform=frame.transAxes)
                continue
            n = len(series)
            box_h = inner[3] / n
            for i, (name, ts, vs) in enumerate(sorted(series)):
                last = vs[-1] if vs else None
                color = threshold_color(last, fc)
                bx = fig.add_axes([inner[0], inner[1] + inner[3] - (i + 1) * box_h + 0.002, inner[2], box_h - 0.003])
                bx.set_facecolor(color)
                bx.set_xticks([])
                bx.set_yticks([])
                for sp in bx.spines.values():
                    sp.set_visible(False)
                if len(vs) > 1:
                    lo = min(vs)
                    hi = max(vs) if max(vs) > lo else lo + 1
                    bx.fill_between(range(len(vs)), [(v - lo) / (hi - lo) * 0.5 for v in vs], color="white", alpha=0.18,
                                    linewidth=0)
                    bx.set_xlim(0, len(vs) - 1)
                    bx.set_ylim(0, 1)
                bx.text(0.03, 0.5, name, color="white", fontsize=9, va="center", transform=bx.transAxes)
                bx.text(0.97, 0.5, fmt_value(last, unit, decimals), color="white", fontsize=13, weight="bold",
                        ha="right", va="center", transform=bx.transAxes)
        elif p["type"] == "table":
            cols, rows = panel_table(prom, p, end, step)
            if not rows:
                frame.text(0.5, 0.45, p.get("_snapshot_empty", "No data"), color=DIM, fontsize=11, ha="center",
                           va="center", transform=frame.transAxes)
                continue
            max_rows = max(1, int(gp["h"] * unit_h / 0.21) - 3)
            shown = rows[:max_rows]
            tx = fig.add_axes(inner)
            tx.axis("off")
            cell = []
            for r in shown:
                line = []
                for c, label in cols:
                    v = r.get(c)
                    if isinstance(v, float):
                        col_unit = {"5xx ratio": "percentunit", "p99 (s)": "s", "req/s": "reqps"}.get(label)
                        line.append(fmt_value(v, col_unit, 3 if col_unit == "reqps" else None))
                    else:
                        line.append("" if v is None else str(v))
                cell.append(line)
            table = tx.table(cellText=cell, colLabels=[label for _, label in cols], loc="upper left",
                             cellLoc="left", colLoc="left", bbox=[0, 0, 1, 1])
            table.auto_set_font_size(False)
            table.set_fontsize(8)
            for (ri, _), c in table.get_celld().items():
                c.set_edgecolor(BORDER)
                c.set_facecolor(PANEL if ri else "#22252b")
                c.get_text().set_color(TEXT if ri else "white")
                c.set_height(0.9 / (len(shown) + 1))
            if len(rows) > len(shown):
                tx.text(1, -0.02, f"+{len(rows) - len(shown)} more rows", color=DIM, fontsize=7, ha="right",
                        va="top", transform=tx.transAxes)
        else:
            frame.text(0.5, 0.45, f"({p['type']} panel)", color=DIM, ha="center", transform=frame.transAxes)

    fig.savefig(out, dpi=72, facecolor=BG)
    plt.close(fig)
    try:  # a palette PNG is a fraction of the size and looks the same on these flat colours
        from PIL import Image
        Image.open(out).convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    except ImportError:
        pass


# ------------------------------------------------------------------------------------ report
def report(prom, start, end, step):
    """Which rules evaluated (health, last result) and which alerts were pending/firing in the window."""
    groups = prom.get("/api/v1/rules")["groups"]
    lines, records, alerts, bad = [], 0, 0, []
    for g in groups:
        for r in g["rules"]:
            if r.get("health") != "ok":
                bad.append(f'{g["name"]}/{r["name"]}: {r.get("health")} {r.get("lastError", "")}')
            if r["type"] == "recording":
                records += 1
            else:
                alerts += 1
    lines.append(f"rule groups: {len(groups)}; recording rules: {records}; alerts: {alerts}; "
                 f"unhealthy: {len(bad)}")
    lines += [f"  unhealthy: {b}" for b in bad]
    for g in groups:
        for r in g["rules"]:
            if r["type"] != "recording":
                continue
            res = prom.range(r["name"], start, end, step)
            points = sum(len(s["values"]) for s in res)
            lines.append(f"  record {r['name']}: {len(res)} series, {points} points")
    for g in groups:
        for r in g["rules"]:
            if r["type"] == "alerting":
                lines.append(f"  alert {r['name']}: state now {r.get('state')}")
    seen = prom.range('ALERTS', start, end, step)
    if not seen:
        lines.append("ALERTS in the window: none pending, none firing")
    for s in seen:
        m = s["metric"]
        t0, t1 = s["values"][0][0], s["values"][-1][0]
        lines.append(f"ALERTS in the window: {m.get('alertname')} {m.get('alertstate')} "
                     f"{ {k: v for k, v in m.items() if k not in ('__name__', 'alertname', 'alertstate')} } "
                     f"from {dt.datetime.fromtimestamp(t0, dt.timezone.utc):%H:%M:%S} to "
                     f"{dt.datetime.fromtimestamp(t1, dt.timezone.utc):%H:%M:%S} UTC")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--dashboard")
    ap.add_argument("--start", type=float, required=True)
    ap.add_argument("--end", type=float, required=True)
    ap.add_argument("--step", type=int, default=15)
    ap.add_argument("--out")
    ap.add_argument("--subtitle", default="")
    ap.add_argument("--note", action="append", default=[],
                    help="PANEL_ID=TEXT: a line under 'No data' (e.g. why Kong has none)")
    ap.add_argument("--report", action="store_true", help="print the rules and alerts seen instead")
    args = ap.parse_args(argv)
    prom = Prom(args.prometheus)
    start, end = int(args.start), int(args.end)
    if args.report:
        print(report(prom, start, end, args.step))
        return 0
    if not (args.dashboard and args.out):
        ap.error("--dashboard and --out are needed to render")
    with open(args.dashboard, encoding="utf-8") as f:
        dash = json.load(f)
    notes = dict(n.split("=", 1) for n in args.note)
    for p in dash.get("panels", []):
        if str(p.get("id")) in notes:
            p["_snapshot_note"] = notes[str(p["id"])]
        if p["type"] == "table" and any("ALERTS" in (t.get("expr") or "") for t in p.get("targets", [])):
            p["_snapshot_empty"] = "No alerts firing"
    draw(prom, dash, start, end, args.step, args.out, args.subtitle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
