//! The queue of registrations waiting for their group commit
//! ([`super::enrolment`] commits them). A leaf: generic over the error a
//! commit answers with, so the store that owns the queue and the file that
//! commits it both import this one and it imports neither.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

use super::new_job::NewJob;

/// Most registrations written in one transaction: with the scale runs' 300
/// sample jobs each, 64 are about 19,000 rows, a transaction short enough
/// not to hold the write gate from other writers for long.
pub const MAX_ENROL_BATCH: usize = 64;

/// A new device and its sample jobs.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// Device id.
    pub id: String,
    /// Device name.
    pub name: String,
    /// Hash of the device token.
    pub token_hash: String,
    /// Fingerprint, as JSON.
    pub fingerprint_json: String,
    /// Sample jobs queued with it.
    pub jobs: Vec<NewJob>,
}

/// A queued registration and where its outcome goes.
pub struct Pending<E> {
    /// The registration.
    pub enrolment: Enrolment,
    done: oneshot::Sender<Result<(), E>>,
}

impl<E> Pending<E> {
    /// A registration and the channel its caller waits on.
    pub fn new(enrolment: Enrolment) -> (Pending<E>, oneshot::Receiver<Result<(), E>>) {
        let (done, outcome) = oneshot::channel();
        (Pending { enrolment, done }, outcome)
    }
}

/// Registrations waiting for the next group commit, and the gate that lets
/// one committer at a time take them.
pub struct EnrolQueue<E> {
    pending: Mutex<Vec<Pending<E>>>,
    /// Lets one committer at a time take what is queued.
    pub committer: tokio::sync::Mutex<()>,
    /// Registrations queued or being written, not yet answered.
    waiting: AtomicUsize,
    /// Transactions committed with at least one registration.
    commits: AtomicU64,
}

impl<E> Default for EnrolQueue<E> {
    fn default() -> Self {
        EnrolQueue {
            pending: Mutex::new(Vec::new()),
            committer: tokio::sync::Mutex::new(()),
            waiting: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
        }
    }
}

impl<E> std::fmt::Debug for EnrolQueue<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrolQueue").finish_non_exhaustive()
    }
}

impl<E> EnrolQueue<E> {
    /// Queues a registration.
    pub fn push(&self, p: Pending<E>) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.lock().push(p);
    }

    /// Answers one registration.
    pub fn answer(&self, p: Pending<E>, outcome: Result<(), E>) {
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        // A caller that went away no longer listens; its device is
        // committed (or not) all the same.
        let _ = p.done.send(outcome);
    }

    /// Up to [`MAX_ENROL_BATCH`] queued registrations, oldest first.
    pub fn take_batch(&self) -> Vec<Pending<E>> {
        let mut pending = self.lock();
        let n = pending.len().min(MAX_ENROL_BATCH);
        pending.drain(..n).collect()
    }

    /// The queue, even after a panic elsewhere poisoned its lock: a `Vec`
    /// push or drain leaves it consistent.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending<E>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registrations queued or being written.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Transactions that committed registrations.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// Counts one committed transaction.
    pub fn count_commit(&self) {
        self.commits.fetch_add(1, Ordering::SeqCst);
    }
}
