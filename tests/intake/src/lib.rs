//! Nothing but tests: `tests/limits.rs` feeds every consumer of `OrderPlaced` orders at each
//! limit intake admits (`contracts::limits`) and fails if any refuses one permanently.
