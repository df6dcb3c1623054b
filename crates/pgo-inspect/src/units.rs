/// A sample value in the profile's unit, shortened the way pprof prints it (`1.50s`, `12MB`).
pub fn format_value(v: i64, unit: &str) -> String {
    let f = v as f64;
    let scaled = |steps: &[(f64, &str)]| {
        let (div, suffix) = steps
            .iter()
            .rev()
            .find(|(div, _)| f.abs() >= *div)
            .copied()
            .unwrap_or(steps[0]);
        let x = f / div;
        if x == x.trunc() {
            format!("{x:.0}{suffix}")
        } else {
            format!("{x:.2}{suffix}")
        }
    };
    match unit {
        "nanoseconds" | "ns" => scaled(&[(1.0, "ns"), (1e3, "us"), (1e6, "ms"), (1e9, "s")]),
        "microseconds" | "us" => scaled(&[(1.0, "us"), (1e3, "ms"), (1e6, "s")]),
        "milliseconds" | "ms" => scaled(&[(1.0, "ms"), (1e3, "s")]),
        "bytes" | "B" => scaled(&[
            (1.0, "B"),
            (1024.0, "kB"),
            (1048576.0, "MB"),
            (1073741824.0, "GB"),
        ]),
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::format_value;

    #[test]
    fn scales_time_and_bytes() {
        assert_eq!(format_value(1_500_000_000, "nanoseconds"), "1.50s");
        assert_eq!(format_value(10_000_000, "nanoseconds"), "10ms");
        assert_eq!(format_value(0, "nanoseconds"), "0ns");
        assert_eq!(format_value(2048, "bytes"), "2kB");
        assert_eq!(format_value(42, "count"), "42");
    }
}
