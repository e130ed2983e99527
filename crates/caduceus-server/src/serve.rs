//! Serving the application: TLS by rustls (or plain HTTP only when the
//! configuration says `danger_plaintext_http`), connection timeouts, and
//! graceful shutdown — stop accepting, drain in-flight requests, then close
//! the spine and flush storage.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use caduceus_core::event::LifecyclePhase;

use crate::app::{self, AppState};
use crate::platform::{Platform, ServerError};
use crate::tls;

/// Where the server listens, once it does.
#[derive(Debug, Clone)]
pub struct Listening {
    pub addr: SocketAddr,
    /// `https` or, with `danger_plaintext_http`, `http`.
    pub scheme: &'static str,
    /// The TLS certificate and whether this start generated it.
    pub tls: Option<tls::TlsMaterial>,
}

impl Listening {
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }
}

/// How long a new connection may take to send its first request, and a
/// request its headers: slow clients cannot hold connections open.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve until `shutdown` resolves, then shut down gracefully. `on_listening`
/// is called once the socket is bound.
pub async fn run(
    platform: Arc<Platform>,
    shutdown: impl Future<Output = ()> + Send,
    on_listening: impl FnOnce(&Listening) + Send,
) -> Result<(), ServerError> {
    // One process-wide crypto provider; a second install is a harmless no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = &platform.config;
    let addr = config.listen_addr()?;
    let state = match AppState::start(platform.clone()).await {
        Ok(state) => state,
        Err(e) => {
            platform.shutdown().await;
            return Err(e);
        }
    };
    // Index access events by patient for `$access-log`; it stops when the
    // spine closes at shutdown.
    if let Err(e) = crate::vault::start_access_index(&platform).await {
        platform.shutdown().await;
        return Err(e);
    }
    // Detection and alerts; they too stop when the spine closes.
    if let Some(detect) = &state.detect
        && let Err(e) = detect.start().await
    {
        platform.shutdown().await;
        return Err(e);
    }
    // The network stage: sources, model watcher, the flow judge.
    let network = state.network.clone();
    if let Some(network) = &network
        && let Err(e) = network.start().await
    {
        platform.shutdown().await;
        return Err(e);
    }
    // Devices: discovery from flows and the periodic rescan.
    let devices = state.devices.clone();
    if let Some(devices) = &devices
        && let Err(e) = devices.start().await
    {
        platform.shutdown().await;
        return Err(e);
    }
    let app = app::build(state);
    let handle: Handle<SocketAddr> = Handle::new();

    let material = if config.server.danger_plaintext_http {
        tracing::warn!("serving plain http: danger_plaintext_http is set");
        None
    } else {
        Some(tls::ensure(config)?)
    };
    let mut server_task = match &material {
        Some(m) => {
            let rustls = RustlsConfig::from_pem_file(&m.cert_path, &m.key_path)
                .await
                .map_err(|e| ServerError::Io(format!("cannot load the tls certificate or key: {e}")))?;
            let acceptor =
                axum_server::tls_rustls::RustlsAcceptor::new(rustls).handshake_timeout(TLS_HANDSHAKE_TIMEOUT);
            let mut server = axum_server::bind(addr)
                .acceptor(acceptor)
                .handle(handle.clone())
                .first_request_timeout(FIRST_REQUEST_TIMEOUT);
            server.http_builder().http1().header_read_timeout(HEADER_READ_TIMEOUT);
            tokio::spawn(server.serve(app.clone().into_make_service_with_connect_info::<SocketAddr>()))
        }
        None => {
            let mut server =
                axum_server::bind(addr).handle(handle.clone()).first_request_timeout(FIRST_REQUEST_TIMEOUT);
            server.http_builder().http1().header_read_timeout(HEADER_READ_TIMEOUT);
            tokio::spawn(server.serve(app.clone().into_make_service_with_connect_info::<SocketAddr>()))
        }
    };

    let Some(bound) = handle.listening().await else {
        let reason = match server_task.await {
            Ok(Err(e)) => e.to_string(),
            _ => "unknown error".into(),
        };
        platform.shutdown().await;
        return Err(ServerError::Io(format!("cannot listen on {addr}: {reason}")));
    };
    let listening = Listening { addr: bound, scheme: if material.is_some() { "https" } else { "http" }, tls: material };
    if let Err(e) = platform.record_lifecycle(LifecyclePhase::Started).await {
        handle.shutdown();
        let _ = server_task.await;
        platform.shutdown().await;
        return Err(e);
    }
    tracing::info!(addr = %bound, scheme = listening.scheme, "serving");
    on_listening(&listening);

    let early_exit = tokio::select! {
        () = shutdown => None,
        result = &mut server_task => Some(result),
    };
    let result = match early_exit {
        Some(result) => result,
        None => {
            let grace = Duration::from_secs(config.server.shutdown_grace_secs);
            tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new connections, draining requests");
            handle.graceful_shutdown(Some(grace));
            server_task.await
        }
    };
    if let Err(e) = platform.record_lifecycle(LifecyclePhase::Stopping).await {
        tracing::warn!(error = %e, "could not record the stop event");
    }
    if let Some(network) = &network {
        network.stop();
    }
    if let Some(devices) = &devices {
        devices.stop();
    }
    platform.shutdown().await;
    if let Some(network) = &network {
        network.finish().await;
    }
    match result {
        Ok(Ok(())) => {
            tracing::info!("shut down cleanly");
            Ok(())
        }
        Ok(Err(e)) => Err(ServerError::Io(format!("server failed: {e}"))),
        Err(e) => Err(ServerError::Io(format!("server task failed: {e}"))),
    }
}

/// Resolves on ctrl-c or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM that arrives
/// right after the server says it is listening must still stop it cleanly.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let recv = |stream: std::io::Result<tokio::signal::unix::Signal>| async move {
                match stream {
                    Ok(mut stream) => {
                        stream.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = recv(interrupt) => tracing::info!("received ctrl-c"),
                () = recv(terminate) => tracing::info!("received sigterm"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        tracing::info!("received ctrl-c");
    }
}
