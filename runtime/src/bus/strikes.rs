//! Refusals counted per outbox entry, across sessions: how each transport's relay tells the
//! entry that is to blame from a broker that is having a bad moment. An entry is parked
//! ([`crate::outbox::Outbox::park`]) at its [`STRIKES`]th; when it gets through, or is
//! parked, it is forgotten. What counts as a strike is the transport's to say.

use std::collections::HashMap;

/// Refusals an entry may cause before it is parked. More than one, so that a broker that
/// restarts in the middle of a delivery does not park an innocent message.
pub const STRIKES: u32 = 3;

#[derive(Debug, Default)]
pub struct Strikes(HashMap<u64, u32>);

impl Strikes {
    /// Counts a refusal of `id`; true once it has had [`STRIKES`] (and then forgets it).
    pub fn strike(&mut self, id: u64) -> bool {
        let count = self.0.entry(id).or_default();
        *count += 1;
        let out = *count >= STRIKES;
        if out {
            self.0.remove(&id);
        }
        out
    }

    /// `id` got through: its past refusals no longer count.
    pub fn cleared(&mut self, id: u64) {
        if !self.0.is_empty() {
            self.0.remove(&id);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_out_at_its_third_strike_and_a_clear_forgets_it() {
        let mut strikes = Strikes::default();
        assert!(!strikes.strike(7));
        assert!(!strikes.strike(7));
        assert!(strikes.strike(7));
        assert!(!strikes.strike(7), "an entry that was out starts again from nothing");
        strikes.cleared(7);
        assert!(!strikes.strike(7) && !strikes.strike(7));
    }
}
