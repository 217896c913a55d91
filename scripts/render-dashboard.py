#!/usr/bin/env python3
"""Draws the Grafana dashboard's panels from a real Prometheus, for machines without Grafana.

Every panel's query goes to Prometheus' HTTP API as the dashboard writes it (Grafana's interval variables become
--window): time series panels through /api/v1/query_range over the last --seconds, stat panels through
/api/v1/query at the end. Prometheus evaluates the PromQL; this script only draws the answers on the dashboard's
own grid.

    pip install matplotlib
    scripts/render-dashboard.py --prometheus-url http://127.0.0.1:9090 --seconds 120 --window 30s \\
        --lookups --service-url http://127.0.0.1:8082 --out docs/dashboard.png

With --lookups it first sends GET /order/{id} requests to the service for --seconds (so the HTTP panels have
traffic), then draws that span. Publish while it runs, e.g. `order-generator --count 9000 --rate 200
--invalid-ratio 0.1`. Prometheus must scrape the service (README, "Metrics, logs, dashboard").
"""

import argparse
import os
import json
import random
import re
import string
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GRAFANA_INTERVALS = re.compile(r"\$\{?(__rate_interval|__interval|__range)\}?")
RANGE = re.compile(r"\[(\d+[smhdw])\]")


# --- Queries through Prometheus --------------------------------------------------------------------------------

def prepared(expr, window, every_range):
    """The query with Grafana's interval variables set to `window` (and, with `every_range`, each `[..]` range too:
    a short capture has no minute of history to average over)."""
    expr = GRAFANA_INTERVALS.sub(window, expr)
    if every_range:
        expr = RANGE.sub(f"[{window}]", expr)
    if "$" in expr:
        raise SystemExit(f"{expr!r} uses a Grafana variable this script cannot fill in")
    return expr


def api(prometheus_url, path, **params):
    """GET one Prometheus API endpoint; its `data`, or an exit with Prometheus' error."""
    url = f"{prometheus_url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        raise SystemExit(f"Prometheus refused {params.get('query')!r}: {error.read().decode(errors='replace')}")
    except (urllib.error.URLError, OSError) as error:
        raise SystemExit(f"cannot reach Prometheus at {prometheus_url}: {error}")
    if body.get("status") != "success":
        raise SystemExit(f"Prometheus answered {body} for {params.get('query')!r}")
    return body["data"]


def instant(prometheus_url, expr, at):
    """[(labels, value)] of an instant query."""
    data = api(prometheus_url, "/api/v1/query", query=expr, time=at)
    return [(sample["metric"], float(sample["value"][1])) for sample in data["result"]]


def ranged(prometheus_url, expr, start, end, step):
    """[(labels, [(t, value)])] of a range query."""
    data = api(prometheus_url, "/api/v1/query_range", query=expr, start=start, end=end, step=step)
    return [(series["metric"], [(float(t), float(v)) for t, v in series["values"]]) for series in data["result"]]


def legend(template, labels):
    if not template:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


# --- Traffic -----------------------------------------------------------------------------------------------------

def lookups(service_url, stop):
    """GET /order/{id} for recent orders and for a few ids that do not exist, until `stop` is set. The service URL is
    the admin listener (it lists the orders); ADMIN_TOKEN from the environment is sent when set."""
    token = os.environ.get("ADMIN_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ids = []
    while not stop.is_set():
        try:
            if random.random() < 0.02 or not ids:
                listing = urllib.request.Request(f"{service_url}/orders?limit=200", headers=headers)
                with urllib.request.urlopen(listing, timeout=5) as response:
                    ids = [o["order_uid"] for o in json.load(response)] or ids
            uid = random.choice(ids) if ids and random.random() < 0.9 else \
                "".join(random.choices(string.ascii_lowercase, k=12))
            lookup = urllib.request.Request(f"{service_url}/order/{uid}", headers=headers)
            urllib.request.urlopen(lookup, timeout=5).read()
        except urllib.error.HTTPError:
            pass
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            time.sleep(0.2)
        time.sleep(0.005)


# --- Drawing -----------------------------------------------------------------------------------------------------

def format_value(value, unit):
    if value != value:  # NaN: e.g. a quantile of no observations
        return "no data"
    if unit == "bytes":
        for suffix in ("B", "KiB", "MiB", "GiB"):
            if abs(value) < 1024 or suffix == "GiB":
                return f"{value:.0f} {suffix}" if suffix == "B" else f"{value:.1f} {suffix}"
            value /= 1024
    if unit == "bool":
        return "yes" if value >= 1 else "no"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:.2f}"


def target_unit(panel, ref_id, default):
    """The unit of one query: a `byFrameRefID` override, else the panel's."""
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        matcher = override.get("matcher", {})
        if matcher.get("id") == "byFrameRefID" and matcher.get("options") == ref_id:
            for prop in override.get("properties", []):
                if prop.get("id") == "unit":
                    return prop["value"]
    return default


def panels_of(dashboard):
    """The dashboard's panels, rows' nested panels included."""
    for panel in dashboard.get("panels", []):
        if panel.get("targets"):
            yield panel
        yield from panels_of(panel)


def draw(dashboard, args, end):
    start = end - args.seconds
    panels = list(panels_of(dashboard))
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    figure = plt.figure(figsize=(20, rows * 0.42))
    grid = figure.add_gridspec(rows, 24, hspace=1.0, wspace=0.8, top=0.95, bottom=0.04)
    query = lambda target: prepared(target["expr"], args.window, args.every_range)  # noqa: E731
    for panel in panels:
        pos = panel["gridPos"]
        # The panel's first grid row is left to its title, clear of the tick labels of the panel above.
        axes = figure.add_subplot(grid[pos["y"] + 1:pos["y"] + pos["h"], pos["x"]:pos["x"] + pos["w"]])
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        axes.set_title(panel["title"], fontsize=10, loc="left")
        if panel["type"] == "stat":
            lines = []
            for target in panel["targets"]:
                result = instant(args.prometheus_url, query(target), end)
                for labels, value in sorted(result, key=lambda lv: sorted(lv[0].items())):
                    shown = format_value(value, target_unit(panel, target["refId"], unit))
                    name = target.get("legendFormat")
                    lines.append(shown + (f"  {name}" if name and len(panel["targets"]) > 1 else ""))
            axes.text(0.5, 0.45, "\n".join(lines) or "no data", ha="center", va="center",
                      fontsize=20 if len(lines) <= 1 else 13, weight="bold", color="#2f7d32")
            axes.set_axis_off()
            continue
        plotted = 0
        for target in panel["targets"]:
            result = ranged(args.prometheus_url, query(target), start, end, args.step)
            for labels, points in sorted(result, key=lambda lp: sorted(lp[0].items())):
                xs = [t - start for t, _ in points]
                ys = [v * (1000 if unit == "s" else 1) for _, v in points]
                axes.plot(xs, ys, linewidth=1.4, label=legend(target.get("legendFormat"), labels))
                plotted += 1
        axes.set_xlabel("seconds", fontsize=8)
        axes.set_ylabel({"s": "ms", "ops": "per second", "reqps": "requests/s"}.get(unit, ""), fontsize=8)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
        if plotted:
            axes.legend(fontsize=7, loc="upper left", ncol=2 if plotted > 4 else 1)
        else:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    ranges = "every range" if args.every_range else "Grafana's interval variables"
    figure.suptitle(f"{dashboard['title']} (from Prometheus, last {args.seconds:.0f} s; {ranges} = {args.window})",
                    fontsize=13, y=0.99)
    figure.savefig(args.out, dpi=80, bbox_inches="tight")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus-url", default="http://127.0.0.1:9090",
                        help="the Prometheus that scrapes the service")
    parser.add_argument("--seconds", type=float, default=300.0, help="the span drawn, ending now")
    parser.add_argument("--step", default="2s", help="the resolution of the range queries")
    parser.add_argument("--window", default="1m", help="what Grafana's $__rate_interval and friends stand for")
    parser.add_argument("--every-range", action="store_true",
                        help="use --window for every range in the queries too (for captures shorter than them)")
    parser.add_argument("--lookups", action="store_true",
                        help="send GET /order/{id} requests to --service-url for --seconds before drawing")
    parser.add_argument("--service-url", default="http://127.0.0.1:8082")
    parser.add_argument("--dashboard", default="dashboards/grafana/orders.json")
    parser.add_argument("--out", default="docs/dashboard.png")
    args = parser.parse_args()
    with open(args.dashboard) as file:
        dashboard = json.load(file)
    if args.lookups:
        stop = threading.Event()
        worker = threading.Thread(target=lookups, args=(args.service_url, stop), daemon=True)
        worker.start()
        time.sleep(args.seconds)
        stop.set()
        worker.join()
    draw(dashboard, args, time.time())
    print(f"wrote {args.out} from {args.prometheus_url}")


if __name__ == "__main__":
    main()
