use pgo_profile::ProfileView;
use pgo_profile::import::folded;

/// How to draw a flamegraph.
#[derive(Debug, Clone, Default)]
pub struct FlameOptions {
    /// Shown at the top of the graph; inferno's default title when `None`.
    pub title: Option<String>,
    /// Draw callers above callees (an "icicle" of callers, rooted at the leaf functions).
    pub reverse: bool,
    /// For differential graphs: compare absolute values instead of scaling the base profile to
    /// the new one's total. Scaling is the default because two recordings rarely last as long.
    pub absolute: bool,
    /// Calls to mark: (caller name, callee name, label). The callee's frame under that caller
    /// is drawn as `callee [label]`, e.g. the decisions of `pgo analyze`.
    pub marks: Vec<(String, String, String)>,
}

impl FlameOptions {
    fn folded(&self, view: &ProfileView<'_>, index: usize) -> String {
        if self.marks.is_empty() {
            return folded::write(view, index);
        }
        let marks: std::collections::HashMap<(&str, &str), &str> = self
            .marks
            .iter()
            .map(|(a, b, l)| ((a.as_str(), b.as_str()), l.as_str()))
            .collect();
        let mark = |caller: &str, callee: &str| marks.get(&(caller, callee)).map(|l| l.to_string());
        folded::render(folded::stacks_marked(view, index, &mark))
    }
}

fn inferno_options<'a>(opts: &FlameOptions, unit: &str) -> inferno::flamegraph::Options<'a> {
    let mut o = inferno::flamegraph::Options::default();
    if let Some(t) = &opts.title {
        o.title = t.clone();
    }
    o.reverse_stack_order = opts.reverse;
    o.count_name = match unit {
        "count" => "samples".to_string(),
        u => u.to_string(),
    };
    // The same function gets the same colour in every graph, so two graphs can be compared.
    o.deterministic = true;
    o
}

fn draw(lines: &str, mut o: inferno::flamegraph::Options<'_>) -> Result<Vec<u8>, String> {
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut o, lines.lines(), &mut svg)
        .map_err(|e| format!("cannot draw the flamegraph: {e}"))?;
    Ok(svg)
}

/// An SVG flamegraph of sample value `index`, one frame per function on the stack.
pub fn flamegraph(
    view: &ProfileView<'_>,
    index: usize,
    opts: &FlameOptions,
) -> Result<Vec<u8>, String> {
    let lines = opts.folded(view, index);
    if lines.is_empty() {
        return Err("no samples with a nonzero value to draw".into());
    }
    draw(&lines, inferno_options(opts, view.unit(index)))
}

/// A differential flamegraph: the shape of `new`, each frame coloured by how its own weight
/// changed from `base` (red grew, blue shrank).
pub fn diff_flamegraph(
    base: (&ProfileView<'_>, usize),
    new: (&ProfileView<'_>, usize),
    opts: &FlameOptions,
) -> Result<Vec<u8>, String> {
    let before = opts.folded(base.0, base.1);
    let after = opts.folded(new.0, new.1);
    if after.is_empty() {
        return Err("no samples with a nonzero value to draw".into());
    }
    let mut lines = Vec::new();
    let diff_opts = inferno::differential::Options {
        normalize: !opts.absolute,
        strip_hex: false,
    };
    inferno::differential::from_readers(diff_opts, before.as_bytes(), after.as_bytes(), &mut lines)
        .map_err(|e| format!("cannot compare the profiles: {e}"))?;
    let lines = String::from_utf8(lines).map_err(|e| e.to_string())?;
    draw(&lines, inferno_options(opts, new.0.unit(new.1)))
}
