//! Log output that never blocks a request: lines are handed to a writer thread.
//!
//! Every request produces a log line (`server.request_log`). Written straight to stderr, that
//! is a `write(2)` on a proxy worker thread per request, and under systemd stderr is a socket to
//! journald: a slow journal would stall the proxy. Once the gateway runs, each formatted line is
//! instead queued (bounded) to one thread that writes them in batches, flushing whenever the
//! queue runs empty. When the queue is full the line is dropped and counted
//! (`exoclaw_log_lines_dropped`), never waited for.
//!
//! Before `start_writer_thread` — start-up, the CLI commands, a daemon's foreground process —
//! lines go to stderr directly. The thread starts after Pingora's daemon fork, since a thread
//! does not survive a fork. `flush` drains the queue at exit.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;

/// Lines waiting for the writer thread before new ones are dropped.
const QUEUE_LINES: usize = 16 * 1024;

static QUEUE: OnceLock<SyncSender<Message>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

enum Message {
    Line(Vec<u8>),
    /// Write out everything before this, then answer.
    Flush(SyncSender<()>),
}

/// Installs the process's `tracing` subscriber (also carrying the `log` records of Pingora).
/// `filter` is an `EnvFilter` directive such as `info` or `exoclaw=debug`.
pub fn init(filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(LineWriter::default)
        .with_ansi(io::stderr().is_terminal())
        .init();
}

/// Moves log output to a writer thread. Later calls do nothing.
pub fn start_writer_thread() -> io::Result<()> {
    if QUEUE.get().is_some() {
        return Ok(());
    }
    let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
    std::thread::Builder::new()
        .name("exoclaw-log".to_owned())
        .spawn(move || write_lines(rx))?;
    let _ = QUEUE.set(tx);
    Ok(())
}

/// Waits (up to 2 s) until every queued line is written.
pub fn flush() {
    let Some(queue) = QUEUE.get() else {
        return;
    };
    let (ack, done) = mpsc::sync_channel(1);
    if queue.send(Message::Flush(ack)).is_ok() {
        let _ = done.recv_timeout(Duration::from_secs(2));
    }
}

/// Lines dropped because the queue was full, since start.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn write_lines(queue: Receiver<Message>) {
    // Not `stderr().lock()`: a panic message must still be able to reach stderr.
    let mut out = io::BufWriter::with_capacity(64 * 1024, io::stderr());
    loop {
        let message = match queue.try_recv() {
            Ok(message) => message,
            Err(TryRecvError::Empty) => {
                let _ = out.flush();
                match queue.recv() {
                    Ok(message) => message,
                    Err(_) => return,
                }
            }
            Err(TryRecvError::Disconnected) => return,
        };
        match message {
            Message::Line(line) => {
                let _ = out.write_all(&line);
            }
            Message::Flush(ack) => {
                let _ = out.flush();
                let _ = ack.send(());
            }
        }
    }
}

/// Collects one formatted event; hands it on when dropped.
#[derive(Default)]
struct LineWriter {
    line: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        match QUEUE.get() {
            Some(queue) => match queue.try_send(Message::Line(std::mem::take(&mut self.line))) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
            },
            None => {
                let _ = io::stderr().write_all(&self.line);
            }
        }
    }
}
