//! `docker attach`: the process that relays a container's output (its monitor, or a
//! foreground `run`) serves a unix socket in the container's directory; `attach` connects to
//! it, receives the output as it comes and sends its input (and window sizes) back.
//!
//! Both directions are frames with Docker's stream header (`[kind, 0, 0, 0, size u32 BE]`
//! then `size` bytes). From the relay: kind 1 stdout, 2 stderr (a terminal's output is all
//! stdout). From a client: 0 input, 3 end of input, 4 window size (rows, cols as u16 BE).
//! The socket is in the container's directory on the host, never inside the container.
//! A client that does not keep up (4 MiB behind) is dropped rather than stalling the relay.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};

use crate::containers::Status;
use crate::error::{EngineError, Result};
use crate::Engine;

const SOCKET: &str = "attach.sock";
pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;
const INPUT: u8 = 0;
const END_OF_INPUT: u8 = 3;
const RESIZE: u8 = 4;
const MAX_FRAME: usize = 1 << 20;
const MAX_BACKLOG: usize = 4 << 20;

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Takes whole frames off the front of `buffer`; `Err` for a frame no peer of ours sends.
fn take_frames(buffer: &mut Vec<u8>) -> io::Result<Vec<(u8, Vec<u8>)>> {
    let mut frames = Vec::new();
    let mut at = 0;
    while buffer.len() - at >= 8 {
        let header = &buffer[at..at + 8];
        let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if size > MAX_FRAME || header[1..4] != [0, 0, 0] {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "attach: malformed frame"));
        }
        if buffer.len() - at < 8 + size {
            break;
        }
        frames.push((header[0], buffer[at + 8..at + 8 + size].to_vec()));
        at += 8 + size;
    }
    buffer.drain(..at);
    Ok(frames)
}

/// Binds `path` through `/proc/self/fd` (a container directory's path can be longer than a
/// socket address holds), or connects to it the same way.
fn short_path<T>(path: &Path, act: impl FnOnce(&str) -> io::Result<T>) -> io::Result<T> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = std::fs::File::open(parent)?;
    act(&format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

/// What attached clients sent, for the relay to pass on.
pub(crate) enum Input {
    Data(Vec<u8>),
    End,
    Resize(u16, u16),
}

struct Client {
    stream: UnixStream,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    gone: bool,
}

impl Client {
    fn flush(&mut self) {
        while !self.outbox.is_empty() && !self.gone {
            match rustix::net::send(&self.stream, &self.outbox, rustix::net::SendFlags::NOSIGNAL) {
                Ok(0) => self.gone = true,
                Ok(n) => {
                    self.outbox.drain(..n);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => self.gone = true,
            }
        }
    }
}

/// The relay's side: a listening socket and the clients attached to it. Dropping it closes
/// every client's stream (they see the end of the output) and removes the socket.
pub(crate) struct AttachServer {
    listener: UnixListener,
    path: std::path::PathBuf,
    clients: Vec<Client>,
}

impl AttachServer {
    pub(crate) fn bind(container_dir: &Path) -> io::Result<AttachServer> {
        let path = container_dir.join(SOCKET);
        let listener = short_path(&path, |short| {
            let _ = std::fs::remove_file(short);
            UnixListener::bind(short)
        })?;
        listener.set_nonblocking(true)?;
        Ok(AttachServer { listener, path, clients: Vec::new() })
    }

    /// Adds what to wait for to `fds`: new clients, their input, room to send them output.
    pub(crate) fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) {
        fds.push(PollFd::new(&self.listener, PollFlags::IN));
        for client in &self.clients {
            let mut flags = PollFlags::IN;
            if !client.outbox.is_empty() {
                flags |= PollFlags::OUT;
            }
            fds.push(PollFd::new(&client.stream, flags));
        }
    }

    /// Acts on the poll's results for [`poll_fds`]'s descriptors (`ready[i]`: any event).
    pub(crate) fn service(&mut self, ready: &[bool]) -> Vec<Input> {
        let mut inputs = Vec::new();
        for (client, &is_ready) in self.clients.iter_mut().zip(ready.iter().skip(1)) {
            if !is_ready {
                continue;
            }
            let mut buffer = [0u8; 16 << 10];
            loop {
                match client.stream.read(&mut buffer) {
                    Ok(0) => {
                        client.gone = true;
                        break;
                    }
                    Ok(n) => client.inbox.extend_from_slice(&buffer[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        client.gone = true;
                        break;
                    }
                }
            }
            match take_frames(&mut client.inbox) {
                Ok(frames) => inputs.extend(frames.into_iter().filter_map(|(kind, payload)| match kind {
                    INPUT => Some(Input::Data(payload)),
                    END_OF_INPUT => Some(Input::End),
                    RESIZE if payload.len() == 4 => Some(Input::Resize(
                        u16::from_be_bytes([payload[0], payload[1]]),
                        u16::from_be_bytes([payload[2], payload[3]]),
                    )),
                    _ => None,
                })),
                Err(_) => client.gone = true,
            }
            client.flush();
        }
        self.clients.retain(|c| !c.gone);
        if ready.first().copied().unwrap_or(false) {
            while let Ok((stream, _)) = self.listener.accept() {
                if stream.set_nonblocking(true).is_ok() {
                    self.clients.push(Client { stream, inbox: Vec::new(), outbox: Vec::new(), gone: false });
                }
            }
        }
        inputs
    }

    /// Sends output to every client.
    pub(crate) fn broadcast(&mut self, kind: u8, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let framed = frame(kind, data);
        for client in &mut self.clients {
            if client.outbox.len() > MAX_BACKLOG {
                client.gone = true;
                continue;
            }
            client.outbox.extend_from_slice(&framed);
            client.flush();
        }
        self.clients.retain(|c| !c.gone);
    }

    /// Blocks briefly to hand what is queued to clients before the streams close.
    pub(crate) fn finish(mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        for client in &mut self.clients {
            let _ = client.stream.set_nonblocking(false);
            let _ = client.stream.set_write_timeout(Some(
                deadline.saturating_duration_since(std::time::Instant::now()).max(Duration::from_millis(1)),
            ));
            let _ = client.stream.write_all(&client.outbox);
        }
    }
}

impl Drop for AttachServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Parses `--detach-keys` as Docker does: comma-separated single characters or `ctrl-X`
/// (`X` one of `a`–`z`, `@`, `[`, `\`, `]`, `^`, `_`).
pub fn parse_detach_keys(keys: &str) -> Result<Vec<u8>> {
    let mut codes = Vec::new();
    for key in keys.split(',') {
        if key.len() == 1 {
            codes.push(key.as_bytes()[0]);
            continue;
        }
        let control = key.strip_prefix("ctrl-").filter(|k| k.len() == 1).and_then(|k| match k.as_bytes()[0] {
            c @ b'a'..=b'z' => Some(c - b'a' + 1),
            b'@' => Some(0),
            c @ (b'[' | b'\\' | b']' | b'^' | b'_') => Some(c - b'@'),
            _ => None,
        });
        match control {
            Some(code) => codes.push(code),
            None => {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid detach keys ({keys}) provided: unknown character '{key}'"
                )))
            }
        }
    }
    Ok(codes)
}

/// Docker's escape proxy: input passes through, except that a prefix of the detach sequence
/// is held back until it either completes (detach) or breaks (then it is passed on).
struct DetachMatcher {
    keys: Vec<u8>,
    held: usize,
}

impl DetachMatcher {
    /// The bytes to forward, and whether the sequence was typed.
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &byte in input {
            if self.keys.is_empty() {
                out.push(byte);
                continue;
            }
            if byte == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.held]);
            self.held = 0;
            if byte == self.keys[0] {
                self.held = 1;
            } else {
                out.push(byte);
            }
        }
        (out, false)
    }
}

/// The flags of `docker attach`.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Forward our stdin (unless `--no-stdin`; only to containers made with `-i`).
    pub stdin: bool,
    /// Pass the signals we get on to the container (without a terminal).
    pub sig_proxy: bool,
    pub detach_keys: Option<String>,
}

/// How an attach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// The container exited with this code.
    Exited(i32),
    /// The detach keys were typed: the container goes on.
    Detached,
}

static SIGNALS: AtomicU64 = AtomicU64::new(0);
const PROXIED: [i32; 6] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

extern "C" fn on_signal(signal: libc::c_int) {
    SIGNALS.fetch_or(1 << signal, Ordering::Relaxed);
}

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 lives as long as the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

impl Engine {
    /// `docker attach`: relays the running container's output to ours and our input to it
    /// until it exits (its exit code) or the detach keys are typed.
    pub fn attach_container(&self, name: &str, options: &AttachOptions) -> Result<Attached> {
        let record = self.find_container(name)?;
        match record.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::Conflict("You cannot attach to a paused container, unpause it first".into()))
            }
            _ => return Err(EngineError::Conflict("You cannot attach to a stopped container, start it first".into())),
        }
        let keys = parse_detach_keys(options.detach_keys.as_deref().unwrap_or("ctrl-p,ctrl-q"))?;
        let tty = record.spec.terminal;
        let open_stdin = record.config.get("OpenStdin").and_then(serde_json::Value::as_bool).unwrap_or(false);
        let forward = options.stdin && open_stdin;
        let terminal_in = rustix::termios::isatty(stdin());
        if forward && tty && !terminal_in {
            return Err(EngineError::InvalidArgument("the input device is not a TTY".into()));
        }
        let path = self.container_dir(&record.id).join(SOCKET);
        let mut stream = short_path(&path, |short| UnixStream::connect(short)).map_err(|e| {
            EngineError::Conflict(format!(
                "cannot attach to container {}: its output is not relayed by a live monitor ({e}); a foreground `run --rm` writes straight to its terminal",
                record.id
            ))
        })?;
        self.emit_container(&record, "attach", &[]);
        let _raw = (tty && forward && terminal_in).then(crate::terminal::RawMode::enter);
        if tty {
            crate::terminal::watch_window();
            send_window_size(&mut stream);
        }
        if !tty && options.sig_proxy {
            for signal in PROXIED {
                // SAFETY: the handler only sets a bit in an atomic.
                unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
            }
        }
        let mut matcher = DetachMatcher { keys, held: 0 };
        let mut reading_stdin = forward;
        let mut inbox = Vec::new();
        let mut buffer = vec![0u8; 32 << 10];
        loop {
            if tty && crate::terminal::window_changed() {
                send_window_size(&mut stream);
            }
            let pending = SIGNALS.swap(0, Ordering::Relaxed);
            for signal in PROXIED {
                if pending & (1 << signal) != 0 {
                    let _ = self.kill_container(&record.id, &signal.to_string());
                }
            }
            let mut fds = vec![PollFd::new(&stream, PollFlags::IN)];
            if reading_stdin {
                fds.push(PollFd::from_borrowed_fd(stdin(), PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 100_000_000 })) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(EngineError::Io { path: path.clone(), source: e.into() }),
            }
            let output_ready = !fds[0].revents().is_empty();
            let input_ready = reading_stdin && !fds[1].revents().is_empty();
            drop(fds);
            if output_ready {
                match stream.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => inbox.extend_from_slice(&buffer[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
                let frames = take_frames(&mut inbox).map_err(|e| EngineError::Io { path: path.clone(), source: e })?;
                for (kind, payload) in frames {
                    let _ = if kind == STDERR {
                        io::stderr().write_all(&payload)
                    } else {
                        let mut out = io::stdout().lock();
                        out.write_all(&payload).and_then(|()| out.flush())
                    };
                }
            }
            if input_ready {
                match rustix::io::read(stdin(), &mut buffer) {
                    Ok(0) | Err(rustix::io::Errno::BADF) => {
                        reading_stdin = false;
                        let _ = stream.write_all(&frame(END_OF_INPUT, &[]));
                    }
                    Ok(n) => {
                        let (data, detach) = matcher.feed(&buffer[..n]);
                        if !data.is_empty() && stream.write_all(&frame(INPUT, &data)).is_err() {
                            reading_stdin = false;
                        }
                        if detach {
                            self.emit_container(&record, "detach", &[]);
                            return Ok(Attached::Detached);
                        }
                    }
                    Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                    Err(_) => reading_stdin = false,
                }
            }
        }
        // The output ended: the container exited (or its monitor died; wait says which).
        self.wait_container(&record.id).map(Attached::Exited)
    }
}

fn send_window_size(stream: &mut UnixStream) {
    if let Ok(size) = rustix::termios::tcgetwinsize(stdin()) {
        let mut payload = size.ws_row.to_be_bytes().to_vec();
        payload.extend_from_slice(&size.ws_col.to_be_bytes());
        let _ = stream.write_all(&frame(RESIZE, &payload));
    }
}

/// Writes all of `data` to a descriptor that may be non-blocking or interrupted.
pub(crate) fn write_fully(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Passes what attached clients sent to the container: input to `sink` (its stdin pipe or
/// its terminal), window sizes to it when it is a `terminal`. Returns (a client ended its
/// input, the sink failed).
pub(crate) fn pass_inputs(inputs: Vec<Input>, sink: Option<BorrowedFd<'_>>, terminal: bool) -> (bool, bool) {
    let (mut ended, mut failed) = (false, false);
    for input in inputs {
        match (input, sink) {
            (Input::Data(data), Some(fd)) if !failed => failed = write_fully(fd, &data).is_err(),
            (Input::End, _) => ended = true,
            (Input::Resize(rows, cols), Some(fd)) if terminal => {
                let size = rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
                let _ = rustix::termios::tcsetwinsize(fd, size);
            }
            _ => {}
        }
    }
    (ended, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_as_docker_parses_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").expect("default"), [16, 17]);
        assert_eq!(parse_detach_keys("a,ctrl-@,ctrl-[,ctrl-_").expect("ok"), [b'a', 0, 27, 31]);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("ab").is_err());
    }

    #[test]
    fn detach_sequence_is_held_then_passed_on_or_acted_on() {
        let mut m = DetachMatcher { keys: vec![16, 17], held: 0 };
        assert_eq!(m.feed(b"ab"), (b"ab".to_vec(), false));
        assert_eq!(m.feed(&[16]), (vec![], false), "held");
        assert_eq!(m.feed(b"x"), (vec![16, b'x'], false), "broken: passed on");
        assert_eq!(m.feed(&[16, 16]), (vec![16], false));
        assert_eq!(m.feed(&[17, b'z']), (vec![], true));
        let mut none = DetachMatcher { keys: vec![], held: 0 };
        assert_eq!(none.feed(&[16, 17]), (vec![16, 17], false));
    }

    #[test]
    fn frames_round_trip_and_bad_frames_are_refused() {
        let mut buffer = frame(STDOUT, b"hello");
        buffer.extend(frame(RESIZE, &[0, 24, 0, 80]));
        buffer.extend(&frame(STDERR, b"partial")[..10]);
        let frames = take_frames(&mut buffer).expect("frames");
        assert_eq!(frames, [(STDOUT, b"hello".to_vec()), (RESIZE, vec![0, 24, 0, 80])]);
        assert_eq!(buffer.len(), 10, "an incomplete frame waits");
        let mut bad = vec![1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(take_frames(&mut bad).is_err());
    }
}
