//! Test support: a loopback TCP proxy that can be taken down and brought
//! back, standing for an object store that becomes unreachable.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Forwards connections on a loopback port to `upstream`. The port stays
/// bound for the proxy's life (taken down, it cuts every connection at
/// once), so no other socket can take it while the store is "down".
pub struct Proxy {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Proxy {
    /// A proxy to `upstream` (an `http://HOST:PORT` URL), listening at once.
    pub fn start(upstream: &str) -> Proxy {
        let hostport = upstream.trim_start_matches("http://").trim_end_matches('/');
        let upstream: SocketAddr = hostport.parse().expect("upstream as http://IP:PORT");
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (conns, down, stop) = (
            Arc::<Mutex<Vec<TcpStream>>>::default(),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (c_conns, c_down, c_stop) = (conns.clone(), down.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for c in l.incoming() {
                if c_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                if c_down.load(Ordering::SeqCst) {
                    let _ = c.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(u) = TcpStream::connect(upstream) else { continue };
                let mut g = c_conns.lock().unwrap();
                g.push(c.try_clone().unwrap());
                g.push(u.try_clone().unwrap());
                let (c2, u2) = (c.try_clone().unwrap(), u.try_clone().unwrap());
                std::thread::spawn(move || pump(c, u));
                std::thread::spawn(move || pump(u2, c2));
            }
        });
        Proxy { addr, conns, down, stop, accept: Some(accept) }
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every open connection, and every new one as soon as it comes.
    pub fn down(&mut self) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Forwards new connections again.
    pub fn up(&mut self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}
