//! A TCP fault proxy between partypool and a server: pass, add latency, black-hole, reset.
//!
//! It runs on its own thread and runtime, so it works the same whatever runtime a test uses.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    Pass,
    /// Delay every chunk from the server by this much.
    Latency(Duration),
    /// Accept connections, deliver nothing in either direction (held, like a network that
    /// drops packets), until the fault changes.
    BlackHole,
    /// Reset every open connection, and every new one, at once.
    Reset,
}

pub struct FaultProxy {
    pub port: u16,
    fault: watch::Sender<Fault>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:target`.
    pub fn start(target: u16) -> FaultProxy {
        FaultProxy::start_at("127.0.0.1:0".parse().unwrap(), target)
    }

    /// Listens on `listen` (another loopback address, a given port) and forwards to
    /// `127.0.0.1:target`.
    pub fn start_at(listen: SocketAddr, target: u16) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        // Bound with std so this works from inside another runtime too.
        let listener = std::net::TcpListener::bind(listen).expect("proxy listen");
        listener.set_nonblocking(true).expect("proxy listen");
        let port = listener.local_addr().unwrap().port();
        let (fault, watcher) = watch::channel(Fault::Pass);
        let upstream: SocketAddr = ([127, 0, 0, 1], target).into();
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("proxy listen");
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, watcher.clone()));
            }
        });
        FaultProxy {
            port,
            fault,
            runtime: Some(runtime),
        }
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn reset(stream: TcpStream) {
    // SO_LINGER 0: closing sends RST instead of FIN.
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn relay(client: TcpStream, upstream: SocketAddr, mut fault: watch::Receiver<Fault>) {
    if *fault.borrow() == Fault::Reset {
        return reset(client);
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return reset(client);
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        tokio::select! {
            n = client_r.read(&mut up) => {
                let Ok(n @ 1..) = n else { break };
                if !deliver(&mut fault, &mut server_w, &up[..n], false).await { break }
            }
            n = server_r.read(&mut down) => {
                let Ok(n @ 1..) = n else { break };
                if !deliver(&mut fault, &mut client_w, &down[..n], true).await { break }
            }
            changed = fault.changed() => {
                if changed.is_err() || *fault.borrow() == Fault::Reset { break }
                continue;
            }
        }
    }
    if let (Ok(c), Ok(s)) = (client_r.reunite(client_w), server_r.reunite(server_w)) {
        reset(c);
        reset(s);
    }
}

/// Writes `data` as the current fault allows; `false` when the connection must end.
async fn deliver(
    fault: &mut watch::Receiver<Fault>,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    data: &[u8],
    from_server: bool,
) -> bool {
    loop {
        let current = *fault.borrow();
        match current {
            Fault::Reset => return false,
            Fault::BlackHole => {
                if fault.changed().await.is_err() {
                    return false;
                }
            }
            Fault::Latency(d) if from_server => {
                tokio::time::sleep(d).await;
                return to.write_all(data).await.is_ok();
            }
            Fault::Pass | Fault::Latency(_) => return to.write_all(data).await.is_ok(),
        }
    }
}
