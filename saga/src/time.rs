//! Time as plain numbers. The core never asks what time it is; the caller says so.

use serde::{Deserialize, Serialize};

/// A point in time, in milliseconds since the Unix epoch. Only the shell creates these from a
/// real clock; tests make them up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

/// A duration in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Timestamp {
    /// `self + d`, saturating instead of overflowing: a far-away deadline is as good as never.
    pub fn after(self, d: Millis) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }
}
