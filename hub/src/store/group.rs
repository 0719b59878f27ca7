//! Group commit of writes: one writer thread takes every write that is waiting
//! and commits them in one transaction ([`HubStore::write_group`]).
//!
//! **Owns:** the writer thread and its queue. A durable commit costs an fsync
//! (milliseconds); writes that arrive while one commit runs are committed
//! together by the next, so the hub's write rate is no longer one write per
//! fsync. A store whose commits are costly whatever their size (PostgreSQL)
//! also has the writer wait a little from a group's first write for more
//! ([`HubStore::group_linger`]). Each write keeps its own result (a kind
//! mismatch refuses only its write). Callers submit without waiting
//! ([`GroupWriter::submit`]), which lets a connection keep reading while its
//! earlier writes are committed.
//!
//! An after-commit step ([`AfterCommit`]: in a cluster, publishing the
//! committed writes on the bus) runs on a second thread, group after group in
//! commit order, before the writers get their results: the next group commits
//! while the last one is published.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use komlog_protocol::Username;
use tokio::sync::oneshot;

use super::{HubStore, NewSample, StoreError, WriteOutcome};
use crate::metrics::HubMetrics;

/// The most writes committed in one transaction.
const MAX_GROUP: usize = 4096;

struct Job {
    owner: Username,
    samples: Vec<NewSample>,
    reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

/// What the writer thread is asked.
enum Request {
    /// Commit a write.
    Write(Job),
    /// Answer once every write queued before is committed.
    Flush(oneshot::Sender<()>),
}

/// What runs after each group commit, before any write's result goes out
/// (in a cluster: publishing the committed writes on the bus), given the
/// group's writes and their results. Its error fails every write the commit
/// took.
pub type AfterCommit = Box<
    dyn Fn(
            &[(Username, Vec<NewSample>)],
            &[Result<WriteOutcome, StoreError>],
        ) -> Result<(), StoreError>
        + Send,
>;

/// The result of a submitted write, once committed.
pub type WriteReceipt = oneshot::Receiver<Result<WriteOutcome, StoreError>>;

/// A handle to the writer thread; the thread ends when every handle is dropped.
#[derive(Clone)]
pub struct GroupWriter {
    tx: mpsc::Sender<Request>,
    transactions: Arc<AtomicU64>,
}

impl GroupWriter {
    /// Start the writer thread over `store`.
    pub fn start(store: Arc<dyn HubStore>) -> std::io::Result<GroupWriter> {
        GroupWriter::start_counted(store, Arc::new(HubMetrics::default()), None)
    }

    /// Start the writer thread over `store`, timing each commit in `metrics`
    /// and running `after` after each.
    pub fn start_counted(
        store: Arc<dyn HubStore>,
        metrics: Arc<HubMetrics>,
        after: Option<AfterCommit>,
    ) -> std::io::Result<GroupWriter> {
        let (writer, rx) = GroupWriter::queue();
        let linger = store.group_linger();
        writer.spawn(store, rx, metrics, after, linger)?;
        Ok(writer)
    }

    /// A writer whose queue fills until [`GroupWriter::spawn`] starts its thread.
    fn queue() -> (GroupWriter, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel::<Request>();
        let transactions = Arc::new(AtomicU64::new(0));
        (GroupWriter { tx, transactions }, rx)
    }

    /// Start the writer thread; `linger` is [`HubStore::group_linger`].
    fn spawn(
        &self,
        store: Arc<dyn HubStore>,
        rx: mpsc::Receiver<Request>,
        metrics: Arc<HubMetrics>,
        after: Option<AfterCommit>,
        linger: Duration,
    ) -> std::io::Result<()> {
        let transactions = Arc::clone(&self.transactions);
        std::thread::Builder::new()
            .name("hub-writer".into())
            .spawn(move || run(store.as_ref(), &rx, &transactions, &metrics, after, linger))?;
        Ok(())
    }

    /// Wait until every write queued before this call is committed (or refused).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Request::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// How many group transactions the writer has run (committed or failed).
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Queue a write; the receipt resolves once it is committed (or refused).
    /// A receipt whose sender is gone means the writer stopped.
    pub fn submit(&self, owner: Username, samples: Vec<NewSample>) -> WriteReceipt {
        let (reply, receipt) = oneshot::channel();
        // A send error drops the job and its reply: the receipt then reports it.
        let _ = self.tx.send(Request::Write(Job {
            owner,
            samples,
            reply,
        }));
        receipt
    }
}

/// A committed group on its way to its writers (through the after-commit
/// stage, when there is one), or a flush marker behind it.
enum Committed {
    Group {
        writes: Vec<(Username, Vec<NewSample>)>,
        result: Result<Vec<Result<WriteOutcome, StoreError>>, StoreError>,
        replies: Vec<oneshot::Sender<Result<WriteOutcome, StoreError>>>,
    },
    Flush(oneshot::Sender<()>),
}

fn run(
    store: &dyn HubStore,
    rx: &mpsc::Receiver<Request>,
    transactions: &AtomicU64,
    metrics: &Arc<HubMetrics>,
    after: Option<AfterCommit>,
    linger: Duration,
) {
    // With an after-commit step (publishing), it runs on a thread of its own,
    // in commit order: the next group commits while the last is published.
    let stage = after.and_then(|after| {
        let (tx, stage_rx) = mpsc::channel::<Committed>();
        let metrics = Arc::clone(metrics);
        std::thread::Builder::new()
            .name("hub-publisher".into())
            .spawn(move || {
                while let Ok(c) = stage_rx.recv() {
                    deliver(c, Some(&after), &metrics);
                }
            })
            .map_err(|e| tracing::error!("cannot start the publisher thread: {e}"))
            .ok()
            .map(|_| tx)
    });
    let send = |c: Committed| match &stage {
        Some(tx) => {
            if let Err(mpsc::SendError(c)) = tx.send(c) {
                deliver(c, None, metrics);
            }
        }
        None => deliver(c, None, metrics),
    };
    while let Ok(first) = rx.recv() {
        let gather_until = Instant::now() + linger;
        let mut jobs = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Write(job) => jobs.push(job),
                Request::Flush(done) => flushes.push(done),
            }
            if jobs.len() < MAX_GROUP && flushes.is_empty() {
                next = rx.try_recv().ok().or_else(|| {
                    let left = gather_until.saturating_duration_since(Instant::now());
                    (!left.is_zero())
                        .then(|| rx.recv_timeout(left).ok())
                        .flatten()
                });
            }
        }
        if !jobs.is_empty() {
            send(commit(store, jobs, transactions, metrics));
        }
        for done in flushes {
            send(Committed::Flush(done));
        }
    }
}

fn commit(
    store: &dyn HubStore,
    jobs: Vec<Job>,
    transactions: &AtomicU64,
    metrics: &HubMetrics,
) -> Committed {
    let (writes, replies): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .map(|j| ((j.owner, j.samples), j.reply))
        .unzip();
    let started = Instant::now();
    let result = store.write_group(&writes);
    metrics.store_commit.observe(started.elapsed());
    // Counted before any reply goes out: a caller that saw its receipt sees the count.
    transactions.fetch_add(1, Ordering::Relaxed);
    Committed::Group {
        writes,
        result,
        replies,
    }
}

/// Run the after-commit step on a committed group, then give each writer its
/// result.
fn deliver(c: Committed, after: Option<&AfterCommit>, metrics: &HubMetrics) {
    let (writes, result, replies) = match c {
        Committed::Group {
            writes,
            result,
            replies,
        } => (writes, result, replies),
        Committed::Flush(done) => {
            let _ = done.send(());
            return;
        }
    };
    let result = result.map(|mut results| {
        if let Some(after) = after
            && let Err(e) = after(&writes, &results)
        {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e.clone());
            }
        }
        results
    });
    match result {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            metrics.store_errors.inc();
            tracing::error!(writes = writes.len(), "group commit failed: {e}");
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb::RedbStore;
    use komlog_protocol::{Kind, TimeUuid};

    fn sample(uri: &str, kind: Kind, content: &str) -> NewSample {
        NewSample {
            uri: uri.into(),
            kind,
            t: TimeUuid::now(),
            content: content.into(),
        }
    }

    #[tokio::test]
    async fn concurrent_writes_commit_together_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path()).unwrap());
        let alice = Username::parse("alice").unwrap();
        store.add_user(&alice).unwrap();
        // Every write is queued before the writer thread starts: they wait
        // together, as writes arriving during a commit do.
        let (writer, queue) = GroupWriter::queue();
        let first = writer.submit(alice.clone(), vec![sample("a.dp", Kind::Datapoint, "1")]);
        let mut receipts = Vec::new();
        for i in 0..200 {
            receipts.push(writer.submit(
                alice.clone(),
                vec![sample("a.dp", Kind::Datapoint, &i.to_string())],
            ));
        }
        // Refused alone: a datasource write to the datapoint, and a write whose
        // two samples disagree on a new uri's kind.
        let wrong = writer.submit(alice.clone(), vec![sample("a.dp", Kind::Datasource, "x")]);
        let torn = writer.submit(
            alice.clone(),
            vec![
                sample("b.new", Kind::Datasource, "x"),
                sample("b.new", Kind::Datapoint, "2"),
            ],
        );
        assert_eq!(writer.transactions(), 0);
        writer
            .spawn(
                store.clone(),
                queue,
                Arc::new(HubMetrics::default()),
                None,
                Duration::ZERO,
            )
            .unwrap();
        assert_eq!(first.await.unwrap().unwrap().created, vec!["a.dp"]);
        for r in receipts {
            assert!(r.await.unwrap().unwrap().created.is_empty());
        }
        assert!(matches!(
            wrong.await.unwrap(),
            Err(StoreError::KindMismatch { .. })
        ));
        assert!(matches!(
            torn.await.unwrap(),
            Err(StoreError::KindMismatch { .. })
        ));
        let id = komlog_protocol::MetricId {
            owner: alice.clone(),
            local: "a.dp".into(),
        };
        let rows = store
            .read_newest(&id, TimeUuid::MIN, TimeUuid::MAX, 1000)
            .unwrap();
        assert_eq!(rows.len(), 201);
        let b = komlog_protocol::MetricId {
            owner: alice.clone(),
            local: "b.new".into(),
        };
        assert_eq!(store.metric_kind(&b).unwrap(), None);
        assert_eq!(
            writer.transactions(),
            1,
            "203 waiting writes are committed in one transaction"
        );
        // One more write: one more transaction, counted.
        let after = writer.submit(alice, vec![sample("a.dp", Kind::Datapoint, "9")]);
        after.await.unwrap().unwrap();
        assert_eq!(writer.transactions(), 2);
    }

    /// Two writes 50 ms apart through a writer with `linger`: how many
    /// transactions they took.
    async fn two_writes_50_ms_apart(linger: Duration) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path()).unwrap());
        let alice = Username::parse("alice").unwrap();
        store.add_user(&alice).unwrap();
        let (writer, queue) = GroupWriter::queue();
        writer
            .spawn(store, queue, Arc::new(HubMetrics::default()), None, linger)
            .unwrap();
        let first = writer.submit(alice.clone(), vec![sample("a.dp", Kind::Datapoint, "1")]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = writer.submit(alice, vec![sample("a.dp", Kind::Datapoint, "2")]);
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        writer.transactions()
    }

    #[tokio::test]
    async fn a_lingering_writer_commits_a_write_that_comes_soon_after_with_the_first() {
        // Without a linger, a write 50 ms after another is committed alone
        // (redb commits one write in well under that) ...
        assert_eq!(two_writes_50_ms_apart(Duration::ZERO).await, 2);
        // ... and with one (2 s here, for a loaded machine), in the first's
        // transaction.
        assert_eq!(two_writes_50_ms_apart(Duration::from_secs(2)).await, 1);
    }
}
