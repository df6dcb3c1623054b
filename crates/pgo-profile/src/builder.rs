//! Building profiles: every string, function, mapping and location is interned, and ids are only
//! handed out by the builder, so what it builds always passes [`crate::validate`].

use rustc_hash::FxHashMap as HashMap;

use crate::proto::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};

/// A function handed out by a [`ProfileBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionId(u64);
/// A mapping handed out by a [`ProfileBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MappingId(u64);
/// A location handed out by a [`ProfileBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocationId(u64);

/// What identifies a function: display name, linkage name, file and first line.
#[derive(Debug, Clone, Copy, Default)]
pub struct FunctionInfo<'a> {
    pub name: &'a str,
    pub system_name: &'a str,
    pub filename: &'a str,
    pub start_line: i64,
}

/// An object file mapped at `memory_start..memory_limit`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MappingInfo<'a> {
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    pub filename: &'a str,
    pub build_id: &'a str,
    pub has_functions: bool,
    pub has_filenames: bool,
    pub has_line_numbers: bool,
    pub has_inline_frames: bool,
}

/// One source frame of a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LineInfo {
    pub function: FunctionId,
    pub line: i64,
    pub column: i64,
}

/// A sample label: a string, or a number with an optional unit.
#[derive(Debug, Clone, Copy)]
pub enum LabelValue<'a> {
    Str(&'a str),
    Num(i64, &'a str),
}

/// Why a sample was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("a sample has {got} values, but the profile has {want} sample types")]
    ValueCount { got: usize, want: usize },
    #[error("a sample has a negative value {0}")]
    NegativeValue(i64),
}

/// Builds a valid [`Profile`]. Identical samples (same stack and labels) are summed.
pub struct ProfileBuilder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<Function, FunctionId>,
    mappings: HashMap<Mapping, MappingId>,
    locations: HashMap<(u64, u64, Vec<Line>), LocationId>,
    samples: HashMap<(Vec<u64>, Vec<Label>), usize>,
}

impl ProfileBuilder {
    /// A builder for a profile whose samples carry one value per `(type, unit)`.
    pub fn new(sample_types: &[(&str, &str)]) -> Self {
        let mut b = ProfileBuilder {
            profile: Profile::default(),
            strings: HashMap::default(),
            functions: HashMap::default(),
            mappings: HashMap::default(),
            locations: HashMap::default(),
            samples: HashMap::default(),
        };
        b.string("");
        b.profile.sample_type = sample_types
            .iter()
            .map(|(t, u)| b.value_type(t, u))
            .collect();
        b
    }

    /// Interns `s` and returns its string-table index.
    pub fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn value_type(&mut self, r#type: &str, unit: &str) -> ValueType {
        ValueType {
            r#type: self.string(r#type),
            unit: self.string(unit),
        }
    }

    /// Sets what one sampling period is, e.g. `("cpu", "nanoseconds", 1_001_001)`.
    pub fn set_period(&mut self, r#type: &str, unit: &str, period: i64) {
        self.profile.period_type = Some(self.value_type(r#type, unit));
        self.profile.period = period.max(0);
    }

    pub fn set_time_nanos(&mut self, t: i64) {
        self.profile.time_nanos = t;
    }

    pub fn set_duration_nanos(&mut self, d: i64) {
        self.profile.duration_nanos = d.max(0);
    }

    /// Sets the sample type tools show by default (by type name); ignored if there is none.
    pub fn set_default_sample_type(&mut self, r#type: &str) {
        self.profile.default_sample_type = self.string(r#type);
    }

    /// Adds a free-form comment, once.
    pub fn add_comment(&mut self, comment: &str) {
        let i = self.string(comment);
        if !self.profile.comment.contains(&i) {
            self.profile.comment.push(i);
        }
    }

    /// Sets the regex of frames pprof drops from the display (with their callees).
    pub fn set_drop_frames(&mut self, regex: &str) {
        self.profile.drop_frames = self.string(regex);
    }

    /// Sets the regex of frames pprof keeps even when they match `drop_frames`.
    pub fn set_keep_frames(&mut self, regex: &str) {
        self.profile.keep_frames = self.string(regex);
    }

    pub fn function(&mut self, f: FunctionInfo<'_>) -> FunctionId {
        let key = Function {
            id: 0,
            name: self.string(f.name),
            system_name: self.string(f.system_name),
            filename: self.string(f.filename),
            start_line: f.start_line,
        };
        if let Some(&id) = self.functions.get(&key) {
            return id;
        }
        let id = FunctionId(self.profile.function.len() as u64 + 1);
        self.profile.function.push(Function {
            id: id.0,
            ..key.clone()
        });
        self.functions.insert(key, id);
        id
    }

    pub fn mapping(&mut self, m: MappingInfo<'_>) -> MappingId {
        let key = Mapping {
            id: 0,
            memory_start: m.memory_start,
            memory_limit: m.memory_limit.max(m.memory_start),
            file_offset: m.file_offset,
            filename: self.string(m.filename),
            build_id: self.string(m.build_id),
            has_functions: m.has_functions,
            has_filenames: m.has_filenames,
            has_line_numbers: m.has_line_numbers,
            has_inline_frames: m.has_inline_frames,
        };
        if let Some(&id) = self.mappings.get(&key) {
            return id;
        }
        let id = MappingId(self.profile.mapping.len() as u64 + 1);
        self.profile.mapping.push(Mapping {
            id: id.0,
            ..key.clone()
        });
        self.mappings.insert(key, id);
        id
    }

    /// A location at `address` in `mapping`, with its source frames innermost first.
    pub fn location(
        &mut self,
        mapping: Option<MappingId>,
        address: u64,
        lines: &[LineInfo],
    ) -> LocationId {
        let mapping_id = mapping.map_or(0, |m| m.0);
        let line: Vec<Line> = lines
            .iter()
            .map(|l| Line {
                function_id: l.function.0,
                line: l.line,
                column: l.column,
            })
            .collect();
        let key = (mapping_id, address, line);
        if let Some(&id) = self.locations.get(&key) {
            return id;
        }
        let id = LocationId(self.profile.location.len() as u64 + 1);
        self.profile.location.push(Location {
            id: id.0,
            mapping_id,
            address,
            line: key.2.clone(),
            is_folded: false,
        });
        self.locations.insert(key, id);
        id
    }

    /// Adds `values` (one per sample type) for the stack `stack`, leaf first.
    pub fn add_sample(
        &mut self,
        stack: &[LocationId],
        values: &[i64],
        labels: &[(&str, LabelValue<'_>)],
    ) -> Result<(), BuildError> {
        let want = self.profile.sample_type.len();
        if values.len() != want {
            return Err(BuildError::ValueCount {
                got: values.len(),
                want,
            });
        }
        if let Some(&v) = values.iter().find(|v| **v < 0) {
            return Err(BuildError::NegativeValue(v));
        }
        let labels: Vec<Label> = labels
            .iter()
            .map(|(key, value)| {
                let key = self.string(key);
                match *value {
                    LabelValue::Str(s) => Label {
                        key,
                        str: self.string(s),
                        ..Label::default()
                    },
                    LabelValue::Num(n, unit) => Label {
                        key,
                        num: n,
                        num_unit: self.string(unit),
                        ..Label::default()
                    },
                }
            })
            .collect();
        let key = (stack.iter().map(|l| l.0).collect::<Vec<_>>(), labels);
        match self.samples.get(&key) {
            Some(&i) => {
                for (acc, v) in self.profile.sample[i].value.iter_mut().zip(values) {
                    *acc = acc.saturating_add(*v);
                }
            }
            None => {
                self.samples.insert(key.clone(), self.profile.sample.len());
                self.profile.sample.push(Sample {
                    location_id: key.0,
                    value: values.to_vec(),
                    label: key.1,
                });
            }
        }
        Ok(())
    }

    /// Number of distinct samples so far.
    pub fn sample_count(&self) -> usize {
        self.profile.sample.len()
    }

    pub fn build(self) -> Profile {
        self.profile
    }
}
