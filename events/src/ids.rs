//! Newtypes made at the edge, so that the rest of the code never sees a bad id or amount.

use std::fmt;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} may hold only letters, digits and . _ : - (got {value:?})")]
    BadCharacter { what: &'static str, value: String },
    #[error("{what} must not start with a dot: a URL path cannot carry `.`, `..` or a hidden name as it is")]
    LeadingDot { what: &'static str },
}

/// The longest id: ids end up in sled keys, message headers and URLs, so they stay short.
pub const MAX_ID_LEN: usize = 128;

/// Ids end up in sled keys, queue headers and URLs, so they are kept short and plain, and
/// addressable: `.` and `..` are path segments a client normalises away, so no id starts
/// with a dot.
fn check_id(what: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { what });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { what, max: MAX_ID_LEN });
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')) {
        return Err(IdError::BadCharacter { what, value: value.chars().take(40).collect() });
    }
    if value.starts_with('.') {
        return Err(IdError::LeadingDot { what });
    }
    Ok(())
}

/// What [`check_id`] accepts, as a JSON Schema.
fn id_schema(what: &str) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ID_LEN,
        "pattern": "^[A-Za-z0-9_:-][A-Za-z0-9._:-]*$",
        "description": format!("{what}: letters, digits and . _ : -, not starting with a dot"),
    })
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_id($what, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                id_schema($what)
            }
        }
    };
}

string_id!(
    /// An order's id; also the saga's id and the correlation id of every message about it.
    OrderId,
    "orderId"
);
string_id!(
    /// A product's id in the catalog.
    ProductId,
    "productId"
);
string_id!(
    /// The customer's id.
    UserId,
    "userId"
);
string_id!(
    /// One saga, one incarnation of an order. New for every saga, so that an order id placed
    /// again after retention starts a saga that no participant confuses with the old one.
    SagaId,
    "sagaId"
);
string_id!(
    /// A step's name in a saga definition, such as `payment`.
    StepName,
    "step"
);
string_id!(
    /// Payment's reference for a charge.
    PaymentId,
    "paymentId"
);

string_id!(
    /// A saga definition's name, such as `order` or `trip`.
    SagaName,
    "saga"
);
string_id!(
    /// The id a client gives one saga of a definition other than the order saga (an order's
    /// is its [`OrderId`]): what makes starting it idempotent.
    BusinessId,
    "id"
);

/// How the store, the API and the console name one saga: an order's id, or `{saga}/{id}` for
/// a saga of any other definition. An order id cannot hold a `/`, so the two never meet.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SagaKey(String);

impl SagaKey {
    pub fn of_order(order_id: &OrderId) -> Self {
        Self(order_id.0.clone())
    }

    pub fn of(saga: &SagaName, id: &BusinessId) -> Self {
        Self(format!("{}/{}", saga.0, id.0))
    }

    /// An order id, or `{saga}/{id}` with both parts valid ids.
    pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        match value.split_once('/') {
            None => check_id("orderId", &value)?,
            Some((saga, id)) => {
                check_id("saga", saga)?;
                check_id("id", id)?;
            }
        }
        Ok(Self(value))
    }

    /// The order id, for a saga of the order saga.
    pub fn order_id(&self) -> Option<OrderId> {
        (!self.0.contains('/')).then(|| OrderId(self.0.clone()))
    }

    /// The definition's name and the client's id, for a saga of any other definition.
    pub fn generic(&self) -> Option<(SagaName, BusinessId)> {
        let (saga, id) = self.0.split_once('/')?;
        Some((SagaName(saga.to_owned()), BusinessId(id.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SagaKey {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, IdError> {
        Self::parse(value)
    }
}

impl From<SagaKey> for String {
    fn from(key: SagaKey) -> String {
        key.0
    }
}

impl fmt::Display for SagaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SagaId {
    /// A fresh, unique saga id (a UUID v7: unique, and ordered by creation time).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

/// Money, as an integer count of the currency's minor unit. Never a float.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Cents(pub u64);

impl Cents {
    pub fn checked_mul(self, quantity: Quantity) -> Option<Cents> {
        self.0.checked_mul(u64::from(quantity.get())).map(Cents)
    }

    pub fn checked_add(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// A quantity of at least 1, by construction.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Quantity(NonZeroU32);

impl Quantity {
    /// `None` for anything below 1 or above `u32::MAX`.
    pub fn new(value: i64) -> Option<Self> {
        u32::try_from(value).ok().and_then(NonZeroU32::new).map(Self)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_empty_long_and_odd_values() {
        assert!(OrderId::parse("12345").is_ok());
        assert!(OrderId::parse("ord-2026.11:a_b").is_ok());
        assert_eq!(OrderId::parse(""), Err(IdError::Empty { what: "orderId" }));
        assert!(matches!(OrderId::parse("a".repeat(129)), Err(IdError::TooLong { .. })));
        assert!(matches!(OrderId::parse("a/b"), Err(IdError::BadCharacter { .. })));
        assert!(serde_json::from_str::<OrderId>("\"x y\"").is_err());
        for unaddressable in [".", "..", ".hidden"] {
            assert_eq!(OrderId::parse(unaddressable), Err(IdError::LeadingDot { what: "orderId" }));
        }
        assert!(OrderId::parse("a.b").is_ok());
        assert!(SagaId::generate().as_str().len() <= MAX_ID_LEN);
    }

    #[test]
    fn a_saga_key_is_an_order_id_or_a_saga_and_its_id() {
        let order = SagaKey::parse("o-1").unwrap();
        assert_eq!(order.order_id(), Some(OrderId::parse("o-1").unwrap()));
        assert_eq!(order.generic(), None);
        let trip = SagaKey::parse("trip/b-1").unwrap();
        assert_eq!(trip.order_id(), None);
        let (saga, id) = trip.generic().unwrap();
        assert_eq!(SagaKey::of(&saga, &id), trip);
        for bad in ["", "a/b/c", "/b", "a/", "trip/.x", "a b", &"a".repeat(129)] {
            assert!(SagaKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quantity_is_at_least_one() {
        assert!(Quantity::new(0).is_none());
        assert!(Quantity::new(-3).is_none());
        assert!(Quantity::new(i64::from(u32::MAX) + 1).is_none());
        assert_eq!(Quantity::new(2).map(Quantity::get), Some(2));
        assert!(serde_json::from_str::<Quantity>("0").is_err());
    }

    #[test]
    fn cents_print_as_money() {
        assert_eq!(Cents(123_456).to_string(), "1234.56");
        assert_eq!(Cents(5).to_string(), "0.05");
    }
}
