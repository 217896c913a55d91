//! Random orders for the generator, the tests and the benchmarks: valid ones that pass the schema and the
//! consistency rules, and malformed ones of several kinds.

use rand::distr::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};

fn word(rng: &mut impl Rng, len: usize) -> String {
    rng.sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A valid order with a fresh random order_uid (19 lowercase alphanumerics, like the sample's length).
pub fn valid_order(rng: &mut impl Rng) -> Value {
    let uid = word(rng, 19).to_lowercase();
    let track = format!("WB{}", word(rng, 10).to_uppercase());
    let items: Vec<Value> = (0..rng.random_range(1..=4))
        .map(|_| {
            let price: i64 = rng.random_range(1..100_000);
            let sale: i64 = rng.random_range(0..=90);
            json!({
                "chrt_id": rng.random_range(1..10_000_000i64), "track_number": track, "price": price,
                "rid": word(rng, 21).to_lowercase(), "name": format!("Item {}", word(rng, 6)), "sale": sale,
                "size": "0", "total_price": price * (100 - sale) / 100, "nm_id": rng.random_range(1..10_000_000i64),
                "brand": format!("Brand {}", word(rng, 5)), "status": 202
            })
        })
        .collect();
    let goods_total: i64 = items.iter().filter_map(|i| i["total_price"].as_i64()).sum();
    let delivery_cost: i64 = rng.random_range(0..5_000);
    json!({
        "order_uid": uid, "track_number": track, "entry": "WBIL",
        "delivery": {
            "name": format!("Customer {}", word(rng, 6)), "phone": format!("+972{}", rng.random_range(1_000_000..9_999_999)),
            "zip": format!("{}", rng.random_range(100_000..999_999)), "city": "Kiryat Mozkin", "address": "Ploshad Mira 15",
            "region": "Kraiot", "email": format!("{}@example.com", word(rng, 8).to_lowercase())
        },
        "payment": {
            "transaction": uid, "request_id": "", "currency": "USD", "provider": "wbpay",
            "amount": goods_total + delivery_cost, "payment_dt": rng.random_range(1_600_000_000..1_700_000_000i64),
            "bank": "alpha", "delivery_cost": delivery_cost, "goods_total": goods_total, "custom_fee": 0
        },
        "items": items, "locale": "en", "internal_signature": "", "customer_id": word(rng, 8).to_lowercase(),
        "delivery_service": "meest", "shardkey": "9", "sm_id": 99, "date_created": "2021-11-26T06:22:19Z", "oof_shard": "1"
    })
}

/// A message that must be rejected: garbage, broken JSON, a missing field, a wrong type or inconsistent totals.
pub fn invalid_message(rng: &mut impl Rng) -> Vec<u8> {
    let mut order = valid_order(rng);
    match rng.random_range(0..5) {
        0 => (0..rng.random_range(1..64))
            .map(|_| rng.random::<u8>())
            .collect(),
        1 => {
            let text = order.to_string();
            text.as_bytes()[..text.len() / 2].to_vec()
        }
        2 => {
            if let Some(object) = order.as_object_mut() {
                object.remove("payment");
            }
            order.to_string().into_bytes()
        }
        3 => {
            order["payment"]["amount"] = json!("a lot");
            order.to_string().into_bytes()
        }
        _ => {
            order["payment"]["goods_total"] = json!(1);
            order["payment"]["amount"] = json!(1);
            order.to_string().into_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OrderSchema, DEFAULT_MAX_BYTES};

    #[test]
    fn generated_orders_are_valid_and_invalid_messages_are_not() {
        let schema = OrderSchema::new(DEFAULT_MAX_BYTES).expect("schema compiles");
        let mut rng = rand::rng();
        for _ in 0..200 {
            let order = valid_order(&mut rng);
            if let Err(rejection) = schema.validate(order.to_string().as_bytes()) {
                panic!("generated order rejected: {rejection}");
            }
            assert!(schema.validate(&invalid_message(&mut rng)).is_err());
        }
    }
}
