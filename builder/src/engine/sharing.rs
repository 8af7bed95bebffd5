//! What concurrent builds in one process share: job slots (`--jobs` across every build, so a Compose project of
//! many services runs no more stages at once than asked) and the cache keys of steps being built right now (a
//! step whose key another build or stage is already executing waits for it and then reuses its result, so
//! identical steps run once).

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};

/// Stage slots when `--jobs` is not given: four per CPU. Stages are often not CPU-bound, and even CPU-bound ones
/// finish sooner when the kernel shares the CPUs among all of them than in rounds of one per CPU, where the last
/// stage of a round runs while the other CPUs idle (multistage-parallel: 3.7 s against 3.9 s). BuildKit does not
/// limit stages at all; the bound keeps memory in check for Dockerfiles and projects with very many stages.
pub fn default_jobs() -> usize {
    4 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A counting semaphore of stage slots.
#[derive(Debug)]
pub struct JobSlots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl JobSlots {
    pub fn new(jobs: usize) -> Arc<JobSlots> {
        Arc::new(JobSlots { free: Mutex::new(jobs.max(1)), freed: Condvar::new() })
    }

    /// Take a slot if one is free.
    pub fn try_acquire(&self) -> bool {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if *free == 0 {
            return false;
        }
        *free -= 1;
        true
    }

    /// Take a slot, waiting for one.
    pub fn acquire(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
    }

    pub fn release(&self) {
        *self.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.freed.notify_one();
    }
}

/// The step cache keys being executed now.
#[derive(Debug, Default)]
pub struct StepLocks {
    busy: Mutex<HashSet<String>>,
    done: Condvar,
}

/// Holds a step key until dropped.
#[derive(Debug)]
pub struct StepGuard {
    locks: Arc<StepLocks>,
    key: String,
}

impl StepLocks {
    /// Claim `key`, waiting while another build or stage executes it.
    pub fn claim(locks: &Arc<StepLocks>, key: &str) -> StepGuard {
        let mut busy = locks.busy.lock().unwrap_or_else(|p| p.into_inner());
        while busy.contains(key) {
            busy = locks.done.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        busy.insert(key.to_string());
        StepGuard { locks: locks.clone(), key: key.to_string() }
    }
}

impl Drop for StepGuard {
    fn drop(&mut self) {
        self.locks.busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
        self.locks.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_key_waits_and_slots_count() {
        let locks = Arc::new(StepLocks::default());
        let first = StepLocks::claim(&locks, "k");
        let waited = std::thread::scope(|s| {
            let h = s.spawn(|| {
                let started = std::time::Instant::now();
                let _g = StepLocks::claim(&locks, "k");
                started.elapsed()
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(first);
            h.join().unwrap()
        });
        assert!(waited >= std::time::Duration::from_millis(40));
        let _other = StepLocks::claim(&locks, "other");
        let slots = JobSlots::new(1);
        assert!(slots.try_acquire() && !slots.try_acquire());
        slots.release();
        slots.acquire();
    }
}
