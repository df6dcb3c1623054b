//! Merging profiles: same sample types required; periods reconciled; optional weights.

use rustc_hash::FxHashMap as HashMap;

use crate::Error;
use crate::builder::{FunctionInfo, LabelValue, LineInfo, MappingInfo, ProfileBuilder};
use crate::proto::Profile;
use crate::view::ProfileView;

/// One profile to merge, the file it came from (for errors) and its weight.
pub struct MergeInput<'a> {
    pub profile: &'a Profile,
    pub file: &'a str,
    /// Every value of this profile is multiplied by this (1.0 for a plain merge).
    pub weight: f64,
}

/// Merges validated profiles into one, compacting tables and summing identical samples.
///
/// All inputs must have the same sample types (type and unit, in order) and, where set, the same
/// period type. When periods differ, the merged period is the smallest one and `samples/count`
/// values — which count periods — are scaled to it, so a 100 Hz and a 1 kHz profile add up in
/// the same currency; values with real units (nanoseconds, bytes) are already comparable and are
/// left alone. (`go tool pprof` instead keeps the largest period and adds counts unscaled.)
pub fn merge(inputs: &[MergeInput<'_>]) -> Result<Profile, Error> {
    let Some(first) = inputs.first() else {
        return Err(Error::new("", "nothing to merge: no profiles given"));
    };
    let first_view = ProfileView::new(first.profile);
    let types = first_view.sample_types();
    let first_period_type = period_type(&first_view);
    for input in &inputs[1..] {
        let view = ProfileView::new(input.profile);
        let these = view.sample_types();
        if these != types {
            return Err(Error::new(
                input.file,
                format!(
                    "sample types [{}] do not match [{}] of {}; cannot merge",
                    these.join(", "),
                    types.join(", "),
                    first.file
                ),
            ));
        }
        let pt = period_type(&view);
        if pt.is_some() && first_period_type.is_some() && pt != first_period_type {
            return Err(Error::new(
                input.file,
                format!(
                    "period type {} does not match {} of {}; cannot merge",
                    pt.unwrap_or_default(),
                    first_period_type.clone().unwrap_or_default(),
                    first.file
                ),
            ));
        }
    }
    for input in inputs {
        if !(input.weight.is_finite() && input.weight > 0.0) {
            return Err(Error::new(
                input.file,
                format!("weight {} must be a positive number", input.weight),
            ));
        }
    }

    let type_pairs: Vec<(String, String)> = first
        .profile
        .sample_type
        .iter()
        .map(|vt| {
            (
                first_view.str(vt.r#type).to_string(),
                first_view.str(vt.unit).to_string(),
            )
        })
        .collect();
    let type_refs: Vec<(&str, &str)> = type_pairs
        .iter()
        .map(|(t, u)| (t.as_str(), u.as_str()))
        .collect();
    let mut b = ProfileBuilder::new(&type_refs);
    let counts_periods: Vec<bool> = type_pairs
        .iter()
        .map(|(t, u)| t == "samples" && u == "count")
        .collect();

    let period = inputs
        .iter()
        .map(|i| i.profile.period)
        .filter(|p| *p > 0)
        .min()
        .unwrap_or(0);
    if let Some(owner) = inputs.iter().find(|i| i.profile.period_type.is_some()) {
        let view = ProfileView::new(owner.profile);
        let pt = owner.profile.period_type.unwrap_or_default();
        b.set_period(view.str(pt.r#type), view.str(pt.unit), period);
    }
    if let Some(t) = inputs
        .iter()
        .map(|i| i.profile.time_nanos)
        .filter(|t| *t > 0)
        .min()
    {
        b.set_time_nanos(t);
    }
    b.set_duration_nanos(inputs.iter().map(|i| i.profile.duration_nanos).sum());
    if first.profile.default_sample_type != 0 {
        b.set_default_sample_type(first_view.str(first.profile.default_sample_type));
    }
    let same_drop = inputs.iter().all(|i| {
        ProfileView::new(i.profile).str(i.profile.drop_frames)
            == first_view.str(first.profile.drop_frames)
    });
    if same_drop && first.profile.drop_frames != 0 {
        b.set_drop_frames(first_view.str(first.profile.drop_frames));
    }
    let same_keep = inputs.iter().all(|i| {
        ProfileView::new(i.profile).str(i.profile.keep_frames)
            == first_view.str(first.profile.keep_frames)
    });
    if same_keep && first.profile.keep_frames != 0 {
        b.set_keep_frames(first_view.str(first.profile.keep_frames));
    }

    for input in inputs {
        let view = ProfileView::new(input.profile);
        for &c in &input.profile.comment {
            b.add_comment(view.str(c));
        }
        let period_ratio = if period > 0 && input.profile.period > 0 {
            input.profile.period as f64 / period as f64
        } else {
            1.0
        };
        let factors: Vec<f64> = counts_periods
            .iter()
            .map(|&c| input.weight * if c { period_ratio } else { 1.0 })
            .collect();
        let scale = factors.iter().any(|f| *f != 1.0);
        copy_samples(&mut b, &view, |values| {
            if scale {
                for (v, f) in values.iter_mut().zip(&factors) {
                    *v = (*v as f64 * f).round() as i64;
                }
            }
        })
        .map_err(|e| Error::new(input.file, e))?;
    }
    Ok(b.build())
}

fn period_type(view: &ProfileView<'_>) -> Option<String> {
    view.profile
        .period_type
        .map(|vt| format!("{}/{}", view.str(vt.r#type), view.str(vt.unit)))
}

/// Adds every sample of `view` to `b`, re-interning its mappings, functions and locations, after
/// `adjust` has had its say on the values.
pub fn copy_samples(
    b: &mut ProfileBuilder,
    view: &ProfileView<'_>,
    mut adjust: impl FnMut(&mut Vec<i64>),
) -> Result<(), String> {
    let p = view.profile;
    let mut mappings = HashMap::default();
    for m in &p.mapping {
        let id = b.mapping(MappingInfo {
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: view.str(m.filename),
            build_id: view.str(m.build_id),
            has_functions: m.has_functions,
            has_filenames: m.has_filenames,
            has_line_numbers: m.has_line_numbers,
            has_inline_frames: m.has_inline_frames,
        });
        mappings.insert(m.id, id);
    }
    let mut functions = HashMap::default();
    for f in &p.function {
        let id = b.function(FunctionInfo {
            name: view.str(f.name),
            system_name: view.str(f.system_name),
            filename: view.str(f.filename),
            start_line: f.start_line,
        });
        functions.insert(f.id, id);
    }
    let mut locations = HashMap::default();
    for l in &p.location {
        let lines: Vec<LineInfo> = l
            .line
            .iter()
            .map(|line| LineInfo {
                function: functions[&line.function_id],
                line: line.line,
                column: line.column,
            })
            .collect();
        let id = b.location(mappings.get(&l.mapping_id).copied(), l.address, &lines);
        locations.insert(l.id, id);
    }
    let mut values = Vec::new();
    for s in &p.sample {
        let stack: Vec<_> = s.location_id.iter().map(|id| locations[id]).collect();
        values.clear();
        values.extend_from_slice(&s.value);
        adjust(&mut values);
        let labels: Vec<(&str, LabelValue<'_>)> = s
            .label
            .iter()
            .map(|l| {
                let value = if l.str != 0 {
                    LabelValue::Str(view.str(l.str))
                } else {
                    LabelValue::Num(l.num, view.str(l.num_unit))
                };
                (view.str(l.key), value)
            })
            .collect();
        b.add_sample(&stack, &values, &labels)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
