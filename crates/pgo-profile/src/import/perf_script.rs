//! `perf script` text output (the default fields, with or without `-g` callchains).
//!
//! A sample is a header line (`comm pid/tid [cpu] time: period event:`) followed by indented
//! frame lines (`addr symbol+off (dso)`, leaf first) and a blank line. Without callchains the
//! header itself ends with the one frame.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;

use crate::builder::{FunctionInfo, LabelValue, LineInfo, MappingInfo, ProfileBuilder};
use crate::proto::Profile;

struct Frame<'t> {
    address: u64,
    symbol: Option<&'t str>,
    dso: &'t str,
}

struct PerfSample<'t> {
    comm: &'t str,
    pid: i64,
    tid: i64,
    time: Option<f64>,
    period: Option<i64>,
    event: &'t str,
    frames: Vec<Frame<'t>>,
}

fn header_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^(?P<comm>.+?)\s+(?P<pid>-?\d+)(?:/(?P<tid>-?\d+))?\s+(?:\[\d+\]\s+)?(?P<time>\d+\.\d+):\s+(?:(?P<period>\d+)\s+)?(?P<event>[^\s:]+)(?::[a-zA-Z]*)*:(?P<rest>.*)$",
        )
        .expect("valid regex")
    })
}

fn frame_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^\s*(?P<addr>[0-9a-fA-F]+)\s+(?P<sym>.*?)\s*(?:\((?P<dso>[^()]*)\))?\s*$")
            .expect("valid regex")
    })
}

fn parse_frame(line: &str) -> Option<Frame<'_>> {
    let c = frame_re().captures(line)?;
    let address = u64::from_str_radix(c.name("addr")?.as_str(), 16).ok()?;
    let sym = c.name("sym").map_or("", |m| m.as_str());
    // `main+0x1a` -> `main`; perf writes `[unknown]` for what it could not symbolize.
    let sym = match sym.rfind("+0x") {
        Some(i) if sym[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) => &sym[..i],
        _ => sym,
    };
    let symbol = (!sym.is_empty() && sym != "[unknown]").then_some(sym);
    let dso = c.name("dso").map_or("", |m| m.as_str());
    let dso = if dso == "unknown" || dso == "[unknown]" {
        ""
    } else {
        dso
    };
    if address == 0 && symbol.is_none() {
        // perf ends some callchains with a `0 [unknown] ([unknown])` entry that is no frame.
        return None;
    }
    Some(Frame {
        address,
        symbol,
        dso,
    })
}

fn parse_samples(text: &str) -> Result<Vec<PerfSample<'_>>, String> {
    let mut samples: Vec<PerfSample<'_>> = Vec::new();
    let mut in_sample = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            in_sample = false;
            continue;
        }
        if line.starts_with('#') && !in_sample {
            continue; // perf's header comments (perf script --header)
        }
        let indented = line.starts_with(char::is_whitespace);
        if indented && in_sample {
            // Lines that are not frames (e.g. srcline output) are skipped.
            if let Some(f) = parse_frame(line) {
                samples.last_mut().expect("in a sample").frames.push(f);
            }
            continue;
        }
        let c = header_re().captures(line).ok_or_else(|| {
            let shown: String = line.chars().take(80).collect();
            format!(
                "line {}: not a `perf script` sample header (expected \"comm pid/tid [cpu] time: period event:\"), found {shown:?}",
                n + 1
            )
        })?;
        let pid: i64 = c["pid"].parse().unwrap_or(0);
        let mut sample = PerfSample {
            comm: c.name("comm").map_or("", |m| m.as_str().trim()),
            pid,
            tid: c
                .name("tid")
                .and_then(|m| m.as_str().parse().ok())
                .unwrap_or(pid),
            time: c.name("time").and_then(|m| m.as_str().parse().ok()),
            period: c.name("period").and_then(|m| m.as_str().parse().ok()),
            event: c.name("event").map_or("", |m| m.as_str()),
            frames: Vec::new(),
        };
        let rest = c.name("rest").map_or("", |m| m.as_str());
        if let Some(f) = parse_frame(rest).filter(|_| !rest.trim().is_empty()) {
            sample.frames.push(f);
        }
        samples.push(sample);
        in_sample = true;
    }
    Ok(samples)
}

/// Parses `perf script` output into a profile: sample types `samples/count` and, when perf
/// printed periods, `cpu/nanoseconds` for cpu-clock/task-clock (else `EVENT/events`). Each DSO
/// becomes a mapping spanning the addresses seen in it; samples carry `comm`, `pid` and `tid`
/// labels.
pub fn parse(text: &str) -> Result<Profile, String> {
    let samples = parse_samples(text)?;
    let Some(first) = samples.first() else {
        return Err("no samples found (empty perf script output)".into());
    };
    let event = first.event;
    if let Some((i, s)) = samples.iter().enumerate().find(|(_, s)| s.event != event) {
        return Err(format!(
            "sample {} is a {} event, but the first is {event}; record one event per file",
            i + 1,
            s.event
        ));
    }
    let has_period = samples.iter().all(|s| s.period.is_some());
    let (ptype, punit) = match event {
        "cpu-clock" | "task-clock" => ("cpu", "nanoseconds"),
        _ => (event, "events"),
    };
    let mut types = vec![("samples", "count")];
    if has_period {
        types.push((ptype, punit));
    }
    let mut b = ProfileBuilder::new(&types);
    if has_period {
        let mut periods: Vec<i64> = samples.iter().filter_map(|s| s.period).collect();
        periods.sort_unstable();
        b.set_period(ptype, punit, periods[periods.len() / 2]);
    }
    let times: Vec<f64> = samples.iter().filter_map(|s| s.time).collect();
    if let (Some(lo), Some(hi)) = (
        times.iter().copied().reduce(f64::min),
        times.iter().copied().reduce(f64::max),
    ) {
        b.set_duration_nanos(((hi - lo) * 1e9).round() as i64);
    }
    b.add_comment(&format!("imported from perf script ({event} event)"));

    // Mappings span the addresses seen in each DSO, since perf script does not print ranges.
    let mut ranges: HashMap<&str, (u64, u64)> = HashMap::new();
    for f in samples.iter().flat_map(|s| &s.frames) {
        if f.dso.is_empty() {
            continue;
        }
        let r = ranges.entry(f.dso).or_insert((f.address, f.address));
        r.0 = r.0.min(f.address);
        r.1 = r.1.max(f.address);
    }
    let mut dsos: Vec<_> = ranges.into_iter().collect();
    dsos.sort();
    let mut mappings = HashMap::new();
    for (dso, (lo, hi)) in dsos {
        let id = b.mapping(MappingInfo {
            memory_start: lo,
            memory_limit: hi + 1,
            filename: dso,
            has_functions: true,
            ..MappingInfo::default()
        });
        mappings.insert(dso, id);
    }

    let mut stack = Vec::new();
    for s in &samples {
        stack.clear();
        for f in &s.frames {
            let lines: Vec<LineInfo> = f
                .symbol
                .map(|name| {
                    let function = b.function(FunctionInfo {
                        name,
                        system_name: name,
                        ..FunctionInfo::default()
                    });
                    LineInfo {
                        function,
                        line: 0,
                        column: 0,
                    }
                })
                .into_iter()
                .collect();
            stack.push(b.location(mappings.get(f.dso).copied(), f.address, &lines));
        }
        let mut values = vec![1];
        if has_period {
            values.push(s.period.unwrap_or(0));
        }
        let labels = [
            ("comm", LabelValue::Str(s.comm)),
            ("pid", LabelValue::Num(s.pid, "")),
            ("tid", LabelValue::Num(s.tid, "")),
        ];
        b.add_sample(&stack, &values, &labels)
            .map_err(|e| e.to_string())?;
    }
    Ok(b.build())
}
