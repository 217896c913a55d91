#!/usr/bin/env python3
"""Where a lone order's time goes, read off the wire: medians per step from a capture on lo taken beside
bench/latency.sh at a low rate through JetStream (every order timed), so nothing in the service is slowed.

    tcpdump -i lo -s 0 -w /tmp/lone.pcap 'tcp port 4222 or tcp port 5432 or tcp port 18481' &
    BENCH_HTTP_PORT=18481 BENCH_SOURCES=jetstream BENCH_LATENCY_RATE=20 BENCH_PROBE_EVERY=1 \\
        BENCH_LATENCY_SECONDS=10 bench/latency.sh
    kill %1; bench/lone_order.py /tmp/lone.pcap 18481

An order is followed by its `"order_uid": "..."` text: the publish (the first packet to nats-server carrying it),
the delivery (the first from nats-server), the INSERT (the first large packet to PostgreSQL: its Bind carries the
document; a read-through lookup carries only the id), PostgreSQL's answer on that connection, a BEGIN just before
it and a COMMIT just after it when the build sends them, and the first `200 OK` carrying it from the HTTP port.
Plain pcap (microsecond or nanosecond), Ethernet framing as on Linux's lo, IPv4.
"""
import re
import statistics
import struct
import sys

UID = re.compile(rb'"order_uid":\s*"([0-9A-Za-z_-]{8,})"')
NATS, POSTGRES = 4222, 5432


def read_pcap(path):
    """(time, source port, destination port, payload) of every TCP segment with a payload."""
    segments = []
    with open(path, 'rb') as f:
        (magic,) = struct.unpack('<I', f.read(4))
        scale = 1e9 if magic == 0xA1B23C4D else 1e6
        f.read(20)
        while len(header := f.read(16)) == 16:
            seconds, fraction, length, _ = struct.unpack('<IIII', header)
            frame = f.read(length)
            if frame[12:14] != b'\x08\x00':
                continue
            ip = frame[14:]
            tcp = ip[(ip[0] & 15) * 4:]
            source, destination = struct.unpack('!HH', tcp[:4])
            payload = tcp[(tcp[12] >> 4) * 4:]
            if payload:
                segments.append((seconds + fraction / scale, source, destination, payload))
    return segments


def answer_after(segments, port, after):
    """PostgreSQL's first segment to `port` after `after`."""
    return next((t for t, s, d, _ in segments if s == POSTGRES and d == port and t > after), None)


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: bench/lone_order.py CAPTURE.pcap HTTP_PORT')
    segments = read_pcap(sys.argv[1])
    http_port = int(sys.argv[2])
    orders = {}
    for t, source, destination, payload in segments:
        for match in UID.finditer(payload):
            o = orders.setdefault(match.group(1), {})
            if destination == NATS and 'publish' not in o:
                o['publish'] = t
            elif source == NATS and 'publish' in o and 'delivery' not in o:
                o['delivery'] = t
            elif destination == POSTGRES and len(payload) > 400 and 'delivery' in o and 'insert' not in o:
                o['insert'], o['port'] = t, source
            elif source == http_port and b'200 OK' in payload and 'served' not in o:
                o['served'] = t

    steps = {}

    def add(step, seconds):
        steps.setdefault(step, []).append(seconds)

    for o in orders.values():
        if not all(k in o for k in ('publish', 'delivery', 'insert', 'served')):
            continue
        port, insert = o['port'], o['insert']
        answer = answer_after(segments, port, insert)
        if answer is None:
            continue
        first_statement = insert
        begin = [t for t, s, d, p in segments
                 if s == port and d == POSTGRES and b'START TRANSACTION' in p and insert - 0.005 < t < insert]
        if begin:
            first_statement = begin[-1]
            begun = answer_after(segments, port, first_statement)
            add('BEGIN round trip', begun - first_statement)
            add('BEGIN answered -> INSERT sent', insert - begun)
        add('nats-server: publish -> delivery', o['delivery'] - o['publish'])
        add('delivery -> first statement sent', first_statement - o['delivery'])
        add('INSERT round trip', answer - insert)
        committed = answer
        commit = next(((t, p) for t, s, d, p in segments if s == port and d == POSTGRES and t > insert), None)
        if commit and b'COMMIT' in commit[1]:
            committed = answer_after(segments, port, commit[0])
            add('INSERT answered -> COMMIT sent', commit[0] - answer)
            add('COMMIT round trip', committed - commit[0])
        add('committed -> first 200', o['served'] - committed)
        add('publish -> first 200', o['served'] - o['publish'])

    timed = len(steps.get('publish -> first 200', []))
    print(f'{timed} orders with every step seen; medians in ms')
    for step, values in steps.items():
        print(f'  {step:34} {statistics.median(values) * 1e3:6.3f}')


if __name__ == '__main__':
    main()
