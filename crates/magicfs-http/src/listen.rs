//! The listening loop. Each accepted connection takes a slot under the
//! connection cap ([`crate::conns`]), finishes its TLS handshake within the
//! header timeout, and is served by hyper — HTTP/1.1, or HTTP/2 where the
//! client offers it (ALPN with TLS, the preface without) — with the header
//! timeout on every request head (idle keep-alive waits included) and a
//! write timeout, so a client that stops reading its answer is cut off. On
//! shutdown the loop stops accepting, idle connections close, and the
//! requests in flight get the grace period.

use crate::conns::{Busy, Slot};
use crate::server::AppState;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Accepts and serves connections until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: AppState,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = state.limits.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = state.conns.admit() else {
            tracing::warn!(%peer, "connection refused: all {} connections are busy", limits.max_connections);
            continue;
        };
        let one = One { peer, slot: Arc::new(slot), router: router.clone(), write_timeout: limits.write_timeout };
        tokio::spawn(one.serve(stream, tls.clone(), builder.clone(), graceful.watcher(), limits.header_timeout));
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("stopping with requests still running after {:?}", limits.shutdown_grace);
    }
}

/// One connection.
struct One {
    peer: SocketAddr,
    slot: Arc<Slot>,
    router: Router,
    write_timeout: Duration,
}

impl One {
    async fn serve(
        self,
        stream: TcpStream,
        tls: Option<TlsAcceptor>,
        builder: auto::Builder<TokioExecutor>,
        watcher: Watcher,
        handshake_timeout: Duration,
    ) {
        let _ = stream.set_nodelay(true);
        let mut io = TimeoutStream::new(stream);
        io.set_write_timeout(Some(self.write_timeout));
        let io = Box::pin(io);
        let (peer, slot) = (self.peer, self.slot.clone());
        let service = {
            let (router, slot) = (self.router, self.slot);
            hyper::service::service_fn(move |mut request: Request<Incoming>| {
                let busy = slot.busy();
                request.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                async move {
                    let response = router.oneshot(request).await.unwrap_or_else(|e: Infallible| match e {});
                    Ok::<_, Infallible>(response.map(|body| Held { body, _busy: busy }))
                }
            })
        };
        let run = async move {
            match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                }
                Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
                    Ok(Ok(stream)) => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(%peer, "connection ended: {e}");
                        }
                    }
                    Ok(Err(e)) => tracing::info!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::info!(%peer, "TLS handshake not finished within {handshake_timeout:?}"),
                },
            }
        };
        tokio::select! {
            _ = run => {}
            _ = slot.evicted() => tracing::debug!(%peer, "idle connection closed to admit another"),
        }
    }
}

/// An answer's body that keeps its connection marked busy until it has
/// been sent.
struct Held {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
