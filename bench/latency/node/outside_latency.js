#!/usr/bin/env node
// Publish -> first 200 from GET /order/{order_uid}, as an outside client sees it: the official JS clients publish
// (node-nats-streaming for STAN, nats.js for JetStream) and Node polls, on Node's timers. bench/latency.sh runs it
// beside e2e_latency.rs (our Rust publisher and poller) so that both views sit in one table.
//
// What it does the way such a harness does, and e2e_latency does not:
// - background orders go out in bursts from a timer, BURST_MS apart (rate * BURST_MS / 1000 per burst), since a
//   Node timer cannot fire a thousand times a second;
// - one probe every PROBE_MS on a timer of its own, so a probe is often published in the same turn as a burst;
// - each probe is polled every POLL_MS on a timer (setInterval), one GET in flight per probe, over keep-alive
//   connections that Node spreads over the service's workers.
// A figure is late by up to one timer period plus one GET round trip, and by whatever else holds Node's event loop.
//
//   node outside_latency.js --target stan --url nats://127.0.0.1:4222 --cluster-id test-cluster --channel orders \
//       --service http://127.0.0.1:8081 --rate 1000 --seconds 20
// Prints p50/p90/p99/max and stages (publish -> broker ack); --json FILE writes the summary for the script.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');

const args = parseArgs(process.argv.slice(2), {
    target: 'stan',
    url: 'nats://127.0.0.1:4222',
    'cluster-id': 'test-cluster',
    channel: 'orders',
    subject: 'orders',
    service: 'http://127.0.0.1:8081',
    rate: '1000',
    seconds: '20',
    'burst-ms': '10',
    'probe-ms': '20',
    'poll-ms': '1',
    'timeout-ms': '5000',
    template: path.join(__dirname, '..', '..', '..', 'schema', 'examples', 'order.valid.json'),
    json: '',
});
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const BURST_MS = Number(args['burst-ms']);
const PROBE_MS = Number(args['probe-ms']);
const POLL_MS = Number(args['poll-ms']);
const TIMEOUT_MS = Number(args['timeout-ms']);
const TEMPLATE = JSON.parse(fs.readFileSync(args.template, 'utf8'));
const service = new URL(args.service);
// Keep-alive, as a browser or a load tool would: a GET costs no connect.
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function parseArgs(argv, defaults) {
    const out = { ...defaults };
    for (let i = 0; i < argv.length; i += 2) {
        const key = argv[i].replace(/^--/, '');
        if (!(key in defaults) || i + 1 >= argv.length) {
            throw new Error(`unknown or incomplete option ${argv[i]}`);
        }
        out[key] = argv[i + 1];
    }
    return out;
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

// The sample order with a fresh order_uid (19 lowercase letters and digits, as the generator's); the payment's
// transaction follows it, so the order raises no consistency flag.
function order() {
    const uid = crypto.randomBytes(16).toString('hex').slice(0, 19);
    const doc = { ...TEMPLATE, order_uid: uid, payment: { ...TEMPLATE.payment, transaction: uid } };
    return { uid, body: JSON.stringify(doc) };
}

// publish(body) -> Promise resolved on the broker's ack.
async function connect() {
    if (args.target === 'stan') {
        const stan = require('node-nats-streaming');
        const clientId = `outside-latency-${crypto.randomBytes(6).toString('hex')}`;
        const sc = stan.connect(args['cluster-id'], clientId, { url: args.url });
        await new Promise((resolve, reject) => {
            sc.once('connect', resolve);
            sc.once('error', reject);
        });
        return {
            publish: (body) =>
                new Promise((resolve, reject) => {
                    sc.publish(args.channel, body, (error) => (error ? reject(error) : resolve()));
                }),
            close: () => new Promise((resolve) => {
                sc.once('close', resolve);
                sc.close();
            }),
        };
    }
    if (args.target === 'jetstream') {
        const { connect: natsConnect, StringCodec } = require('nats');
        const nc = await natsConnect({ servers: args.url.split(',') });
        const js = nc.jetstream();
        const sc = StringCodec();
        return {
            publish: (body) => js.publish(args.subject, sc.encode(body)),
            close: () => nc.drain(),
        };
    }
    throw new Error(`--target is stan or jetstream, not ${args.target}`);
}

// One GET; resolves to the status code (the body is read to the end, so the connection is reused).
function get(uid) {
    return new Promise((resolve, reject) => {
        const request = http.get(
            { host: service.hostname, port: service.port, path: `/order/${uid}`, agent },
            (response) => {
                response.resume();
                response.on('end', () => resolve(response.statusCode));
            },
        );
        request.on('error', reject);
    });
}

const served = [];
const acked = [];
// Round trips of every GET, and of each probe's serving GET (the first 200): a stage of their own.
const roundTrips = [];
const servingRoundTrips = [];
const failures = [];
let timedOut = 0;
let gets = 0;
let published = 0;
let probes = 0;
const pending = new Set();

function probe(publisher) {
    const { uid, body } = order();
    const started = nowMs();
    probes += 1;
    published += 1;
    const done = new Promise((resolve) => {
        let inFlight = false;
        let finished = false;
        const finish = (outcome) => {
            if (finished) return;
            finished = true;
            clearInterval(timer);
            outcome();
            resolve();
        };
        const poll = () => {
            if (nowMs() - started > TIMEOUT_MS) {
                finish(() => { timedOut += 1; });
                return;
            }
            if (inFlight || finished) return;
            inFlight = true;
            gets += 1;
            const sent = nowMs();
            get(uid).then(
                (status) => {
                    inFlight = false;
                    const answered = nowMs();
                    roundTrips.push(answered - sent);
                    if (status === 200) {
                        finish(() => {
                            served.push(answered - started);
                            servingRoundTrips.push(answered - sent);
                        });
                    } else if (status !== 404) {
                        finish(() => failures.push(`GET answered ${status}`));
                    }
                },
                (error) => finish(() => failures.push(`GET: ${error.message}`)),
            );
        };
        const timer = setInterval(poll, POLL_MS);
        publisher.publish(body).then(
            () => acked.push(nowMs() - started),
            (error) => finish(() => failures.push(`publish: ${error.message}`)),
        );
        poll();
    });
    pending.add(done);
    done.then(() => pending.delete(done));
}

function burst(publisher, count) {
    for (let i = 0; i < count; i += 1) {
        published += 1;
        publisher.publish(order().body).catch((error) => failures.push(`publish: ${error.message}`));
    }
}

function percentile(sorted, q) {
    if (sorted.length === 0) return 0;
    const rank = Math.ceil(q * sorted.length);
    return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1];
}

const round = (ms) => Math.round(ms * 1000) / 1000;

async function main() {
    const publisher = await connect();
    const perBurst = Math.round((RATE * BURST_MS) / 1000);
    const started = nowMs();
    // Both timers start in the same turn, as a harness's would: every other burst falls in the probe's turn.
    const bursts = perBurst > 0 ? setInterval(() => burst(publisher, perBurst), BURST_MS) : null;
    const probes_ = setInterval(() => probe(publisher), PROBE_MS);
    await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000));
    if (bursts) clearInterval(bursts);
    clearInterval(probes_);
    const elapsed = (nowMs() - started) / 1000;
    await Promise.all([...pending]);
    await publisher.close();
    agent.destroy();

    for (const figures of [served, acked, roundTrips, servingRoundTrips]) figures.sort((a, b) => a - b);
    const summary = {
        target: args.target,
        client: 'node',
        rate: RATE,
        seconds: SECONDS,
        published,
        publish_rate: published / elapsed,
        timed: probes,
        served: served.length,
        timed_out: timedOut,
        failed: failures.length,
        timeout_ms: TIMEOUT_MS,
        p50_ms: round(percentile(served, 0.5)),
        p90_ms: round(percentile(served, 0.9)),
        p99_ms: round(percentile(served, 0.99)),
        max_ms: round(served.length ? served[served.length - 1] : 0),
        ack_p50_ms: round(percentile(acked, 0.5)),
        ack_p99_ms: round(percentile(acked, 0.99)),
        get_p50_ms: round(percentile(roundTrips, 0.5)),
        get_p99_ms: round(percentile(roundTrips, 0.99)),
        serving_get_p50_ms: round(percentile(servingRoundTrips, 0.5)),
        serving_get_p99_ms: round(percentile(servingRoundTrips, 0.99)),
        poll_interval_us: POLL_MS * 1000,
        burst_ms: BURST_MS,
        probe_ms: PROBE_MS,
        gets,
        gets_per_second: gets / elapsed,
    };
    console.log(
        `${summary.target} (node): ${published} orders at ${summary.publish_rate.toFixed(0)}/s in bursts every ` +
            `${BURST_MS} ms, ${probes} probes: ${served.length} served, ${timedOut} timed out, ${failures.length} failed`,
    );
    console.log(
        `publish -> first 200 (ms): p50 ${summary.p50_ms}  p90 ${summary.p90_ms}  p99 ${summary.p99_ms}  ` +
            `max ${summary.max_ms}`,
    );
    console.log(
        `stages (ms, p50 / p99): publish -> broker ack ${summary.ack_p50_ms} / ${summary.ack_p99_ms}; ` +
            `a GET's round trip ${summary.get_p50_ms} / ${summary.get_p99_ms}; ` +
            `the serving GET's ${summary.serving_get_p50_ms} / ${summary.serving_get_p99_ms}`,
    );
    failures.slice(0, 5).forEach((f) => console.log(`failed: ${f}`));
    if (args.json) fs.writeFileSync(args.json, JSON.stringify(summary));
    if (probes === 0 || served.length === 0) {
        throw new Error('no probe was served');
    }
}

main().catch((error) => {
    console.error(`outside_latency: ${error.stack || error}`);
    process.exit(1);
});
