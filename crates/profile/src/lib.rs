//! Latency profiler: engines to time, sweeps, latency tables, frontier analysis and plots.
