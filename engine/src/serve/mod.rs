//! HTTP servers: the reward server (`engine serve`) and the OpenAI-compatible judge server (`engine serve-judge`).
//!
//! - [`reward`]: `POST /score`, OpenRLHF's `POST /get_reward`, `GET /health`, with request
//!   batching and graceful shutdown, over any [`crate::eval::RewardScorer`]. An axum
//!   application on a tokio runtime; the model runs on a blocking thread, so a slow
//!   forward pass never stops the server from accepting requests, answering `/health` or
//!   shutting down.
//!
//! Both run on [`serve_http`]: headers must arrive within [`HEADER_TIMEOUT`], bodies within
//! [`BODY_TIMEOUT`] (see [`TimedBody`]), and a shutdown waits at most [`DRAIN`] for the
//! requests in flight.

pub mod judge;
pub mod reward;

use std::future::Future;
use std::time::Duration;

/// Completes on Ctrl-C or (on Unix) SIGTERM. A signal whose handler cannot be installed
/// is not waited for.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// How long a client may take to send a request's headers (hyper closes the connection
/// after this). Without it a client that opens a connection and sends half a request line
/// holds a connection task forever.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's body, from the moment its headers are
/// in. A client that announces `Content-Length: N` and sends less gets 408 after this,
/// instead of holding a handler (and, at shutdown, the process) until it closes.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a shutdown waits for the requests in flight. Ctrl-C or SIGTERM stops
/// accepting at once, lets the connections finish their current request for at most this
/// long, then closes whatever is left, so a stalled client cannot keep the server up.
pub const DRAIN: Duration = Duration::from_secs(5);

/// How a server's shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished its request within [`DRAIN`].
    Clean,
    /// This many connections were still open after [`DRAIN`] and were closed.
    Cut(usize),
}

/// Serves `app` on `listener` over HTTP/1 until `shutdown` completes, then drains.
///
/// Our own accept loop rather than `axum::serve`, for two things `axum::serve` does not
/// offer: a header timeout ([`HEADER_TIMEOUT`], hyper needs a timer for it) and a bounded
/// drain ([`DRAIN`]): `axum::serve`'s graceful shutdown waits for every connection, and a
/// client that sends half a body and then nothing kept `engine serve` up until it closed.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors and the like: the next accept may succeed
                    // once a connection closes. Waiting a little avoids a busy loop.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let mut stopped = stopped.clone();
                connections.spawn(async move {
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let mut connection = std::pin::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => return,
                        _ = stopped.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
                    }
                    // Finishes the request in progress (if any), then closes.
                    let _ = connection.await;
                });
            }
            // Reaps finished connections so that the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
    match drained {
        Ok(()) => Drained::Clean,
        Err(_) => {
            let open = connections.len();
            connections.abort_all();
            Drained::Cut(open)
        }
    }
}

/// Why a request body could not be read; see [`TimedBody`].
#[derive(Debug)]
pub enum BodyError {
    /// Over the body limit, not UTF-8 where it must be, the client went away, ...
    Rejected(axum::extract::rejection::BytesRejection),
    /// The body did not arrive within [`BODY_TIMEOUT`].
    TimedOut,
}

impl BodyError {
    /// The status to answer with and a message for the client.
    pub fn status_and_message(&self) -> (axum::http::StatusCode, String) {
        match self {
            BodyError::Rejected(rejection) => {
                (rejection.status(), format!("cannot read the request body: {}", rejection.body_text()))
            }
            BodyError::TimedOut => (
                axum::http::StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
            ),
        }
    }
}

/// The request body as bytes, read within [`BODY_TIMEOUT`] (and the router's body limit).
/// Handlers get the error rather than a rejection so that they answer in their own format.
#[derive(Debug)]
pub struct TimedBody(pub Result<axum::body::Bytes, BodyError>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for TimedBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let read = <axum::body::Bytes as axum::extract::FromRequest<S>>::from_request(request, state);
        Ok(TimedBody(match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Ok(body) => body.map_err(BodyError::Rejected),
            Err(_) => Err(BodyError::TimedOut),
        }))
    }
}
