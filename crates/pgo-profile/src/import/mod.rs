//! Text formats other tools write, turned into pprof: folded stacks and `perf script` output.

pub mod folded;
pub mod perf_script;
