use std::collections::BTreeMap;

use serde::Serialize;

use crate::top::Top;

/// How one function's share of its profile changed, in percentage points.
#[derive(Debug, Clone, Serialize)]
pub struct DiffRow {
    pub function: String,
    pub base_flat_percent: f64,
    pub new_flat_percent: f64,
    pub flat_delta_points: f64,
    pub base_cum_percent: f64,
    pub new_cum_percent: f64,
    pub cum_delta_points: f64,
}

/// The functions whose flat share grew and shrank the most between two profiles.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileDiff {
    pub sample_type: String,
    pub base_total: i64,
    pub new_total: i64,
    /// Grown the most first.
    pub gainers: Vec<DiffRow>,
    /// Shrunk the most first.
    pub losers: Vec<DiffRow>,
}

/// Compares shares rather than absolute values, since two profiles of the same program rarely
/// cover the same time; absolute totals are reported beside them.
pub fn diff(base: &Top, new: &Top, limit: usize) -> ProfileDiff {
    let mut by_name: BTreeMap<&str, DiffRow> = BTreeMap::new();
    let row = |name: &str| DiffRow {
        function: name.to_string(),
        base_flat_percent: 0.0,
        new_flat_percent: 0.0,
        flat_delta_points: 0.0,
        base_cum_percent: 0.0,
        new_cum_percent: 0.0,
        cum_delta_points: 0.0,
    };
    for r in &base.rows {
        let d = by_name
            .entry(&r.function)
            .or_insert_with(|| row(&r.function));
        d.base_flat_percent = r.flat_percent;
        d.base_cum_percent = r.cum_percent;
    }
    for r in &new.rows {
        let d = by_name
            .entry(&r.function)
            .or_insert_with(|| row(&r.function));
        d.new_flat_percent = r.flat_percent;
        d.new_cum_percent = r.cum_percent;
    }
    let mut rows: Vec<DiffRow> = by_name
        .into_values()
        .map(|mut d| {
            d.flat_delta_points = d.new_flat_percent - d.base_flat_percent;
            d.cum_delta_points = d.new_cum_percent - d.base_cum_percent;
            d
        })
        .collect();
    let key = |d: &DiffRow| (d.flat_delta_points, d.cum_delta_points);
    rows.sort_by(|a, b| {
        key(b)
            .partial_cmp(&key(a))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let gainers = rows
        .iter()
        .filter(|d| d.flat_delta_points > 0.0)
        .take(limit)
        .cloned()
        .collect();
    let losers = rows
        .iter()
        .rev()
        .filter(|d| d.flat_delta_points < 0.0)
        .take(limit)
        .cloned()
        .collect();
    ProfileDiff {
        sample_type: new.sample_type.clone(),
        base_total: base.total,
        new_total: new.total,
        gainers,
        losers,
    }
}

impl ProfileDiff {
    /// Two tables, grown and shrunk, in percentage points of each profile's total.
    pub fn render(&self, unit: &str) -> String {
        let mut out = format!(
            "{}: base total {}, new total {}; shares in % of each profile's total\n",
            self.sample_type,
            crate::format_value(self.base_total, unit),
            crate::format_value(self.new_total, unit)
        );
        for (title, rows) in [("grew", &self.gainers), ("shrank", &self.losers)] {
            out.push_str(&format!(
                "\n{title}:\n{:>9} {:>9} {:>9} {:>9}  function\n",
                "base%", "new%", "delta", "cum delta"
            ));
            if rows.is_empty() {
                out.push_str("  (none)\n");
            }
            for d in rows.iter() {
                out.push_str(&format!(
                    "{:>8.2}% {:>8.2}% {:>+9.2} {:>+9.2}  {}\n",
                    d.base_flat_percent,
                    d.new_flat_percent,
                    d.flat_delta_points,
                    d.cum_delta_points,
                    d.function
                ));
            }
        }
        out
    }
}
