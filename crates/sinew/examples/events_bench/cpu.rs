//! CPU per event of the processes on a run's path, from `/proc`.

/// The CPU time of the processes on a run's path, read when it starts, so
/// each one's CPU per acknowledged event can be told at the end: what bounds
/// a run on a machine they share.
pub(crate) struct CpuMeter {
    processes: Vec<(&'static str, u32, u64)>,
}

impl CpuMeter {
    /// Starts counting for `processes` (name, pid) and this load tool.
    pub(crate) fn start(processes: &[(&'static str, u32)]) -> Self {
        let load = [("load", std::process::id())];
        let processes = processes
            .iter()
            .chain(&load)
            .map(|&(name, pid)| (name, pid, cpu_ticks(pid)))
            .collect();
        Self { processes }
    }

    /// Microseconds of CPU per event of each process, as a JSON object.
    pub(crate) fn per_event(&self, acked: usize) -> serde_json::Value {
        let mut cpu = serde_json::Map::new();
        for &(name, pid, before) in &self.processes {
            // Clock ticks are 1/100 s (USER_HZ) on Linux.
            let us = cpu_ticks(pid).saturating_sub(before) as f64 * 1e4 / acked.max(1) as f64;
            cpu.insert(name.to_owned(), us.into());
        }
        cpu.into()
    }
}

/// User plus system CPU clock ticks `pid` has used (`/proc/PID/stat`).
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at `) `.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or("", |(_, rest)| rest)
        .split(' ')
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime: the 14th and 15th fields, 12th and 13th after `) `.
    field(11) + field(12)
}
