use rustc_hash::FxHashMap as HashMap;

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
    // Name each location's frames once: profiles have far fewer locations than stack frames.
    let mut names: Vec<String> = Vec::new();
    let mut name_ids: HashMap<String, u32> = HashMap::default();
    let mut frames_of: HashMap<u64, (usize, usize)> = HashMap::default();
    let mut frame_names: Vec<u32> = Vec::new();
    for loc in &view.profile.location {
        let start = frame_names.len();
        for frame in view.location_frames(loc) {
            let name = view.frame_name(&frame);
            let id = match name_ids.get(name.as_ref()) {
                Some(&id) => id,
                None => {
                    let id = names.len() as u32;
                    names.push(name.to_string());
                    name_ids.insert(name.into_owned(), id);
                    id
                }
            };
            frame_names.push(id);
        }
        frames_of.insert(loc.id, (start, frame_names.len()));
    }
    // Filters are decided per name once, not per frame of every sample.
    let matches = |re: &Option<regex::Regex>| -> Option<Vec<bool>> {
        re.as_ref()
            .map(|re| names.iter().map(|n| re.is_match(n)).collect())
    };
    let (focus, ignore) = (matches(&filter.focus), matches(&filter.ignore));

    let mut flat = vec![0i64; names.len()];
    let mut cum = vec![0i64; names.len()];
    let mut last_counted = vec![usize::MAX; names.len()];
    let mut total = 0i64;
    let mut shown = 0i64;
    let mut stack: Vec<u32> = Vec::new();
    for (i, s) in view.profile.sample.iter().enumerate() {
        let v = s.value[index];
        total = total.saturating_add(v);
        stack.clear();
        for id in &s.location_id {
            if let Some(&(a, b)) = frames_of.get(id) {
                stack.extend_from_slice(&frame_names[a..b]);
            }
        }
        let hit = |m: &Option<Vec<bool>>| m.as_ref().map(|m| stack.iter().any(|&n| m[n as usize]));
        if hit(&focus) == Some(false) || hit(&ignore) == Some(true) {
            continue;
        }
        shown = shown.saturating_add(v);
        if let Some(&leaf) = stack.first() {
            flat[leaf as usize] += v;
        }
        for &n in &stack {
            // Count each function once per sample, however deep it recurses.
            if last_counted[n as usize] != i {
                last_counted[n as usize] = i;
                cum[n as usize] += v;
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
    let mut rows: Vec<TopRow> = names
        .into_iter()
        .enumerate()
        .filter(|&(n, _)| last_counted[n] != usize::MAX)
        .map(|(n, function)| TopRow {
            function,
            flat: flat[n],
            flat_percent: pct(flat[n]),
            cum: cum[n],
            cum_percent: pct(cum[n]),
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
