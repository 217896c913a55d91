//! The hot paths of the service: validating a sample-sized order, serializing one, and a cache lookup.
//! Run with `cargo bench --bench hot_paths`.

use std::collections::HashMap;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use order_service::domain::{OrderSchema, DEFAULT_MAX_BYTES};
use order_service::generator;

const SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/model.json");

fn validation(c: &mut Criterion) {
    let schema = OrderSchema::new(DEFAULT_MAX_BYTES).expect("the schema compiles");
    c.bench_function("validation/sample", |b| {
        b.iter(|| schema.validate(black_box(SAMPLE)))
    });
    let order = schema.validate(SAMPLE).expect("the sample is valid").order;
    c.bench_function("serialization/sample", |b| {
        b.iter(|| serde_json::to_vec(black_box(&order)))
    });
}

fn cache_lookup(c: &mut Criterion) {
    let mut rng = rand::rng();
    let orders: HashMap<Box<str>, Bytes> = (0..100_000)
        .map(|_| {
            let order = generator::valid_order(&mut rng);
            let uid = order.order_uid.as_str().into();
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

criterion_group!(benches, validation, cache_lookup);
criterion_main!(benches);
