//! Views of profiles for people: the flat/cumulative `top` table, flamegraphs and differential
//! flamegraphs (drawn by inferno), and a per-function diff of two profiles.
//!
//! It reads profiles through `pgo-profile` and writes text, JSON-ready structs and SVG. It does
//! not read files, parse command lines or make optimization decisions.

mod diff;
mod flame;
mod top;
mod units;

pub use diff::{DiffRow, ProfileDiff, diff};
pub use flame::{FlameOptions, diff_flamegraph, flamegraph};
pub use top::{Top, TopRow, top};
pub use units::format_value;
