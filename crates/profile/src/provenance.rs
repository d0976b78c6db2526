//! Provenance of a measurement: this machine's CPU model, core counts, OS, and the UTC date.

use std::time::{SystemTime, UNIX_EPOCH};

/// The machine a table was measured on.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub cpu_model: String,
    #[serde(default)]
    pub physical_cores: Option<usize>,
    #[serde(default)]
    pub logical_cpus: Option<usize>,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub arch: String,
    /// The instruction-set level symbiont's hand kernels ran at (`SYMBIONT_ISA`, else the
    /// highest the CPU has: portable, neon, avx2, avx512, amx). Set by the front end for
    /// symbiont's in-process engines; absent for other engines and in older tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isa: Option<String>,
    /// The level the `gemm` crate ran its kernels at (set and absent as `isa`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gemm_isa: Option<String>,
}

impl Host {
    /// This machine, from /proc/cpuinfo where it exists.
    pub fn detect() -> Host {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Host {
            cpu_model: cpu_model(&info).unwrap_or_else(|| "unknown CPU".into()),
            physical_cores: physical_cores(&info),
            logical_cpus: std::thread::available_parallelism().ok().map(|n| n.get()),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            isa: None,
            gemm_isa: None,
        }
    }
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (k, v) = line.split_once(':')?;
    (k.trim() == name).then(|| v.trim())
}

/// "model name" on x86; "Model" or "Hardware" on ARM boards and phones.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "Hardware", "cpu model"]
        .iter()
        .find_map(|name| {
            cpuinfo
                .lines()
                .find_map(|l| field(l, name))
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        })
}

/// Distinct (physical id, core id) pairs; `None` when the file does not say.
pub fn physical_cores(cpuinfo: &str) -> Option<usize> {
    let mut cores = std::collections::BTreeSet::new();
    let mut package = "0";
    for line in cpuinfo.lines() {
        if let Some(v) = field(line, "physical id") {
            package = v;
        } else if let Some(v) = field(line, "core id") {
            cores.insert((package.to_string(), v.to_string()));
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_string(secs)
}

/// Seconds since the Unix epoch as an RFC 3339 UTC timestamp (Howard Hinnant's civil-from-days).
pub fn utc_string(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_string(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_string(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_string(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn hosts_without_isa_fields_still_load_and_the_fields_round_trip() {
        let old = r#"{"cpu_model": "Intel Xeon", "physical_cores": 2, "logical_cpus": 2, "os": "linux", "arch": "x86_64"}"#;
        let host: Host = serde_json::from_str(old).unwrap();
        assert_eq!(
            (host.isa.as_deref(), host.gemm_isa.as_deref()),
            (None, None)
        );
        // Absent fields stay absent when written again.
        assert!(!serde_json::to_string(&host).unwrap().contains("isa"));
        let with = Host {
            isa: Some("avx2".into()),
            gemm_isa: Some("avx512".into()),
            ..host.clone()
        };
        let text = serde_json::to_string(&with).unwrap();
        assert!(text.contains(r#""isa":"avx2""#) && text.contains(r#""gemm_isa":"avx512""#));
        assert_eq!(serde_json::from_str::<Host>(&text).unwrap(), with);
        assert_ne!(
            with, host,
            "a table measured at another level is another host"
        );
    }

    #[test]
    fn cpuinfo_fields() {
        let x86 = "processor\t: 0\nmodel name\t: Intel Xeon\nphysical id\t: 0\ncore id\t: 0\n\nprocessor\t: 1\nmodel name\t: Intel Xeon\nphysical id\t: 0\ncore id\t: 0\n\nprocessor\t: 2\nphysical id\t: 0\ncore id\t: 1\n";
        assert_eq!(cpu_model(x86).as_deref(), Some("Intel Xeon"));
        assert_eq!(physical_cores(x86), Some(2));
        assert_eq!(
            cpu_model("Hardware\t: Qualcomm SM8550\n").as_deref(),
            Some("Qualcomm SM8550")
        );
        assert_eq!(physical_cores("processor : 0\n"), None);
    }
}
