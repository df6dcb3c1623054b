//! Folded stacks, one `root;caller;leaf COUNT` line per stack, as FlameGraph's stackcollapse
//! scripts and inferno write them.

use std::collections::BTreeMap;

use crate::builder::{FunctionInfo, LineInfo, ProfileBuilder};
use crate::proto::Profile;
use crate::view::ProfileView;

/// Parses folded stacks into a profile with one sample type, `samples/count`.
///
/// Errors name the line (counted from 1), e.g. `line 3: expected "frame;frame;... COUNT"`.
pub fn parse(text: &str) -> Result<Profile, String> {
    let mut b = ProfileBuilder::new(&[("samples", "count")]);
    let mut stack = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let bad = || {
            let shown: String = line.chars().take(60).collect();
            format!(
                "line {}: expected \"frame;frame;... COUNT\", found {shown:?}",
                n + 1
            )
        };
        let (frames, count) = line.rsplit_once(char::is_whitespace).ok_or_else(bad)?;
        let count: i64 = count.parse().map_err(|_| bad())?;
        if count < 0 {
            return Err(format!("line {}: negative count {count}", n + 1));
        }
        let frames = frames.trim_end();
        if frames
            .rsplit_once(char::is_whitespace)
            .is_some_and(|(_, c)| c.parse::<i64>().is_ok())
        {
            return Err(format!(
                "line {}: two counts; this looks like a differential (base/new) folded file, \
                 convert each side separately",
                n + 1
            ));
        }
        if frames.is_empty() {
            return Err(bad());
        }
        stack.clear();
        // Folded stacks are root first; pprof stacks are leaf first.
        for name in frames.split(';').rev() {
            let f = b.function(FunctionInfo {
                name,
                system_name: name,
                ..FunctionInfo::default()
            });
            stack.push(b.location(
                None,
                0,
                &[LineInfo {
                    function: f,
                    line: 0,
                    column: 0,
                }],
            ));
        }
        b.add_sample(&stack, &[count], &[])
            .map_err(|e| format!("line {}: {e}", n + 1))?;
    }
    if b.sample_count() == 0 {
        return Err("no stacks found (empty folded file)".into());
    }
    Ok(b.build())
}

/// The profile's stacks in folded form, root first, summed per stack, for sample value
/// `index`. Sorted, so the output is deterministic. `;` inside names (as in Rust's `[u8; 4]`)
/// becomes `:` so it cannot split a frame.
pub fn stacks(view: &ProfileView<'_>, index: usize) -> BTreeMap<String, i64> {
    stacks_marked(view, index, &|_, _| None)
}

/// [`stacks`], with a label appended to a frame (as ` [label]`) wherever `mark(caller, callee)`
/// gives one: how flamegraphs show which calls a decision is about.
pub fn stacks_marked(
    view: &ProfileView<'_>,
    index: usize,
    mark: &dyn Fn(&str, &str) -> Option<String>,
) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    let mut names: Vec<String> = Vec::new();
    for s in &view.profile.sample {
        let v = s.value[index];
        if v == 0 {
            continue;
        }
        names.clear();
        names.extend(
            view.frames(s)
                .map(|f| view.frame_name(&f).replace(';', ":")),
        );
        if names.is_empty() {
            names.push("[no stack]".into());
        }
        names.reverse();
        // Walk from the leaf up, so that each call is looked up by its caller's own name, not
        // one already labeled (a chain of decided calls marks every link).
        for i in (1..names.len()).rev() {
            if let Some(label) = mark(&names[i - 1], &names[i]) {
                names[i] = format!("{} [{label}]", names[i]);
            }
        }
        *out.entry(names.join(";")).or_default() += v;
    }
    out
}

/// Renders [`stacks`] as folded text, one `stack COUNT` line each.
pub fn write(view: &ProfileView<'_>, index: usize) -> String {
    render(stacks(view, index))
}

/// Folded text, one `stack COUNT` line per entry.
pub fn render(stacks: BTreeMap<String, i64>) -> String {
    let mut text = String::new();
    for (stack, v) in stacks {
        text.push_str(&stack);
        text.push(' ');
        text.push_str(&v.to_string());
        text.push('\n');
    }
    text
}
