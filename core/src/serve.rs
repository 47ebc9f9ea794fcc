//! The HTTP accept loop: the router on hyper's HTTP/1 connections, with the two limits
//! `axum::serve` does not set.
//!
//! - **Headers must arrive within [`HEADER_READ_TIMEOUT`].** A client that opens a connection
//!   and sends half a request line, then nothing (a slow-headers attack, or a broken proxy), is
//!   cut off instead of holding a socket for ever. The request timeout (`hardening`) starts only
//!   once the headers are in.
//! - **At most [`Limits::max_connections`] connections are open at once.** Beyond it, new ones
//!   wait in the kernel's accept queue until one closes, so the process never runs out of file
//!   descriptors (`accept: Too many open files`) and keeps the ones it needs for its database
//!   and its destinations.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How long a client has to send a request's headers, counted from when the connection opened or
/// its last response was sent: hyper restarts the timer while a keep-alive connection waits for
/// its next request, so this is also the longest a connection may sit idle. 75 s is above the
/// usual load balancers' idle timeouts (60 s), so they close idle connections first and never send
/// a request on one this server is closing (`TOUCHPOINT_HEADER_TIMEOUT_SECS`).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(75);

/// How long open connections get to finish their requests once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// File descriptors kept for everything but client connections (database files and pool,
/// destinations' sockets, the warehouse folder).
const RESERVED_FDS: u64 = 256;

/// Default cap when the file limit is high or unknown.
const MOST_CONNECTIONS: u64 = 10_000;

/// The accept loop's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
}

impl Limits {
    /// `max_connections` (`TOUCHPOINT_MAX_CONNECTIONS`) when not 0, else [`connection_cap`] of
    /// the process's open-file limit; headers within `header_read_timeout`.
    pub fn for_process(max_connections: usize, header_read_timeout: Duration) -> Limits {
        let max_connections = if max_connections > 0 {
            max_connections
        } else {
            let limit = open_file_limit();
            if limit.is_some_and(|n| n < RESERVED_FDS + 64) {
                tracing::warn!(
                    open_files = limit,
                    "the open-file limit leaves room for 64 connections at most; raise it (ulimit -n)"
                );
            }
            connection_cap(limit)
        };
        Limits {
            max_connections,
            header_read_timeout,
        }
    }
}

/// The connection cap for an open-file limit: the limit less [`RESERVED_FDS`], at most
/// [`MOST_CONNECTIONS`], at least 64 (a limit that low is a misconfiguration, warned of at start).
pub fn connection_cap(open_files: Option<u64>) -> usize {
    let cap = open_files
        .map(|n| n.saturating_sub(RESERVED_FDS))
        .unwrap_or(MOST_CONNECTIONS)
        .clamp(64, MOST_CONNECTIONS);
    usize::try_from(cap).unwrap_or(64)
}

/// The soft limit on open files, where the platform tells it.
fn open_file_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish
/// for up to [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned_full = false;
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        if permits.available_permits() == 0 && !warned_full {
            tracing::warn!(
                max = limits.max_connections,
                "every connection slot is taken; new connections wait (TOUCHPOINT_MAX_CONNECTIONS)"
            );
            warned_full = true;
        } else if permits.available_permits() > limits.max_connections / 2 {
            warned_full = false;
        }
        // Finished connections' tasks, so the set holds open connections only.
        while connections.try_join_next().is_some() {}
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A client that went away before accept: nothing to wait for.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors (another part of the process holds them): wait, bounded,
                    // rather than spin and log in a loop.
                    tracing::warn!(error = %e, "accept failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut closed = closed.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = async { closed.wait_for(|c| *c).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace period; closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// An accept error that concerns one connection only (the client reset it before it was taken).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_connection_cap_leaves_descriptors_for_everything_else() {
        assert_eq!(connection_cap(Some(20_000)), 10_000);
        assert_eq!(connection_cap(Some(1_024)), 768);
        assert_eq!(connection_cap(Some(100)), 64);
        assert_eq!(connection_cap(None), 10_000);
    }

    #[tokio::test]
    async fn shutdown_closes_a_connection_that_never_ends_after_the_grace() {
        tokio::time::pause();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A response that never ends, like the debugger's event stream.
        let router = Router::new().route(
            "/",
            axum::routing::get(|| async {
                axum::body::Body::from_stream(futures_util::stream::pending::<
                    Result<axum::body::Bytes, std::io::Error>,
                >())
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, limits(4), async {
            let _ = stopped.await;
        }));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        stop.send(()).unwrap();
        // Paused time runs ahead to the grace's end; the server returns instead of waiting on.
        tokio::time::timeout(SHUTDOWN_GRACE * 2, server)
            .await
            .expect("the server returned after the grace")
            .unwrap()
            .unwrap();
    }

    fn limits(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            header_read_timeout: Duration::from_secs(30),
        }
    }

    async fn served(limits: Limits) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, limits, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    async fn get(addr: std::net::SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let (addr, _stop) = served(Limits {
            header_read_timeout: Duration::from_millis(200),
            ..limits(8)
        })
        .await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        // The server closes the connection (408 or nothing); bounded by a timeout either way.
        let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the half-sent request was not cut off");
        assert!(get(addr).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_until_one_closes() {
        let (addr, _stop) = served(limits(2)).await;
        let idle: Vec<tokio::net::TcpStream> = vec![
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            tokio::net::TcpStream::connect(addr).await.unwrap(),
        ];
        // Both slots are held: a third request is not answered while they stay open.
        let mut third = tokio::spawn(get(addr));
        let early = tokio::time::timeout(Duration::from_millis(300), &mut third).await;
        assert!(early.is_err(), "a third connection was served past the cap");
        drop(idle);
        let answer = tokio::time::timeout(Duration::from_secs(10), third)
            .await
            .expect("served once a slot was free")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
