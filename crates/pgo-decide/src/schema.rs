//! The decisions document: what `pgo analyze` writes and every backend reads. Versioned;
//! deterministic (sorted, no timestamps, no hash-map order) so CI can diff it.

use serde::{Deserialize, Serialize};

/// A devirtualization site lists at most this many targets (the rest are summed).
pub const MAX_LISTED_TARGETS: usize = 10;

/// Sites with nothing to promote are listed (to explain why) only from this share up.
pub const MIN_UNPROMOTED_SHARE_PERCENT: f64 = 0.5;

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
pub const SCHEMA_NAME: &str = "pgo-decisions";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decisions {
    /// Always `pgo-decisions`.
    pub schema: String,
    pub version: u32,
    pub profile: ProfileSummary,
    pub settings: Settings,
    pub coverage: Coverage,
    /// What the analysis could not do with this input, one sentence each.
    pub limitations: Vec<String>,
    pub inline: Vec<InlineDecision>,
    pub devirtualize: Vec<DevirtualizeDecision>,
    pub layout: Layout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSummary {
    /// `type/unit` of the weights, e.g. `cpu/nanoseconds`.
    pub sample_type: String,
    pub total_weight: i64,
    pub functions: usize,
    pub call_edges: usize,
    pub has_addresses: bool,
    pub has_lines: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Hot edges are the heaviest ones covering this percentage of edge weight.
    pub hot_cdf_percent: f64,
    /// Callees up to this many bytes of code are inlined at hot sites.
    pub inline_max_callee_bytes: u64,
    /// At very hot sites (at least `inline_very_hot_share_percent` of the total) up to this,
    /// loops or not: about what LLVM's own hot call-site threshold (3000 cost units) admits
    /// with instrumentation profiles.
    pub inline_max_callee_bytes_very_hot: u64,
    pub inline_very_hot_share_percent: f64,
    /// A call the profiled build inlined is kept inlined when at least this share of the
    /// samples passes through it, however little time the callee itself takes.
    pub keep_inlined_min_share_percent: f64,
    pub devirtualize_max_targets: usize,
    /// A promoted target takes at least this share of what the site has left after the targets
    /// before it (LLVM's `-icp-remaining-percent-threshold`).
    pub devirtualize_min_remaining_percent: f64,
    /// ... and at least this share of the whole site (LLVM's `-icp-total-percent-threshold`).
    pub devirtualize_min_total_percent: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hot_cdf_percent: 99.0,
            inline_max_callee_bytes: 512,
            inline_max_callee_bytes_very_hot: 8192,
            inline_very_hot_share_percent: 5.0,
            keep_inlined_min_share_percent: 1.0,
            devirtualize_max_targets: 3,
            devirtualize_min_remaining_percent: 30.0,
            devirtualize_min_total_percent: 5.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// Share of the total weight sampled in functions that take part in a hot call (as caller
    /// or callee): the time the hot set can act on.
    pub hot_set_percent: f64,
    /// Share of the total weight in functions found in the given binary (`null` without one).
    pub binary_matched_percent: Option<f64>,
}

/// A function, as backends need to name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FunctionRef {
    pub name: String,
    pub linkage_name: String,
    pub binary: String,
    pub file: String,
    pub start_line: i64,
}

/// A call site in a caller: line offset from the caller's start line, and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallSiteRef {
    pub line_offset: i64,
    pub column: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InlineDecision {
    pub caller: FunctionRef,
    pub site: CallSiteRef,
    pub callee: FunctionRef,
    pub weight: i64,
    /// Percent of the profile's total weight.
    pub share_percent: f64,
    /// Size of the callee's code in the given binary, when known.
    pub callee_bytes: Option<u64>,
    /// The profiled binary had already inlined this call.
    pub already_inlined: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub callee: FunctionRef,
    pub weight: i64,
    /// Percent of the site's weight.
    pub site_percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevirtualizeDecision {
    pub caller: FunctionRef,
    pub site: CallSiteRef,
    pub weight: i64,
    pub share_percent: f64,
    /// How the site was known to be indirect: `"binary"` (the call instruction) or
    /// `"several-targets"` (one site, several callees).
    pub evidence: String,
    /// The heaviest targets observed (at most [`MAX_LISTED_TARGETS`]), heaviest first.
    pub targets: Vec<Target>,
    /// Targets beyond those listed: how many, and their share of the site.
    pub other_targets: usize,
    pub other_targets_site_percent: f64,
    /// The targets to promote to guarded direct calls, in order.
    pub promote: Vec<FunctionRef>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// Hot functions in the order to place them (callers next to their hot callees).
    pub function_order: Vec<FunctionRef>,
    /// Functions with samples that are not worth a place in the hot order.
    pub cold_functions: Vec<FunctionRef>,
    pub reason: String,
    /// Basic-block orders for hot functions (needs `--binary`).
    pub blocks: Vec<BlockLayout>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockLayout {
    pub function: FunctionRef,
    /// Block start addresses (file addresses of the given binary) in the chosen order.
    pub order: Vec<u64>,
    /// The first `hot_blocks` blocks are hot; the rest are cold and go to the function's end
    /// (or a cold section).
    pub hot_blocks: usize,
    pub reason: String,
}

/// Why a decisions file could not be read.
pub fn parse(text: &str) -> Result<Decisions, String> {
    #[derive(Deserialize)]
    struct Header {
        schema: Option<String>,
        version: Option<u32>,
    }
    let header: Header =
        serde_json::from_str(text).map_err(|e| format!("not a decisions file: {e}"))?;
    if header.schema.as_deref() != Some(SCHEMA_NAME) {
        return Err(format!(
            "not a decisions file (its \"schema\" is not {SCHEMA_NAME:?})"
        ));
    }
    match header.version {
        Some(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "decisions schema version {v}; this pgo reads version {SCHEMA_VERSION} (re-run pgo analyze with this pgo)"
            ));
        }
        None => return Err("decisions file without a \"version\"".into()),
    }
    serde_json::from_str(text)
        .map_err(|e| format!("malformed decisions (version {SCHEMA_VERSION}): {e}"))
}

impl Decisions {
    /// The document as pretty JSON with a final newline: stable bytes for the same decisions.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serializes") + "\n"
    }
}
