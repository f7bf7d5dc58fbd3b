//! What the benchmarks share: the `funnelfold` binary they drive, and what they read
//! about its process from /proc (Linux) while it runs.

/// The `funnelfold` binary to drive: the one built with the benchmark, or the one
/// `FUNNELFOLD_BENCH_BIN` names (another build's, to compare two builds on one machine
/// at one time).
pub fn bin() -> String {
    std::env::var("FUNNELFOLD_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_funnelfold").into())
}

/// Peak resident set of a process, from /proc (kB), while it lives.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// CPU time (user + system) a process has used so far, from /proc (Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces);
    // utime and stime are the 14th and 15th fields, in clock ticks (100 a second).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The machine's load average over the last minute, to print beside the numbers.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
