use std::collections::{HashMap, HashSet};

use pgo_profile::{ProfileView, SampleFilter};
use serde::Serialize;

use crate::units::format_value;

/// One function's flat (leaf) and cumulative (anywhere on the stack) weight.
#[derive(Debug, Clone, Serialize)]
pub struct TopRow {
    pub function: String,
    pub flat: i64,
    pub flat_percent: f64,
    pub cum: i64,
    pub cum_percent: f64,
}

/// The weight of each function in one sample type, like `go tool pprof -top`.
#[derive(Debug, Clone, Serialize)]
pub struct Top {
    /// `type/unit` of the values, e.g. `cpu/nanoseconds`.
    pub sample_type: String,
    pub unit: String,
    /// Sum of the values of all samples, before filtering: percentages are of this.
    pub total: i64,
    /// Sum of the values of the samples that passed the filter.
    pub shown: i64,
    /// Sorted by flat weight, heaviest first, ties by name.
    pub rows: Vec<TopRow>,
}

/// Flat and cumulative weights per function name for sample value `index`.
///
/// Functions are grouped by name, inline frames count as their own functions, and a function
/// counts once per sample however often it recurs on the stack, as pprof does.
pub fn top(view: &ProfileView<'_>, index: usize, filter: &SampleFilter) -> Top {
    let mut flat: HashMap<String, i64> = HashMap::new();
    let mut cum: HashMap<String, i64> = HashMap::new();
    let mut total = 0i64;
    let mut shown = 0i64;
    for s in &view.profile.sample {
        let v = s.value[index];
        total = total.saturating_add(v);
        let names: Vec<_> = view.frames(s).map(|f| view.frame_name(&f)).collect();
        if !filter.keeps(names.iter()) {
            continue;
        }
        shown = shown.saturating_add(v);
        if let Some(leaf) = names.first() {
            *flat.entry(leaf.to_string()).or_default() += v;
        }
        let mut seen = HashSet::with_capacity(names.len());
        for name in &names {
            if seen.insert(name.as_ref()) {
                *cum.entry(name.to_string()).or_default() += v;
            }
        }
    }
    let pct = |v: i64| {
        if total == 0 {
            0.0
        } else {
            100.0 * v as f64 / total as f64
        }
    };
    let mut rows: Vec<TopRow> = cum
        .into_iter()
        .map(|(function, cum)| {
            let flat = flat.get(&function).copied().unwrap_or(0);
            TopRow {
                function,
                flat,
                flat_percent: pct(flat),
                cum,
                cum_percent: pct(cum),
            }
        })
        .collect();
    // pprof's order: heaviest first, ties by name.
    rows.sort_by(|a, b| {
        b.flat
            .cmp(&a.flat)
            .then_with(|| a.function.cmp(&b.function))
    });
    Top {
        sample_type: view.sample_types()[index].clone(),
        unit: view.unit(index).to_string(),
        total,
        shown,
        rows,
    }
}

impl Top {
    /// Re-sorts the rows by cumulative weight, heaviest first.
    pub fn sort_by_cum(&mut self) {
        self.rows
            .sort_by(|a, b| b.cum.cmp(&a.cum).then_with(|| a.function.cmp(&b.function)));
    }

    /// The table as `go tool pprof -top` prints it, limited to `limit` rows.
    pub fn render(&self, limit: usize) -> String {
        let fmt = |v: i64| format_value(v, &self.unit);
        let rows = &self.rows[..self.rows.len().min(limit)];
        let listed: i64 = rows.iter().map(|r| r.flat).sum();
        let pct = |v: i64| {
            if self.total == 0 {
                0.0
            } else {
                100.0 * v as f64 / self.total as f64
            }
        };
        let mut out = format!(
            "{}: showing {} of {} functions, accounting for {} ({:.2}%) of {} total\n",
            self.sample_type,
            rows.len(),
            self.rows.len(),
            fmt(listed),
            pct(listed),
            fmt(self.total),
        );
        if self.shown != self.total {
            out.push_str(&format!(
                "filter kept {} ({:.2}%) of the total\n",
                fmt(self.shown),
                pct(self.shown)
            ));
        }
        out.push_str(&format!(
            "{:>10} {:>7} {:>7} {:>10} {:>7}  function\n",
            "flat", "flat%", "sum%", "cum", "cum%"
        ));
        let mut sum = 0.0;
        for r in rows {
            sum += r.flat_percent;
            out.push_str(&format!(
                "{:>10} {:>6.2}% {:>6.2}% {:>10} {:>6.2}%  {}\n",
                fmt(r.flat),
                r.flat_percent,
                sum,
                fmt(r.cum),
                r.cum_percent,
                r.function
            ));
        }
        out
    }
}
