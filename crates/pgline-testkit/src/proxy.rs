//! A TCP fault proxy between a client and a server, controlled from tests.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use pgline_testkit::{FaultProxy, PgServer};
//!
//! let server = PgServer::shared();
//! let proxy = FaultProxy::start(([127, 0, 0, 1], server.port()).into()).await?;
//! // Point the pool at 127.0.0.1:proxy.port() instead of the server, then:
//! proxy.set_latency(Duration::from_millis(200)); // every chunk waits 200 ms
//! proxy.stall();                                 // accept, never forward: a half-open peer
//! proxy.pass();                                  // back to normal
//! proxy.cut_all();                               // reset every open connection
//! proxy.refuse(true);                            // new connections are closed at once
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with the bytes it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward at once.
    Pass,
    /// Forward each chunk after this delay.
    Latency(Duration),
    /// Keep every socket open and forward nothing (new connections too).
    Stall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Control {
    mode: ProxyMode,
    /// Bumped by `cut_all`: connections of an older generation close.
    generation: u64,
}

/// A TCP proxy on 127.0.0.1 with switchable faults. Dropping it stops the
/// listener and closes every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    control: watch::Sender<Control>,
    refuse: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target`.
    pub async fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (control, watcher) = watch::channel(Control {
            mode: ProxyMode::Pass,
            generation: 0,
        });
        let refuse = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            target,
            watcher,
            refuse.clone(),
            open.clone(),
        ));
        Ok(Self {
            addr,
            control,
            refuse,
            open,
            accept,
        })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Forward normally.
    pub fn pass(&self) {
        self.set_mode(ProxyMode::Pass);
    }

    /// Delay every chunk by `delay` (each direction keeps its order).
    pub fn set_latency(&self, delay: Duration) {
        self.set_mode(ProxyMode::Latency(delay));
    }

    /// Stop forwarding in both directions, keeping sockets open.
    pub fn stall(&self) {
        self.set_mode(ProxyMode::Stall);
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        self.control.borrow().mode
    }

    fn set_mode(&self, mode: ProxyMode) {
        self.control.send_modify(|c| c.mode = mode);
    }

    /// Resets every open connection (both sides see the connection drop).
    pub fn cut_all(&self) {
        self.control.send_modify(|c| c.generation += 1);
    }

    /// While `true`, new connections are accepted and closed at once.
    pub fn refuse(&self, refuse: bool) {
        self.refuse.store(refuse, SeqCst);
    }

    /// Connections currently proxied.
    pub fn open_connections(&self) -> usize {
        self.open.load(SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    control: watch::Receiver<Control>,
    refuse: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if refuse.load(SeqCst) {
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        }
        let control = control.clone();
        let open = open.clone();
        tokio::spawn(async move {
            open.fetch_add(1, SeqCst);
            let _ = proxy_one(client, target, control).await;
            open.fetch_sub(1, SeqCst);
        });
    }
}

async fn proxy_one(
    client: TcpStream,
    target: SocketAddr,
    mut control: watch::Receiver<Control>,
) -> io::Result<()> {
    let generation = control.borrow().generation;
    // A stalled proxy accepts but does not even reach the server.
    wait_unless_stalled(&mut control, generation).await?;
    let server = TcpStream::connect(target).await?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = client.set_zero_linger();
    let _ = server.set_zero_linger();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, control.clone(), generation);
    let down = pump(server_read, client_write, control.clone(), generation);
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}

/// Waits while stalled; errors when the connection's generation was cut.
async fn wait_unless_stalled(
    control: &mut watch::Receiver<Control>,
    generation: u64,
) -> io::Result<()> {
    loop {
        let now = *control.borrow_and_update();
        if now.generation != generation {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "cut by the fault proxy",
            ));
        }
        if now.mode != ProxyMode::Stall {
            return Ok(());
        }
        if control.changed().await.is_err() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "proxy dropped",
            ));
        }
    }
}

async fn pump<R, W>(
    mut from: R,
    mut to: W,
    mut control: watch::Receiver<Control>,
    generation: u64,
) -> io::Result<()>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => read?,
            cut = wait_for_cut(&mut control, generation) => return cut,
        };
        if n == 0 {
            return Ok(());
        }
        wait_unless_stalled(&mut control, generation).await?;
        let mode = control.borrow().mode;
        if let ProxyMode::Latency(delay) = mode {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                cut = wait_for_cut(&mut control, generation) => return cut,
            }
        }
        to.write_all(&buf[..n]).await?;
    }
}

async fn wait_for_cut(control: &mut watch::Receiver<Control>, generation: u64) -> io::Result<()> {
    loop {
        if control.borrow_and_update().generation != generation {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "cut by the fault proxy",
            ));
        }
        if control.changed().await.is_err() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "proxy dropped",
            ));
        }
    }
}
