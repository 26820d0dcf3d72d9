//! The one writer: a thread that owns the write connection and commits
//! every write queued since its last commit in one synced transaction.
//! Each write runs in a savepoint of its own, so one that fails is undone
//! alone and answered with its error, and the rest commit.

use crate::StoreError;
use rusqlite::{Connection, Transaction};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Work = Box<dyn FnOnce(&Transaction) -> rusqlite::Result<()> + Send>;

/// How a caller waits for its write.
enum Reply {
    Blocking(mpsc::Sender<Result<(), String>>),
    Async(tokio::sync::oneshot::Sender<Result<(), String>>),
}

impl Reply {
    fn send(self, r: Result<(), String>) {
        match self {
            Reply::Blocking(tx) => drop(tx.send(r)),
            Reply::Async(tx) => drop(tx.send(r)),
        }
    }
}

struct Op {
    work: Work,
    reply: Reply,
}

/// Most writes in one transaction: bounds how long the first waits.
const MAX_BATCH: usize = 2048;

pub struct Writer {
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Writer {
    pub fn start(conn: Connection) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Op>();
        let thread = std::thread::Builder::new()
            .name("kiln-db-writer".into())
            .spawn(move || run(conn, rx))?;
        Ok(Writer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, op: Op) -> Result<(), StoreError> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.as_ref()
            .ok_or(StoreError::WriterGone)?
            .send(op)
            .map_err(|_| StoreError::WriterGone)
    }

    /// Wrap `f` so its value is kept for the caller.
    fn work<T: Send + 'static>(
        f: impl FnOnce(&Transaction) -> rusqlite::Result<T> + Send + 'static,
    ) -> (Work, Arc<Mutex<Option<T>>>) {
        let slot = Arc::new(Mutex::new(None));
        let keep = slot.clone();
        let work: Work = Box::new(move |tx| {
            let v = f(tx)?;
            *keep.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
            Ok(())
        });
        (work, slot)
    }

    fn take<T>(slot: Arc<Mutex<Option<T>>>) -> Result<T, StoreError> {
        slot.lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or(StoreError::WriterGone)
    }

    /// Write, and wait on this thread until it is committed.
    pub fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (work, slot) = Self::work(f);
        let (tx, rx) = mpsc::channel();
        self.send(Op {
            work,
            reply: Reply::Blocking(tx),
        })?;
        rx.recv()
            .map_err(|_| StoreError::WriterGone)?
            .map_err(StoreError::Data)?;
        Self::take(slot)
    }

    /// Write, and wait (asynchronously) until it is committed.
    pub async fn write_async<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (work, slot) = Self::work(f);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Op {
            work,
            reply: Reply::Async(tx),
        })?;
        rx.await
            .map_err(|_| StoreError::WriterGone)?
            .map_err(StoreError::Data)?;
        Self::take(slot)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after what is queued.
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit(&mut conn, batch);
    }
}

fn commit(conn: &mut Connection, batch: Vec<Op>) {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let msg = format!("cannot begin a transaction: {e}");
            for op in batch {
                op.reply.send(Err(msg.clone()));
            }
            return;
        }
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for op in batch {
        let result = (|| {
            tx.execute_batch("SAVEPOINT op")?;
            match (op.work)(&tx) {
                Ok(()) => tx.execute_batch("RELEASE op"),
                Err(e) => {
                    tx.execute_batch("ROLLBACK TO op; RELEASE op")?;
                    Err(e)
                }
            }
        })();
        outcomes.push((op.reply, result.map_err(|e| e.to_string())));
    }
    match tx.commit() {
        Ok(()) => {
            for (reply, r) in outcomes {
                reply.send(r);
            }
        }
        Err(e) => {
            tracing::error!("the job database could not commit: {e}");
            let msg = format!("the write was not committed: {e}");
            for (reply, _) in outcomes {
                reply.send(Err(msg.clone()));
            }
        }
    }
}
