#!/usr/bin/env python3
"""Draws the Grafana dashboard's panels from a running order-service, for machines without Grafana.

Scrapes GET /metrics every second for a while (optionally sending lookups of its own so the HTTP panels have
traffic), evaluates each panel's PromQL over the samples with a small evaluator that knows the forms the
dashboard uses (selectors, rate, increase, sum/min/max [by], histogram_quantile, /), and draws the panels on the
dashboard's own grid.

    pip install matplotlib
    scripts/render-dashboard.py --url http://127.0.0.1:8081 --seconds 30 --window 10 --lookups --out docs/dashboard.png

Publish while it runs, e.g. `order-generator --count 3000 --rate 100 --invalid-ratio 0.1`.
"""

import argparse
import json
import random
import re
import string
import threading
import time
import urllib.error
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """{(name, frozenset(labels)): value} of one scrape."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE_RE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        samples[(name, frozenset(LABEL_RE.findall(labels or "")))] = float(value)
    return samples


# --- A small PromQL evaluator over the scraped series ---------------------------------------------------------
# A vector is {frozenset(labels): value}. `at` is the index of the scrape being evaluated.

TOKEN_RE = re.compile(r'\s*(?:(\d+(?:\.\d+)?(?:[smh])?)|([a-zA-Z_:][a-zA-Z0-9_:]*)|(\{[^}]*\})|(\[[^\]]*\])|(.))')


def tokenize(expr):
    tokens = []
    for number, word, matcher, window, other in TOKEN_RE.findall(expr):
        tokens.append(number or word or matcher or window or other)
    return [t for t in tokens if t.strip()]


class Parser:
    def __init__(self, expr, window=None):
        self.tokens = tokenize(expr)
        self.pos = 0
        # Replaces every range (`[1m]`): a short capture has no minute of history to average over.
        self.window = window

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected=None):
        token = self.peek()
        if expected is not None and token != expected:
            raise ValueError(f"expected {expected!r}, got {token!r}")
        self.pos += 1
        return token

    def parse(self):
        node = self.expression()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()!r}")
        return node

    def expression(self):
        node = self.term()
        while self.peek() == "/":
            self.take()
            node = ("div", node, self.term())
        return node

    def term(self):
        token = self.take()
        if token in ("sum", "min", "max"):
            by = None
            if self.peek() == "by":
                self.take()
                by = self.label_list()
            self.take("(")
            inner = self.expression()
            self.take(")")
            return ("agg", token, by, inner)
        if token in ("rate", "increase"):
            self.take("(")
            name = self.take()
            window = self.take()
            self.take(")")
            return (token, name, self.window or parse_duration(window.strip("[]")))
        if token == "histogram_quantile":
            self.take("(")
            q = float(self.take())
            self.take(",")
            inner = self.expression()
            self.take(")")
            return ("quantile", q, inner)
        if token == "(":
            node = self.expression()
            self.take(")")
            return node
        return ("selector", token)

    def label_list(self):
        self.take("(")
        labels = []
        while self.peek() != ")":
            token = self.take()
            if token != ",":
                labels.append(token)
        self.take(")")
        return labels


def parse_duration(text):
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]]


def series(scrapes, name, at):
    return {labels: value for (n, labels), value in scrapes[at][1].items() if n == name}


def evaluate(node, scrapes, at):
    kind = node[0]
    if kind == "selector":
        return series(scrapes, node[1], at)
    if kind in ("rate", "increase"):
        _, name, window = node
        now = scrapes[at][0]
        start = at
        while start > 0 and now - scrapes[start - 1][0] <= window:
            start -= 1
        if start == at:
            return {}
        before, after = series(scrapes, name, start), series(scrapes, name, at)
        elapsed = now - scrapes[start][0]
        out = {}
        for labels, value in after.items():
            delta = max(0.0, value - before.get(labels, 0.0))
            out[labels] = delta / elapsed if kind == "rate" else delta * window / elapsed
        return out
    if kind == "agg":
        _, op, by, inner = node
        groups = {}
        for labels, value in evaluate(inner, scrapes, at).items():
            key = frozenset((k, v) for k, v in labels if by and k in by)
            groups.setdefault(key, []).append(value)
        combine = {"sum": sum, "min": min, "max": max}[op]
        return {key: combine(values) for key, values in groups.items()}
    if kind == "quantile":
        _, q, inner = node
        buckets = {}
        for labels, value in evaluate(inner, scrapes, at).items():
            le = dict(labels).get("le")
            rest = frozenset((k, v) for k, v in labels if k != "le")
            buckets.setdefault(rest, []).append((float(le), value))
        return {labels: quantile(q, sorted(points)) for labels, points in buckets.items()
                if quantile(q, sorted(points)) is not None}
    if kind == "div":
        left, right = evaluate(node[1], scrapes, at), evaluate(node[2], scrapes, at)
        return {labels: value / right[labels] for labels, value in left.items()
                if right.get(labels)}
    raise ValueError(kind)


def quantile(q, buckets):
    """Prometheus' histogram_quantile: linear interpolation inside the bucket that holds the rank."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (count - previous_count)
        previous_bound, previous_count = bound, count
    return previous_bound


def legend(template, labels):
    if not template:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels)) or "value"
    values = dict(labels)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: values.get(m.group(1), ""), template)


# --- Scraping and traffic ----------------------------------------------------------------------------------------

def scrape(base_url, seconds, interval):
    scrapes = []
    started = time.monotonic()
    while time.monotonic() - started <= seconds:
        tick = time.monotonic()
        try:
            with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as response:
                scrapes.append((tick - started, parse_exposition(response.read().decode())))
        except (urllib.error.URLError, OSError) as error:
            print(f"scrape failed: {error}")
        time.sleep(max(0.0, interval - (time.monotonic() - tick)))
    return scrapes


def lookups(base_url, stop):
    """GET /order/{id} for recent orders and for a few ids that do not exist, until `stop` is set."""
    ids = []
    while not stop.is_set():
        try:
            if random.random() < 0.02 or not ids:
                with urllib.request.urlopen(f"{base_url}/orders?limit=200", timeout=5) as response:
                    ids = [o["order_uid"] for o in json.load(response)] or ids
            uid = random.choice(ids) if ids and random.random() < 0.9 else \
                "".join(random.choices(string.ascii_lowercase, k=12))
            urllib.request.urlopen(f"{base_url}/order/{uid}", timeout=5).read()
        except urllib.error.HTTPError:
            pass
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            time.sleep(0.2)
        time.sleep(0.005)


# --- Drawing ---------------------------------------------------------------------------------------------------

def format_value(value, unit):
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


def draw(dashboard, scrapes, out, window):
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    figure = plt.figure(figsize=(20, rows * 0.42))
    grid = figure.add_gridspec(rows, 24, hspace=1.0, wspace=0.8, top=0.95, bottom=0.04)
    times = [t for t, _ in scrapes]
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        # The panel's first grid row is left to its title, clear of the tick labels of the panel above.
        axes = figure.add_subplot(grid[pos["y"] + 1:pos["y"] + pos["h"], pos["x"]:pos["x"] + pos["w"]])
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        axes.set_title(panel["title"], fontsize=10, loc="left")
        if panel["type"] == "stat":
            lines = []
            for target in panel["targets"]:
                result = evaluate(Parser(target["expr"], window).parse(), scrapes, len(scrapes) - 1)
                for labels, value in sorted(result.items(), key=lambda kv: sorted(kv[0])):
                    shown = format_value(value, target_unit(panel, target["refId"], unit))
                    name = target.get("legendFormat")
                    lines.append(f"{shown}" + (f"  {name}" if name and len(panel["targets"]) > 1 else ""))
            axes.text(0.5, 0.45, "\n".join(lines) or "no data", ha="center", va="center",
                      fontsize=20 if len(lines) <= 1 else 13, weight="bold", color="#2f7d32")
            axes.set_axis_off()
            continue
        plotted = 0
        for target in panel["targets"]:
            tree = Parser(target["expr"], window).parse()
            lines = {}
            for index in range(len(scrapes)):
                for labels, value in evaluate(tree, scrapes, index).items():
                    lines.setdefault(labels, {})[index] = value
            for labels, points in sorted(lines.items(), key=lambda kv: sorted(kv[0])):
                xs = [times[i] for i in sorted(points)]
                ys = [points[i] * (1000 if unit == "s" else 1) for i in sorted(points)]
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
    note = f", rates over {window:.0f} s" if window else ""
    figure.suptitle(f"{dashboard['title']} (rendered from /metrics over {times[-1]:.0f} s{note})", fontsize=13, y=0.99)
    figure.savefig(out, dpi=80, bbox_inches="tight")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8081", help="the service's base URL")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--window", type=float, help="seconds for every rate/increase instead of the dashboard's")
    parser.add_argument("--lookups", action="store_true", help="send GET /order/{id} requests while scraping")
    parser.add_argument("--dashboard", default="dashboards/grafana/orders.json")
    parser.add_argument("--out", default="docs/dashboard.png")
    args = parser.parse_args()
    with open(args.dashboard) as file:
        dashboard = json.load(file)
    stop = threading.Event()
    worker = threading.Thread(target=lookups, args=(args.url, stop), daemon=True)
    if args.lookups:
        worker.start()
    try:
        scrapes = scrape(args.url, args.seconds, args.interval)
    finally:
        stop.set()
    if len(scrapes) < 2:
        raise SystemExit("fewer than two scrapes succeeded; is the service running?")
    draw(dashboard, scrapes, args.out, args.window)
    print(f"wrote {args.out} from {len(scrapes)} scrapes")


if __name__ == "__main__":
    main()
