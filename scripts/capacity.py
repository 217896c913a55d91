#!/usr/bin/env python3
"""Capacity calculator for order-service: turns a target into counts of instances, shards and primaries.

    python3 scripts/capacity.py --orders-per-sec 200000 --stored-orders 10000000 --get-per-sec 200000
    python3 scripts/capacity.py ... --headroom 1.5        # plan for 1.5x the target rates
    python3 scripts/capacity.py ... --json                # the same as JSON
    python3 scripts/capacity.py ... --row "10x"           # the same as a row of the table in docs/scaling.md
    python3 scripts/capacity.py --check docs/scaling.md   # recompute the plan's tables; non-zero exit on a difference

The layout it sizes is the one docs/scaling.md describes: S shards, shard = hash(order_uid) mod S; per shard one
subject orders.<shard>, one stream, one consumer group, one PostgreSQL primary (or Citus worker) and a group of
instances that consume that shard, follow that primary's change feed, cache that shard's orders and get that shard's
GETs from a load balancer that routes by the same hash.

Every node is the measured machine (2 cores, AMD EPYC, 24 GiB). The figures below were all measured on it with the
whole stack (load generator, broker, PostgreSQL, service) sharing its 2 cores, so per-node figures taken from
throughput are conservative for a node that runs one thing. Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys

# ---------------------------------------------------------------------------------------------------------------
# Measured figures. Where a range was measured, rates take the low end and costs the high end.
# PO = issue #24, measured by the PO on 2026-12-07: 2-core AMD EPYC, 24 GiB, real nats-streaming-server 0.25.6.
# ---------------------------------------------------------------------------------------------------------------

NODE_CORES = 2  # the measured machine: 2 cores (AMD EPYC) - bench/results/*.md, PO
NODE_MEMORY_BYTES = 24 * 2**30  # 24 GiB - same

INGEST_MEASURED = 20_900  # orders/s, live ingest of 50,000 orders, whole stack on one box: 20.9-22.4k (PO)
SERVICE_US_PER_ORDER = 17.0  # service CPU per order: 15.4-17.0 µs (PO)
PG_US_PER_ORDER = 27.2  # PostgreSQL, whole cluster, per order: 26.4-27.2 µs (PO), one instance's feed included
PG_FEED_US_PER_ORDER = 2.5  # of which one instance's change feed: 2.0-2.5 µs (bench/results/ingest.md, 2026-11-30)
NATS_US_PER_ORDER = 25.4  # nats-server (JetStream, file storage), live: 24.9-25.4 µs (bench/results/ingest.md, 2026-11-30)
STAN_BROKER_US_PER_ORDER = 14.0  # nats-streaming-server 0.25.6 per order (PO); for reference, not used below
PUBLISHER_US_PER_ORDER = 32.0  # the publisher per order (PO); the client's cost, not sized here

GET_MEASURED = 62_100  # GET /order/{id}, wrk -t1 -c64, wrk on the same 2 cores: 62.1k req/s (PO)
GET_KNOWN_SAME_RUN = 68_224.85  # GET on instance B, known ids (bench/results/scale.md, 2026-11-30)
GET_UNKNOWN_SAME_RUN = 43_778.02  # the same run, 100 % ids not in the cache: read through (scale.md, 2026-11-30)
LOOKUP_QUERIES_PER_INSTANCE = 4_857  # lookup queries/s at 100 % misses, batched (scale.md, 2026-11-30)

DOC_BYTES = 1_254  # average generated order's JSON (bench/results/restore.md, 2026-11-25; http.md: 1,253)
RSS_PER_CACHED_ORDER = round((373 - 21) * 2**20 / 200_000)  # B: RSS max - start over 200,000 orders ingested,
# the largest of the live rows (bench/results/ingest.md, 2026-11-30; README: "~1.8 KiB per cached order")
RESTORE_RSS_RATIO = 1.04  # RSS / JSON after restoring 1,000,000 orders (bench/README.md 2026-12-07, shared index; 1.29x before)
RESTORE_SECONDS_PER_MILLION = 1.53  # restore 1,000,000 orders, start to ready (bench/README.md 2026-12-07; PO 3.48 s on a loaded machine)
CACHE_ENTRY_OVERHEAD = 64  # B charged per order by CACHE_MAX_BYTES besides its JSON and id (README "How it works")
DISK_BYTES_PER_ORDER = 911  # the orders table rewritten: 911 MB for 1,000,000 orders (bench/README.md, 2026-11-30)

# ---------------------------------------------------------------------------------------------------------------
# Assumptions (not measured). Change them here, then re-run --check.
# ---------------------------------------------------------------------------------------------------------------

UTILISATION = 0.6  # plan every node's CPU and memory to 60 % of what was measured
STREAM_CORES = 1  # one stream's work is serialised: plan at most one core of nats-server per stream
MIN_INSTANCES_PER_SHARD = 2  # so a shard keeps serving and consuming when one instance is lost
DEFAULT_HEADROOM = 1.0  # multiplies the target rates (orders/s, GET req/s); for peaks, growth, a lost zone

# ---------------------------------------------------------------------------------------------------------------
# Planned per-node figures, derived from the above.
# ---------------------------------------------------------------------------------------------------------------

INGEST_PER_INSTANCE = INGEST_MEASURED * UTILISATION  # orders/s one instance is planned for
GET_PER_CORE = GET_MEASURED / NODE_CORES  # req/s per core (wrk shared the cores: conservative)
GET_PER_INSTANCE = GET_PER_CORE * NODE_CORES * UTILISATION  # req/s, every GET a cache hit
MISS_COST_RATIO = GET_UNKNOWN_SAME_RUN / GET_KNOWN_SAME_RUN  # req/s when every GET misses, relative to all hits
PG_WRITE_US_PER_ORDER = PG_US_PER_ORDER - PG_FEED_US_PER_ORDER  # what an order costs PostgreSQL without any feed
PG_CPU_US_PER_SEC = NODE_CORES * UTILISATION * 1e6  # CPU µs a primary is planned to spend per second
STREAM_PER_SEC = STREAM_CORES * UTILISATION * 1e6 / NATS_US_PER_ORDER  # orders/s one stream is planned for
NATS_NODE_PER_SEC = NODE_CORES * UTILISATION * 1e6 / NATS_US_PER_ORDER  # orders/s one nats-server node
CACHE_BUDGET_BYTES = NODE_MEMORY_BYTES * UTILISATION  # RSS an instance's cache is planned to use
CACHE_ORDERS_PER_INSTANCE = int(CACHE_BUDGET_BYTES // RSS_PER_CACHED_ORDER)  # orders that fit, unbounded cache
# With CACHE_MAX_BYTES each worker (one per core) keeps its own set; in the worst case the sets differ (README "How it
# works"), so a bounded worker is planned for a worker's share of the budget.
CACHE_ORDERS_PER_WORKER_BOUNDED = int(CACHE_BUDGET_BYTES // (NODE_CORES * RSS_PER_CACHED_ORDER))
SERVICE_CPU_CEILING = NODE_CORES * UTILISATION * 1e6 / SERVICE_US_PER_ORDER  # if the service's CPU alone bound


def pg_per_primary(instances_per_shard: int) -> float:
    """Orders/s one primary is planned for when `instances_per_shard` instances follow its change feed."""
    return PG_CPU_US_PER_SEC / (PG_WRITE_US_PER_ORDER + PG_FEED_US_PER_ORDER * instances_per_shard)


# The per-node table in docs/scaling.md (between <!-- capacity:figures:begin --> and <!-- capacity:figures:end -->):
# name -> (value, how it is printed).
def figures() -> dict[str, str]:
    return {
        "INGEST_PER_INSTANCE": f"{INGEST_PER_INSTANCE:,.0f} orders/s",
        "SERVICE_CPU_CEILING": f"{SERVICE_CPU_CEILING:,.0f} orders/s",
        "PG_WRITE_US_PER_ORDER": f"{PG_WRITE_US_PER_ORDER:.1f} µs",
        "PG_FEED_US_PER_ORDER": f"{PG_FEED_US_PER_ORDER:.1f} µs",
        "PG_PER_PRIMARY_2": f"{pg_per_primary(2):,.0f} orders/s",
        "PG_PER_PRIMARY_3": f"{pg_per_primary(3):,.0f} orders/s",
        "STREAM_PER_SEC": f"{STREAM_PER_SEC:,.0f} orders/s",
        "NATS_NODE_PER_SEC": f"{NATS_NODE_PER_SEC:,.0f} orders/s",
        "GET_PER_CORE": f"{GET_PER_CORE:,.0f} req/s",
        "GET_PER_INSTANCE": f"{GET_PER_INSTANCE:,.0f} req/s",
        "MISS_COST_RATIO": f"{MISS_COST_RATIO:.2f}",
        "RSS_PER_CACHED_ORDER": f"{RSS_PER_CACHED_ORDER:,} B",
        "CACHE_ORDERS_PER_INSTANCE": f"{CACHE_ORDERS_PER_INSTANCE:,} orders",
        "CACHE_ORDERS_PER_WORKER_BOUNDED": f"{CACHE_ORDERS_PER_WORKER_BOUNDED:,} orders",
        "CACHE_MAX_BYTES_BOUNDED": f"{CACHE_ORDERS_PER_WORKER_BOUNDED * (DOC_BYTES + CACHE_ENTRY_OVERHEAD):,}",
    }


def ceil(x: float) -> int:
    return math.ceil(x - 1e-9)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def plan(orders_per_sec: float, stored_orders: int, get_per_sec: float, headroom: float = DEFAULT_HEADROOM) -> dict:
    if orders_per_sec < 0 or stored_orders < 0 or get_per_sec < 0 or headroom <= 0:
        raise ValueError("targets must be >= 0 and the headroom > 0")
    orders = orders_per_sec * headroom
    gets = get_per_sec * headroom

    def per_shard(shards: int) -> dict:
        shard_orders = orders / shards
        shard_gets = gets / shards
        shard_stored = math.ceil(stored_orders / shards)
        # Everything of the shard fits the budget (the workers share the documents), or each worker keeps a bounded
        # set; then the worst case is ids read uniformly: a GET hits with the share of the shard a worker holds.
        cached = shard_stored if shard_stored <= CACHE_ORDERS_PER_INSTANCE else CACHE_ORDERS_PER_WORKER_BOUNDED
        miss = 0.0 if shard_stored == 0 else 1 - cached / shard_stored
        get_capacity = GET_PER_INSTANCE / ((1 - miss) + miss / MISS_COST_RATIO)
        ingest_share = shard_orders / INGEST_PER_INSTANCE
        get_share = shard_gets / get_capacity
        instances = max(MIN_INSTANCES_PER_SHARD, ceil(ingest_share + get_share))
        return {
            "shard_orders": shard_orders,
            "shard_stored": shard_stored,
            "cached": cached,
            "miss": miss,
            "get_capacity": get_capacity,
            "ingest_share": ingest_share,
            "get_share": get_share,
            "instances": instances,
            "pg_capacity": pg_per_primary(instances),
            "stream_ok": shard_orders <= STREAM_PER_SEC + 1e-9,
        }

    # The smallest shard count at which one stream and one primary carry a shard's orders. A primary's capacity
    # depends on how many instances follow its feed, which depends on the shard count: search upwards.
    shards = max(1, ceil(orders / STREAM_PER_SEC), ceil(orders * (PG_WRITE_US_PER_ORDER + PG_FEED_US_PER_ORDER
                                                                  * MIN_INSTANCES_PER_SHARD) / PG_CPU_US_PER_SEC))
    while True:
        s = per_shard(shards)
        if s["stream_ok"] and s["shard_orders"] <= s["pg_capacity"] + 1e-9:
            break
        shards += 1

    if shards == 1:
        shards_bind = "one shard is enough"
    else:
        prev = per_shard(shards - 1)
        stream_short = not prev["stream_ok"]
        pg_short = prev["shard_orders"] > prev["pg_capacity"] + 1e-9
        shards_bind = " and ".join(
            name for name, short in (("the stream", stream_short), ("the primary", pg_short)) if short
        )
    if ceil(s["ingest_share"] + s["get_share"]) < MIN_INSTANCES_PER_SHARD:
        instances_bind = f"the minimum of {MIN_INSTANCES_PER_SHARD}"
    elif s["ingest_share"] >= s["get_share"]:
        instances_bind = "ingest"
    else:
        instances_bind = "GET"
    bounded = s["cached"] < s["shard_stored"]
    cache_bytes = s["cached"] * RSS_PER_CACHED_ORDER * (NODE_CORES if bounded else 1)
    unrouted_feed_us = PG_FEED_US_PER_ORDER * shards * s["instances"]
    return {
        "orders_per_sec": orders_per_sec,
        "stored_orders": stored_orders,
        "get_per_sec": get_per_sec,
        "headroom": headroom,
        "shards": shards,
        "streams": shards,
        "primaries": shards,
        "instances_per_shard": s["instances"],
        "instances": shards * s["instances"],
        "nats_nodes": max(1, ceil(orders / NATS_NODE_PER_SEC)),
        "orders_per_sec_per_shard": round(s["shard_orders"]),
        "stored_orders_per_shard": s["shard_stored"],
        "stream_capacity": round(STREAM_PER_SEC),
        "primary_capacity": round(s["pg_capacity"]),
        "primary_cpu_used": round(s["shard_orders"] * (PG_WRITE_US_PER_ORDER + PG_FEED_US_PER_ORDER * s["instances"])
                                  / PG_CPU_US_PER_SEC, 3),
        "instance_ingest_share": round(s["ingest_share"] / s["instances"], 3),
        "instance_get_share": round(s["get_share"] / s["instances"], 3),
        "cache_orders_per_instance": s["cached"],  # per worker when bounded
        "cache_bytes_per_instance": cache_bytes,
        "cache_bounded": bounded,
        "cache_max_bytes": s["cached"] * (DOC_BYTES + CACHE_ENTRY_OVERHEAD) if bounded else None,
        "cache_share": round(s["cached"] / s["shard_stored"], 4) if s["shard_stored"] else 1.0,
        "worst_case_miss_rate": round(s["miss"], 4),
        "get_capacity_per_instance": round(s["get_capacity"]),
        "lookup_queries_per_primary_max": s["instances"] * LOOKUP_QUERIES_PER_INSTANCE if bounded else 0,
        "restore_seconds": round(s["cached"] / 1e6 * RESTORE_SECONDS_PER_MILLION, 1),
        "disk_bytes_per_primary": s["shard_stored"] * DISK_BYTES_PER_ORDER,
        "unrouted_feed_us_per_order": round(unrouted_feed_us, 1),
        "binds": {"shards": shards_bind, "instances": instances_bind,
                  "cache": "memory: bounded" if bounded else "fits"},
    }


def report(p: dict) -> str:
    b = p["binds"]
    lines = [
        f"target x headroom {p['headroom']:g}: {p['orders_per_sec']:,.0f} orders/s, {p['stored_orders']:,} stored "
        f"orders, {p['get_per_sec']:,.0f} GET req/s",
        f"shards:                {p['shards']:,} (subjects orders.<0..{p['shards'] - 1}>, one stream and one consumer "
        f"group each; {p['orders_per_sec_per_shard']:,} orders/s and {p['stored_orders_per_shard']:,} orders per shard)",
        f"PostgreSQL primaries:  {p['primaries']:,} (one per shard, or as many Citus workers; each at "
        f"{p['primary_cpu_used'] * 100:.0f} % of its planned CPU, planned for {p['primary_capacity']:,} orders/s; "
        f"{gib(p['disk_bytes_per_primary'])} of table each)",
        f"instances:             {p['instances']:,} ({p['instances_per_shard']} per shard; each at "
        f"{p['instance_ingest_share'] * 100:.0f} % ingest + {p['instance_get_share'] * 100:.0f} % GET of its planned CPU)",
        f"NATS server nodes:     {p['nats_nodes']:,} (one replica per stream, as measured; {p['stream_capacity']:,} "
        f"orders/s planned per stream)",
    ]
    if p["cache_bounded"]:
        lines.append(
            f"cache per instance:    {gib(p['cache_bytes_per_instance'])} RSS at most; bounded: CACHE_MAX_BYTES="
            f"{p['cache_max_bytes']:,} (per worker, {NODE_CORES} workers), {p['cache_orders_per_instance']:,} orders "
            f"per worker of its shard's {p['stored_orders_per_shard']:,} ({p['cache_share'] * 100:.1f} %); worst case, "
            f"uniform reads: {p['worst_case_miss_rate'] * 100:.1f} % misses, {p['get_capacity_per_instance']:,} GET "
            f"req/s per instance, up to {p['lookup_queries_per_primary_max']:,} lookup queries/s per primary")
    else:
        lines.append(
            f"cache per instance:    {gib(p['cache_bytes_per_instance'])} RSS, all {p['cache_orders_per_instance']:,} "
            f"orders of its shard; CACHE_MAX_BYTES unset")
    lines += [
        f"restore at start:      {p['restore_seconds']:g} s per instance",
        f"binds:                 shards: {b['shards']}; instances: {b['instances']}; cache: {b['cache']}",
        f"unrouted (every instance follows every shard's feed): {p['unrouted_feed_us_per_order']:g} µs of feed per "
        f"order on every primary, against {PG_WRITE_US_PER_ORDER:.1f} µs for the write",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# The worked examples in docs/scaling.md: a table between <!-- capacity:begin --> and <!-- capacity:end -->.
# ---------------------------------------------------------------------------------------------------------------

COLUMNS = ["example", "orders/s", "stored orders", "GET req/s", "headroom", "shards = streams = primaries",
           "instances (per shard)", "NATS nodes", "cache per instance", "binds (shards; instances)"]


def row_cells(name: str, p: dict) -> list[str]:
    cache = gib(p["cache_bytes_per_instance"])
    cache += f", bound ({p['cache_share'] * 100:.1f} %)" if p["cache_bounded"] else ", all"
    return [
        name,
        f"{p['orders_per_sec']:,.0f}",
        f"{p['stored_orders']:,}",
        f"{p['get_per_sec']:,.0f}",
        f"{p['headroom']:g}",
        f"{p['shards']:,}",
        f"{p['instances']:,} ({p['instances_per_shard']})",
        f"{p['nats_nodes']:,}",
        cache,
        f"{p['binds']['shards']}; {p['binds']['instances']}",
    ]


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def split_row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def number(cell: str) -> float:
    cleaned = cell.replace(",", "").replace("_", "").replace(" ", "")
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", cleaned):
        raise ValueError(f"not a number: {cell!r}")
    return float(cleaned)


def block(lines: list[str], name: str, path: str) -> list[tuple[int, str]] | str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        return f"{path}: expected one {begin} ... {end} block"
    rows = []
    for i in range(starts[0] + 1, ends[0]):
        line = lines[i]
        if not line.strip().startswith("|"):
            continue
        cells = split_row(line)
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue  # the separator
        rows.append((i + 1, line))
    return rows


def check(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as error:
        print(f"cannot read {path}: {error}", file=sys.stderr)
        return 2
    problems: list[str] = []
    checked = 0

    examples = block(lines, "capacity", path)
    if isinstance(examples, str):
        problems.append(examples)
        examples = []
    header_seen = False
    for lineno, line in examples:
        cells = split_row(line)
        if not header_seen:
            header_seen = True
            if cells != COLUMNS:
                problems.append(f"{path}:{lineno}: the header should be\n    {markdown_row(COLUMNS)}\n"
                                f"  it is\n    {line.strip()}")
            continue
        if len(cells) != len(COLUMNS):
            problems.append(f"{path}:{lineno}: {len(cells)} cells, expected {len(COLUMNS)}: {line.strip()}")
            continue
        try:
            p = plan(number(cells[1]), int(number(cells[2])), number(cells[3]), number(cells[4]))
        except ValueError as error:
            problems.append(f"{path}:{lineno}: {error}")
            continue
        expected = row_cells(cells[0], p)
        checked += 1
        if cells != expected:
            diffs = [f"    {COLUMNS[i]}: the plan says {cells[i]!r}, the script computes {expected[i]!r}"
                     for i in range(len(COLUMNS)) if cells[i] != expected[i]]
            problems.append(f"{path}:{lineno}: example {cells[0]!r} differs\n" + "\n".join(diffs)
                            + f"\n  - {line.strip()}\n  + {markdown_row(expected)}")
    if not header_seen and not isinstance(block(lines, "capacity", path), str):
        problems.append(f"{path}: the capacity block has no table")
    elif header_seen and checked == 0:
        problems.append(f"{path}: the capacity table has no examples")

    wanted = figures()
    rows = block(lines, "capacity:figures", path)
    if isinstance(rows, str):
        problems.append(rows)
        rows = []
    seen: set[str] = set()
    for lineno, line in rows:
        cells = split_row(line)
        m = re.fullmatch(r"`([A-Z0-9_]+)`", cells[0])
        if not m:
            continue  # the header
        name = m.group(1)
        seen.add(name)
        if name not in wanted:
            problems.append(f"{path}:{lineno}: unknown figure {name}; known: {', '.join(wanted)}")
            continue
        checked += 1
        if len(cells) < 3 or cells[2] != wanted[name]:
            got = cells[2] if len(cells) >= 3 else "(no third cell)"
            problems.append(f"{path}:{lineno}: {name}: the plan says {got!r}, the script computes {wanted[name]!r}")

    if not isinstance(block(lines, "capacity:figures", path), str):
        for name in wanted:
            if name not in seen:
                problems.append(f"{path}: the figures table has no row for `{name}` ({wanted[name]})")

    if problems:
        print(f"{path} does not match scripts/capacity.py:", file=sys.stderr)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    print(f"{path}: {checked} figures and examples match")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Turn a target (orders/s, stored orders, GET req/s) into counts of instances, shards (subjects, "
                    "streams, consumer groups), PostgreSQL primaries and NATS nodes, from the per-node figures "
                    "measured on this project's 2-core benchmark machine (see the constants at the top and "
                    "docs/scaling.md).",
        epilog="Headroom multiplies the target rates. Assumptions (utilisation 0.6, one core per stream, at least "
               "2 instances per shard) are constants at the top of this file.")
    parser.add_argument("--orders-per-sec", type=float, help="orders ingested per second")
    parser.add_argument("--stored-orders", type=int, help="orders stored in PostgreSQL (and to be served)")
    parser.add_argument("--get-per-sec", type=float, help="GET /order/{id} requests per second")
    parser.add_argument("--headroom", type=float, default=DEFAULT_HEADROOM,
                        help=f"factor on the target rates (default {DEFAULT_HEADROOM:g})")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--row", metavar="NAME", help="print the plan as a row of the table in docs/scaling.md")
    parser.add_argument("--figures", action="store_true", help="print the planned per-node figures")
    parser.add_argument("--check", metavar="DOC", help="recompute the tables of DOC (docs/scaling.md) and exit 1 on "
                                                       "any difference")
    args = parser.parse_args(argv)

    if args.check:
        return check(args.check)
    if args.figures:
        for name, value in figures().items():
            print(f"{name:32} {value}")
        return 0
    missing = [flag for flag, value in (("--orders-per-sec", args.orders_per_sec),
                                        ("--stored-orders", args.stored_orders),
                                        ("--get-per-sec", args.get_per_sec)) if value is None]
    if missing:
        parser.error(f"missing {', '.join(missing)} (or use --check DOC / --figures)")
    try:
        p = plan(args.orders_per_sec, args.stored_orders, args.get_per_sec, args.headroom)
    except ValueError as error:
        parser.error(str(error))
    if args.json:
        print(json.dumps(p, indent=2))
    elif args.row:
        print(markdown_row(row_cells(args.row, p)))
    else:
        print(report(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
