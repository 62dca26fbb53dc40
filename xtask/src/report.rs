//! `docs/BENCHMARKS.md`, written by `cargo xtask bench` and `cargo xtask scale`: each owns one
//! section between `<!-- NAME:begin -->` and `<!-- NAME:end -->` and replaces only that; the
//! machine and date of each measurement; child processes timed with their peak RSS.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::util::root;

/// The benchmark document.
pub fn benchmarks_path() -> PathBuf {
    root().join("docs/BENCHMARKS.md")
}

/// Replaces section `name` of `docs/BENCHMARKS.md` with `body` (appends it when missing).
pub fn write_section(name: &str, body: &str) -> anyhow::Result<PathBuf> {
    let path = benchmarks_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nWritten by `cargo xtask bench` and `cargo xtask scale`; each command \
         replaces only its own section.\n"
            .to_owned()
    });
    let updated = replace_section(&text, name, body);
    std::fs::write(&path, updated).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn replace_section(text: &str, name: &str, body: &str) -> String {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let section = format!("{begin}\n{}\n{end}", body.trim_end());
    match (text.find(&begin), text.find(&end)) {
        (Some(start), Some(stop)) if start < stop => {
            format!("{}{section}{}", &text[..start], &text[stop + end.len()..])
        }
        _ => format!("{}\n{section}\n", text.trim_end()),
    }
}

/// "CPU model, N cores, M GiB" of this machine (from `/proc`).
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|p| p.1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    format!("{model}, {cores} cores, {:.0} GiB", kib / 1024.0 / 1024.0)
}

/// The vector and matrix flags of this CPU that the kernels choose by (`avx2`, `fma`,
/// `avx512f`, `avx512_bf16`, `amx_bf16`, `amx_tile`), as `/proc/cpuinfo` lists them.
pub fn simd_flags() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags")?.split_once(':').map(|p| p.1))
        .map(|f| f.split_whitespace().collect())
        .unwrap_or_default();
    let wanted = [
        "avx2",
        "fma",
        "avx512f",
        "avx512_bf16",
        "amx_bf16",
        "amx_tile",
    ];
    let present: Vec<&str> = wanted.into_iter().filter(|w| flags.contains(w)).collect();
    format!("flags: {}", present.join(" "))
}

/// Today's date (UTC), `YYYY-MM-DD`.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    date_of(i64::try_from(days).unwrap_or(0))
}

/// The calendar date `days` after 1970-01-01, `YYYY-MM-DD`.
fn date_of(days: i64) -> String {
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A finished child process: wall time, peak resident memory, its standard output.
#[derive(Debug)]
pub struct Measured {
    pub seconds: f64,
    pub peak_rss_bytes: u64,
    pub stdout: Vec<u8>,
}

/// Runs `command` (stderr inherited), measuring its wall time and peak RSS (`wait4`'s
/// `ru_maxrss`); fails when it exits non-zero.
pub fn run_measured(command: &mut Command) -> anyhow::Result<Measured> {
    let described = format!("{command:?}");
    eprintln!("$ {described}");
    let stdout_path = root().join(format!("target/.measured-{}.out", std::process::id()));
    std::fs::create_dir_all(root().join("target"))?;
    let started = Instant::now();
    let child = command
        .stdout(Stdio::from(File::create(&stdout_path)?))
        .spawn()
        .with_context(|| format!("cannot start {described}"))?;
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unwaited child; both pointers are valid for the call.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if waited != pid {
        bail!("wait4 on {described}: {}", std::io::Error::last_os_error());
    }
    let stdout = std::fs::read(&stdout_path)?;
    let _ = std::fs::remove_file(&stdout_path);
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("`{described}` failed (wait status {status})");
    }
    Ok(Measured {
        seconds,
        // Linux reports kilobytes.
        peak_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
        stdout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_in_place_and_appended_once() {
        let text = "# B\n\nintro\n";
        let once = replace_section(text, "scale", "table 1");
        assert_eq!(
            once,
            "# B\n\nintro\n<!-- scale:begin -->\ntable 1\n<!-- scale:end -->\n"
        );
        let with_bench = replace_section(&once, "bench", "b");
        let twice = replace_section(&with_bench, "scale", "table 2\n");
        assert!(twice.contains("<!-- scale:begin -->\ntable 2\n<!-- scale:end -->"));
        assert!(!twice.contains("table 1"));
        assert_eq!(twice.matches("scale:begin").count(), 1);
        assert!(twice.ends_with("<!-- bench:begin -->\nb\n<!-- bench:end -->\n"));
    }

    #[test]
    fn days_become_calendar_dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(19_782), "2024-02-29");
        assert_eq!(date_of(20_783), "2026-11-26");
        assert_eq!(date_of(-1), "1969-12-31");
    }

    #[test]
    fn a_child_is_timed_with_its_peak_rss() {
        let measured = run_measured(Command::new("sh").args(["-c", "echo hi"])).unwrap();
        assert_eq!(measured.stdout, b"hi\n");
        assert!(measured.peak_rss_bytes > 100 * 1024);
        assert!(run_measured(&mut Command::new("false")).is_err());
    }
}
