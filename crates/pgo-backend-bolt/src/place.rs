//! Placing the profile's samples in the built binary: each sample's leaf address becomes a
//! (BOLT function name, offset) pair of the binary BOLT is about to rewrite.

use std::collections::{BTreeMap, HashMap};

use pgo_profile::ProfileView;
use pgo_profile::proto::{Location, Mapping, Profile};

use crate::image::Image;

/// What the profiled binary of a mapping turned out to be.
pub(crate) enum Found {
    /// A file with the mapping's build ID.
    Verified(Image),
    /// The file at the mapping's path, which cannot be checked by build ID (the mapping has
    /// none), with its modification time; it is used only if it is not newer than the
    /// profile and the profile's function names agree with its symbols.
    Unverified(Image, Option<std::time::SystemTime>),
    /// Why there is none.
    Gone(String),
}

/// Which sample value is counted, and what one sample is worth in it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Weight {
    pub index: usize,
    /// Value units per sample: fdata counts are `value / per_sample`, rounded.
    pub per_sample: u128,
    /// `type/unit` of the value, for messages.
    pub name: String,
}

/// Picks the sample value to count: a `count` one (samples) when the profile has it, else the
/// default one, divided by the sampling period when that is in the same unit.
pub(crate) fn weight(profile: &Profile) -> Result<Weight, String> {
    let view = ProfileView::new(profile);
    if profile.sample_type.is_empty() {
        return Err("the profile has no sample types".into());
    }
    let types = view.sample_types();
    if let Some(index) = profile
        .sample_type
        .iter()
        .position(|t| view.str(t.unit) == "count")
    {
        return Ok(Weight {
            index,
            per_sample: 1,
            name: types[index].clone(),
        });
    }
    let index = view.sample_index(None)?;
    let unit = view.unit(index);
    let per_sample = match &profile.period_type {
        Some(pt) if profile.period > 0 && view.str(pt.unit) == unit => profile.period as u128,
        _ => 1,
    };
    Ok(Weight {
        index,
        per_sample,
        name: types[index].clone(),
    })
}

/// How one (file, build ID) of the program was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub filename: String,
    pub build_id: String,
    /// One line: "same build ID: addresses used as they are", "profiled binary X: ...".
    pub how: String,
}

/// The result of placing a profile in a binary. Weights are in the units of [`Weight`].
#[derive(Debug, Default)]
pub(crate) struct Placement {
    /// (BOLT function name, offset in the function) to weight.
    pub weights: BTreeMap<(String, u64), u128>,
    /// Weight of all samples.
    pub total: u128,
    /// Weight of the samples whose leaf is in the program (its mappings).
    pub program: u128,
    pub placed: u128,
    pub groups: Vec<Group>,
    /// Program weight that was not placed, by reason.
    pub unplaced: BTreeMap<String, u128>,
    /// Sampled functions of the profiled binary whose code differs in the new one.
    pub changed: BTreeMap<String, u128>,
    /// Sampled functions of the profiled binary with no symbol of that name in the new one.
    pub missing: BTreeMap<String, u128>,
    /// Sampled functions whose code is identical in both binaries.
    pub identical: usize,
    /// The profile's mappings did not name the program; its main mapping was used.
    pub fell_back_to_main_mapping: Option<String>,
}

impl Placement {
    /// Percent of the program's sample weight placed (0 when there is none).
    pub fn placed_percent(&self) -> f64 {
        percent(self.placed, self.program)
    }
}

pub(crate) fn percent(part: u128, whole: u128) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// A leaf location of the program, its mapping and its sample weight.
type Leaf<'a> = (&'a Location, &'a Mapping, u128);

/// How a sampled function of the profiled binary maps into the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// Same name, byte-identical code: offsets carry over.
    Identical(usize),
    Changed,
    Missing,
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub(crate) use pgo_profile::could_be_program;

/// Places the samples of `profile` in `target`. `program` is the built binary's file name
/// (mappings of a file by that name, or with `target`'s build ID, are the program);
/// `find_profiled` finds the binary a mapping was recorded from when it is not `target`.
pub(crate) fn place(
    profile: &Profile,
    target: &Image,
    program: &str,
    weight: &Weight,
    find_profiled: &dyn Fn(&str, &str) -> Found,
) -> Placement {
    let view = ProfileView::new(profile);
    let mut out = Placement::default();

    let is_program = |m: &Mapping| {
        let build_id = view.str(m.build_id);
        (!build_id.is_empty() && build_id == target.build_id)
            || basename(view.str(m.filename)) == program
    };
    let mut program_mappings: Vec<u64> = profile
        .mapping
        .iter()
        .filter(|m| is_program(m))
        .map(|m| m.id)
        .collect();
    if program_mappings.is_empty()
        && let Some(main) = profile.mapping.first()
        && could_be_program(view.str(main.filename))
    {
        // pprof puts the main binary first; the program may have been renamed since.
        program_mappings.push(main.id);
        out.fell_back_to_main_mapping = Some(view.str(main.filename).to_string());
    }

    // Weight per leaf location.
    let mut leaf_weight: HashMap<u64, u128> = HashMap::new();
    for sample in &profile.sample {
        let w = sample.value.get(weight.index).copied().unwrap_or(0).max(0) as u128;
        out.total += w;
        if let Some(&leaf) = sample.location_id.first() {
            *leaf_weight.entry(leaf).or_default() += w;
        }
    }

    // The program's leaf locations, grouped by (file, build ID).
    let mut groups: BTreeMap<(String, String), Vec<Leaf<'_>>> = BTreeMap::new();
    for (&id, &w) in &leaf_weight {
        let Some(loc) = view.location(id) else {
            continue;
        };
        if !program_mappings.contains(&loc.mapping_id) || w == 0 {
            continue;
        }
        let Some(m) = view.mapping(loc.mapping_id) else {
            continue;
        };
        out.program += w;
        let key = (
            view.str(m.filename).to_string(),
            view.str(m.build_id).to_string(),
        );
        groups.entry(key).or_default().push((loc, m, w));
    }

    for ((filename, build_id), mut locs) in groups {
        locs.sort_by_key(|(loc, _, _)| loc.id);
        let same_build = !build_id.is_empty() && build_id == target.build_id;
        let found = if same_build {
            None
        } else {
            Some(find_profiled(&filename, &build_id))
        };
        let profiled: Result<&Image, String> = match &found {
            None => Ok(target),
            Some(Found::Verified(image)) => Ok(image),
            Some(Found::Unverified(image, modified)) => {
                let (agree, named) = name_agreement(&view, image, &locs);
                let recorded = (profile.time_nanos > 0).then(|| {
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_nanos(profile.time_nanos as u64)
                });
                if let (Some(modified), Some(recorded)) = (modified, recorded)
                    && *modified > recorded
                {
                    Err(format!(
                        "{filename} is not the profiled binary: it was modified after the \
                         profile was recorded (and has no build ID to check)"
                    ))
                } else if named > 0 && agree * 10 >= named * 8 {
                    Ok(image)
                } else if named == 0 {
                    Err(format!(
                        "cannot tell whether {filename} is the profiled binary (the profile \
                         has no build ID and no function names for it)"
                    ))
                } else {
                    Err(format!(
                        "{filename} is not the profiled binary: the functions the profile \
                         names agree with its symbols for only {:.0}% of the samples (it has \
                         no build ID to check; it was probably rebuilt)",
                        percent(agree, named)
                    ))
                }
            }
            Some(Found::Gone(why)) => Err(why.clone()),
        };
        let profiled = match profiled {
            Ok(image) => image,
            Err(why) => {
                let w: u128 = locs.iter().map(|l| l.2).sum();
                *out.unplaced.entry(why.clone()).or_default() += w;
                out.groups.push(Group {
                    filename,
                    build_id,
                    how: format!("not placed: {why}"),
                });
                continue;
            }
        };

        let mut matches: HashMap<usize, Match> = HashMap::new();
        let (mut identical, mut changed, mut missing) = (0usize, 0usize, 0usize);
        for (loc, m, w) in locs {
            let Some(file_offset) = loc
                .address
                .checked_sub(m.memory_start)
                .and_then(|d| d.checked_add(m.file_offset))
            else {
                *out.unplaced
                    .entry("addresses outside their mapping".into())
                    .or_default() += w;
                continue;
            };
            let Some(vaddr) = profiled.vaddr_for_file_offset(file_offset) else {
                *out.unplaced
                    .entry("addresses outside the file's loadable segments".into())
                    .or_default() += w;
                continue;
            };
            let Some(pf) = profiled.function_at(vaddr) else {
                *out.unplaced
                    .entry("addresses in no function symbol (PLT stubs, stripped code)".into())
                    .or_default() += w;
                continue;
            };
            let offset = vaddr - profiled.functions[pf].start;
            let matched = if same_build {
                Match::Identical(pf)
            } else {
                *matches.entry(pf).or_insert_with(|| {
                    let m = match_function(profiled, pf, target);
                    match m {
                        Match::Identical(_) => identical += 1,
                        Match::Changed => changed += 1,
                        Match::Missing => missing += 1,
                    }
                    m
                })
            };
            let name = &profiled.functions[pf].name;
            match matched {
                Match::Identical(tf) => {
                    let key = (target.functions[tf].bolt_name.clone(), offset);
                    *out.weights.entry(key).or_default() += w;
                    out.placed += w;
                }
                Match::Changed => {
                    *out.changed.entry(name.clone()).or_default() += w;
                    *out.unplaced
                        .entry("functions whose code changed".into())
                        .or_default() += w;
                }
                Match::Missing => {
                    *out.missing.entry(name.clone()).or_default() += w;
                    *out.unplaced
                        .entry("functions not in the new binary".into())
                        .or_default() += w;
                }
            }
        }
        out.identical += identical;
        let how = if same_build {
            "same build ID as the built binary: addresses used as they are".to_string()
        } else {
            format!(
                "mapped through the profiled binary {}{}: of its sampled functions, \
                 {identical} identical in the new binary, {changed} changed, {missing} missing",
                profiled.path.display(),
                if profiled.build_id.is_empty() {
                    String::new()
                } else {
                    format!(" (build ID {})", profiled.build_id)
                }
            )
        };
        out.groups.push(Group {
            filename,
            build_id,
            how,
        });
    }
    out
}

/// The function of `target` that is `profiled.functions[pf]`: one with the same symbol name
/// and byte-identical code. Static functions may share a name; several identical candidates
/// are told apart by their rank among the functions of that name (by address).
fn match_function(profiled: &Image, pf: usize, target: &Image) -> Match {
    let f = &profiled.functions[pf];
    let Some(candidates) = target.by_name.get(&f.name) else {
        return Match::Missing;
    };
    let code = profiled.code(pf);
    let same = |tf: usize| {
        target.functions[tf].size == f.size
            && target.code(tf) == code
            && code.len() as u64 == f.size
    };
    let identical: Vec<usize> = candidates.iter().copied().filter(|&t| same(t)).collect();
    match identical.as_slice() {
        [] => Match::Changed,
        [one] => Match::Identical(*one),
        _ => {
            let rank = profiled
                .by_name
                .get(&f.name)
                .and_then(|list| list.iter().position(|&i| i == pf));
            match rank.and_then(|r| candidates.get(r)) {
                Some(&t) if same(t) => Match::Identical(t),
                _ => Match::Changed,
            }
        }
    }
}

/// Of the weight of `locs` whose outermost frame names a function, how much lands in a symbol
/// of `image` with that name: `(agreeing, named)`.
fn name_agreement(view: &ProfileView<'_>, image: &Image, locs: &[Leaf<'_>]) -> (u128, u128) {
    let (mut agree, mut named) = (0u128, 0u128);
    for (loc, m, w) in locs {
        let Some(line) = loc.line.last() else {
            continue;
        };
        let Some(function) = view.function(line.function_id) else {
            continue;
        };
        let sys = view.str(function.system_name);
        let name = if sys.is_empty() {
            view.str(function.name)
        } else {
            sys
        };
        if name.is_empty() {
            continue;
        }
        named += w;
        let idx = loc
            .address
            .checked_sub(m.memory_start)
            .and_then(|d| d.checked_add(m.file_offset))
            .and_then(|off| image.vaddr_for_file_offset(off))
            .and_then(|vaddr| image.function_at(vaddr));
        let Some(idx) = idx else { continue };
        let symbol = &image.functions[idx].name;
        let agrees = image.by_name.get(name).is_some_and(|v| v.contains(&idx))
            || symbol
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('.'))
            || name
                .strip_prefix(symbol.as_str())
                .is_some_and(|rest| rest.starts_with('.'));
        if agrees {
            agree += w;
        }
    }
    (agree, named)
}
