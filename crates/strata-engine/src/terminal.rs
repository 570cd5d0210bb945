//! Pseudo-terminals for `run -t` / `exec -t`: relaying between our terminal (raw mode, window
//! size kept in step on SIGWINCH) and the container's.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::attach::AttachServer;

static WINDOW_CHANGED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int) {
    WINDOW_CHANGED.store(true, Ordering::Relaxed);
}

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 lives as long as the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Our terminal in raw mode until dropped.
pub(crate) struct RawMode(Option<rustix::termios::Termios>);

impl RawMode {
    pub(crate) fn enter() -> RawMode {
        let Ok(saved) = rustix::termios::tcgetattr(stdin()) else { return RawMode(None) };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(stdin(), rustix::termios::OptionalActions::Now, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = rustix::termios::tcsetattr(stdin(), rustix::termios::OptionalActions::Now, saved);
        }
    }
}

/// Notes SIGWINCH from now on, for [`window_changed`].
pub(crate) fn watch_window() {
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGWINCH, on_winch as *const () as libc::sighandler_t) };
}

/// Whether our window changed size since the last call.
pub(crate) fn window_changed() -> bool {
    WINDOW_CHANGED.swap(false, Ordering::Relaxed)
}

/// Gives the container's terminal our window size (when we have a terminal).
pub fn copy_window_size(master: &OwnedFd) {
    if let Ok(size) = rustix::termios::tcgetwinsize(stdin()) {
        let _ = rustix::termios::tcsetwinsize(master, size);
    }
}

/// Relays until the container side closes: master → our stdout (when `echo`) and the log;
/// our stdin → master (when `forward_stdin`).
/// Clients attached through `server` see the output and type into the terminal too.
pub(crate) fn relay(
    master: OwnedFd,
    echo: bool,
    forward_stdin: bool,
    log: Option<(&Path, crate::containers::LogLimits)>,
    mut server: Option<AttachServer>,
) -> io::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let _raw = (echo && forward_stdin && rustix::termios::isatty(stdin())).then(RawMode::enter);
    if echo {
        watch_window();
        copy_window_size(&master);
    }
    let mut log_file = match log {
        Some((path, max)) => Some(crate::containers::JsonLog::open(path, max)?),
        None => None,
    };
    let mut partial: Vec<u8> = Vec::new();
    let mut stdin_open = forward_stdin;
    let mut buffer = vec![0u8; 32 << 10];
    loop {
        if echo && window_changed() {
            copy_window_size(&master);
        }
        let mut fds = vec![PollFd::new(&master, PollFlags::IN)];
        if stdin_open {
            fds.push(PollFd::from_borrowed_fd(stdin(), PollFlags::IN));
        }
        let own = fds.len();
        if let Some(server) = &server {
            server.poll_fds(&mut fds);
        }
        match poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 200_000_000 })) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds.iter().map(|fd| !fd.revents().is_empty()).collect();
        drop(fds);
        let master_ready = ready[0];
        let stdin_ready = stdin_open && ready[1];
        if let Some(server) = &mut server {
            let inputs = server.service(&ready[own..]);
            crate::attach::pass_inputs(inputs, Some(master.as_fd()), true);
        }
        if master_ready {
            match rustix::io::read(&master, &mut buffer) {
                Ok(0) | Err(rustix::io::Errno::IO) => break,
                Ok(n) => {
                    let data = &buffer[..n];
                    if echo {
                        let mut out = io::stdout().lock();
                        out.write_all(data)?;
                        out.flush()?;
                    }
                    if let Some(server) = &mut server {
                        server.broadcast(crate::attach::STDOUT, data);
                    }
                    if let Some(file) = log_file.as_mut() {
                        partial.extend_from_slice(data);
                        while let Some(newline) = partial.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = partial.drain(..=newline).collect();
                            file.write(&line, 0)?;
                        }
                    }
                }
                Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if stdin_ready {
            match rustix::io::read(stdin(), &mut buffer) {
                Ok(0) => stdin_open = false,
                Ok(n) => {
                    let mut rest = &buffer[..n];
                    while !rest.is_empty() {
                        match rustix::io::write(master.as_fd(), rest) {
                            Ok(written) => rest = &rest[written..],
                            Err(rustix::io::Errno::INTR) => {}
                            Err(_) => break,
                        }
                    }
                }
                Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                Err(_) => stdin_open = false,
            }
        }
    }
    if let (Some(file), false) = (log_file.as_mut(), partial.is_empty()) {
        file.write(&partial, 0)?;
    }
    if let Some(server) = server {
        server.finish();
    }
    Ok(())
}
