//! The stage scheduler: every stage of the graph starts once the stages it uses are built, as stage slots allow;
//! after the first failure nothing new starts, the running stages stop at their next instruction, and that
//! error is returned.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use super::Session;
use super::graph::Graph;
use super::sharing::JobSlots;
use super::stage::{StageBuilder, StageResult};
use crate::error::{Error, Result};

/// The stages' results, and the steps run and found in the cache over all of them.
pub(crate) type Solved = (BTreeMap<usize, StageResult>, usize, usize);

pub(crate) fn solve(session: &Session<'_>, graph: &Graph, slots: &JobSlots) -> Result<Solved> {
    let mut results: BTreeMap<usize, StageResult> = BTreeMap::new();
    let (mut executed, mut cached) = (0, 0);
    let mut pending: Vec<usize> = graph.order.clone();
    let mut failure: Option<Error> = None;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<(StageResult, usize, usize)>)>();
        let mut running = 0usize;
        loop {
            while failure.is_none() {
                let Some(pos) =
                    pending.iter().position(|i| graph.stages[i].deps.iter().all(|d| results.contains_key(d)))
                else {
                    break;
                };
                // A slot for the stage: wait for one when nothing of this build runs, else try.
                if running == 0 {
                    slots.acquire();
                } else if !slots.try_acquire() {
                    break;
                }
                let index = pending.remove(pos);
                let node = &graph.stages[&index];
                let inputs: BTreeMap<usize, StageResult> = node.deps.iter().map(|d| (*d, results[d].clone())).collect();
                let tx = tx.clone();
                running += 1;
                scope.spawn(move || {
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let mut b = StageBuilder::new(session, node, inputs);
                        b.run().map(|r| (r, b.executed, b.cached))
                    }))
                    .unwrap_or_else(|_| Err(Error::WorkerPanicked { what: "a stage's builder".into() }));
                    let _ = tx.send((index, outcome));
                });
            }
            if running == 0 {
                break;
            }
            let Ok((index, outcome)) = rx.recv() else { break };
            running -= 1;
            slots.release();
            match outcome {
                Ok((r, ran, hits)) => {
                    executed += ran;
                    cached += hits;
                    results.insert(index, r);
                }
                Err(Error::Cancelled) => {}
                Err(e) => {
                    session.cancel.store(true, Ordering::SeqCst);
                    failure.get_or_insert(e);
                }
            }
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok((results, executed, cached)),
    }
}
