//! This machine's memory, for refusing sizes that cannot fit before allocating them (an
//! allocation beyond memory aborts the process; a size overflow panics).

/// Total physical memory in bytes (`/proc/meminfo` MemTotal), `None` where unknown.
pub fn total_bytes() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Where the total is unknown: 1 TiB, beyond any machine this runs on today.
const UNKNOWN_TOTAL: u128 = 1 << 40;

/// `Err` naming `what` and both sizes when `bytes` exceed this machine's memory.
pub fn check_fits(what: &str, bytes: u128) -> Result<(), String> {
    let total = total_bytes().unwrap_or(UNKNOWN_TOTAL);
    if bytes <= total {
        return Ok(());
    }
    let gb = |b: u128| b as f64 / 1e9;
    Err(format!(
        "{what} needs at least {:.1} GB, more than this machine's {:.1} GB of memory",
        gb(bytes),
        gb(total)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sizes_fit_and_absurd_ones_are_named() {
        assert!(check_fits("a tensor", 1 << 20).is_ok());
        let err = check_fits("hidden 1000000000", u128::MAX).unwrap_err();
        assert!(
            err.contains("hidden 1000000000") && err.contains("GB"),
            "{err}"
        );
    }
}
