//! A hostile upstream on 127.0.0.1: an HTTP/1.1 server that answers every request with one
//! chosen misbehaviour — deeply nested XML or JSON, an endless body, a trickle, garbage, an
//! oversized document, or silence — so client tests can show that ucbridge bounds depth,
//! size and time against any peer, not only against the lab.
//!
//! Plain threads and `std::net`, no async runtime: it must keep misbehaving while the
//! client under test is blocked or busy, and it must not share that client's runtime.
//! Every loop is bounded (bytes, time, connections), and dropping the server stops it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a connection may be kept busy at most, whatever the behaviour.
const MAX_CONNECTION_TIME: Duration = Duration::from_secs(120);

/// What the server answers to every request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// `depth` nested `<a>` elements (closed when `closed`), as XML with this status.
    NestedXml {
        status: u16,
        depth: usize,
        closed: bool,
    },
    /// `depth` nested JSON arrays/objects (`{"a":{"a":…}}`), closed.
    NestedJson { status: u16, depth: usize },
    /// A chunked body that never ends: `chunk` repeated until the client hangs up (or
    /// [`MAX_CONNECTION_TIME`] / `limit` bytes, so the server itself stays bounded).
    Endless {
        status: u16,
        content_type: &'static str,
        prefix: Vec<u8>,
        chunk: Vec<u8>,
        limit: u64,
    },
    /// Headers at once, then the body one byte every `every` (a slow-loris upstream).
    Trickle {
        status: u16,
        body: Vec<u8>,
        every: Duration,
    },
    /// Headers that are not HTTP at all, then nothing.
    Garbage,
    /// A well-formed response of this exact body, sent as fast as the client reads.
    Fixed {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Accept the connection, read the request, never answer (until dropped).
    Silent,
}

impl Behaviour {
    /// An XML document of about `bytes` bytes: one root with many small children.
    pub fn oversized_xml(status: u16, bytes: usize) -> Behaviour {
        let mut body = b"<?xml version=\"1.0\"?><root>".to_vec();
        while body.len() < bytes {
            body.extend_from_slice(b"<item>0123456789abcdef</item>");
        }
        body.extend_from_slice(b"</root>");
        Behaviour::Fixed {
            status,
            content_type: "text/xml; charset=utf-8",
            body,
        }
    }

    /// A SOAP answer whose payload is `depth` nested `<a>` elements: inside `<return>` of a
    /// getCCMVersionResponse (status 200) or inside a Fault's `<detail>` (other statuses),
    /// i.e. exactly where a client builds a tree of what it reads.
    pub fn nested_soap(status: u16, depth: usize) -> Behaviour {
        let (open, close): (&[u8], &[u8]) = if status == 200 {
            (
                b"<ns:getCCMVersionResponse xmlns:ns=\"http://www.cisco.com/AXL/API/1.0\"><return>",
                b"</return></ns:getCCMVersionResponse>",
            )
        } else {
            (
                b"<soapenv:Fault><faultcode>soapenv:Server</faultcode><detail>",
                b"</detail></soapenv:Fault>",
            )
        };
        let mut body = b"<?xml version=\"1.0\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>".to_vec();
        body.extend_from_slice(open);
        body.extend(b"<a>".repeat(depth));
        body.extend(b"</a>".repeat(depth));
        body.extend_from_slice(close);
        body.extend_from_slice(b"</soapenv:Body></soapenv:Envelope>");
        Behaviour::Fixed {
            status,
            content_type: "text/xml; charset=utf-8",
            body,
        }
    }

    /// Unclosed tags forever: the shape that made a tree builder use gigabytes.
    pub fn endless_open_tags(status: u16) -> Behaviour {
        Behaviour::Endless {
            status,
            content_type: "text/xml; charset=utf-8",
            prefix: b"<?xml version=\"1.0\"?>".to_vec(),
            chunk: b"<a>".repeat(4096),
            limit: 4 << 30,
        }
    }
}

/// A running hostile server; dropping it stops accepting and ends open connections.
pub struct HostileServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
    accept: Option<thread::JoinHandle<()>>,
}

impl HostileServer {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub fn start(behaviour: Behaviour) -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let accept = {
            let counters = Counters {
                requests: requests.clone(),
                sent: sent.clone(),
            };
            let stop = stop.clone();
            thread::spawn(move || accept_loop(listener, behaviour, stop, counters))
        };
        HostileServer {
            addr,
            stop,
            requests,
            sent,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests whose head was read so far (retries show up here).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Body bytes the client accepted so far, over all connections: a client that stops
    /// reading at its cap keeps this near the cap plus socket buffers.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

/// What the connections report back to the [`HostileServer`].
#[derive(Clone)]
struct Counters {
    requests: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
}

fn accept_loop(
    listener: TcpListener,
    behaviour: Behaviour,
    stop: Arc<AtomicBool>,
    counters: Counters,
) {
    // At most this many connections over the server's life: a client retry storm must not
    // turn the test server into a thread bomb.
    const MAX_CONNECTIONS: usize = 1024;
    let mut served = 0;
    while !stop.load(Ordering::SeqCst) && served < MAX_CONNECTIONS {
        match listener.accept() {
            Ok((stream, _)) => {
                served += 1;
                let (behaviour, stop, counters) =
                    (behaviour.clone(), stop.clone(), counters.clone());
                thread::spawn(move || {
                    let _ = serve(stream, &behaviour, &stop, &counters);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve(
    mut stream: TcpStream,
    behaviour: &Behaviour,
    stop: &AtomicBool,
    counters: &Counters,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    read_request(&mut stream)?;
    counters.requests.fetch_add(1, Ordering::SeqCst);
    let sent = &*counters.sent;
    let deadline = Instant::now() + MAX_CONNECTION_TIME;
    let alive = || !stop.load(Ordering::SeqCst) && Instant::now() < deadline;
    match behaviour {
        Behaviour::NestedXml {
            status,
            depth,
            closed,
        } => {
            let mut body = b"<?xml version=\"1.0\"?>".to_vec();
            body.extend(b"<a>".repeat(*depth));
            if *closed {
                body.extend(b"</a>".repeat(*depth));
            }
            respond(&mut stream, *status, "text/xml; charset=utf-8", &body, sent)
        }
        Behaviour::NestedJson { status, depth } => {
            let mut body = b"{\"a\":".repeat(*depth);
            body.extend_from_slice(b"1");
            body.extend(b"}".repeat(*depth));
            respond(&mut stream, *status, "application/json", &body, sent)
        }
        Behaviour::Fixed {
            status,
            content_type,
            body,
        } => respond(&mut stream, *status, content_type, body, sent),
        Behaviour::Endless {
            status,
            content_type,
            prefix,
            chunk,
            limit,
        } => {
            write_head(&mut stream, *status, content_type, None)?;
            write_chunk(&mut stream, prefix, sent)?;
            let mut written = prefix.len() as u64;
            while alive() && written < *limit {
                write_chunk(&mut stream, chunk, sent)?;
                written += chunk.len() as u64;
            }
            Ok(())
        }
        Behaviour::Trickle {
            status,
            body,
            every,
        } => {
            write_head(
                &mut stream,
                *status,
                "text/xml; charset=utf-8",
                Some(body.len()),
            )?;
            for byte in body {
                if !alive() {
                    break;
                }
                stream.write_all(std::slice::from_ref(byte))?;
                stream.flush()?;
                sent.fetch_add(1, Ordering::SeqCst);
                sleep_unless_stopped(*every, stop);
            }
            Ok(())
        }
        Behaviour::Garbage => {
            stream.write_all(b"\x00\x01 this is not HTTP \xff\xfe\r\n\r\n")?;
            stream.flush()
        }
        Behaviour::Silent => {
            while alive() {
                sleep_unless_stopped(Duration::from_millis(50), stop);
            }
            Ok(())
        }
    }
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let end = Instant::now() + total;
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(10).min(total));
    }
}

/// Reads the request head and a `Content-Length` body (bounded: 16 MiB), so the client
/// is done writing before the misbehaviour starts.
fn read_request(stream: &mut TcpStream) -> std::io::Result<()> {
    const MAX_REQUEST: usize = 16 << 20;
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = find(&data, b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 || data.len() > MAX_REQUEST {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    let mut have = data.len() - head_end;
    while have < length {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn write_head(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    length: Option<usize>,
) -> std::io::Result<()> {
    let framing = match length {
        Some(n) => format!("Content-Length: {n}"),
        None => "Transfer-Encoding: chunked".to_owned(),
    };
    write!(
        stream,
        "HTTP/1.1 {status} Hostile\r\nContent-Type: {content_type}\r\n{framing}\r\nConnection: close\r\n\r\n"
    )
}

fn write_chunk(stream: &mut TcpStream, chunk: &[u8], sent: &AtomicU64) -> std::io::Result<()> {
    write!(stream, "{:x}\r\n", chunk.len())?;
    stream.write_all(chunk)?;
    sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
    stream.write_all(b"\r\n")
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    sent: &AtomicU64,
) -> std::io::Result<()> {
    write_head(stream, status, content_type, Some(body.len()))?;
    // In slices, so `bytes_sent` shows how far a client that hung up let it get.
    for part in body.chunks(64 * 1024) {
        stream.write_all(part)?;
        sent.fetch_add(part.len() as u64, Ordering::SeqCst);
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(server: &HostileServer) -> Vec<u8> {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn nested_xml_has_the_asked_depth() {
        let server = HostileServer::start(Behaviour::NestedXml {
            status: 200,
            depth: 1000,
            closed: true,
        });
        let out = get(&server);
        let body = &out[find(&out, b"\r\n\r\n").unwrap() + 4..];
        assert_eq!(find(body, b"</a>").map(|_| ()), Some(()));
        assert_eq!(body.windows(3).filter(|w| w == b"<a>").count(), 1000);
        assert_eq!(server.requests(), 1);
        assert_eq!(server.bytes_sent(), body.len() as u64);
    }

    #[test]
    fn endless_stops_at_its_limit() {
        let server = HostileServer::start(Behaviour::Endless {
            status: 200,
            content_type: "text/xml",
            prefix: Vec::new(),
            chunk: b"<a>".to_vec(),
            limit: 300,
        });
        let out = get(&server);
        // `limit` counts bytes: 300 bytes of 3-byte chunks, then the body ends.
        assert_eq!(out.windows(3).filter(|w| w == b"<a>").count(), 100);
        assert_eq!(server.bytes_sent(), 300);
    }
}
