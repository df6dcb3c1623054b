//! Raw stacks to a pprof profile: addresses resolved against `/proc/self/maps`, symbolized
//! with pgo-symbolize, and written with pgo-profile's builder, keeping every address and
//! mapping so later stages can work per address and per binary.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgo_profile::{
    FunctionInfo, LabelValue, LineInfo, LocationId, MappingId, MappingInfo, Profile, ProfileBuilder,
};
use pgo_symbolize::{MappingKind, MapsEntry, Symbolizer};

use crate::sampler::{RawProfile, SampleStats};

/// A CPU profile of this process, with how complete it is.
#[derive(Debug, Clone)]
pub struct CpuProfile {
    /// The pprof profile: sample types `samples/count` and `cpu/nanoseconds`, real addresses
    /// and mappings, symbolized lines (inline frames innermost first), `thread_id` and
    /// `thread_name` labels.
    pub profile: Profile,
    /// How many samples were expected from the CPU time spent, and how many arrived.
    pub stats: SampleStats,
}

impl CpuProfile {
    /// The profile as gzipped protobuf, what `/debug/pprof/profile` sends.
    pub fn encode(&self) -> Vec<u8> {
        pgo_profile::encode_profile(&self.profile)
    }
}

/// A mapping of `/proc/self/maps` as the profile names it.
struct MappingFacts {
    id: MappingId,
    build_id: String,
}

/// Builds the profile from a sampling run, with the mappings the process has now.
pub(crate) fn build_profile(raw: &RawProfile, symbolizer: &mut Symbolizer) -> CpuProfile {
    build_profile_with_maps(raw, &read_maps(), symbolizer)
}

fn build_profile_with_maps(
    raw: &RawProfile,
    maps: &[MapsEntry],
    symbolizer: &mut Symbolizer,
) -> CpuProfile {
    let mut b = ProfileBuilder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    let hz = u64::from(raw.stats.frequency_hz.max(1));
    let period = (1_000_000_000 / hz) as i64;
    b.set_period("cpu", "nanoseconds", period);
    b.set_time_nanos(unix_nanos(raw.start_time));
    b.set_duration_nanos(i64::try_from(raw.stats.wall_time.as_nanos()).unwrap_or(i64::MAX));
    b.add_comment(&format!(
        "pgo-agent {}: pprof-rs SIGPROF sampling at {} Hz",
        env!("CARGO_PKG_VERSION"),
        raw.stats.frequency_hz
    ));
    b.add_comment(&raw.stats.summary());
    b.add_comment(
        "pprof-rs merges the samples of a thread whose frames are in the same functions: \
         within a function, the address (and so the line and inline frame) of a location is \
         that of the first such sample, not a distribution",
    );
    if raw.untrimmed_stacks > 0 {
        b.add_comment(&format!(
            "{} stacks kept the profiler's own frames (signal handler not recognized)",
            raw.untrimmed_stacks
        ));
    }

    let mut mappings: HashMap<usize, MappingFacts> = HashMap::new();
    // (address, is a return address) → location: a return address is symbolized one byte
    // back, so the same number can stand for two different lines.
    let mut locations: HashMap<(u64, bool), LocationId> = HashMap::new();
    let mut stack = Vec::new();
    for raw_stack in &raw.stacks {
        stack.clear();
        for (depth, &address) in raw_stack.addresses.iter().enumerate() {
            let is_return_address = depth > 0 || !raw_stack.leaf_is_exact;
            let location = *locations
                .entry((address, is_return_address))
                .or_insert_with(|| {
                    location(
                        &mut b,
                        symbolizer,
                        maps,
                        &mut mappings,
                        address,
                        is_return_address,
                    )
                });
            stack.push(location);
        }
        let count = i64::try_from(raw_stack.count).unwrap_or(i64::MAX);
        let thread_id = i64::try_from(raw_stack.thread_id).unwrap_or(i64::MAX);
        let mut labels = vec![("thread_id", LabelValue::Num(thread_id, ""))];
        if !raw_stack.thread_name.is_empty() {
            labels.push(("thread_name", LabelValue::Str(&raw_stack.thread_name)));
        }
        // Cannot fail: two values for two sample types, both non-negative.
        let _ = b.add_sample(&stack, &[count, count.saturating_mul(period)], &labels);
    }
    CpuProfile {
        profile: b.build(),
        stats: raw.stats,
    }
}

/// The location for one address, added to the builder.
fn location(
    b: &mut ProfileBuilder,
    symbolizer: &mut Symbolizer,
    maps: &[MapsEntry],
    mappings: &mut HashMap<usize, MappingFacts>,
    address: u64,
    is_return_address: bool,
) -> LocationId {
    // A return address follows the call; the call itself is the byte before it, and it can
    // even be the last byte of a mapping.
    let lookup = if is_return_address {
        address.saturating_sub(1)
    } else {
        address
    };
    let Some(index) = maps.iter().position(|m| m.contains(lookup)) else {
        return b.location(None, address, &[]);
    };
    let entry = &maps[index];
    let facts = mappings
        .entry(index)
        .or_insert_with(|| mapping(b, symbolizer, entry));
    let mapping_id = facts.id;
    let answer = symbolizer.symbolize_runtime_address(
        &entry.path,
        &facts.build_id,
        entry.start,
        entry.file_offset,
        lookup,
    );
    let lines: Vec<LineInfo> = match answer {
        Ok(answer) => answer
            .frames
            .iter()
            .map(|frame| LineInfo {
                function: b.function(FunctionInfo {
                    name: &frame.function_name,
                    system_name: &frame.function_linkage_name,
                    filename: &frame.function_file,
                    start_line: i64::from(frame.start_line),
                }),
                line: i64::from(frame.line),
                column: i64::from(frame.column),
            })
            .collect(),
        // The file is gone or unreadable: keep the address and its mapping.
        Err(_) => Vec::new(),
    };
    b.location(Some(mapping_id), address, &lines)
}

/// The profile's mapping for a `/proc/self/maps` entry, with the file's build ID and what
/// its debug information can tell.
fn mapping(b: &mut ProfileBuilder, symbolizer: &mut Symbolizer, entry: &MapsEntry) -> MappingFacts {
    let mut build_id = String::new();
    let (mut has_functions, mut has_lines) = (false, false);
    if let MappingKind::File(path) = entry.kind()
        && let Ok(id) = symbolizer.load(Path::new(path), "")
    {
        let object = symbolizer.object(id);
        build_id = object.info().build_id.clone();
        has_functions = !object.is_stripped() || object.info().has_dynsym;
        has_lines = object.has_dwarf();
    }
    let id = b.mapping(MappingInfo {
        memory_start: entry.start,
        memory_limit: entry.end,
        file_offset: entry.file_offset,
        filename: &entry.path,
        build_id: &build_id,
        has_functions,
        has_filenames: has_lines,
        has_line_numbers: has_lines,
        has_inline_frames: has_lines,
    });
    MappingFacts { id, build_id }
}

/// The executable mappings of this process now (code is only ever sampled in those).
fn read_maps() -> Vec<MapsEntry> {
    std::fs::read_to_string("/proc/self/maps")
        .map(|text| {
            text.lines()
                .filter_map(MapsEntry::parse)
                .filter(|entry| entry.executable)
                .collect()
        })
        .unwrap_or_default()
}

fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
        .try_into()
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::RawStack;
    use pgo_profile::ProfileView;

    fn maps_entry(line: &str) -> MapsEntry {
        MapsEntry::parse(line).unwrap()
    }

    #[test]
    fn unsymbolizable_addresses_keep_address_and_mapping() {
        let maps = [
            maps_entry("10000-20000 r-xp 00001000 fd:01 1 /nonexistent/libgone.so"),
            maps_entry("30000-31000 r-xp 00000000 00:00 0 [vdso]"),
        ];
        let raw = RawProfile {
            stacks: vec![RawStack {
                // Leaf in the missing library, caller in the vDSO, root in no mapping.
                addresses: vec![0x10100, 0x30010, 0x50000],
                leaf_is_exact: true,
                thread_id: 7,
                thread_name: "worker".to_string(),
                count: 3,
            }],
            stats: SampleStats {
                frequency_hz: 250,
                wall_time: Duration::from_secs(1),
                cpu_time: Duration::from_millis(20),
                expected_samples: 5,
                received_samples: 3,
            },
            start_time: SystemTime::now(),
            untrimmed_stacks: 0,
        };
        let profile = build_profile_with_maps(&raw, &maps, &mut Symbolizer::new()).profile;
        pgo_profile::validate(&profile).unwrap();
        let view = ProfileView::new(&profile);
        let sample = &profile.sample[0];
        assert_eq!(sample.value, [3, 3 * 4_000_000]);
        assert_eq!(profile.period, 4_000_000);
        let locations: Vec<_> = sample
            .location_id
            .iter()
            .map(|id| view.location(*id).unwrap())
            .collect();
        assert_eq!(
            locations.iter().map(|l| l.address).collect::<Vec<_>>(),
            [0x10100, 0x30010, 0x50000]
        );
        assert!(locations.iter().all(|l| l.line.is_empty()));
        let gone = view.mapping(locations[0].mapping_id).unwrap();
        assert_eq!(view.str(gone.filename), "/nonexistent/libgone.so");
        assert_eq!((gone.memory_start, gone.file_offset), (0x10000, 0x1000));
        assert!(!gone.has_functions);
        let vdso = view.mapping(locations[1].mapping_id).unwrap();
        assert_eq!(view.str(vdso.filename), "[vdso]");
        assert_eq!(locations[2].mapping_id, 0);
        let comments: Vec<&str> = profile.comment.iter().map(|&c| view.str(c)).collect();
        assert!(comments.contains(&"expected 5 samples from CPU time, received 3 (40.0% dropped)"));
        let labels: Vec<_> = sample
            .label
            .iter()
            .map(|l| (view.str(l.key), l.num, view.str(l.str)))
            .collect();
        assert_eq!(labels, [("thread_id", 7, ""), ("thread_name", 0, "worker")]);
    }
}
