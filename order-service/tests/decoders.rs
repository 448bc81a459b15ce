//! Property tests of the request decoders: whatever bytes or JSON a client sends as the body
//! of `POST /api/orders`, parsing never panics, and what it accepts is a valid order with an
//! exact total. Prices written any way a client might (digits, signs, exponents, strings) are
//! either refused or read exactly, with at most two decimals, between 0 and the maximum.

use order_service::domain::{Money, NewOrder, OrderBody, OrderStatus};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};

fn decode(bytes: &[u8]) -> Option<Result<NewOrder, Vec<order_service::domain::FieldError>>> {
    serde_json::from_slice::<OrderBody>(bytes)
        .ok()
        .map(NewOrder::parse)
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        number_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("user_id".to_owned()),
        Just("items".to_owned()),
        Just("shipping_address".to_owned()),
        Just("product_id".to_owned()),
        Just("quantity".to_owned()),
        Just("price".to_owned()),
        any::<String>(),
    ]
}

/// Text that looks like a number to a careless parser.
fn number_text() -> impl Strategy<Value = String> {
    let digits = |max: usize| prop::collection::vec(prop::char::range('0', '9'), 0..max);
    (
        prop::sample::select(vec!["", "-", "+", " ", "--"]),
        digits(32),
        prop::option::of(digits(32)),
        prop::option::of((prop::sample::select(vec!["e", "E", "e-", "e+"]), digits(12))),
    )
        .prop_map(|(sign, int, frac, exp)| {
            let mut s = format!("{sign}{}", int.into_iter().collect::<String>());
            if let Some(frac) = frac {
                s.push('.');
                s.extend(frac);
            }
            if let Some((e, digits)) = exp {
                s.push_str(e);
                s.extend(digits);
            }
            s
        })
}

fn item() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(json!("p-1")), any::<String>().prop_map(Value::from)],
        prop_oneof![
            (0u32..=10_001).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            number_text().prop_map(Value::from),
        ],
        prop_oneof![
            number_text().prop_map(Value::from),
            // Raw JSON numbers, from their text when it is a valid JSON number.
            number_text().prop_filter_map("a JSON number", |t| {
                serde_json::from_str::<Value>(&t).ok().filter(Value::is_number)
            }),
            any::<f64>().prop_map(|f| json!(f)),
        ],
    )
        .prop_map(|(product_id, quantity, price)| {
            json!({"product_id": product_id, "quantity": quantity, "price": price})
        })
}

fn check_valid(order: &NewOrder) {
    assert!(!order.items.is_empty() && order.items.len() <= NewOrder::MAX_ITEMS);
    let mut sum = Decimal::ZERO;
    for item in &order.items {
        let price = item.price.amount();
        assert_eq!(price.scale(), Money::SCALE);
        assert!(price >= Decimal::ZERO && price <= Money::max_price());
        assert!((1..=10_000).contains(&item.quantity.get()));
        assert!(!item.product_id.trim().is_empty());
        sum += price * Decimal::from(item.quantity.get());
    }
    assert_eq!(order.total().amount(), sum, "the total is exact");
    // What is stored and sent back reads as the same number.
    let written = serde_json::to_string(&order.total()).unwrap();
    assert_eq!(written.parse::<Decimal>().unwrap(), sum);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Some(Ok(order)) = decode(&bytes) {
            check_valid(&order);
        }
    }

    #[test]
    fn any_json_decodes_without_panic(body in json_value()) {
        if let Some(Ok(order)) = decode(body.to_string().as_bytes()) {
            check_valid(&order);
        }
    }

    #[test]
    fn order_shaped_bodies_are_valid_or_refused_field_by_field(
        items in prop::collection::vec(item(), 0..4),
        address in prop_oneof![Just("1 Main St".to_owned()), any::<String>()],
    ) {
        let body = json!({
            "user_id": "01a204e2-5e1f-72cf-b21e-bdab2826764e",
            "items": items,
            "shipping_address": address,
        });
        match decode(body.to_string().as_bytes()).expect("an object decodes") {
            Ok(order) => check_valid(&order),
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for error in errors {
                    prop_assert_eq!(&error.loc[0], "body");
                }
            }
        }
    }

    /// A price in cents, written as a client might (plain, trailing zeros, scientific, as a
    /// string or a number), is read back to the cent.
    #[test]
    fn prices_are_read_exactly(
        cents in 0i64..=100_000_000,
        zeros in 0usize..6,
        shift in 0i32..4,
        quoted in any::<bool>(),
        scientific in any::<bool>(),
    ) {
        let exact = Decimal::new(cents, 2);
        let text = if scientific {
            // cents × 10^-2 written as (cents × 10^-shift) e (shift - 2)
            let mantissa = Decimal::new(cents, shift as u32);
            format!("{mantissa}e{}", shift - 2)
        } else {
            format!("{exact}{}", "0".repeat(zeros))
        };
        let price = if quoted { Value::from(text.clone()) } else { serde_json::from_str(&text).unwrap() };
        let body = json!({
            "user_id": "01a204e2-5e1f-72cf-b21e-bdab2826764e",
            "items": [{"product_id": "p", "quantity": 3, "price": price}],
            "shipping_address": "x",
        });
        // Unquoted numbers pass through serde_json's f64 on the way in to this test (not in
        // the service, which keeps the client's text), so only strings are compared exactly.
        let order = decode(body.to_string().as_bytes()).unwrap();
        let order = order.map_err(|e| format!("{text}: {e:?}")).unwrap();
        check_valid(&order);
        if quoted {
            prop_assert_eq!(order.items[0].price.amount(), exact, "{}", text);
            prop_assert_eq!(order.total().amount(), exact * Decimal::from(3), "{}", text);
        }
    }

    /// Any text in a price: refused or valid, never a panic.
    #[test]
    fn price_text_never_panics(text in prop_oneof![number_text(), any::<String>()], quoted in any::<bool>()) {
        let price = match serde_json::from_str::<Value>(&text) {
            Ok(v) if v.is_number() && !quoted => v,
            _ => Value::from(text.clone()),
        };
        let body = json!({
            "user_id": "01a204e2-5e1f-72cf-b21e-bdab2826764e",
            "items": [{"product_id": "p", "quantity": 1, "price": price}],
            "shipping_address": "x",
        });
        if let Ok(order) = decode(body.to_string().as_bytes()).unwrap() {
            check_valid(&order);
        }
    }

    #[test]
    fn statuses_parse_without_panic(raw in any::<String>()) {
        if let Some(status) = OrderStatus::parse(&raw) {
            prop_assert_eq!(status.as_str(), raw.as_str());
            prop_assert!(!status.can_become(status));
        }
    }
}
