//! Free text that crosses a boundary, such as the reason a participant gives for a refusal.
//!
//! It is stored with the saga and shown to operators, so it is bounded when it is read, not
//! where it is used: [`Reason`] cannot hold more than [`MAX_REASON_LEN`] bytes or a control
//! character. Reading never fails on it, since a reply must not be dead-lettered for a long
//! explanation; the text is cut instead.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The most bytes of a reason that are kept.
pub const MAX_REASON_LEN: usize = 200;

/// A short, printable explanation: at most [`MAX_REASON_LEN`] bytes, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct Reason(String);

impl Reason {
    /// Keeps the first [`MAX_REASON_LEN`] bytes (cut at a character boundary, marked with `…`)
    /// and turns control characters into spaces.
    pub fn new(text: &str) -> Self {
        let mut out = String::with_capacity(text.len().min(MAX_REASON_LEN));
        for c in text.chars() {
            if out.len() + c.len_utf8() > MAX_REASON_LEN {
                // Too long: cut back to leave room for the mark.
                let mut end = MAX_REASON_LEN - '…'.len_utf8();
                while !out.is_char_boundary(end) {
                    end -= 1;
                }
                out.truncate(end);
                out.push('…');
                break;
            }
            out.push(if c.is_control() { ' ' } else { c });
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Self {
        Self::new(&text)
    }
}

impl From<&str> for Reason {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> String {
        reason.0
    }
}

/// A sender should keep within the bound; a longer reason is cut, not refused.
impl schemars::JsonSchema for Reason {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Reason".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": MAX_REASON_LEN,
            "description": "A short, printable explanation; longer text is cut and control characters become spaces.",
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn short_reasons_stay_as_they_are() {
        assert_eq!(Reason::new("out_of_stock").as_str(), "out_of_stock");
        let exactly = "é".repeat(MAX_REASON_LEN / 2);
        assert_eq!(Reason::new(&exactly).as_str(), exactly);
    }

    proptest! {
        #[test]
        fn any_text_becomes_a_bounded_printable_reason(text in ".{0,600}") {
            let reason = Reason::new(&text);
            prop_assert!(reason.as_str().len() <= MAX_REASON_LEN);
            prop_assert!(!reason.as_str().chars().any(char::is_control));
            if text.len() <= MAX_REASON_LEN && !text.chars().any(char::is_control) {
                prop_assert_eq!(reason.as_str(), text.as_str());
            }
            let json = serde_json::to_string(&text).unwrap();
            prop_assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), reason);
        }
    }
}
