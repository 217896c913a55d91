//! The hot paths of the service: validating a message (the sample, a generated order with five items, and a
//! rejected one; by `validate` and by the reference path alone), serializing an order, and a cache lookup, both as a plain map read and as the HTTP route does it
//! (a `GetOrder` round trip to the worker's own `OrderCache` actor).
//! Run with `cargo bench --bench hot_paths` (or `bench/run.sh criterion`).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use futures::future::BoxFuture;
use order_service::actors::OrderCache;
use order_service::cache::{CacheGroup, CacheSettings, CachedOrder, OrderSource};
use order_service::domain::generator;
use order_service::domain::{OrderSchema, OrderUid, DEFAULT_MAX_BYTES};
use order_service::storage::PersistError;
use order_service::telemetry::metrics::Metrics;
use rand::rngs::StdRng;
use rand::SeedableRng;

const SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/model.json");

/// The lookups below all hit: a miss would find nothing.
struct NothingStored;

impl OrderSource for NothingStored {
    fn find(&self, _: Vec<Arc<str>>) -> BoxFuture<'static, Result<Vec<CachedOrder>, PersistError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

fn validation(c: &mut Criterion) {
    let schema = OrderSchema::new(DEFAULT_MAX_BYTES).expect("the schema compiles");
    c.bench_function("validation/sample", |b| {
        b.iter(|| schema.validate(black_box(SAMPLE)))
    });
    let generated = five_item_order();
    c.bench_function("validation/generated_5_items", |b| {
        b.iter(|| schema.validate(black_box(&generated)))
    });
    let rejected = rejected_message();
    c.bench_function("validation/rejected_schema", |b| {
        b.iter(|| schema.validate(black_box(&rejected)))
    });
    // The reference path alone: what every message cost before the fast path, and what a rejection costs on top
    // of a failed fast attempt.
    for (name, message) in [
        ("validation/reference/sample", SAMPLE),
        ("validation/reference/generated_5_items", &generated[..]),
        ("validation/reference/rejected_schema", &rejected[..]),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| schema.validate_reference(black_box(message)))
        });
    }
    let order = schema.validate(SAMPLE).expect("the sample is valid").order;
    c.bench_function("serialization/sample", |b| {
        b.iter(|| serde_json::to_vec(black_box(&order)))
    });
}

/// A generated order with five items (the generator makes one to five), the same one on every run.
fn five_item_order() -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(5);
    loop {
        let order = generator::valid_order(&mut rng);
        if order.items.len() == 5 {
            return serde_json::to_vec(&order).unwrap_or_default();
        }
    }
}

/// The sample with one item's sale above 100: well-formed JSON that the schema refuses.
fn rejected_message() -> Vec<u8> {
    let text = String::from_utf8_lossy(SAMPLE).replace("\"sale\": 30", "\"sale\": 150");
    assert_ne!(text.as_bytes(), SAMPLE, "the sample carries \"sale\": 30");
    text.into_bytes()
}

fn cache_lookup(c: &mut Criterion) {
    let mut rng = rand::rng();
    let orders: HashMap<Box<str>, Bytes> = (0..100_000)
        .map(|_| {
            let order = generator::valid_order(&mut rng);
            let uid = order.order_uid.as_ref().into();
            (
                uid,
                Bytes::from(serde_json::to_vec(&order).unwrap_or_default()),
            )
        })
        .collect();
    let keys: Vec<&str> = orders.keys().take(1024).map(|k| &**k).collect();
    let mut i = 0;
    c.bench_function("cache_lookup/hashmap_100k", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            orders.get(black_box(keys[i])).cloned()
        })
    });
}

/// The lookup the HTTP route makes: parse the id, send `GetOrder` to a cache actor on the same thread, await the
/// answer. The difference to `cache_lookup/hashmap_100k` is the price of the mailbox hop.
fn cache_actor_lookup(c: &mut Criterion) {
    let mut rng = rand::rng();
    let orders: Vec<CachedOrder> = (0..100_000)
        .map(|_| {
            let order = generator::valid_order(&mut rng);
            CachedOrder {
                uid: Arc::from(order.order_uid.as_ref()),
                document: Bytes::from(serde_json::to_vec(&order).unwrap_or_default()),
            }
        })
        .collect();
    let keys: Vec<String> = orders
        .iter()
        .take(1024)
        .map(|o| o.uid.to_string())
        .collect();
    let system = actix::System::new();
    let total_bytes: usize = orders
        .iter()
        .map(|o| o.document.len() + o.uid.len() + 64)
        .sum();
    let orders: Arc<[CachedOrder]> = orders.into();
    // Without a bound (the default) and with one that holds everything (the CLOCK store's hit path).
    for (name, max_bytes) in [
        ("cache_lookup/actor_round_trip_100k", None),
        (
            "cache_lookup/actor_round_trip_100k_bounded",
            Some(total_bytes),
        ),
    ] {
        let cache = system.block_on(async {
            let metrics = Metrics::new().expect("the metrics register");
            let settings = CacheSettings {
                max_bytes,
                source: Arc::new(NothingStored),
            };
            let group = CacheGroup::new(orders.clone(), 1, settings, &metrics);
            let member = OrderCache::start_local_member(&group);
            group.wait_until_warm(1).await;
            member
        });
        c.bench_function(name, |b| {
            b.iter_custom(|iters| {
                system.block_on(async {
                    let started = Instant::now();
                    for i in 0..iters {
                        let uid =
                            OrderUid::parse(&keys[i as usize % keys.len()]).expect("a valid uid");
                        black_box(cache.get(uid).await.expect("the cache answers"));
                    }
                    started.elapsed()
                })
            })
        });
    }
}

criterion_group!(benches, validation, cache_lookup, cache_actor_lookup);
criterion_main!(benches);
