//! Background work runs at a lower CPU priority than the intake.
//!
//! On one machine the pipeline stages share the CPU with ingestion. A client waits for its
//! acknowledgement; nobody waits for a stage, which processes whatever the log holds whenever it
//! runs. So on Linux the threads doing stage work (the pipeline's Tokio runtime and the SQLite
//! worker threads of the shared pool) run at a higher nice value than the HTTP workers and the
//! log writer's thread: when the CPU is short the intake goes first, and the stages
//! take every cycle the intake leaves and catch up after a burst. Nice values only matter when the
//! CPU is contended; on an idle machine the stages run as fast as before.
//!
//! Elsewhere than Linux these are no-ops.

use std::sync::atomic::{AtomicI32, Ordering};

/// The default nice value of background threads (0 is the default of every thread; a higher
/// value yields to a lower one). `TOUCHPOINT_BACKGROUND_NICE` sets it.
pub const NICE: i32 = 10;

/// The nice value background threads get: a process-wide setting, like the nice value itself.
/// 0 (nothing lowered) until the process opts in: `touchpoint serve` sets it from its settings.
static BACKGROUND_NICE: AtomicI32 = AtomicI32::new(0);

/// Sets the nice value background threads get from now on (0: the intake's own priority).
pub fn set_nice(nice: i32) {
    BACKGROUND_NICE.store(nice.clamp(0, 19), Ordering::Relaxed);
}

fn nice() -> i32 {
    BACKGROUND_NICE.load(Ordering::Relaxed)
}

/// Thread names of the shared pool's SQLite workers, whose priority is lowered.
pub const SQLITE_THREADS: &str = "tp-sqlite-bg";

/// Lowers the calling thread's CPU priority to the background nice value.
pub fn lower_current_thread() {
    #[cfg(target_os = "linux")]
    {
        // On Linux a nice value belongs to a thread; `None` names the calling one.
        let current = rustix::process::getpriority_process(None).unwrap_or(0);
        if current < nice()
            && let Err(e) = rustix::process::setpriority_process(None, nice())
        {
            tracing::debug!(error = %e, "could not lower a background thread's priority");
        }
    }
}

/// Lowers to the background nice value every thread of this process whose name starts with
/// `prefix` (threads another library starts, such as sqlx's SQLite workers). Idempotent; a thread
/// already at a higher value keeps it.
pub fn lower_threads_named(prefix: &str) {
    #[cfg(target_os = "linux")]
    {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return;
        };
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<i32>().ok())
            else {
                continue;
            };
            let named = std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.starts_with(prefix));
            if !named {
                continue;
            }
            let pid = rustix::process::Pid::from_raw(tid);
            let current = rustix::process::getpriority_process(pid).unwrap_or(0);
            if current < nice()
                && let Err(e) = rustix::process::setpriority_process(pid, nice())
            {
                tracing::debug!(error = %e, tid, "could not lower a worker thread's priority");
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = prefix;
}

/// How many threads the stages' runtime gets: `setting` when it is not 0; else one on SQLite, one
/// per CPU on PostgreSQL. On SQLite every stage writes the one state file in turn, so a second
/// thread adds no throughput, only hand-offs between the two: one thread used 13 % less CPU per
/// message catching up a backlog (BENCHMARKS.md, "Ingestion"). On PostgreSQL the stages (one per
/// log partition, if so configured) write at once, and each can use a CPU.
pub fn threads(setting: u16, sqlite: bool, cpus: usize) -> usize {
    match (setting, sqlite) {
        (0, true) => 1,
        (0, false) => cpus.max(1),
        (n, _) => usize::from(n),
    }
}

/// The runtime the pipeline stages run on: its threads run at the background nice value.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("tp-pipeline")
        .on_thread_start(lower_current_thread)
        .enable_all()
        .build()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_current_thread() -> i32 {
        rustix::process::getpriority_process(None).unwrap()
    }

    #[test]
    fn stages_get_one_thread_on_sqlite_one_per_cpu_on_postgres_unless_told() {
        assert_eq!(threads(0, true, 8), 1);
        assert_eq!(threads(0, false, 8), 8);
        assert_eq!(threads(0, false, 0), 1);
        assert_eq!(threads(3, true, 8), 3);
        assert_eq!(threads(3, false, 8), 3);
    }

    #[test]
    fn a_background_runtime_runs_its_tasks_at_the_background_nice_value() {
        set_nice(NICE);
        let rt = runtime(1).unwrap();
        let nice = rt.block_on(async { tokio::spawn(async { nice_of_current_thread() }).await });
        // At least: a process started at a higher nice value keeps it (it cannot be raised back).
        assert!(nice.unwrap() >= NICE);
    }

    #[test]
    fn threads_are_lowered_by_name_and_others_are_left_alone() {
        set_nice(NICE);
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let named = std::thread::Builder::new()
            .name(format!("{SQLITE_THREADS}-t"))
            .spawn(move || {
                tx.send(()).unwrap();
                done_rx.recv().unwrap();
                nice_of_current_thread()
            })
            .unwrap();
        rx.recv().unwrap();
        let before = nice_of_current_thread();
        assert!(
            before < NICE,
            "this test needs to start below the background value"
        );
        lower_threads_named(SQLITE_THREADS);
        done_tx.send(()).unwrap();
        assert!(named.join().unwrap() >= NICE);
        assert_eq!(
            nice_of_current_thread(),
            before,
            "the caller keeps its priority"
        );
    }
}
