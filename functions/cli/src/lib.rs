//! `orderflow`, the command line that operates an Orderflow stage: send orders, read one,
//! trace what happened to it, look after the dead-letter queues, replay the event store,
//! put load on the system and read the counters. Each command is a module whose AWS calls
//! are thin and whose formatting and computing are pure functions with unit tests; `cli` is
//! the command line's grammar (clap), `main.rs` runs it and turns errors into exit statuses.

pub mod cli;
pub mod context;
pub mod cost;
pub mod dlq;
pub mod error;
pub mod load;
pub mod order;
pub mod pricing;
pub mod replay;
pub mod send;
pub mod stats;
pub mod trace;

pub use context::Context;
pub use error::{CliError, Result};
