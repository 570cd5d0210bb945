//! Fixtures for strata's tests: a busybox rootfs tarball made from the host's busybox-static,
//! temporary roots, and a runner for the real `strata` binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Skips the calling test with a printed reason when `$cond` is false.
#[macro_export]
macro_rules! require {
    ($cond:expr, $why:expr) => {
        if !$cond {
            eprintln!("SKIPPED: {}", $why);
            return;
        }
    };
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {program}")).output().is_ok_and(|o| o.status.success())
}

/// Writes a busybox rootfs tarball (the same layout as ../shared/peers/make-busybox-rootfs.sh)
/// and returns its path. Panics when busybox-static is not installed: the test command
/// installs it.
pub fn busybox_rootfs_tar(dir: &Path) -> PathBuf {
    let busybox = std::fs::read(BUSYBOX).expect("busybox-static is installed (apt-get install busybox-static)");
    let path = dir.join("busybox-rootfs.tar");
    let file = std::fs::File::create(&path).expect("create rootfs tar");
    let mut tar = tar::Builder::new(file);
    for d in
        ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "var", "run", "home"]
    {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(if d == "tmp" { 0o1777 } else { 0o755 });
        header.set_size(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        tar.append_data(&mut header, format!("{d}/"), std::io::empty()).expect("dir");
    }
    let mut file = |name: &str, mode: u32, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        tar.append_data(&mut header, name, data).expect("file");
    };
    file("bin/busybox", 0o755, &busybox);
    file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
    file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n");
    // Every applet the host's busybox has, as /bin/<applet> -> busybox.
    let listed = Command::new(BUSYBOX).arg("--list").output().expect("busybox --list");
    let applets: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_owned)
        .collect();
    for applet in &applets {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_size(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox").expect("symlink");
    }
    tar.finish().expect("finish tar");
    path
}

/// A temporary store root plus a scratch directory, removed on drop. Containers a failed
/// test left running are removed first (`rm -f`), so they do not outlive their root.
pub struct TestRoot {
    pub dir: tempfile::TempDir,
    binary: std::sync::Mutex<Option<String>>,
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        let binary = self.binary.lock().map(|b| b.clone()).unwrap_or(None);
        let (Some(binary), true) = (binary, self.root().join("containers").is_dir()) else { return };
        let Ok(listed) = self.strata(&binary).args(["ps", "-aq", "--no-trunc"]).output() else { return };
        let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout).split_whitespace().map(str::to_owned).collect();
        if !ids.is_empty() {
            let _ = self.strata(&binary).args(["rm", "-f"]).args(&ids).output();
        }
        // Bridges and firewall tables live on the host, not in the root.
        if self.root().join("networks").is_dir() {
            let _ = self.strata(&binary).args(["network", "prune", "-f"]).output();
        }
    }
}

impl Default for TestRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRoot {
    pub fn new() -> TestRoot {
        TestRoot { dir: tempfile::tempdir().expect("tempdir"), binary: std::sync::Mutex::new(None) }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `strata` command against this root.
    pub fn strata(&self, binary: &str) -> Command {
        if let Ok(mut remembered) = self.binary.lock() {
            remembered.get_or_insert_with(|| binary.to_owned());
        }
        let mut command = Command::new(binary);
        command.arg("--root").arg(self.root()).env_remove("STRATA_ROOT").stdin(Stdio::null());
        command
    }
}

/// Runs another program (skopeo, umoci, podman, tar) with `args`.
pub fn tool(program: &str, args: &[&str]) -> Run {
    let mut command = Command::new(program);
    command.args(args);
    Run::of(command)
}

/// Result of a command, with helpers that print everything on failure.
pub struct Run {
    pub output: Output,
    pub what: String,
}

impl Run {
    pub fn of(mut command: Command) -> Run {
        let what = format!("{command:?}");
        let output = command.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        Run { output, what }
    }

    pub fn with_stdin(mut command: Command, input: &[u8]) -> Run {
        let what = format!("{command:?}");
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().expect("wait");
        let _ = writer.join();
        Run { output, what }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    /// Panics with the whole output unless the command succeeded.
    pub fn ok(self) -> Run {
        assert!(
            self.output.status.success(),
            "{} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.code(),
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Panics unless the command failed; returns it for more checks.
    pub fn fails(self) -> Run {
        assert!(
            !self.output.status.success(),
            "{} should have failed:\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, storage and config in a temp
/// dir, killed on drop.
pub struct Registry {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts one; `auth` is an extra YAML block under `auth:` (e.g. htpasswd), if any. `None`
    /// (with the reason printed) when the registry is not installed.
    pub fn start(auth: Option<&str>) -> Option<Registry> {
        Self::start_with(auth, None)
    }

    /// [`Registry::start`] serving HTTPS with `tls` (certificate, key) when given.
    pub fn start_with(auth: Option<&str>, tls: Option<(&Path, &Path)>) -> Option<Registry> {
        const BINARY: &str = "/usr/bin/docker-registry";
        if !Path::new(BINARY).exists() {
            eprintln!("SKIPPED: {BINARY} is not installed (apt-get install docker-registry)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        // A free port: bind, read it, let it go for the registry.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let tls = tls.map_or_else(String::new, |(cert, key)| {
            format!(", tls: {{certificate: {}, key: {}}}", cert.display(), key.display())
        });
        let mut config = format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}{tls}}}\n",
            dir.path().join("data").display()
        );
        if let Some(auth) = auth {
            config.push_str(&format!("auth:\n{auth}\n"));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("registry config");
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).expect("log"))
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { child, port, _dir: dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "docker-registry did not listen on {port}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(registry)
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The directory holding its config, data and log.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SHA-256 of `data`, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}
