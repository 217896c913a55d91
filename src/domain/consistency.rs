//! Business checks the schema cannot express. Each rule has a policy:
//!
//! | rule | policy | why |
//! |---|---|---|
//! | `sum(items[].total_price) == payment.goods_total` | reject | the amounts contradict each other: we would serve a wrong bill |
//! | `payment.amount == goods_total + delivery_cost + custom_fee` | reject | same |
//! | `payment.transaction == order_uid` | flag | true of the sample, but a payment system may use its own ids |
//! | `items[].track_number == track_number` | flag | a split shipment could carry its own track number |
//! | `items[].total_price == price * (100 - sale) / 100` (rounded down) | flag | the rounding rule is the seller's |
//!
//! Rejected orders become dead letters (class `inconsistent`); flagged ones are stored and counted per rule.

use super::order::Order;
use super::rejection::RejectReason;

/// An accepted inconsistency, counted in `orders_flagged_total{rule}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagRule {
    TransactionMismatch,
    ItemTrackNumberMismatch,
    ItemTotalMismatch,
}

impl FlagRule {
    pub const ALL: [FlagRule; 3] = [
        FlagRule::TransactionMismatch,
        FlagRule::ItemTrackNumberMismatch,
        FlagRule::ItemTotalMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FlagRule::TransactionMismatch => "transaction_mismatch",
            FlagRule::ItemTrackNumberMismatch => "item_track_number_mismatch",
            FlagRule::ItemTotalMismatch => "item_total_mismatch",
        }
    }
}

/// Reasons to reject (empty when consistent) and flags to raise.
pub(crate) fn check(order: &Order) -> (Vec<RejectReason>, Vec<FlagRule>) {
    let mut reasons = Vec::new();
    let mut flags = Vec::new();
    let payment = &order.payment;

    // The schema bounds every amount to 2^53, so these sums of at most 1000 items cannot overflow i128.
    let items_total: i128 = order.items.iter().map(|i| i128::from(i.total_price)).sum();
    if items_total != i128::from(payment.goods_total) {
        reasons.push(RejectReason {
            pointer: "/payment/goods_total".into(),
            message: format!(
                "goods_total {} differs from the sum of items' total_price {items_total}",
                payment.goods_total
            ),
        });
    }
    let expected_amount = i128::from(payment.goods_total)
        + i128::from(payment.delivery_cost)
        + i128::from(payment.custom_fee);
    if i128::from(payment.amount) != expected_amount {
        reasons.push(RejectReason {
            pointer: "/payment/amount".into(),
            message: format!(
                "amount {} differs from goods_total + delivery_cost + custom_fee = {expected_amount}",
                payment.amount
            ),
        });
    }

    if payment.transaction != order.order_uid {
        flags.push(FlagRule::TransactionMismatch);
    }
    if order
        .items
        .iter()
        .any(|i| i.track_number != order.track_number)
    {
        flags.push(FlagRule::ItemTrackNumberMismatch);
    }
    let discounted = |price: i64, sale: i64| i128::from(price) * i128::from(100 - sale) / 100;
    if order
        .items
        .iter()
        .any(|i| i128::from(i.total_price) != discounted(i.price, i.sale))
    {
        flags.push(FlagRule::ItemTotalMismatch);
    }
    (reasons, flags)
}
