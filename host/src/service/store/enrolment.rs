//! Group commit of registrations (SQLite).
//!
//! A fleet enrolled at once sends its registrations in the same second, and
//! each writes a device and its sample jobs. Committed one by one they queue
//! on SQLite's write gate, each paying its own transaction, commit and sync,
//! and the last device of a storm waits for all the others
//! (docs/experiments/host_hardening.md, "Registration storm"). Here every
//! registration joins a queue; one committer at a time takes what is
//! queued, writes it in one transaction and answers each caller after the
//! commit, so the registrations that arrived while one batch was being
//! written share the next commit. A caller is answered only once its own
//! device is committed: an acknowledged registration is as durable as
//! before. PostgreSQL takes concurrent transactions side by side, so there
//! each registration commits by itself.

use super::enrol_queue::{Enrolment, Pending};
use super::jobs::insert_job_rows;
use super::{Store, StoreError, StoreResult, now_ms};
use crate::service::domain::Purpose;

impl Store {
    /// Inserts a new device and queues its sample jobs in one transaction,
    /// shared with the registrations that arrive at the same time (see the
    /// module doc); returns once this device is committed. A crash cannot
    /// leave an enrolled device without its jobs.
    pub async fn enrol(&self, enrolment: Enrolment) -> StoreResult<()> {
        if self.write_gate.is_none() {
            // PostgreSQL commits concurrent transactions side by side (and
            // syncs them together): queueing them behind one committer
            // made a 1,000-agent storm slower, not faster (the docs above).
            return self.write_enrolments(&[&enrolment]).await;
        }
        let (pending, outcome) = Pending::new(enrolment);
        self.enrolments.push(pending);
        // The commit runs in its own task: a caller that goes away (its
        // client hung up) must not cancel the batch it was writing for
        // others.
        let store = self.clone();
        tokio::spawn(async move { store.commit_queued_enrolments().await });
        outcome.await.map_err(|_| StoreError::NotCommitted {
            what: "registration",
        })?
    }

    /// Commits what is queued, batch by batch, one committer at a time.
    async fn commit_queued_enrolments(&self) {
        let queue = &self.enrolments;
        let _one_committer = queue.committer.lock().await;
        loop {
            let batch = queue.take_batch();
            if batch.is_empty() {
                return;
            }
            self.commit_batch(batch).await;
        }
    }

    /// One transaction for the batch; if it fails, each registration alone,
    /// so one bad registration (an id already taken) fails only itself.
    async fn commit_batch(&self, batch: Vec<Pending<StoreError>>) {
        let all: Vec<&Enrolment> = batch.iter().map(|p| &p.enrolment).collect();
        let queue = &self.enrolments;
        if batch.len() > 1 && self.write_enrolments(&all).await.is_ok() {
            for p in batch {
                queue.answer(p, Ok(()));
            }
            return;
        }
        for p in batch {
            let outcome = self.write_enrolments(&[&p.enrolment]).await;
            queue.answer(p, outcome);
        }
    }

    /// Registrations queued or being written (for monitoring and tests).
    pub fn registrations_waiting(&self) -> usize {
        self.enrolments.waiting()
    }

    /// Transactions that committed registrations since the host started:
    /// fewer than the registrations when a storm shared commits.
    pub fn registration_commits(&self) -> u64 {
        self.enrolments.commits()
    }

    /// Writes `enrolments` in one transaction.
    async fn write_enrolments(&self, enrolments: &[&Enrolment]) -> StoreResult<()> {
        let now = now_ms();
        let _w = self.write().await;
        let mut tx = self.pool().begin().await?;
        for e in enrolments {
            sqlx::query(
                "INSERT INTO devices (id, name, token_hash, fingerprint_json, created_ms, last_seen_ms) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(&e.id)
            .bind(&e.name)
            .bind(&e.token_hash)
            .bind(&e.fingerprint_json)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            insert_job_rows(&mut tx, &e.id, Purpose::Sample, &e.jobs).await?;
        }
        tx.commit().await?;
        self.enrolments.count_commit();
        Ok(())
    }
}
