//! Parsing at the edge: a request body becomes a [`NewOrder`] (every field valid, money exact)
//! or a list of field-level errors in FastAPI's `{loc, msg, type}` shape. Once a value is a
//! [`Money`], a [`Quantity`] or an [`OrderStatus`] handlers never re-check it.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use sea_orm::Iterable;
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

/// An amount of money in currency units, always carried with exactly two decimals.
///
/// In JSON it is a number written from its decimal digits (`89.97`, `0.30`), never produced
/// by binary floating point; in PostgreSQL a `NUMERIC`; in SQLite text (see [`crate::entity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

impl Money {
    /// Cents are the smallest unit: more decimals are refused, never rounded away silently.
    pub const SCALE: u32 = 2;

    pub fn new(amount: Decimal) -> Self {
        let mut amount =
            amount.round_dp_with_strategy(Self::SCALE, RoundingStrategy::MidpointNearestEven);
        amount.rescale(Self::SCALE);
        Self(amount)
    }

    pub fn amount(&self) -> Decimal {
        self.0
    }

    /// The exact sum of `price × quantity`. Rounded to cents half-to-even (banker's rounding)
    /// by rule; with prices in whole cents and whole quantities the sum never needs it.
    pub fn total(lines: impl IntoIterator<Item = (Money, Quantity)>) -> Money {
        Money::new(
            lines
                .into_iter()
                .map(|(price, quantity)| price.0 * Decimal::from(quantity.get()))
                .sum(),
        )
    }

    /// A price as the client wrote it: a JSON number or a string holding one, read from its
    /// digits. At most two decimals, between 0 and [`MAX_PRICE`](Self::max_price).
    fn parse_price(raw: &RawValue) -> Result<Self, FieldProblem> {
        let text = raw.get().trim();
        let literal = if text.starts_with('"') {
            serde_json::from_str::<String>(text)
                .map_err(|_| FieldProblem::decimal_parsing())?
                .trim()
                .to_owned()
        } else {
            text.to_owned()
        };
        let looks_numeric = !literal.is_empty()
            && literal
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
        if !looks_numeric {
            return Err(FieldProblem::decimal_parsing());
        }
        let parsed = if literal.contains(['e', 'E']) {
            Decimal::from_scientific(&literal)
        } else {
            Decimal::from_str_exact(&literal)
        }
        .map_err(|_| FieldProblem::decimal_parsing())?;
        let price = parsed.normalize();
        if price.scale() > Self::SCALE {
            return Err(FieldProblem::new(
                "decimal_max_places",
                "Decimal input should have no more than 2 decimal places",
            ));
        }
        if price.is_sign_negative() && !price.is_zero() {
            return Err(FieldProblem::new(
                "greater_than_equal",
                "Input should be greater than or equal to 0",
            ));
        }
        if price > Self::max_price() {
            return Err(FieldProblem::new(
                "less_than_equal",
                format!(
                    "Input should be less than or equal to {}",
                    Self::max_price()
                ),
            ));
        }
        Ok(Self::new(price.abs()))
    }

    /// The largest accepted price: with [`NewOrder::MAX_ITEMS`] and [`Quantity::MAX`] a total
    /// still fits the `NUMERIC(16,2)` column.
    pub fn max_price() -> Decimal {
        Decimal::from(1_000_000)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Money {
    /// A JSON number spelled with the decimal's own digits (`0.30`), so no float ever rounds it.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawValue::from_string(self.0.to_string())
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Number))
            .multiple_of(Some(0.01))
            .minimum(Some(0))
            .description(Some(
                "Money in currency units with two decimals, exact (decimal, never binary \
                 floating point). Accepted as a JSON number or a string (`29.99` or \"29.99\"), \
                 read from its digits; more than two decimals are refused. Totals are the exact \
                 sum of price × quantity, rounded to cents half-to-even (banker's rounding).",
            ))
            .examples([serde_json::json!(29.99)])
            .into()
    }
}

impl utoipa::ToSchema for Money {}

/// How many of one product: 1 to [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 10_000;

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn from_stored(value: i32) -> Self {
        Self(value.max(0) as u32)
    }

    fn parse(value: &Value) -> Result<Self, FieldProblem> {
        let number = match value {
            Value::Number(n) => n.as_u64().or_else(|| n.as_i64().map(|_| 0)),
            Value::String(s) => s.trim().parse::<i64>().ok().map(|n| n.max(0) as u64),
            _ => None,
        }
        .ok_or_else(|| {
            FieldProblem::new(
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            )
        })?;
        if number < 1 {
            Err(FieldProblem::new(
                "greater_than_equal",
                "Input should be greater than or equal to 1",
            ))
        } else if number > u64::from(Self::MAX) {
            Err(FieldProblem::new(
                "less_than_equal",
                format!("Input should be less than or equal to {}", Self::MAX),
            ))
        } else {
            Ok(Self(number as u32))
        }
    }
}

/// pending → processing → shipped → delivered; cancelled from pending or processing only.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum OrderStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "processing")]
    Processing,
    #[sea_orm(string_value = "shipped")]
    Shipped,
    #[sea_orm(string_value = "delivered")]
    Delivered,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl OrderStatus {
    pub fn parse(raw: &str) -> Option<Self> {
        Self::iter().find(|status| status.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether an order in this status may move to `next`.
    pub fn can_become(self, next: Self) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, Processing)
                | (Processing, Shipped)
                | (Shipped, Delivered)
                | (Pending | Processing, Cancelled)
        )
    }
}

/// An order as the client asked for it, every field checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub user_id: Uuid,
    pub items: Vec<NewItem>,
    pub shipping_address: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub product_id: String,
    pub quantity: Quantity,
    pub price: Money,
}

/// The body of `POST /api/orders` as it arrived: every field optional and untyped, so each
/// problem is reported against its own field instead of failing on the first.
#[derive(Debug, Deserialize)]
pub struct OrderBody {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    items: Option<Box<RawValue>>,
    #[serde(default)]
    shipping_address: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ItemBody {
    #[serde(default)]
    product_id: Option<Value>,
    #[serde(default)]
    quantity: Option<Value>,
    /// Kept as the client's text: a float would already have rounded it.
    #[serde(default)]
    price: Option<Box<RawValue>>,
}

/// One entry of a FastAPI 422 body: `{"type", "loc", "msg"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub loc: Vec<Value>,
    pub msg: String,
}

impl FieldError {
    pub fn new(loc: Vec<Value>, problem: FieldProblem) -> Self {
        Self {
            kind: problem.kind,
            loc,
            msg: problem.msg,
        }
    }
}

/// What is wrong with one value, before we know where it sits.
#[derive(Debug)]
pub struct FieldProblem {
    kind: &'static str,
    msg: String,
}

impl FieldProblem {
    pub fn new(kind: &'static str, msg: impl Into<String>) -> Self {
        Self {
            kind,
            msg: msg.into(),
        }
    }
    fn missing() -> Self {
        Self::new("missing", "Field required")
    }
    fn decimal_parsing() -> Self {
        Self::new("decimal_parsing", "Input should be a valid decimal")
    }
}

impl NewOrder {
    pub const MAX_ITEMS: usize = 100;
    pub const MAX_PRODUCT_ID_CHARS: usize = 100;
    pub const MAX_ADDRESS_CHARS: usize = 500;

    /// Checks every field and reports every problem, each at its `loc`.
    pub fn parse(body: OrderBody) -> Result<Self, Vec<FieldError>> {
        let mut problems = Problems::default();
        let user_id = problems.check(
            vec!["body".into(), "user_id".into()],
            body.user_id
                .ok_or_else(FieldProblem::missing)
                .and_then(|v| parse_uuid(&v)),
        );
        let shipping_address = problems.check(
            vec!["body".into(), "shipping_address".into()],
            body.shipping_address
                .ok_or_else(FieldProblem::missing)
                .and_then(|v| parse_text(&v, Self::MAX_ADDRESS_CHARS, true)),
        );
        let raw_items = problems.check(
            vec!["body".into(), "items".into()],
            body.items
                .ok_or_else(FieldProblem::missing)
                .and_then(|raw| {
                    let items: Vec<Box<RawValue>> =
                        serde_json::from_str(raw.get()).map_err(|_| {
                            FieldProblem::new("list_type", "Input should be a valid list")
                        })?;
                    if items.is_empty() {
                        Err(FieldProblem::new(
                            "too_short",
                            "List should have at least 1 item after validation, not 0",
                        ))
                    } else if items.len() > Self::MAX_ITEMS {
                        Err(FieldProblem::new(
                            "too_long",
                            format!(
                                "List should have at most {} items after validation, not {}",
                                Self::MAX_ITEMS,
                                items.len()
                            ),
                        ))
                    } else {
                        Ok(items)
                    }
                }),
        );
        let mut items = Vec::new();
        for (index, raw) in raw_items.into_iter().flatten().enumerate() {
            let loc = |field: Option<&str>| {
                let mut loc = vec!["body".into(), "items".into(), index.into()];
                loc.extend(field.map(Value::from));
                loc
            };
            let Some(item) = problems.check(
                loc(None),
                serde_json::from_str::<ItemBody>(raw.get()).map_err(|_| {
                    FieldProblem::new("model_type", "Input should be a valid dictionary")
                }),
            ) else {
                continue;
            };
            let product_id = problems.check(
                loc(Some("product_id")),
                item.product_id
                    .ok_or_else(FieldProblem::missing)
                    .and_then(|v| parse_text(&v, Self::MAX_PRODUCT_ID_CHARS, false)),
            );
            let quantity = problems.check(
                loc(Some("quantity")),
                item.quantity
                    .ok_or_else(FieldProblem::missing)
                    .and_then(|v| Quantity::parse(&v)),
            );
            let price = problems.check(
                loc(Some("price")),
                item.price
                    .ok_or_else(FieldProblem::missing)
                    .and_then(|raw| Money::parse_price(&raw)),
            );
            if let (Some(product_id), Some(quantity), Some(price)) = (product_id, quantity, price) {
                items.push(NewItem {
                    product_id,
                    quantity,
                    price,
                });
            }
        }
        match (user_id, shipping_address) {
            (Some(user_id), Some(shipping_address)) if problems.0.is_empty() => Ok(Self {
                user_id,
                items,
                shipping_address,
            }),
            _ => Err(problems.0),
        }
    }

    pub fn total(&self) -> Money {
        Money::total(self.items.iter().map(|item| (item.price, item.quantity)))
    }
}

/// The problems found so far, each at its place.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn check<T>(&mut self, loc: Vec<Value>, result: Result<T, FieldProblem>) -> Option<T> {
        result
            .map_err(|problem| self.0.push(FieldError::new(loc, problem)))
            .ok()
    }
}

fn parse_uuid(value: &Value) -> Result<Uuid, FieldProblem> {
    value
        .as_str()
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
        .ok_or_else(|| FieldProblem::new("uuid_parsing", "Input should be a valid UUID"))
}

/// A trimmed, non-empty string of at most `max` characters, without control characters
/// (line breaks allowed where `multiline`, as in a postal address).
fn parse_text(value: &Value, max: usize, multiline: bool) -> Result<String, FieldProblem> {
    let text = value
        .as_str()
        .ok_or_else(|| FieldProblem::new("string_type", "Input should be a valid string"))?
        .trim();
    if text.is_empty() {
        Err(FieldProblem::new(
            "string_too_short",
            "String should have at least 1 character",
        ))
    } else if text.chars().count() > max {
        Err(FieldProblem::new(
            "string_too_long",
            format!("String should have at most {max} characters"),
        ))
    } else if text
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r')))
    {
        Err(FieldProblem::new(
            "string_pattern_mismatch",
            "String should not contain control characters",
        ))
    } else {
        Ok(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> OrderBody {
        serde_json::from_str(json).unwrap()
    }

    fn price(raw: &str) -> Result<Money, FieldProblem> {
        Money::parse_price(&RawValue::from_string(raw.into()).unwrap())
    }

    #[test]
    fn prices_are_read_from_their_digits() {
        assert_eq!(price("29.99").unwrap().to_string(), "29.99");
        assert_eq!(price("\"29.99\"").unwrap().to_string(), "29.99");
        assert_eq!(price("29.990").unwrap().to_string(), "29.99");
        assert_eq!(price("1e2").unwrap().to_string(), "100.00");
        assert_eq!(price("0").unwrap().to_string(), "0.00");
        assert_eq!(price("-0").unwrap().to_string(), "0.00");
        assert_eq!(price("1.999").unwrap_err().kind, "decimal_max_places");
        assert_eq!(price("-1").unwrap_err().kind, "greater_than_equal");
        assert_eq!(price("1000000.01").unwrap_err().kind, "less_than_equal");
        for bad in ["\"abc\"", "true", "null", "[]", "\"1_000\"", "\"\""] {
            assert_eq!(price(bad).unwrap_err().kind, "decimal_parsing", "{bad}");
        }
    }

    #[test]
    fn totals_are_exact() {
        let total = |lines: &[(&str, u32)]| {
            Money::total(lines.iter().map(|(p, q)| (price(p).unwrap(), Quantity(*q)))).to_string()
        };
        assert_eq!(total(&[("29.99", 3)]), "89.97");
        assert_eq!(total(&[("0.1", 1), ("0.2", 1)]), "0.30");
        assert_eq!(total(&[("1000000", 10_000)]), "10000000000.00");
    }

    #[test]
    fn rounding_to_cents_is_half_to_even() {
        let half = |s: &str| Money::new(s.parse().unwrap()).to_string();
        assert_eq!(half("0.125"), "0.12");
        assert_eq!(half("0.135"), "0.14");
    }

    #[test]
    fn statuses_move_forward_or_cancel_early() {
        use OrderStatus::*;
        assert!(Pending.can_become(Processing));
        assert!(Processing.can_become(Shipped));
        assert!(Shipped.can_become(Delivered));
        assert!(Pending.can_become(Cancelled) && Processing.can_become(Cancelled));
        assert!(!Shipped.can_become(Cancelled));
        assert!(!Delivered.can_become(Pending));
        assert!(!Pending.can_become(Shipped));
        assert!(!Pending.can_become(Pending));
        assert_eq!(OrderStatus::parse("shipped"), Some(Shipped));
        assert_eq!(OrderStatus::parse("lost"), None);
    }

    #[test]
    fn every_problem_is_reported_at_its_field() {
        let errors = NewOrder::parse(body(
            r#"{"user_id": "nope", "items": [{"product_id": "", "quantity": 0, "price": "x"}, 5]}"#,
        ))
        .unwrap_err();
        let locs: Vec<String> = errors
            .iter()
            .map(|e| serde_json::to_string(&e.loc).unwrap())
            .collect();
        assert_eq!(
            locs,
            [
                r#"["body","user_id"]"#,
                r#"["body","shipping_address"]"#,
                r#"["body","items",0,"product_id"]"#,
                r#"["body","items",0,"quantity"]"#,
                r#"["body","items",0,"price"]"#,
                r#"["body","items",1]"#,
            ]
        );
        assert_eq!(errors[1].kind, "missing");
    }

    #[test]
    fn item_lists_are_bounded() {
        let items = |n: usize| {
            let item = r#"{"product_id": "p", "quantity": 1, "price": 1}"#;
            vec![item; n].join(",")
        };
        let order = |n| {
            NewOrder::parse(body(&format!(
                r#"{{"user_id": "{}", "shipping_address": "1 Main St", "items": [{}]}}"#,
                Uuid::nil(),
                items(n)
            )))
        };
        assert_eq!(order(0).unwrap_err()[0].kind, "too_short");
        assert_eq!(order(101).unwrap_err()[0].kind, "too_long");
        assert_eq!(order(100).unwrap().items.len(), 100);
    }
}
