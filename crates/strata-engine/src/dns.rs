//! The embedded resolver of user-defined networks, as Docker's 127.0.0.11 — without a daemon:
//! the process that holds a container's network (its monitor, or a foreground `run`) serves
//! its container's resolver from a thread, on a UDP socket bound to 127.0.0.11:53 *inside*
//! the container's namespace. Names of containers on the same network (container name,
//! `--network-alias`, `--hostname`, short ID) are answered from the records on disk at each query, so a
//! container started a moment ago is found; every other question goes to the host's resolvers
//! (or `--dns`) through a socket in the host's namespace, as Docker forwards them. Over TCP
//! too (a listener at 127.0.0.11:53 beside the UDP socket; what is forwarded from a TCP query
//! goes to the upstream over TCP, so a long answer comes whole).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::Engine;

pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const TTL: u32 = 600;

/// A question: its name (lower case, no trailing dot) and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Question {
    pub name: String,
    pub kind: u16,
    /// Where the question section ends in the query.
    end: usize,
}

const A: u16 = 1;

/// The first question of a standard query; `None` for anything else.
pub(crate) fn parse_query(query: &[u8]) -> Option<Question> {
    if query.len() < 12 || query[2] & 0x80 != 0 || (query[2] >> 3) & 0x0f != 0 {
        return None;
    }
    if u16::from_be_bytes([query[4], query[5]]) == 0 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let length = *query.get(at)? as usize;
        at += 1;
        if length == 0 {
            break;
        }
        if length > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + length)?).to_lowercase());
        at += length;
    }
    let kind = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    Some(Question { name: labels.join("."), kind, end: at + 4 })
}

/// The answer to `query` with `addresses` (for an A question; none for other types of a name
/// we own: NOERROR, no records).
pub(crate) fn answer(query: &[u8], question: &Question, addresses: &[Ipv4Addr]) -> Vec<u8> {
    let records: &[Ipv4Addr] = if question.kind == A { addresses } else { &[] };
    let mut out = Vec::with_capacity(question.end + 16 * records.len());
    out.extend_from_slice(&query[..2]);
    // QR, the query's RD, RA; NOERROR.
    out.push(0x80 | (query[2] & 0x01));
    out.push(0x80);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..question.end]);
    for address in records {
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&address.octets());
    }
    out
}

/// SERVFAIL for a query we could not forward.
fn failure(query: &[u8], question: &Question) -> Vec<u8> {
    let mut out = answer(query, question, &[]);
    out[3] = 0x82;
    out
}

/// A running resolver; stopped (and joined) when dropped.
pub(crate) struct Resolver {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The resolver's sockets (UDP and TCP), bound at 127.0.0.11:53 inside a namespace.
pub(crate) struct ResolverSockets {
    udp: UdpSocket,
    tcp: TcpListener,
}

/// The resolver's sockets, bound at 127.0.0.11:53 inside the namespace at `sandbox` before
/// the container starts (so its first query finds them), by a thread that is gone again when
/// this returns: the runtime clones from a single-threaded process.
pub(crate) fn bind_resolver(sandbox: &std::path::Path) -> std::io::Result<ResolverSockets> {
    let namespace = std::fs::File::open(sandbox)?;
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(namespace.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))?;
        let udp = UdpSocket::bind((RESOLVER, 53))?;
        udp.set_nonblocking(true)?;
        let tcp = TcpListener::bind((RESOLVER, 53))?;
        tcp.set_nonblocking(true)?;
        Ok(ResolverSockets { udp, tcp })
    })
    .join()
    .map_err(|_| std::io::Error::other("the resolver thread panicked"))?
}

/// At most this many TCP clients are served at once; more wait in the listen queue.
const TCP_CLIENTS: usize = 16;

impl Engine {
    /// Serves container `id`'s resolver (on network `network_id`) on `inside`, forwarding to
    /// `upstream`, until the returned [`Resolver`] is dropped.
    pub(crate) fn serve_resolver(
        &self,
        id: &str,
        network_id: &str,
        inside: ResolverSockets,
        upstream: Vec<Ipv4Addr>,
    ) -> std::io::Result<Resolver> {
        // The forwarding socket belongs to the host's namespace.
        let outside = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        outside.set_read_timeout(Some(Duration::from_secs(2)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let engine = self.clone();
        let (id, network_id, flag) = (id.to_owned(), network_id.to_owned(), stop.clone());
        let thread = std::thread::spawn(move || {
            use rustix::event::{poll, PollFd, PollFlags, Timespec};
            let clients = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut buffer = [0u8; 4096];
            let timeout = Timespec { tv_sec: 0, tv_nsec: 250_000_000 };
            while !flag.load(Ordering::Relaxed) {
                let mut fds = [PollFd::new(&inside.udp, PollFlags::IN), PollFd::new(&inside.tcp, PollFlags::IN)];
                if poll(&mut fds, Some(&timeout)).is_err() {
                    continue;
                }
                let (udp_ready, tcp_ready) = (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
                if udp_ready {
                    while let Ok((n, client)) = inside.udp.recv_from(&mut buffer) {
                        let query = &buffer[..n];
                        let Some(question) = parse_query(query) else { continue };
                        let reply = match engine.lookup(&id, &network_id, &question.name) {
                            Some(addresses) => answer(query, &question, &addresses),
                            None => forward(&outside, &upstream, query).unwrap_or_else(|| failure(query, &question)),
                        };
                        let _ = inside.udp.send_to(&reply, client);
                    }
                }
                if tcp_ready && clients.load(Ordering::Relaxed) >= TCP_CLIENTS {
                    std::thread::sleep(Duration::from_millis(10));
                } else if tcp_ready {
                    let Ok((stream, _)) = inside.tcp.accept() else { continue };
                    clients.fetch_add(1, Ordering::Relaxed);
                    let (engine, id, network_id) = (engine.clone(), id.clone(), network_id.clone());
                    let (upstream, clients) = (upstream.clone(), clients.clone());
                    std::thread::spawn(move || {
                        let _ = engine.serve_tcp(stream, &id, &network_id, &upstream);
                        clients.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            }
        });
        Ok(Resolver { stop, thread: Some(thread) })
    }

    /// One TCP client: length-prefixed queries, answered in turn until it closes or is idle
    /// for two seconds.
    fn serve_tcp(&self, mut stream: TcpStream, id: &str, network_id: &str, upstream: &[Ipv4Addr]) -> Option<()> {
        stream.set_nonblocking(false).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
        loop {
            let query = read_framed(&mut stream)?;
            let question = parse_query(&query)?;
            let reply = match self.lookup(id, network_id, &question.name) {
                Some(addresses) => answer(&query, &question, &addresses),
                None => forward_tcp(upstream, &query).unwrap_or_else(|| failure(&query, &question)),
            };
            write_framed(&mut stream, &reply)?;
        }
    }

    /// The addresses `name` has on the network, for a container there: by name, alias or
    /// short ID. `None`: not a name of this network.
    fn lookup(&self, asker: &str, network_id: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
        let all = self.list_containers_raw().ok()?;
        // Every user network the asker is on now (`network connect` adds some).
        let mut networks: Vec<String> = all
            .iter()
            .find(|c| c.id == asker)
            .map(|c| {
                c.network
                    .endpoints
                    .iter()
                    .filter(|(n, _)| n.as_str() != "bridge")
                    .map(|(_, e)| e.network_id.clone())
                    .collect()
            })
            .unwrap_or_default();
        if networks.is_empty() {
            networks.push(network_id.to_owned());
        }
        let mut found = Vec::new();
        for container in all {
            let Some(endpoint) = container.network.endpoints.values().find(|e| networks.contains(&e.network_id)) else {
                continue;
            };
            let hostname = container.config.get("Hostname").and_then(serde_json::Value::as_str).unwrap_or_default();
            let matches = container.name.eq_ignore_ascii_case(name)
                || (name.len() == 12 && container.id.starts_with(name))
                || (!hostname.is_empty() && hostname.eq_ignore_ascii_case(name))
                || endpoint.aliases.iter().any(|a| a.eq_ignore_ascii_case(name));
            if matches {
                if let Ok(address) = endpoint.ip_address.parse() {
                    found.push(address);
                }
            }
        }
        (!found.is_empty()).then_some(found)
    }
}

/// Asks the host's resolvers, one after the other, for the answer to `query`.
fn forward(socket: &UdpSocket, upstream: &[Ipv4Addr], query: &[u8]) -> Option<Vec<u8>> {
    let mut buffer = [0u8; 4096];
    for server in upstream {
        let target = SocketAddr::from((*server, 53));
        if socket.send_to(query, target).is_err() {
            continue;
        }
        while let Ok((n, from)) = socket.recv_from(&mut buffer) {
            if from == target && n >= 2 && buffer[..2] == query[..2] {
                return Some(buffer[..n].to_vec());
            }
        }
    }
    None
}

/// One DNS message over TCP: a two-byte length, then the message.
fn read_framed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).ok()?;
    let mut message = vec![0u8; u16::from_be_bytes(length) as usize];
    stream.read_exact(&mut message).ok()?;
    Some(message)
}

fn write_framed(stream: &mut TcpStream, message: &[u8]) -> Option<()> {
    let length = u16::try_from(message.len()).ok()?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).ok()
}

/// Asks the host's resolvers over TCP, one after the other.
fn forward_tcp(upstream: &[Ipv4Addr], query: &[u8]) -> Option<Vec<u8>> {
    for server in upstream {
        let Ok(mut stream) = TcpStream::connect_timeout(&SocketAddr::from((*server, 53)), Duration::from_secs(2))
        else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if write_framed(&mut stream, query).is_some() {
            if let Some(reply) = read_framed(&mut stream).filter(|r| r.len() >= 2 && r[..2] == query[..2]) {
                return Some(reply);
            }
        }
    }
    None
}

/// The host's resolvers (loopback ones too: the forwarder runs in the host's namespace).
pub(crate) fn host_resolvers() -> Vec<Ipv4Addr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAAA: u16 = 28;

    /// A query for `name`, type `kind`, with recursion desired.
    fn query(name: &str, kind: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&kind.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn parses_questions_and_builds_answers() {
        let q = query("Web.example", A);
        let question = parse_query(&q).expect("a question");
        assert_eq!(question.name, "web.example");
        let reply = answer(&q, &question, &[Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)]);
        assert_eq!(&reply[..2], &[0x12, 0x34]);
        assert_eq!(reply[2], 0x81, "response, recursion desired kept");
        assert_eq!(u16::from_be_bytes([reply[6], reply[7]]), 2, "two answers");
        assert_eq!(&reply[reply.len() - 4..], &[10, 0, 0, 3]);
        // AAAA of a name we own: NOERROR, nothing.
        let q6 = query("web", AAAA);
        let reply = answer(&q6, &parse_query(&q6).expect("question"), &[Ipv4Addr::new(10, 0, 0, 2)]);
        assert_eq!(u16::from_be_bytes([reply[6], reply[7]]), 0);
        assert_eq!(reply[3] & 0x0f, 0);
        // Not queries: responses, truncated packets.
        let mut response = q.clone();
        response[2] |= 0x80;
        assert!(parse_query(&response).is_none());
        assert!(parse_query(&q[..14]).is_none());
    }
}
