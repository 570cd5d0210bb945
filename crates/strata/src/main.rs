//! `strata`: parse the command line, run one command, map errors to Docker's exit codes.

mod cli;
mod commands;
mod output;
mod template;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    raise_open_file_limit();
    let sealed_before_parsing = cli::command_name_may_enter_containers(std::env::args_os().skip(1));
    if sealed_before_parsing {
        seal();
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if !sealed_before_parsing && cli.command.starts_or_enters_containers() {
        // The command line was spelled in a way the quick look before parsing missed.
        seal();
    }
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`strata logs ID | head`): stop quietly, as a CLI killed by
        // SIGPIPE would.
        Err(e) if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(is_broken_pipe)) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            output::print_error(&e);
            ExitCode::from(1)
        }
    }
}

/// From here on this process may become (or start) a container's process: it must not be the
/// host's binary, which the container could then open and rewrite. Re-executes from a sealed
/// copy (once: a no-op when already running from one).
fn seal() {
    if let Err(e) = strata_runtime::sealed::ensure_sealed() {
        eprintln!("Error: cannot run from a sealed copy of strata: {e}");
        std::process::exit(125);
    }
    // Executed through a descriptor or /proc/self/exe, the process's name is the kernel's
    // guess ("exe", a number): give it the one it was invoked by, for ps and pgrep.
    if let Some(name) = std::env::args_os().next() {
        let name = std::path::Path::new(&name).file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default();
        let mut name: Vec<u8> = name.into_iter().filter(|b| *b != 0).take(15).collect();
        name.push(0);
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    }
}

fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Layer unpacking keeps a directory descriptor per directory; use the whole hard limit
/// (never more: raising it needs CAP_SYS_RESOURCE).
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}
