//! Structural checks a profile must pass before anything trusts its ids and string indices.

use rustc_hash::FxHashMap as HashMap;

use crate::proto::Profile;

/// What [`validate`] says of a well-formed profile without samples (an idle run's). A caller
/// merging several profiles can skip such inputs: see [`crate::Error::is_without_samples`].
pub const NO_SAMPLES: &str = "profile has no samples";

/// Checks that `p` is a well-formed profile with at least one sample.
///
/// The error says which field and which entry is wrong (entries counted from 0), e.g.
/// `sample 17 refers to location 99, which does not exist`.
pub fn validate(p: &Profile) -> Result<(), String> {
    match p.string_table.first() {
        None => return Err("string table is empty; entry 0 must be \"\"".into()),
        Some(s) if !s.is_empty() => {
            return Err(format!("string table entry 0 is {s:?}; it must be \"\""));
        }
        Some(_) => {}
    }
    let strings = p.string_table.len();
    let check_str = |index: i64, what: &dyn Fn() -> String| -> Result<(), String> {
        if index < 0 || index as usize >= strings {
            Err(format!(
                "{} is string {index}, but the string table has {strings} entries",
                what()
            ))
        } else {
            Ok(())
        }
    };

    if p.sample_type.is_empty() {
        return Err("profile has no sample types".into());
    }
    for (i, vt) in p.sample_type.iter().enumerate() {
        check_str(vt.r#type, &|| format!("sample type {i}'s type"))?;
        check_str(vt.unit, &|| format!("sample type {i}'s unit"))?;
    }
    if let Some(vt) = &p.period_type {
        check_str(vt.r#type, &|| "the period type".into())?;
        check_str(vt.unit, &|| "the period unit".into())?;
    }
    for (i, &c) in p.comment.iter().enumerate() {
        check_str(c, &|| format!("comment {i}"))?;
    }
    check_str(p.drop_frames, &|| "drop_frames".into())?;
    check_str(p.keep_frames, &|| "keep_frames".into())?;
    check_str(p.default_sample_type, &|| "default_sample_type".into())?;
    if p.period < 0 {
        return Err(format!("period is negative ({})", p.period));
    }

    let mappings = unique_ids("mapping", p.mapping.iter().map(|m| m.id))?;
    for (i, m) in p.mapping.iter().enumerate() {
        check_str(m.filename, &|| format!("mapping {}'s filename", m.id))?;
        check_str(m.build_id, &|| format!("mapping {}'s build_id", m.id))?;
        if m.memory_limit < m.memory_start {
            return Err(format!(
                "mapping {} (entry {i}) ends at {:#x}, before its start {:#x}",
                m.id, m.memory_limit, m.memory_start
            ));
        }
    }
    let functions = unique_ids("function", p.function.iter().map(|f| f.id))?;
    for f in &p.function {
        check_str(f.name, &|| format!("function {}'s name", f.id))?;
        check_str(f.system_name, &|| {
            format!("function {}'s system_name", f.id)
        })?;
        check_str(f.filename, &|| format!("function {}'s filename", f.id))?;
    }
    let locations = unique_ids("location", p.location.iter().map(|l| l.id))?;
    for l in &p.location {
        if l.mapping_id != 0 && !mappings.contains_key(&l.mapping_id) {
            return Err(format!(
                "location {} refers to mapping {}, which does not exist",
                l.id, l.mapping_id
            ));
        }
        for line in &l.line {
            if !functions.contains_key(&line.function_id) {
                return Err(format!(
                    "location {} refers to function {}, which does not exist",
                    l.id, line.function_id
                ));
            }
        }
    }

    if p.sample.is_empty() {
        return Err(NO_SAMPLES.into());
    }
    let types = p.sample_type.len();
    for (i, s) in p.sample.iter().enumerate() {
        if s.value.len() != types {
            return Err(format!(
                "sample {i} has {} values, but the profile has {types} sample types",
                s.value.len()
            ));
        }
        if let Some((t, v)) = s.value.iter().enumerate().find(|(_, v)| **v < 0) {
            let vt = &p.sample_type[t];
            return Err(format!(
                "sample {i} has a negative value {v} for {}/{}",
                p.string_table[vt.r#type as usize], p.string_table[vt.unit as usize]
            ));
        }
        for &id in &s.location_id {
            if !locations.contains_key(&id) {
                return Err(format!(
                    "sample {i} refers to location {id}, which does not exist"
                ));
            }
        }
        for (j, label) in s.label.iter().enumerate() {
            check_str(label.key, &|| format!("sample {i}'s label {j} key"))?;
            check_str(label.str, &|| format!("sample {i}'s label {j} value"))?;
            check_str(label.num_unit, &|| format!("sample {i}'s label {j} unit"))?;
        }
    }
    Ok(())
}

/// Maps each id to its entry index; ids must be nonzero and unique.
fn unique_ids(what: &str, ids: impl Iterator<Item = u64>) -> Result<HashMap<u64, usize>, String> {
    let mut seen = HashMap::default();
    for (i, id) in ids.enumerate() {
        if id == 0 {
            return Err(format!("{what} entry {i} has id 0; ids must be nonzero"));
        }
        if let Some(first) = seen.insert(id, i) {
            return Err(format!(
                "{what} id {id} is used twice (entries {first} and {i})"
            ));
        }
    }
    Ok(seen)
}
