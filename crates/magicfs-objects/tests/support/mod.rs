//! Test support: a loopback TCP proxy that can be taken down and brought
//! back, standing for an object store that becomes unreachable.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Forwards connections on a loopback port to `upstream`.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    conns: Arc<Mutex<Vec<TcpStream>>>,
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
        let mut p =
            Proxy { addr, upstream, conns: Arc::default(), stop: Arc::new(AtomicBool::new(false)), accept: None };
        p.listen(l);
        p
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn listen(&mut self, l: TcpListener) {
        self.stop.store(false, Ordering::SeqCst);
        let (conns, stop, upstream) = (self.conns.clone(), self.stop.clone(), self.upstream);
        self.accept = Some(std::thread::spawn(move || {
            for c in l.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                let Ok(u) = TcpStream::connect(upstream) else { continue };
                let mut g = conns.lock().unwrap();
                g.push(c.try_clone().unwrap());
                g.push(u.try_clone().unwrap());
                let (c2, u2) = (c.try_clone().unwrap(), u.try_clone().unwrap());
                std::thread::spawn(move || pump(c, u));
                std::thread::spawn(move || pump(u2, c2));
            }
        }));
    }

    /// Refuses new connections and cuts every open one.
    pub fn down(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            h.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port.
    pub fn up(&mut self) {
        let l = TcpListener::bind(self.addr).unwrap();
        self.listen(l);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.down();
        }
    }
}
