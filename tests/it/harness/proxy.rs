//! A fault-injecting TCP proxy on loopback, between a client and a server.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often blocked proxy threads look at their controls.
const PROXY_TICK: Duration = Duration::from_millis(10);

/// A loopback TCP proxy in front of a server, with fault injection.
///
/// Every accepted client connection gets its own upstream connection and
/// two forwarding threads. The controls act on all connections, current and
/// future, and are safe to call from any thread. Dropping the proxy closes
/// every connection and joins every thread.
pub struct Proxy {
    addr: SocketAddr,
    upstream: String,
    shared: Arc<ProxyShared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ProxyShared {
    stop: AtomicBool,
    drop_replies: AtomicBool,
    half_open: AtomicBool,
    /// Connections with an id below this are frozen (see `freeze_current`).
    frozen_below: AtomicU64,
    /// `hold_new_at`: (pattern, first connection id it applies to).
    hold: Mutex<Option<(Vec<u8>, u64)>>,
    /// Client→server chunks currently held by `hold_new_at`.
    held: AtomicUsize,
    /// Connections with an id below this are no longer held
    /// (`release_all_but_newest`).
    released_below: AtomicU64,
    accepted: AtomicUsize,
    /// Client→server bytes still to forward before cutting, if armed.
    cut_budget: Mutex<Option<u64>>,
    /// Server→client replies still to forward before cutting, if armed.
    reply_budget: Mutex<Option<u64>>,
    /// Bumped by every cut; a pump exits when it differs from its own.
    generation: AtomicU64,
    next_conn_id: AtomicU64,
    conns: Mutex<Vec<ConnHandles>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct ConnHandles {
    id: u64,
    client: TcpStream,
    server: TcpStream,
}

impl ProxyShared {
    fn cut_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for c in conns {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.server.shutdown(Shutdown::Both);
        }
    }

    /// Forgets a connection whose pumps have ended (closes its handles).
    fn forget(&self, id: u64) {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).retain(|c| c.id != id);
    }

    fn stopped(&self, generation: u64) -> bool {
        self.stop.load(Ordering::SeqCst) || self.generation.load(Ordering::SeqCst) != generation
    }
}

impl Proxy {
    /// Listens on a free `127.0.0.1` port and forwards every connection to
    /// `upstream` (e.g. `server.addr()`).
    pub fn start(upstream: impl Into<String>) -> Proxy {
        let upstream = upstream.into();
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy: bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("proxy: set_nonblocking");
        let addr = listener.local_addr().expect("proxy: local_addr");
        let shared = Arc::new(ProxyShared::default());
        let acceptor = {
            let shared = Arc::clone(&shared);
            let upstream = upstream.clone();
            thread::Builder::new()
                .name(format!("proxy-accept-{}", addr.port()))
                .spawn(move || accept_loop(listener, upstream, shared))
                .expect("proxy: spawn acceptor")
        };
        Proxy { addr, upstream, shared, acceptor: Some(acceptor) }
    }

    /// `"127.0.0.1:<port>"`: point the client here.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The proxy's listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// After forwarding `n` more bytes from clients to the server (counted
    /// across all connections), cut every current connection: the server
    /// receives exactly those `n` bytes and then EOF, and the client gets
    /// no further reply, only the close. `n == 0` cuts at the next byte a
    /// client sends. One-shot: later connections are forwarded normally.
    pub fn cut_after_upstream_bytes(&self, n: u64) {
        *self.shared.cut_budget.lock().unwrap_or_else(|e| e.into_inner()) = Some(n);
    }

    /// After forwarding `n` more whole replies (RESP values) from the
    /// server to clients (counted across all connections), cut every
    /// current connection: the client gets exactly those `n` replies and
    /// then EOF, at a reply boundary; the server may have received (and
    /// applied) any commands sent meanwhile. `n == 0` cuts before the next
    /// byte of a reply. One-shot.
    pub fn cut_after_replies(&self, n: u64) {
        *self.shared.reply_budget.lock().unwrap_or_else(|e| e.into_inner()) = Some(n);
    }

    /// Disarms [`Proxy::cut_after_replies`]; whether it was still armed
    /// (fewer replies passed than it waited for: no cut happened).
    pub fn disarm_reply_cut(&self) -> bool {
        self.shared.reply_budget.lock().unwrap_or_else(|e| e.into_inner()).take().is_some()
    }

    /// While on, client→server bytes are forwarded but server→client bytes
    /// are discarded: the server applies the commands, the client waits for
    /// replies that never come (its read times out).
    pub fn drop_replies(&self, on: bool) {
        self.shared.drop_replies.store(on, Ordering::SeqCst);
    }

    /// While on, nothing is forwarded in either direction, but every socket
    /// stays open (a network partition without RST/FIN). New connections
    /// are accepted and stall too. Bytes read before it was switched on are
    /// still delivered; bytes not yet read are delivered when it is
    /// switched off.
    pub fn half_open(&self, on: bool) {
        self.shared.half_open.store(on, Ordering::SeqCst);
    }

    /// While on, the connections open now forward nothing in either
    /// direction (their bytes wait, as with `half_open`); connections
    /// accepted later flow normally. Switched off, the held bytes are
    /// delivered: a dropped connection's last command can reach the server
    /// after its successor's.
    pub fn freeze_current(&self, on: bool) {
        let below = if on { self.shared.next_conn_id.load(Ordering::SeqCst) } else { 0 };
        self.shared.frozen_below.store(below, Ordering::SeqCst);
    }

    /// Connections accepted from now on forward client→server bytes until a
    /// read chunk contains `pattern`; that chunk and everything after it
    /// wait until [`Self::release`]. (`held()` tells when one waits.)
    pub fn hold_new_at(&self, pattern: &[u8]) {
        let first = self.shared.next_conn_id.load(Ordering::SeqCst);
        *self.shared.hold.lock().unwrap_or_else(|e| e.into_inner()) = Some((pattern.to_vec(), first));
    }

    /// Undoes [`Self::hold_new_at`]: held bytes are delivered.
    pub fn release(&self) {
        *self.shared.hold.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Delivers what [`Self::hold_new_at`] holds for every connection but
    /// the newest, whose chunk stays held (until [`Self::release`]): an
    /// older connection's transaction reaches the server first.
    pub fn release_all_but_newest(&self) {
        let newest = self.shared.next_conn_id.load(Ordering::SeqCst).saturating_sub(1);
        self.shared.released_below.store(newest, Ordering::SeqCst);
    }

    /// How many connections have a chunk held by [`Self::hold_new_at`].
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Connections currently open through the proxy.
    pub fn open_connections(&self) -> usize {
        self.shared.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Closes every current connection now (both sides see EOF). New
    /// connections are accepted as usual.
    pub fn cut_all(&self) {
        self.shared.cut_all();
    }

    /// How many client connections the proxy has accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cut_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("connections", &self.connections())
            .finish()
    }
}

fn accept_loop(listener: TcpListener, upstream: String, shared: Arc<ProxyShared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(PROXY_TICK);
                continue;
            }
            Err(_) => {
                thread::sleep(PROXY_TICK);
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let server = upstream
            .parse::<SocketAddr>()
            .map_err(io::Error::other)
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)));
        let Ok(server) = server else {
            // Upstream down: the client sees its connection closed.
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        if let Err(e) = start_pumps(client, server, &shared) {
            eprintln!("proxy: could not set up a connection: {e}");
        }
    }
}

fn start_pumps(client: TcpStream, server: TcpStream, shared: &Arc<ProxyShared>) -> io::Result<()> {
    for s in [&client, &server] {
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(PROXY_TICK))?;
        s.set_write_timeout(Some(PROXY_TICK))?;
    }
    let generation = shared.generation.load(Ordering::SeqCst);
    let id = shared.next_conn_id.fetch_add(1, Ordering::SeqCst);
    shared.conns.lock().unwrap_or_else(|e| e.into_inner()).push(ConnHandles {
        id,
        client: client.try_clone()?,
        server: server.try_clone()?,
    });
    let up = {
        let (from, to, shared) = (client.try_clone()?, server.try_clone()?, Arc::clone(shared));
        thread::Builder::new()
            .name("proxy-up".into())
            .spawn(move || pump(from, to, Direction::Up, id, generation, &shared))?
    };
    let down = {
        let shared = Arc::clone(shared);
        thread::Builder::new()
            .name("proxy-down".into())
            .spawn(move || pump(server, client, Direction::Down, id, generation, &shared))?
    };
    let mut threads = shared.threads.lock().unwrap_or_else(|e| e.into_inner());
    threads.retain(|t| !t.is_finished());
    threads.push(up);
    threads.push(down);
    // A cut that raced with the registration above.
    if shared.stopped(generation) {
        drop(threads);
        shared.cut_all();
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    /// client → server
    Up,
    /// server → client
    Down,
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    dir: Direction,
    id: u64,
    generation: u64,
    shared: &ProxyShared,
) {
    let mut buf = vec![0u8; 16 * 1024];
    // Server→client: the bytes of a reply not yet complete, so that
    // `cut_after_replies` counts whole replies across reads.
    let mut partial = Vec::new();
    'forward: loop {
        if shared.stopped(generation) {
            break;
        }
        if shared.half_open.load(Ordering::SeqCst) || id < shared.frozen_below.load(Ordering::SeqCst) {
            thread::sleep(PROXY_TICK);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if is_retry(&e) => continue,
            Err(_) => break,
        };
        // Switched to half-open while this read was pending: hold the bytes.
        while shared.half_open.load(Ordering::SeqCst) || id < shared.frozen_below.load(Ordering::SeqCst) {
            if shared.stopped(generation) {
                break 'forward;
            }
            thread::sleep(PROXY_TICK);
        }
        let holds = |shared: &ProxyShared| {
            let hold = shared.hold.lock().unwrap_or_else(|e| e.into_inner());
            hold.as_ref().is_some_and(|(pattern, first)| {
                id >= *first
                    && id >= shared.released_below.load(Ordering::SeqCst)
                    && buf[..n].windows(pattern.len()).any(|w| w == pattern.as_slice())
            })
        };
        if dir == Direction::Up && holds(shared) {
            shared.held.fetch_add(1, Ordering::SeqCst);
            while holds(shared) && !shared.stopped(generation) {
                thread::sleep(PROXY_TICK);
            }
            shared.held.fetch_sub(1, Ordering::SeqCst);
        }
        match dir {
            Direction::Down => {
                if shared.drop_replies.load(Ordering::SeqCst) {
                    continue;
                }
                if let Some(last) = reply_cut(shared, &mut partial, &buf[..n]) {
                    // As for a cut of client bytes: no other pump may
                    // deliver anything after these last bytes.
                    shared.generation.fetch_add(1, Ordering::SeqCst);
                    let _ = write_all(&mut to, &buf[..last], || shared.stop.load(Ordering::SeqCst));
                    shared.cut_all();
                    break;
                }
                if write_all(&mut to, &buf[..n], || shared.stopped(generation)).is_err() {
                    break;
                }
            }
            Direction::Up => {
                let cut_at = {
                    let mut budget = shared.cut_budget.lock().unwrap_or_else(|e| e.into_inner());
                    match *budget {
                        Some(left) if (n as u64) >= left => {
                            *budget = None;
                            Some(left as usize)
                        }
                        Some(left) => {
                            *budget = Some(left - n as u64);
                            None
                        }
                        None => None,
                    }
                };
                if let Some(last) = cut_at {
                    // Stop every other pump first, so no reply to these
                    // last bytes can reach a client; then deliver them and
                    // close everything.
                    shared.generation.fetch_add(1, Ordering::SeqCst);
                    let _ = write_all(&mut to, &buf[..last], || shared.stop.load(Ordering::SeqCst));
                    shared.cut_all();
                    break;
                }
                if write_all(&mut to, &buf[..n], || shared.stopped(generation)).is_err() {
                    break;
                }
            }
        }
    }
    // Closing one direction ends the connection: shut down both sockets so
    // the other pump and both peers notice.
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.forget(id);
}

/// Counts the whole replies that `chunk` (server→client bytes, after the
/// incomplete reply kept in `partial`) completes against the armed
/// `reply_budget`: where in `chunk` to cut when the budget runs out (0:
/// before it), `None` to forward it all.
fn reply_cut(shared: &ProxyShared, partial: &mut Vec<u8>, chunk: &[u8]) -> Option<usize> {
    let mut budget = shared.reply_budget.lock().unwrap_or_else(|e| e.into_inner());
    if *budget == Some(0) {
        *budget = None;
        return Some(0);
    }
    let carried = partial.len();
    partial.extend_from_slice(chunk);
    let mut at = 0;
    let mut cut = None;
    while let Some(len) = resp_len(&partial[at..]) {
        at += len;
        if let Some(left) = budget.as_mut() {
            *left -= 1;
            if *left == 0 {
                *budget = None;
                // A reply completed here ends past the carried bytes.
                cut = Some(at - carried);
                break;
            }
        }
    }
    partial.drain(..at);
    cut
}

/// The length of the RESP2/RESP3 value at the start of `b`, when it is
/// all there.
fn resp_len(b: &[u8]) -> Option<usize> {
    let (&kind, _) = b.split_first()?;
    let cr = b.windows(2).position(|w| w == b"\r\n")?;
    let after = cr + 2;
    let count = || std::str::from_utf8(&b[1..cr]).ok()?.parse::<i64>().ok();
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after),
        b'$' | b'=' | b'!' => match usize::try_from(count()?) {
            Err(_) => Some(after),
            Ok(n) => (b.len() >= after + n + 2).then_some(after + n + 2),
        },
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let Ok(n) = usize::try_from(count()?) else { return Some(after) };
            let items = if matches!(kind, b'%' | b'|') { 2 * n } else { n };
            let mut at = after;
            for _ in 0..items {
                at += resp_len(&b[at..])?;
            }
            Some(at)
        }
        _ => None,
    }
}

fn is_retry(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

/// `write_all` that gives up once `cancelled()` (a plain one could block
/// forever on a peer that stopped reading).
fn write_all(to: &mut TcpStream, mut data: &[u8], cancelled: impl Fn() -> bool) -> io::Result<()> {
    while !data.is_empty() {
        if cancelled() {
            return Err(io::Error::other("proxy connection closed"));
        }
        match to.write(data) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => data = &data[n..],
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
