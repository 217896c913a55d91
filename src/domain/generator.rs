//! Random orders for the order-generator, the tests and the benchmarks: valid ones (they pass the schema and the
//! consistency rules and raise no flag) and malformed ones of several kinds.

use rand::distr::Alphanumeric;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde_json::{json, Value};

use crate::domain::{Delivery, Item, Order, Payment};

const FIRST_NAMES: &[&str] = &[
    "Test", "Anna", "Ivan", "Maria", "Oleg", "Dana", "Yosef", "Lena", "Artem", "Noa",
];
const LAST_NAMES: &[&str] = &[
    "Testov", "Petrova", "Smirnov", "Cohen", "Levi", "Ivanova", "Katz", "Orlov",
];
const CITIES: &[(&str, &str)] = &[
    ("Kiryat Mozkin", "Kraiot"),
    ("Haifa", "Haifa District"),
    ("Moscow", "Moscow"),
    ("Kazan", "Tatarstan"),
    ("Tel Aviv", "Tel Aviv District"),
    ("Novosibirsk", "Novosibirsk Oblast"),
];
const STREETS: &[&str] = &[
    "Ploshad Mira",
    "Lenina",
    "Herzl",
    "Sadovaya",
    "Ben Yehuda",
    "Tverskaya",
];
const PRODUCTS: &[(&str, &str)] = &[
    ("Mascaras", "Vivienne Sabo"),
    ("Lipstick", "Maybelline"),
    ("T-shirt", "Uniqlo"),
    ("Sneakers", "Adidas"),
    ("Phone case", "Spigen"),
    ("Notebook", "Moleskine"),
    ("Kettle", "Bosch"),
];
const BANKS: &[&str] = &["alpha", "sber", "tinkoff", "leumi", "hapoalim"];
const CURRENCIES: &[&str] = &["USD", "RUB", "EUR", "ILS"];
const DELIVERY_SERVICES: &[&str] = &["meest", "cdek", "boxberry", "dhl"];
const LOCALES: &[&str] = &["en", "ru", "he"];
const SIZES: &[&str] = &["0", "S", "M", "L", "XL", "42"];

fn token(rng: &mut impl Rng, len: usize) -> String {
    rng.sample_iter(Alphanumeric)
        .take(len)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect()
}

fn pick<'a>(rng: &mut impl Rng, values: &[&'a str]) -> &'a str {
    values.choose(rng).copied().unwrap_or_default()
}

/// A random valid order with a fresh order_uid (19 lowercase letters and digits, like the sample's).
pub fn valid_order(rng: &mut impl Rng) -> Order<'static> {
    let order_uid = token(rng, 19);
    let track_number = format!("WB{}", token(rng, 12).to_ascii_uppercase());
    let items: Vec<Item<'static>> = (0..rng.random_range(1..=5))
        .map(|_| {
            let (name, brand) = PRODUCTS.choose(rng).copied().unwrap_or(("Item", "Brand"));
            let price = rng.random_range(50..50_000);
            let sale = rng.random_range(0..=70);
            Item {
                chrt_id: rng.random_range(1_000_000..99_999_999),
                track_number: track_number.clone().into(),
                price,
                rid: token(rng, 21).into(),
                name: name.into(),
                sale,
                size: pick(rng, SIZES).into(),
                // The seller's rounding rule the consistency check expects: rounded down.
                total_price: price * (100 - sale) / 100,
                nm_id: rng.random_range(100_000..9_999_999),
                brand: brand.into(),
                status: 202,
            }
        })
        .collect();
    let goods_total: i64 = items.iter().map(|i| i.total_price).sum();
    let delivery_cost = rng.random_range(0..3_000);
    let custom_fee = if rng.random_bool(0.2) {
        rng.random_range(1..500)
    } else {
        0
    };
    let (city, region) = CITIES
        .choose(rng)
        .copied()
        .unwrap_or(("Haifa", "Haifa District"));
    let created = rng.random_range(1_577_836_800i64..1_767_225_600); // 2020 .. 2026
    let date_created = chrono::DateTime::from_timestamp(created, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "2021-11-26T06:22:19Z".into());
    Order {
        order_uid: order_uid.clone().into(),
        track_number: track_number.into(),
        entry: "WBIL".into(),
        delivery: Delivery {
            name: format!("{} {}", pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES)).into(),
            phone: format!("+972{}", rng.random_range(100_000_000..999_999_999)).into(),
            zip: rng.random_range(100_000..9_999_999).to_string().into(),
            city: city.into(),
            address: format!("{} {}", pick(rng, STREETS), rng.random_range(1..200)).into(),
            region: region.into(),
            email: format!("{}@example.com", token(rng, 8)).into(),
        },
        payment: Payment {
            transaction: order_uid.into(),
            request_id: "".into(),
            currency: pick(rng, CURRENCIES).into(),
            provider: "wbpay".into(),
            amount: goods_total + delivery_cost + custom_fee,
            payment_dt: created + rng.random_range(0..3_600),
            bank: pick(rng, BANKS).into(),
            delivery_cost,
            goods_total,
            custom_fee,
        },
        items,
        locale: pick(rng, LOCALES).into(),
        internal_signature: "".into(),
        customer_id: token(rng, 8).into(),
        delivery_service: pick(rng, DELIVERY_SERVICES).into(),
        shardkey: rng.random_range(0..10).to_string().into(),
        sm_id: rng.random_range(1..200),
        date_created: date_created.into(),
        oof_shard: rng.random_range(0..3).to_string().into(),
    }
}

/// A random valid order as the JSON a publisher would send.
pub fn valid_order_json(rng: &mut impl Rng) -> Vec<u8> {
    serde_json::to_vec(&valid_order(rng)).unwrap_or_default()
}

/// The kinds of malformed messages `invalid_message` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    Garbage,
    Truncated,
    MissingField,
    WrongType,
    Inconsistent,
    UnknownField,
    NegativeAmount,
    EmptyItems,
    InvalidUtf8,
    DuplicateKey,
}

impl InvalidKind {
    pub const ALL: [InvalidKind; 10] = [
        InvalidKind::Garbage,
        InvalidKind::Truncated,
        InvalidKind::MissingField,
        InvalidKind::WrongType,
        InvalidKind::Inconsistent,
        InvalidKind::UnknownField,
        InvalidKind::NegativeAmount,
        InvalidKind::EmptyItems,
        InvalidKind::InvalidUtf8,
        InvalidKind::DuplicateKey,
    ];
}

/// A message of the given kind that must be rejected.
pub fn invalid_message_of(kind: InvalidKind, rng: &mut impl Rng) -> Vec<u8> {
    let mut order: Value = serde_json::to_value(valid_order(rng)).unwrap_or_default();
    match kind {
        InvalidKind::Garbage => (0..rng.random_range(1..64))
            .map(|_| rng.random::<u8>())
            .collect(),
        InvalidKind::Truncated => {
            let text = order.to_string();
            text.as_bytes()[..text.len() / 2].to_vec()
        }
        InvalidKind::MissingField => {
            if let Some(object) = order.as_object_mut() {
                object.remove("payment");
            }
            order.to_string().into_bytes()
        }
        InvalidKind::WrongType => {
            order["payment"]["amount"] = json!("a lot");
            order.to_string().into_bytes()
        }
        InvalidKind::Inconsistent => {
            order["payment"]["goods_total"] = json!(1);
            order.to_string().into_bytes()
        }
        InvalidKind::UnknownField => {
            order["discount_code"] = json!("FREE");
            order.to_string().into_bytes()
        }
        InvalidKind::NegativeAmount => {
            order["payment"]["delivery_cost"] = json!(-100);
            order.to_string().into_bytes()
        }
        InvalidKind::EmptyItems => {
            order["items"] = json!([]);
            order.to_string().into_bytes()
        }
        InvalidKind::InvalidUtf8 => {
            let mut bytes = order.to_string().into_bytes();
            bytes.splice(1..1, [0xff, 0xfe]);
            bytes
        }
        InvalidKind::DuplicateKey => {
            let text = order.to_string();
            format!("{{\"order_uid\":\"dup\",{}", &text[1..]).into_bytes()
        }
    }
}

/// A malformed message of a random kind.
pub fn invalid_message(rng: &mut impl Rng) -> (InvalidKind, Vec<u8>) {
    let kind = InvalidKind::ALL
        .choose(rng)
        .copied()
        .unwrap_or(InvalidKind::Garbage);
    (kind, invalid_message_of(kind, rng))
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::domain::{OrderSchema, DEFAULT_MAX_BYTES};

    #[test]
    fn generated_orders_pass_the_schema_without_flags() {
        let schema = OrderSchema::new(DEFAULT_MAX_BYTES).expect("schema compiles");
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..500 {
            let json = valid_order_json(&mut rng);
            match schema.validate(&json) {
                Ok(order) => assert!(order.flags.is_empty(), "flags {:?}", order.flags),
                Err(rejection) => panic!("generated order rejected: {rejection}"),
            }
        }
    }

    #[test]
    fn every_kind_of_invalid_message_is_rejected() {
        let schema = OrderSchema::new(DEFAULT_MAX_BYTES).expect("schema compiles");
        let mut rng = StdRng::seed_from_u64(11);
        for kind in InvalidKind::ALL {
            for _ in 0..20 {
                let message = invalid_message_of(kind, &mut rng);
                assert!(schema.validate(&message).is_err(), "{kind:?} accepted");
            }
        }
    }
}
