//! Read access to a validated profile: ids resolved, stacks expanded into source frames.

use rustc_hash::FxHashMap as HashMap;
use std::borrow::Cow;

use crate::proto::{Function, Location, Mapping, Profile, Sample};

/// One source-level frame of a stack: a function (or a bare address) at a line.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub location: &'a Location,
    /// `None` for an unsymbolized location.
    pub function: Option<&'a Function>,
    pub line: i64,
    pub column: i64,
    /// True for a frame that was inlined into the next (outer) frame of the same location.
    pub inlined: bool,
}

/// Addresses from here up are the kernel's (x86-64 and aarch64 Linux): a location there is
/// kernel code a sample was taken in (a system call, an interrupt), not the program's.
pub const KERNEL_ADDRESS_START: u64 = 0xffff_8000_0000_0000;

/// A validated profile with its id tables resolved. Cheap to build; borrows the profile.
pub struct ProfileView<'a> {
    pub profile: &'a Profile,
    locations: HashMap<u64, &'a Location>,
    functions: HashMap<u64, &'a Function>,
    mappings: HashMap<u64, &'a Mapping>,
}

impl<'a> ProfileView<'a> {
    /// Resolves the id tables of `profile`, which must have passed [`crate::validate`].
    pub fn new(profile: &'a Profile) -> Self {
        ProfileView {
            profile,
            locations: profile.location.iter().map(|l| (l.id, l)).collect(),
            functions: profile.function.iter().map(|f| (f.id, f)).collect(),
            mappings: profile.mapping.iter().map(|m| (m.id, m)).collect(),
        }
    }

    /// The string at `index` of the string table ("" when out of range).
    pub fn str(&self, index: i64) -> &'a str {
        self.profile
            .string_table
            .get(index as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn location(&self, id: u64) -> Option<&'a Location> {
        self.locations.get(&id).copied()
    }

    pub fn function(&self, id: u64) -> Option<&'a Function> {
        self.functions.get(&id).copied()
    }

    pub fn mapping(&self, id: u64) -> Option<&'a Mapping> {
        self.mappings.get(&id).copied()
    }

    /// Sample types as `type/unit` strings, e.g. `cpu/nanoseconds`.
    pub fn sample_types(&self) -> Vec<String> {
        self.profile
            .sample_type
            .iter()
            .map(|vt| format!("{}/{}", self.str(vt.r#type), self.str(vt.unit)))
            .collect()
    }

    /// The index of the sample value to show: the one named `wanted` (by type, or `type/unit`),
    /// else the profile's default sample type, else the last one, as pprof does.
    pub fn sample_index(&self, wanted: Option<&str>) -> Result<usize, String> {
        let types = &self.profile.sample_type;
        if let Some(w) = wanted {
            return types
                .iter()
                .position(|vt| {
                    let t = self.str(vt.r#type);
                    w == t || w == format!("{t}/{}", self.str(vt.unit))
                })
                .ok_or_else(|| {
                    format!(
                        "has no sample type {w:?}; it has {}",
                        self.sample_types().join(", ")
                    )
                });
        }
        if self.profile.default_sample_type != 0 {
            let name = self.str(self.profile.default_sample_type);
            if let Some(i) = types.iter().position(|vt| self.str(vt.r#type) == name) {
                return Ok(i);
            }
        }
        Ok(types.len() - 1)
    }

    /// A sample's innermost location outside the kernel: where the program itself was.
    pub fn user_leaf(&self, sample: &'a Sample) -> Option<&'a Location> {
        sample
            .location_id
            .iter()
            .filter_map(|id| self.location(*id))
            .find(|l| l.address < KERNEL_ADDRESS_START)
    }

    /// The profiled program's mapping: of the mappings that may be a program (not a shared
    /// library or the vdso, see [`could_be_program`]), the one the most samples (by their
    /// first value) pass through
    /// anywhere in their user stack, so that a program spending its time in system calls and
    /// libc, or one started by a shell script, is still the program (ties go to the higher id,
    /// so the answer is deterministic). When no mapping may be a program, the one most samples'
    /// [user leaf](Self::user_leaf) lies in.
    pub fn main_mapping(&self) -> Option<&'a Mapping> {
        let mut through: HashMap<u64, i64> = HashMap::default();
        let mut leaves: HashMap<u64, i64> = HashMap::default();
        let mut seen: Vec<u64> = Vec::new();
        for s in &self.profile.sample {
            // Identical stacks are usually one sample with their counts summed.
            let weight = s.value.first().copied().unwrap_or(0).max(0);
            if let Some(l) = self.user_leaf(s)
                && l.mapping_id != 0
            {
                *leaves.entry(l.mapping_id).or_default() += weight;
            }
            seen.clear();
            for l in s.location_id.iter().filter_map(|id| self.location(*id)) {
                if l.mapping_id != 0
                    && l.address < KERNEL_ADDRESS_START
                    && !seen.contains(&l.mapping_id)
                {
                    seen.push(l.mapping_id);
                    *through.entry(l.mapping_id).or_default() += weight;
                }
            }
        }
        let program = |id: &u64| {
            self.mapping(*id)
                .is_some_and(|m| could_be_program(self.str(m.filename)))
        };
        let best = |counts: HashMap<u64, i64>, keep: &dyn Fn(&u64) -> bool| {
            counts
                .into_iter()
                .filter(|(id, _)| keep(id))
                .max_by_key(|(id, n)| (*n, *id))
                .map(|(id, _)| id)
        };
        let id = best(through, &program).or_else(|| best(leaves, &|_| true))?;
        self.mapping(id)
    }

    /// The unit of sample value `index`, e.g. "nanoseconds".
    pub fn unit(&self, index: usize) -> &'a str {
        self.str(self.profile.sample_type[index].unit)
    }

    /// The source frames of a sample, leaf first; inline frames of a location come innermost
    /// first, before the function they were inlined into.
    pub fn frames(&self, sample: &'a Sample) -> impl Iterator<Item = Frame<'a>> + '_ {
        sample
            .location_id
            .iter()
            .filter_map(|id| self.location(*id))
            .flat_map(move |loc| self.location_frames(loc))
    }

    /// The source frames of one location, innermost first (one frame for an unsymbolized one).
    pub fn location_frames(&self, loc: &'a Location) -> Vec<Frame<'a>> {
        if loc.line.is_empty() {
            return vec![Frame {
                location: loc,
                function: None,
                line: 0,
                column: 0,
                inlined: false,
            }];
        }
        let last = loc.line.len() - 1;
        loc.line
            .iter()
            .enumerate()
            .map(|(i, l)| Frame {
                location: loc,
                function: self.function(l.function_id),
                line: l.line,
                column: l.column,
                inlined: i < last,
            })
            .collect()
    }

    /// The name people see for a frame: the function's name, else its system name, else the
    /// address (with the mapped file's base name when known), as pprof shows unsymbolized code.
    pub fn frame_name(&self, frame: &Frame<'a>) -> Cow<'a, str> {
        if let Some(f) = frame.function {
            let name = self.str(f.name);
            if !name.is_empty() {
                return Cow::Borrowed(name);
            }
            let sys = self.str(f.system_name);
            if !sys.is_empty() {
                return Cow::Borrowed(sys);
            }
        }
        let loc = frame.location;
        match self.mapping(loc.mapping_id) {
            Some(m) if !self.str(m.filename).is_empty() => {
                let file = self.str(m.filename);
                let base = file.rsplit('/').next().unwrap_or(file);
                // The file offset, which stays the same from run to run under ASLR.
                let offset = loc
                    .address
                    .wrapping_sub(m.memory_start)
                    .wrapping_add(m.file_offset);
                Cow::Owned(format!("{base}+{offset:#x}"))
            }
            _ => Cow::Owned(format!("{:#x}", loc.address)),
        }
    }
}

/// Whether a mapped file may be a program rather than a shared library (`*.so`, `*.so.N`),
/// the vdso, or an anonymous or special mapping (`[heap]`, `[anon]`, an empty name).
pub fn could_be_program(filename: &str) -> bool {
    let base = filename.rsplit('/').next().unwrap_or(filename);
    !filename.is_empty()
        && !filename.starts_with('[')
        && !base.starts_with("linux-vdso")
        && !base.ends_with(".so")
        && !base.contains(".so.")
}
