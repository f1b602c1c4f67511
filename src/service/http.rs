//! The HTTP server loop: accepts connections, caps how many are open, times out slow request
//! heads, idle connections and clients that stop reading, and on shutdown stops accepting and
//! lets requests in flight finish. It serves whatever `Router` it is given and knows nothing of
//! routes, authentication or the data behind them.
//!
//! Why not `axum::serve`: it gives hyper no timer, so hyper has no header-read timeout, and it
//! has no cap on connections; a client holding sockets open exhausts the process's file limit.
//!
//! Connection states and what bounds each one:
//! * waiting for a request (just connected, or after a response), no byte of it yet:
//!   `idle_timeout`; such a connection is also the one given up when the cap is reached;
//! * reading a request head, from its first byte: `header_read_timeout`, however slowly bytes
//!   keep coming; also given up at the cap, since no request is in flight;
//! * a request in flight: the API's own request timeout while the response is produced, then
//!   `write_stall_timeout` while the client accepts none of the response.
//!
//! At `connections_max` open connections, a new one takes the place of the connection that has
//! waited longest for a request. Only when every connection has a request in flight is the new
//! one answered `503` (the API's JSON error shape, `Retry-After: 1`) and closed: answered rather
//! than left unaccepted, so a client learns at once to come back instead of waiting in the
//! kernel's queue, and the service keeps serving everyone already connected.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::rt::{Sleep, Timer};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::{Limits, fmt_duration};

/// Refused connections being answered at once; beyond it a refused connection is closed unanswered.
const REFUSALS_MAX: usize = 64;
/// How long a refused connection is kept to read what its client sent: closing a socket with
/// unread data makes the kernel send a reset, which can destroy the `503` before it is read.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// How long the accept loop waits for a connection it gave up to release its place.
const DISPLACE_WAIT: Duration = Duration::from_millis(200);
/// Pause after an accept error that is not about one connection (out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Files the process holds besides client connections, before workers and exports are counted:
/// the store, the listener, the runtime's epoll and event descriptors, logs, the mock provider.
const FILES_BESIDES_CONNECTIONS: usize = 64;

/// The limits the server loop enforces (taken from the config's `limits`).
#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub connections_max: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_stall_timeout: Duration,
}

impl HttpSettings {
    pub fn from_limits(limits: &Limits) -> HttpSettings {
        HttpSettings {
            connections_max: limits.connections_max,
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            write_stall_timeout: limits.write_stall_timeout,
        }
    }
}

/// Raises the soft open-file limit to the hard one (what systemd's default `LimitNOFILE` allows)
/// and warns when the connection cap, with `other_files` and the server's own needs, does not fit.
pub fn raise_open_file_limit(settings: &HttpSettings, other_files: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        match setrlimit(Resource::Nofile, Rlimit { current: Some(maximum), maximum: Some(maximum) }) {
            Ok(()) => {
                tracing::info!(from = current, to = maximum, "raised the open-file limit to its hard limit");
                limit.current = Some(maximum);
            }
            Err(error) => tracing::warn!(%error, current, maximum, "could not raise the open-file limit"),
        }
    }
    let needed = settings.connections_max + REFUSALS_MAX + FILES_BESIDES_CONNECTIONS + other_files;
    if let Some(current) = limit.current
        && current < needed as u64
    {
        tracing::warn!(
            open_file_limit = current,
            needed,
            connections_max = settings.connections_max,
            "limits.connections_max and the files the service needs besides exceed the open-file limit: \
             raise LimitNOFILE (or ulimit -n) or lower limits.connections_max, or new connections will fail when it is reached"
        );
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, closes the
/// connections that wait for a request, and returns once every request in flight has been
/// answered and its connection closed. The caller bounds that wait.
pub async fn run(listener: TcpListener, app: Router, settings: HttpSettings, shutdown: impl Future<Output = ()> + Send) -> io::Result<()> {
    let settings = Arc::new(settings);
    let permits_total = u32::try_from(settings.connections_max).map_err(|_| io::Error::other("connections_max is larger than 2^32"))?;
    let slots = Arc::new(Semaphore::new(settings.connections_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
    let refusal: Arc<[u8]> = refusal_response().into();
    let registry = Arc::new(Registry::default());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) if is_about_one_connection(&error) => continue,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; pausing briefly");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let Some(slot) = admit(&slots, &registry).await else {
            refuse(stream, &refusals, &refusal);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (connection, registration) = registry.register();
        let (app, settings) = (app.clone(), settings.clone());
        tokio::spawn(async move {
            serve_connection(stream, app, connection, &settings).await;
            drop(registration);
            drop(slot);
        });
    }
    drop(listener);
    registry.close_all();
    // Every connection holds one slot until it has ended: all slots back means all have ended.
    let _all = slots.acquire_many(permits_total).await;
    Ok(())
}

/// Errors of `accept` that concern only the connection being accepted.
fn is_about_one_connection(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset)
}

/// A place for a new connection: a free slot, or the slot of the connection that has waited
/// longest for a request, which is asked to close. `None` when every connection is busy.
async fn admit(slots: &Arc<Semaphore>, registry: &Registry) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    if !registry.displace_longest_waiting() {
        return None;
    }
    tokio::time::timeout(DISPLACE_WAIT, slots.clone().acquire_owned()).await.ok()?.ok()
}

/// Answers `503` and closes, on a task of its own; closes unanswered when too many are pending.
fn refuse(stream: TcpStream, refusals: &Arc<Semaphore>, refusal: &Arc<[u8]>) {
    let Ok(permit) = refusals.clone().try_acquire_owned() else { return };
    let refusal = refusal.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            stream.write_all(&refusal).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<(), io::Error>(())
        })
        .await;
    });
}

/// The answer to a connection beyond the cap, in the API's error shape.
fn refusal_response() -> Vec<u8> {
    let body = serde_json::json!({"error": {
        "code": "unavailable",
        "message": "Every connection the server allows (limits.connections_max) has a request in flight; retry shortly.",
        "details": {},
    }})
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\n\
         cache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve_connection(stream: TcpStream, app: Router, connection: Arc<Connection>, settings: &HttpSettings) {
    let io = TokioIo::new(WatchedStream::new(stream, connection.clone(), settings.write_stall_timeout));
    let timer = HeadTimer { connection: connection.clone(), header_read_timeout: settings.header_read_timeout, idle_timeout: settings.idle_timeout };
    let mut builder = http1::Builder::new();
    builder.timer(timer).header_read_timeout(settings.header_read_timeout);
    let served = builder.serve_connection(io, TowerToHyperService::new(app));
    let mut served = std::pin::pin!(served);
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = connection.close.notified(), if !asked_to_close => {
                asked_to_close = true;
                if connection.is_waiting_for_request() {
                    // No request in flight: nothing is lost by closing now.
                    return;
                }
                // Answer the request in flight, then close.
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The open connections, as the accept loop sees them.

/// What the accept loop knows of one open connection.
#[derive(Default)]
struct Connection {
    /// Reads that returned bytes; a head wait compares it with its start to see a head begin.
    reads: AtomicU64,
    /// The head wait in progress, if any, and when it began: hyper is waiting for a request, so
    /// none is in flight.
    waiting: Mutex<Option<(u64, Instant)>>,
    /// Numbers head waits, so that only the current one clears `waiting`.
    head_waits_started: AtomicU64,
    /// Set once the connection has been asked to close, so it is not chosen twice.
    closing: AtomicBool,
    /// Wakes the connection's task to close (given up at the cap, or shutdown).
    close: Notify,
}

impl Connection {
    fn is_waiting_for_request(&self) -> bool {
        self.waiting.lock().expect("waiting lock").is_some()
    }

    fn waiting_since(&self) -> Option<Instant> {
        self.waiting.lock().expect("waiting lock").map(|(_, since)| since)
    }

    fn ask_to_close(&self) {
        self.closing.store(true, Ordering::Release);
        // A stored permit if the task is not waiting yet: it closes as soon as it looks.
        self.close.notify_one();
    }
}

#[derive(Default)]
struct Registry {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

/// Removes its connection from the registry when dropped.
struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.open.lock().expect("registry lock").remove(&self.id);
    }
}

impl Registry {
    fn register(self: &Arc<Self>) -> (Arc<Connection>, Registration) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::default());
        self.open.lock().expect("registry lock").insert(id, connection.clone());
        (connection, Registration { registry: self.clone(), id })
    }

    /// Asks the connection that has waited longest for a request to close; false if none waits.
    fn displace_longest_waiting(&self) -> bool {
        let open = self.open.lock().expect("registry lock");
        let longest = open
            .values()
            .filter(|c| !c.closing.load(Ordering::Acquire))
            .filter_map(|c| c.waiting_since().map(|since| (since, c)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, connection)) => {
                connection.ask_to_close();
                true
            }
            None => false,
        }
    }

    fn close_all(&self) {
        for connection in self.open.lock().expect("registry lock").values() {
            connection.ask_to_close();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timeouts while waiting for a request.

/// hyper's HTTP/1 server asks its timer for exactly one thing: the header-read deadline, armed
/// each time it starts waiting for a request head (on connect, and after every response). hyper
/// counts that one deadline from the start of the wait, so on its own it would close a
/// keep-alive connection after `header_read_timeout` of quiet. The wait handed back here tells
/// the two apart: `idle_timeout` while no byte has arrived, then `header_read_timeout` from the
/// first byte of the head.
struct HeadTimer {
    connection: Arc<Connection>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        TokioTimer::new().sleep(duration)
    }

    fn sleep_until(&self, _header_deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadWait::start(self.connection.clone(), self.header_read_timeout, self.idle_timeout))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, header_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HeadWait>() {
            Some(wait) => wait.get_mut().restart(),
            None => *sleep = self.sleep_until(header_deadline),
        }
    }
}

/// One wait for a request head; completes when the connection should be closed.
struct HeadWait {
    connection: Arc<Connection>,
    id: u64,
    started: Instant,
    reads_at_start: u64,
    /// When the first byte of the head arrived (seen at the first poll after it).
    head_began: Option<Instant>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl HeadWait {
    fn start(connection: Arc<Connection>, header_read_timeout: Duration, idle_timeout: Duration) -> HeadWait {
        let started = Instant::now();
        let id = connection.head_waits_started.fetch_add(1, Ordering::Relaxed);
        *connection.waiting.lock().expect("waiting lock") = Some((id, started));
        let reads_at_start = connection.reads.load(Ordering::Relaxed);
        let sleep = Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(started + idle_timeout)));
        HeadWait { connection, id, started, reads_at_start, head_began: None, header_read_timeout, idle_timeout, sleep }
    }

    fn restart(&mut self) {
        self.started = Instant::now();
        self.reads_at_start = self.connection.reads.load(Ordering::Relaxed);
        self.head_began = None;
        *self.connection.waiting.lock().expect("waiting lock") = Some((self.id, self.started));
    }
}

impl Future for HeadWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let wait = self.get_mut();
        if wait.head_began.is_none() && wait.connection.reads.load(Ordering::Relaxed) != wait.reads_at_start {
            wait.head_began = Some(Instant::now());
        }
        let deadline = match wait.head_began {
            Some(began) => began + wait.header_read_timeout,
            None => wait.started + wait.idle_timeout,
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if wait.sleep.deadline() != deadline {
            wait.sleep.as_mut().reset(deadline);
        }
        wait.sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeadWait {}

impl Drop for HeadWait {
    fn drop(&mut self) {
        let mut waiting = self.connection.waiting.lock().expect("waiting lock");
        if waiting.is_some_and(|(id, _)| id == self.id) {
            *waiting = None;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The socket, watched.

/// A client socket that counts reads (for `HeadWait`) and fails a write the client has accepted
/// no byte of for `write_stall_timeout` (a client that stopped reading its response).
struct WatchedStream {
    stream: TcpStream,
    connection: Arc<Connection>,
    write_stall_timeout: Duration,
    /// Armed while a write waits for room in the socket; created at the first such wait.
    write_stall: Option<Pin<Box<tokio::time::Sleep>>>,
    write_waiting: bool,
}

impl WatchedStream {
    fn new(stream: TcpStream, connection: Arc<Connection>, write_stall_timeout: Duration) -> WatchedStream {
        WatchedStream { stream, connection, write_stall_timeout, write_stall: None, write_waiting: false }
    }

    /// Turns a write's outcome into a timeout once the client has taken nothing for too long.
    fn watch_write(&mut self, cx: &mut Context<'_>, outcome: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if outcome.is_ready() {
            self.write_waiting = false;
            return outcome;
        }
        let deadline = tokio::time::Instant::now() + self.write_stall_timeout;
        let sleep = self.write_stall.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.write_waiting {
            self.write_waiting = true;
            sleep.as_mut().reset(deadline);
        }
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client accepted no byte of the response for {}", fmt_duration(self.write_stall_timeout)),
        )))
    }
}

impl AsyncRead for WatchedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let outcome = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(outcome, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.connection.reads.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_write(cx, data);
        this.watch_write(cx, outcome)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.stream).poll_write_vectored(cx, data);
        this.watch_write(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
