//! Sample filters in the manner of pprof's `-focus` and `-ignore`.

use regex::Regex;

use crate::proto::Profile;
use crate::view::ProfileView;

/// Which samples to keep, by the names of the functions on their stacks.
#[derive(Debug, Clone, Default)]
pub struct SampleFilter {
    /// Keep only samples with a frame whose name matches (anywhere in the name).
    pub focus: Option<Regex>,
    /// Drop samples with a frame whose name matches.
    pub ignore: Option<Regex>,
}

impl SampleFilter {
    pub fn is_empty(&self) -> bool {
        self.focus.is_none() && self.ignore.is_none()
    }

    /// Whether a sample with these frame names passes the filter.
    pub fn keeps<'n>(&self, mut names: impl Iterator<Item = impl AsRef<str> + 'n>) -> bool {
        if self.is_empty() {
            return true;
        }
        let mut focused = self.focus.is_none();
        for name in names.by_ref() {
            let name = name.as_ref();
            if self.ignore.as_ref().is_some_and(|r| r.is_match(name)) {
                return false;
            }
            if !focused && self.focus.as_ref().is_some_and(|r| r.is_match(name)) {
                focused = true;
            }
        }
        focused
    }

    /// A copy of `profile` with only the samples that pass. Tables are left as they are (entries
    /// no sample uses are harmless; [`crate::merge`] compacts them).
    pub fn apply(&self, profile: &Profile) -> Profile {
        if self.is_empty() {
            return profile.clone();
        }
        let view = ProfileView::new(profile);
        let mut out = profile.clone();
        out.sample = profile
            .sample
            .iter()
            .filter(|s| self.keeps(view.frames(s).map(|f| view.frame_name(&f))))
            .cloned()
            .collect();
        out
    }
}
