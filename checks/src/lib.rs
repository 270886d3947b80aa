//! partypool's checks: the integration tests on real clusters (`tests/`), the benchmarks
//! (`benches/`) and the heavier examples (`examples/`), in a workspace member of their own so
//! that the library's build — and `cargo run --example quickstart` — stays light.
//!
//! Run everything from the repository root with `cargo test --all-features`.

/// The README's examples, compiled as doctests so the front door stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
