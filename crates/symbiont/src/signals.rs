//! SIGINT (Ctrl-C) and SIGTERM (`kill`, job schedulers, container stops) ask a long command —
//! `train`, `compress`, `profile` — to stop cleanly: the first one sets [`INTERRUPTED`], which the
//! command checks between steps to save its checkpoint or table and exit with 128 + the signal
//! (130 for SIGINT, 143 for SIGTERM); a second one exits at once.

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Set by the first SIGINT or SIGTERM.
pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The signal that set [`INTERRUPTED`].
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Starts the thread that waits for the signals. `first` says what the command does now (e.g.
/// "saving a checkpoint after this step"), `second` what a second signal loses.
pub(crate) fn install(first: &'static str, second: &'static str) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot install the SIGINT/SIGTERM handler: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let name = if sig == SIGTERM { "SIGTERM" } else { "Ctrl-C" };
                if INTERRUPTED.swap(true, Ordering::SeqCst) {
                    eprintln!("\nsecond {name}: exiting {second}");
                    std::process::exit(128 + sig);
                }
                SIGNAL.store(sig, Ordering::SeqCst);
                eprintln!("\n{name}: {first} (send it again to quit at once)");
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

/// The exit code of a command stopped by a signal: 128 + its number (130 when none was seen,
/// as for an interruption noticed some other way).
pub(crate) fn exit_code() -> u8 {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => 130,
        sig => (128 + sig).clamp(0, 255) as u8,
    }
}
