//! The sockets in front of the hickory [`Catalog`]: one UDP and one TCP task per listen
//! address. We read the sockets ourselves (rather than through `hickory_server::Server`) so
//! that every undecodable message is counted, TCP connections are capped in number and in
//! idle time, and in-flight UDP queries are bounded; decoding and answering stay hickory's.
//!
//! Invariants: no input ends a listener task (errors become a counter and a `debug!`); a
//! message with the QR bit set is never answered (no reflection loops); every task a
//! listener spawns is aborted and awaited before the listener returns, so after shutdown no
//! socket of ours is left open.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_server::proto::rr::{Name, Record};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::debug;

use super::{DnsStats, Origin};

/// Resource bounds of the listeners (fixed in production, shortened by tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long a TCP connection may wait for (the rest of) a query before we close it.
    pub(crate) tcp_idle: Duration,
    /// Open TCP connections per listen address; more are closed on accept.
    pub(crate) tcp_connections: usize,
    /// UDP queries being answered at once per listen address; more are dropped.
    pub(crate) udp_in_flight: usize,
    /// Largest UDP datagram we read (EDNS payloads above this are truncated by the kernel
    /// and then fail to decode, which is what they deserve).
    pub(crate) udp_buffer: usize,
    /// Upstream timeout for one forwarding attempt.
    pub(crate) forward_timeout: Duration,
    /// Forwarding retries after the first attempt.
    pub(crate) forward_retries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            tcp_idle: Duration::from_secs(5),
            tcp_connections: 128,
            udp_in_flight: 512,
            udp_buffer: 4096,
            forward_timeout: Duration::from_secs(1),
            forward_retries: 1,
        }
    }
}

/// What every listener shares: the catalog, the counters and the zone test.
pub(crate) struct Context {
    pub(crate) catalog: Catalog,
    pub(crate) stats: Arc<DnsStats>,
    pub(crate) origin: Origin,
    pub(crate) recursion_available: bool,
    pub(crate) limits: Limits,
}

/// Serves UDP on `socket` until `shutdown` turns true.
pub(crate) async fn serve_udp(socket: UdpSocket, cx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let socket = Arc::new(socket);
    let permits = Arc::new(Semaphore::new(cx.limits.udp_in_flight));
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; cx.limits.udp_buffer];
    loop {
        let (len, src) = tokio::select! {
            () = stopped(&mut shutdown) => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(error) => {
                    debug!(%error, "dns udp receive failed");
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        if src.port() == 0 {
            cx.stats.bump_malformed();
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!("dns udp queries at their bound, dropping one");
            continue;
        };
        let bytes = buf[..len].to_vec();
        let sink = Sink::Udp { socket: socket.clone(), dst: src };
        let cx = cx.clone();
        tasks.spawn(async move {
            cx.dispatch(bytes, src, Protocol::Udp, sink).await;
            drop(permit);
        });
    }
    tasks.shutdown().await;
}

/// Serves TCP on `listener` until `shutdown` turns true.
pub(crate) async fn serve_tcp(listener: TcpListener, cx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(cx.limits.tcp_connections));
    let mut tasks = JoinSet::new();
    loop {
        let (stream, src) = tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "dns tcp accept failed");
                    // Typically EMFILE: give the process a moment instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!("dns tcp connections at their bound, closing one");
            continue;
        };
        let cx = cx.clone();
        tasks.spawn(async move {
            serve_tcp_connection(stream, src, &cx).await;
            drop(permit);
        });
    }
    tasks.shutdown().await;
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it before anyone awaits again.
    let _ = shutdown.wait_for(|stop| *stop).await.map(drop);
}

/// Answers queries on one connection in order until the client closes, stalls or errs.
async fn serve_tcp_connection(stream: TcpStream, src: SocketAddr, cx: &Context) {
    let idle = cx.limits.tcp_idle;
    let (mut rd, mut wr) = stream.into_split();
    loop {
        let len = match timeout(idle, rd.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        let mut bytes = vec![0u8; len];
        match timeout(idle, rd.read_exact(&mut bytes)).await {
            Ok(Ok(_)) => {}
            _ => {
                cx.stats.bump_malformed();
                debug!("dns tcp message cut short");
                return;
            }
        }
        let outbox = Arc::new(Mutex::new(Vec::new()));
        cx.dispatch(bytes, src, Protocol::Tcp, Sink::Tcp(outbox.clone())).await;
        let replies = std::mem::take(&mut *outbox.lock().unwrap_or_else(|e| e.into_inner()));
        for reply in replies {
            let Ok(len) = u16::try_from(reply.len()) else {
                continue;
            };
            let write = async {
                wr.write_all(&len.to_be_bytes()).await?;
                wr.write_all(&reply).await
            };
            if !matches!(timeout(idle, write).await, Ok(Ok(()))) {
                return;
            }
        }
    }
}

impl Context {
    /// Decodes one message and has the catalog answer it through `sink`.
    async fn dispatch(&self, bytes: Vec<u8>, src: SocketAddr, protocol: Protocol, sink: Sink) {
        let Ok(header) = Header::read(&mut BinDecoder::new(&bytes)) else {
            self.stats.bump_malformed();
            debug!(len = bytes.len(), "dns message shorter than a header");
            return;
        };
        if header.metadata.message_type == MessageType::Response {
            self.stats.bump_malformed();
            debug!("dns response sent to us as a query");
            return;
        }
        let request = match Request::from_bytes(bytes, src, protocol) {
            Ok(request) => request,
            Err(error) => {
                self.stats.bump_malformed();
                debug!(%error, "dns message does not decode");
                let reply =
                    Message::error_msg(header.metadata.id, header.metadata.op_code, ResponseCode::FormErr);
                if let Ok(reply) = reply.to_vec() {
                    // FORMERR is best effort: the client already sent garbage.
                    let _ = sink.send(reply).await;
                }
                return;
            }
        };
        let local = request
            .queries
            .queries()
            .first()
            .is_none_or(|query| self.origin.contains(&Name::from(query.name())));
        // Refuse here what hickory would refuse with a `warn!`/`info!` per query.
        let refusal = if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if request.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if !local && !request.metadata.recursion_desired {
            Some(ResponseCode::Refused)
        } else {
            None
        };
        if let Some(rcode) = refusal {
            debug!(%rcode, "dns query refused before lookup");
            self.stats.bump_refused();
            let mut reply = Message::error_msg(request.metadata.id, request.metadata.op_code, rcode);
            reply.add_queries(request.queries.queries().iter().map(|q| q.original().clone()));
            if request.edns.is_some() {
                reply.set_edns(Edns::new());
            }
            if let Ok(reply) = reply.to_vec() {
                let _ = sink.send(reply).await;
            }
            return;
        }
        let reply =
            Reply { sink, local, stats: self.stats.clone(), recursion_available: self.recursion_available };
        self.catalog.handle_request::<_, TokioTime>(&request, reply).await;
    }
}

/// Where a reply goes.
#[derive(Clone)]
enum Sink {
    /// Back to the sender of a datagram.
    Udp { socket: Arc<UdpSocket>, dst: SocketAddr },
    /// Into the connection's outbox, written (length-prefixed) once the query is done.
    Tcp(Arc<Mutex<Vec<Vec<u8>>>>),
}

impl Sink {
    async fn send(&self, bytes: Vec<u8>) -> std::io::Result<()> {
        match self {
            Self::Udp { socket, dst } => socket.send_to(&bytes, *dst).await.map(drop),
            Self::Tcp(outbox) => {
                outbox.lock().unwrap_or_else(|e| e.into_inner()).push(bytes);
                Ok(())
            }
        }
    }

    /// Largest reply for a request advertising `edns_payload` (RFC 1035 4.2.1, RFC 6891).
    fn max_size(&self, edns_payload: Option<u16>) -> u16 {
        match self {
            Self::Udp { .. } => edns_payload.map_or(512, |p| p.max(512)),
            Self::Tcp(_) => u16::MAX,
        }
    }
}

/// The catalog's [`ResponseHandler`]: encodes (truncating for UDP), sends, and counts.
#[derive(Clone)]
struct Reply {
    sink: Sink,
    local: bool,
    stats: Arc<DnsStats>,
    recursion_available: bool,
}

#[async_trait::async_trait]
impl ResponseHandler for Reply {
    async fn send_response<'a>(
        &mut self,
        mut response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        response.metadata_mut().recursion_available = self.recursion_available;
        let max_size = self.sink.max_size(response.edns().map(|edns| edns.max_payload()));
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        let info = response.destructive_emit(&mut encoder)?;
        self.sink.send(bytes).await?;
        self.stats.count_reply(self.local, &info);
        Ok(info)
    }
}
