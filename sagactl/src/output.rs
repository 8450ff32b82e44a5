//! `-o json` for every command: stdout then carries only JSON (one document, or one per line
//! for `watch`), and what is written for people goes to stderr, so `sagactl chaos -o json | jq`
//! works whatever the command prints along the way.

use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Prints the command's result as JSON on stdout, when asked for JSON.
pub fn emit(value: &impl serde::Serialize) {
    if json() {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    }
}

/// `println!` for people: stdout normally, stderr under `-o json`.
macro_rules! say {
    ($($arg:tt)*) => {
        if $crate::output::json() {
            eprintln!($($arg)*);
        } else {
            println!($($arg)*);
        }
    };
}
pub(crate) use say;
