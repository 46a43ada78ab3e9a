//! Listening sockets.

/// Accept connections with Nagle's algorithm off. An answer goes out in
/// pieces (headers, then each chunk of its body); with Nagle on, a piece
/// written while the previous one is unacknowledged waits for the caller's
/// delayed ACK, about 40 ms on Linux.
pub fn without_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot turn Nagle's algorithm off");
        }
    })
}
