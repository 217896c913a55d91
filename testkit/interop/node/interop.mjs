// Drives a STAN server (the dev broker in testkit/, or a real nats-streaming-server) with the official
// Node.js client, node-nats-streaming, so the broker is checked by a client we did not write.
//
//   STAN_URL=nats://127.0.0.1:4222 STAN_CLUSTER_ID=my-cluster INTEROP_PREFIX=interop-1234 node interop.mjs
//
// Runs every check on its own channel under INTEROP_PREFIX, prints one `ok <check>: <detail>` line per
// check and exits 1 with `FAIL <check>: <reason>` on the first failure.
//
//   node interop.mjs --publish-file tests/fixtures/model.json --channel orders
//
// publishes the file's bytes once (same env vars, INTEROP_PREFIX optional) and prints the PubAck's guid.

import { readFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import stan from 'node-nats-streaming'

const NATS_URL = process.env.STAN_URL || 'nats://127.0.0.1:4222'
const CLUSTER_ID = process.env.STAN_CLUSTER_ID
const PREFIX = process.env.INTEROP_PREFIX || `interop-${randomBytes(6).toString('hex')}`
// Bound on every single wait (connect, PubAck, subscription response, next message).
const WAIT_MS = 5000
// How long "nothing else arrives" is observed.
const QUIET_MS = 700

class CheckFailed extends Error {}

function fail (message) {
  throw new CheckFailed(message)
}

function expectEqual (actual, expected, what) {
  const a = JSON.stringify(actual)
  const e = JSON.stringify(expected)
  if (a !== e) fail(`${what}: got ${a}, expected ${e}`)
}

// Rejects with `what` unless `promise` settles within `ms`.
function within (ms, what, promise) {
  let timer
  const deadline = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

// Client ids may only hold letters, digits, '-' and '_'.
function clientId (name) {
  return `${PREFIX}-${name}`.replace(/[^A-Za-z0-9_-]/g, '_')
}

function channel (name) {
  return `${PREFIX}.${name}`
}

// Resolves with a connected client, rejects with the server's refusal.
function connect (name) {
  const sc = stan.connect(CLUSTER_ID, clientId(name), { url: NATS_URL, connectTimeout: WAIT_MS })
  const connected = new Promise((resolve, reject) => {
    sc.once('connect', () => resolve(sc))
    sc.once('error', (error) => reject(new CheckFailed(`connect ${clientId(name)} refused: ${error}`)))
  })
  // Later errors must not crash the process as an unhandled 'error' event; the checks see their effects.
  sc.on('error', (error) => { sc.lastError = error })
  return within(WAIT_MS, `connect ${clientId(name)}`, connected)
}

function close (sc) {
  const closed = new Promise((resolve, reject) => {
    sc.once('close', (error) => (error ? reject(new CheckFailed(`close failed: ${error}`)) : resolve()))
  })
  sc.close()
  return within(WAIT_MS, 'close', closed)
}

// Runs `check` with a client connected as `name` and the channel of the same name, and closes the
// client however the check ends.
async function withClient (name, check) {
  const sc = await connect(name)
  try {
    return await check(sc, channel(name))
  } finally {
    await close(sc)
  }
}

// Publishes one message and resolves with its guid once the PubAck says it was stored.
function publish (sc, subject, data) {
  return within(WAIT_MS, `PubAck on ${subject}`, new Promise((resolve, reject) => {
    let returned
    let acked
    returned = sc.publish(subject, data, (error, guid) => {
      if (error) return reject(new CheckFailed(`PubAck on ${subject} carries an error: ${error}`))
      acked = guid
      // The callback may run before publish() returned, so compare once both are known.
      setImmediate(() => {
        if (!acked) return reject(new CheckFailed(`PubAck on ${subject} has no guid`))
        if (acked !== returned) {
          return reject(new CheckFailed(`PubAck guid ${acked} is not the published guid ${returned}`))
        }
        resolve(acked)
      })
    })
  }))
}

async function publishAll (sc, subject, payloads) {
  const guids = []
  for (const payload of payloads) guids.push(await publish(sc, subject, payload))
  return guids
}

function payloads (count, tag) {
  return Array.from({ length: count }, (_, i) => `${tag}-${i + 1}`)
}

// A subscription whose messages are queued until a check asks for them.
class Received {
  constructor (sub, what) {
    this.sub = sub
    this.what = what
    this.queue = []
    this.waiting = null
    sub.on('message', (msg) => {
      this.queue.push(msg)
      if (this.waiting) this.waiting()
    })
    sub.on('error', (error) => { this.error = error })
  }

  // The next message within WAIT_MS.
  async next () {
    if (this.queue.length === 0) {
      await within(WAIT_MS, `next message on ${this.what}`, new Promise((resolve) => { this.waiting = resolve }))
      this.waiting = null
    }
    return this.queue.shift()
  }

  async take (count) {
    const messages = []
    try {
      for (let i = 0; i < count; i++) messages.push(await this.next())
    } catch (error) {
      fail(`${error.message}; got ${messages.length} of ${count}: seq ${JSON.stringify(sequences(messages))}`)
    }
    return messages
  }

  // Fails if any message arrives within `ms`.
  async expectQuiet (ms, why) {
    if (this.queue.length === 0) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, ms)
        this.waiting = () => { clearTimeout(timer); resolve() }
      })
      this.waiting = null
    }
    if (this.queue.length > 0) {
      const msg = this.queue[0]
      fail(`${this.what}: unexpected message seq ${msg.getSequence()} (redelivered ${msg.isRedelivered()}); ${why}`)
    }
  }

  // Resolves on the server's answer to a close or unsubscribe.
  async end (how) {
    const event = how === 'close' ? 'closed' : 'unsubscribed'
    const done = new Promise((resolve, reject) => {
      this.sub.once(event, resolve)
      this.sub.once('error', (error) => reject(new CheckFailed(`${how} ${this.what} failed: ${error}`)))
    })
    if (how === 'close') this.sub.close(); else this.sub.unsubscribe()
    await within(WAIT_MS, `${how} ${this.what}`, done)
  }
}

// Subscribes and resolves once the server accepted the subscription.
async function subscribe (sc, subject, configure, queueGroup) {
  const opts = sc.subscriptionOptions()
  configure(opts)
  const sub = queueGroup ? sc.subscribe(subject, queueGroup, opts) : sc.subscribe(subject, opts)
  const received = new Received(sub, subject)
  await within(WAIT_MS, `subscribe ${subject}`, new Promise((resolve, reject) => {
    sub.once('ready', resolve)
    sub.once('error', (error) => reject(new CheckFailed(`subscribe ${subject} refused: ${error}`)))
    sub.once('timeout', (error) => reject(new CheckFailed(`subscribe ${subject} timed out: ${error}`)))
  }))
  return received
}

// Polls `condition` every 20 ms until it holds, failing after WAIT_MS.
async function waitUntil (condition, what) {
  const deadline = Date.now() + WAIT_MS
  while (!condition()) {
    if (Date.now() > deadline) fail(`${what}: not within ${WAIT_MS} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function sequences (messages) {
  return messages.map((m) => m.getSequence())
}

function data (messages) {
  return messages.map((m) => m.getData())
}

// Acks the messages, then proves the server took the acks: nothing comes back within the ack wait
// (plus a margin), where an unacked message would have been redelivered.
async function ackAndConfirm (received, messages, ackWaitMs) {
  for (const m of messages) m.ack()
  await received.expectQuiet(ackWaitMs + 500, 'acked messages must not be redelivered')
}

// ---------------------------------------------------------------------------------------------------------
// The checks, in the order they run.

async function connectAndClose () {
  const sc = await connect('connect')
  await close(sc)
  return 'connected and closed without error'
}

function publishWithAcks () {
  return withClient('publish', async (sc, subject) => {
    const guids = await publishAll(sc, subject, payloads(20, 'publish'))
    if (new Set(guids).size !== guids.length) fail('two PubAcks share a guid')
    return `${guids.length} PubAcks, each with its guid and no error`
  })
}

function deliverAllAvailableInOrder () {
  return withClient('all', async (sc, subject) => {
    const sent = payloads(10, 'all')
    const before = Date.now()
    await publishAll(sc, subject, sent)
    const after = Date.now()
    const received = await subscribe(sc, subject, (o) => o.setDeliverAllAvailable())
    const messages = await received.take(sent.length)
    expectEqual(sequences(messages), sent.map((_, i) => i + 1), 'sequences')
    expectEqual(data(messages), sent, 'payloads')
    for (const m of messages) {
      if (m.getSubject() !== subject) fail(`seq ${m.getSequence()} has subject ${m.getSubject()}`)
      if (m.isRedelivered()) fail(`seq ${m.getSequence()} is flagged redelivered on first delivery`)
      // getTimestamp() truncates nanoseconds to milliseconds; allow 1 s of clock slack.
      const at = m.getTimestamp().getTime()
      if (at < before - 1000 || at > after + 1000) {
        fail(`seq ${m.getSequence()} timestamp ${m.getTimestamp().toISOString()} is outside the publish window`)
      }
    }
    const stamps = messages.map((m) => m.getTimestampRaw())
    if (stamps.some((t, i) => i > 0 && t < stamps[i - 1])) fail(`timestamps go backwards: ${stamps}`)
    await received.expectQuiet(QUIET_MS, 'only the published messages exist')
    return `seq 1-${sent.length} in order, payloads and timestamps match`
  })
}

function unackedIsRedelivered () {
  return withClient('redeliver', async (sc, subject) => {
    await publishAll(sc, subject, payloads(2, 'redeliver'))
    const received = await subscribe(sc, subject, (o) => o.setDeliverAllAvailable().setManualAckMode(true).setAckWait(1000))
    const [first, second] = await received.take(2)
    const deliveredAt = Date.now()
    expectEqual(sequences([first, second]), [1, 2], 'first deliveries')
    first.ack()
    const again = await received.next()
    const elapsed = Date.now() - deliveredAt
    expectEqual(again.getSequence(), 2, 'redelivered sequence (seq 1 was acked)')
    if (!again.isRedelivered()) fail('the redelivery is not flagged isRedelivered()')
    if (elapsed < 700) fail(`redelivered after ${elapsed} ms, before the 1 s ack wait`)
    if (first.getRedeliveryCount() !== 0) fail(`first delivery has redelivery count ${first.getRedeliveryCount()}`)
    // nats-streaming-server counts redeliveries per message (since 0.17); clients expose it.
    expectEqual(again.getRedeliveryCount(), 1, 'redelivery count of the first redelivery')
    const third = await received.next()
    expectEqual([third.getSequence(), third.getRedeliveryCount()], [2, 2], 'seq and count of the second redelivery')
    await ackAndConfirm(received, [third], 1000)
    return `seq 2 redelivered after ${elapsed} ms with isRedelivered(), counts 1 then 2; acked seq 1 never again`
  })
}

function maxInFlightRespected () {
  return withClient('inflight', async (sc, subject) => {
    await publishAll(sc, subject, payloads(5, 'inflight'))
    const received = await subscribe(sc, subject, (o) => o.setDeliverAllAvailable().setManualAckMode(true)
      .setMaxInFlight(2).setAckWait(30000))
    const firstTwo = await received.take(2)
    expectEqual(sequences(firstTwo), [1, 2], 'first window')
    await received.expectQuiet(QUIET_MS, 'max in flight is 2 and nothing was acked')
    firstTwo[0].ack()
    const third = await received.next()
    expectEqual(third.getSequence(), 3, 'after one ack')
    await received.expectQuiet(QUIET_MS, 'max in flight is 2 with seq 2 and 3 unacked')
    firstTwo[1].ack()
    third.ack()
    const rest = await received.take(2)
    expectEqual(sequences(rest), [4, 5], 'after two more acks')
    for (const m of rest) m.ack()
    return 'seq 1-2 only until an ack, then one more per ack'
  })
}

async function durableResumesAfterClose () {
  const subject = channel('durable')
  const durable = (o) => o.setDeliverAllAvailable().setManualAckMode(true).setAckWait(1000).setDurableName('dur')
  const publisher = await connect('durable-pub')
  try {
    await publishAll(publisher, subject, payloads(3, 'durable'))
    let sc = await connect('durable')
    let received = await subscribe(sc, subject, durable)
    const firstRound = await received.take(3)
    expectEqual(sequences(firstRound), [1, 2, 3], 'first round')
    await ackAndConfirm(received, firstRound, 1000)
    await received.end('close')
    await close(sc)

    await publishAll(publisher, subject, ['durable-4', 'durable-5'])
    sc = await connect('durable')
    received = await subscribe(sc, subject, durable)
    const secondRound = await received.take(2)
    expectEqual(sequences(secondRound), [4, 5], 'after resubscribing')
    expectEqual(data(secondRound), ['durable-4', 'durable-5'], 'payloads after resubscribing')
    await ackAndConfirm(received, secondRound, 1000)
    await received.end('unsubscribe')
    await close(sc)
    return 'closed after acking 1-3, resumed at seq 4 with a new connection'
  } finally {
    await close(publisher)
  }
}

async function durableQueueGroupSplitsLoad () {
  const subject = channel('queue')
  const member = (o) => o.setDeliverAllAvailable().setManualAckMode(true).setAckWait(1000).setDurableName('dq')
  const publisher = await connect('queue-pub')
  try {
    const a = await connect('queue-a')
    const b = await connect('queue-b')
    const onA = await subscribe(a, subject, member, 'workers')
    const onB = await subscribe(b, subject, member, 'workers')
    // Each member acks on arrival; the queues keep what each one got.
    for (const received of [onA, onB]) received.sub.on('message', (m) => m.ack())
    const sent = payloads(20, 'queue')
    await publishAll(publisher, subject, sent)
    await waitUntil(() => onA.queue.length + onB.queue.length >= sent.length, 'all messages across the group')
    const got = { a: onA.queue.splice(0), b: onB.queue.splice(0) }
    // Nothing comes back within the ack wait: every ack was taken and nothing was sent twice.
    await Promise.all([ackAndConfirm(onA, [], 1000), ackAndConfirm(onB, [], 1000)])
    const all = [...sequences(got.a), ...sequences(got.b)].sort((x, y) => x - y)
    expectEqual(all, sent.map((_, i) => i + 1), 'sequences across the group (each exactly once)')
    if (got.a.length === 0 || got.b.length === 0) {
      fail(`one member got everything: a ${got.a.length}, b ${got.b.length}`)
    }

    // Closing every member (not unsubscribing) keeps the durable group and its position.
    await onA.end('close')
    await onB.end('close')
    await close(a)
    await close(b)
    await publishAll(publisher, subject, ['queue-21', 'queue-22', 'queue-23'])
    const c = await connect('queue-c')
    const onC = await subscribe(c, subject, member, 'workers')
    const resumed = await onC.take(3)
    expectEqual(sequences(resumed), [21, 22, 23], 'a new member after every member closed')
    await ackAndConfirm(onC, resumed, 1000)
    await onC.end('unsubscribe')
    await close(c)
    return `20 messages split ${got.a.length}/${got.b.length}, each once; after all members closed, resumed at seq 21`
  } finally {
    await close(publisher)
  }
}

async function pingsAnswered () {
  // Ask for a ping every second, at most 2 unanswered: a server ignoring pings ends the connection in ~3 s.
  const sc = await within(WAIT_MS, 'connect with 1 s pings', new Promise((resolve, reject) => {
    const client = stan.connect(CLUSTER_ID, clientId('ping'), {
      url: NATS_URL, connectTimeout: WAIT_MS, stanPingInterval: 1000, stanMaxPingOut: 2
    })
    client.once('connect', () => resolve(client))
    client.once('error', (error) => reject(new CheckFailed(`connect refused: ${error}`)))
  }))
  let lost
  sc.on('connection_lost', (error) => { lost = error })
  sc.on('error', (error) => { lost = lost || error })
  try {
    // Five ping intervals of observation: the condition is that nothing happens.
    await new Promise((resolve) => setTimeout(resolve, 5000))
    if (lost) fail(`connection lost while pinging: ${lost}`)
    await publish(sc, channel('ping'), 'after-pings')
    return 'five 1 s pings answered, client still publishes'
  } finally {
    if (!lost) await close(sc)
  }
}

function startPositions () {
  return withClient('start', async (sc, subject) => {
    await publishAll(sc, subject, payloads(3, 'old'))
    // The time delta needs messages older than the delta: this gap is the test data, not a wait.
    await new Promise((resolve) => setTimeout(resolve, 1500))
    await publishAll(sc, subject, payloads(2, 'new'))

    const bySequence = await subscribe(sc, subject, (o) => o.setStartAtSequence(3))
    expectEqual(data(await bySequence.take(3)), ['old-3', 'new-1', 'new-2'], 'startAtSequence(3)')
    await bySequence.expectQuiet(QUIET_MS, 'seq 5 is the last')

    const byDelta = await subscribe(sc, subject, (o) => o.setStartAtTimeDelta(750))
    expectEqual(data(await byDelta.take(2)), ['new-1', 'new-2'], 'startAtTimeDelta(750 ms)')
    await byDelta.expectQuiet(QUIET_MS, 'only two messages are newer than 750 ms')

    const lastReceived = await subscribe(sc, subject, (o) => o.setStartWithLastReceived())
    const last = await lastReceived.next()
    expectEqual([last.getSequence(), last.getData()], [5, 'new-2'], 'startWithLastReceived')
    await lastReceived.expectQuiet(QUIET_MS, 'only the last message')
    return 'sequence 3 -> 3-5, delta 750 ms -> 4-5, last received -> 5'
  })
}

function duplicateClientIdRefused () {
  return withClient('dup', async (first, subject) => {
    let refusal
    try {
      const second = await connect('dup')
      await close(second)
    } catch (error) {
      refusal = error
    }
    if (!refusal) fail('a second client with the same id was accepted while the first is alive')
    if (!/clientID already registered/.test(String(refusal))) fail(`unexpected refusal: ${refusal}`)
    // The first client is untouched.
    await publish(first, subject, 'still-alive')
    return 'second connect refused with "stan: clientID already registered", first still publishes'
  })
}

function unsubscribeRemovesDurable () {
  return withClient('unsub', async (sc, subject) => {
    const durable = (o) => o.setDeliverAllAvailable().setManualAckMode(true).setAckWait(1000).setDurableName('gone')
    await publishAll(sc, subject, payloads(3, 'unsub'))
    let received = await subscribe(sc, subject, durable)
    const messages = await received.take(3)
    expectEqual(sequences(messages), [1, 2, 3], 'first subscription')
    await ackAndConfirm(received, messages, 1000)
    await received.end('unsubscribe')

    received = await subscribe(sc, subject, durable)
    const again = await received.take(3)
    expectEqual(sequences(again), [1, 2, 3], 'same durable name after unsubscribe (deliverAllAvailable)')
    if (again.some((m) => m.isRedelivered())) fail('a new durable got messages flagged redelivered')
    await ackAndConfirm(received, again, 1000)
    await received.end('unsubscribe')
    return 'after unsubscribe the same durable name starts over at seq 1'
  })
}

const CHECKS = [
  ['connect_close', connectAndClose],
  ['pings_answered', pingsAnswered],
  ['publish_with_acks', publishWithAcks],
  ['deliver_all_available_in_order', deliverAllAvailableInOrder],
  ['unacked_is_redelivered', unackedIsRedelivered],
  ['max_in_flight_respected', maxInFlightRespected],
  ['durable_resumes_after_close', durableResumesAfterClose],
  ['durable_queue_group_splits_load', durableQueueGroupSplitsLoad],
  ['start_positions', startPositions],
  ['duplicate_client_id_refused', duplicateClientIdRefused],
  ['unsubscribe_removes_durable', unsubscribeRemovesDurable]
]

async function runChecks () {
  console.log(`node-nats-streaming ${stan.version} -> ${NATS_URL} cluster ${CLUSTER_ID} prefix ${PREFIX}`)
  for (const [name, check] of CHECKS) {
    const started = Date.now()
    let detail
    try {
      detail = await check()
    } catch (error) {
      console.error(`FAIL ${name}: ${error instanceof CheckFailed ? error.message : error.stack || error}`)
      process.exit(1)
    }
    console.log(`ok   ${name}: ${detail} (${Date.now() - started} ms)`)
  }
  console.log(`all ${CHECKS.length} checks passed`)
}

async function publishFile (path, subject) {
  const bytes = await readFile(path)
  const sc = await connect('publish-file')
  try {
    const guid = await publish(sc, subject, bytes)
    console.log(`published ${bytes.length} bytes from ${path} to ${subject}, PubAck guid ${guid}`)
  } finally {
    await close(sc)
  }
}

function argument (name) {
  const at = process.argv.indexOf(name)
  return at === -1 ? undefined : process.argv[at + 1]
}

async function main () {
  if (!CLUSTER_ID) {
    console.error('FAIL setup: STAN_CLUSTER_ID is not set')
    process.exit(1)
  }
  const file = argument('--publish-file')
  if (file) {
    const subject = argument('--channel')
    if (!subject) {
      console.error('FAIL setup: --publish-file needs --channel <channel>')
      process.exit(1)
    }
    await publishFile(file, subject)
  } else {
    await runChecks()
  }
  process.exit(0)
}

main().catch((error) => {
  console.error(`FAIL ${error instanceof CheckFailed ? error.message : error.stack || error}`)
  process.exit(1)
})
