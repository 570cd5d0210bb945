//! The default seccomp policy, equivalent to Docker's default profile on x86_64: an allowlist
//! (everything else fails with EPERM), a few calls allowed only with safe arguments, and the
//! calls that need a capability allowed only when the container has it. Compiled here to a
//! classic BPF program; no libseccomp.

use std::io;

/// Allowed whatever the capabilities.
const ALWAYS: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_adjtime",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "arch_prctl",
    "modify_ldt",
];

/// Allowed when the container has the capability.
const WITH_CAPABILITY: &[(&str, &[&str])] = &[
    ("DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount2",
            "unshare",
        ],
    ),
    ("SYS_BOOT", &["reboot"]),
    ("SYS_CHROOT", &["chroot"]),
    ("SYS_MODULE", &["delete_module", "init_module", "finit_module"]),
    ("SYS_PACCT", &["acct"]),
    ("SYS_PTRACE", &["kcmp", "pidfd_getfd", "process_madvise"]),
    ("SYS_RAWIO", &["iopl", "ioperm"]),
    ("SYS_TIME", &["settimeofday", "clock_settime"]),
    ("SYS_TTY_CONFIG", &["vhangup"]),
    ("SYS_NICE", &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    ("SYSLOG", &["syslog"]),
    ("BPF", &["bpf"]),
    ("PERFMON", &["perf_event_open"]),
];

/// x86_64 system call numbers of the names above.
fn number(name: &str) -> Option<u32> {
    let n: i64 = match name {
        "read" => 0,
        "write" => 1,
        "open" => 2,
        "close" => 3,
        "stat" => 4,
        "fstat" => 5,
        "lstat" => 6,
        "poll" => 7,
        "lseek" => 8,
        "mmap" => 9,
        "mprotect" => 10,
        "munmap" => 11,
        "brk" => 12,
        "rt_sigaction" => 13,
        "rt_sigprocmask" => 14,
        "rt_sigreturn" => 15,
        "ioctl" => 16,
        "pread64" => 17,
        "pwrite64" => 18,
        "readv" => 19,
        "writev" => 20,
        "access" => 21,
        "pipe" => 22,
        "select" => 23,
        "sched_yield" => 24,
        "mremap" => 25,
        "msync" => 26,
        "mincore" => 27,
        "madvise" => 28,
        "shmget" => 29,
        "shmat" => 30,
        "shmctl" => 31,
        "dup" => 32,
        "dup2" => 33,
        "pause" => 34,
        "nanosleep" => 35,
        "getitimer" => 36,
        "alarm" => 37,
        "setitimer" => 38,
        "getpid" => 39,
        "sendfile" => 40,
        "socket" => 41,
        "connect" => 42,
        "accept" => 43,
        "sendto" => 44,
        "recvfrom" => 45,
        "sendmsg" => 46,
        "recvmsg" => 47,
        "shutdown" => 48,
        "bind" => 49,
        "listen" => 50,
        "getsockname" => 51,
        "getpeername" => 52,
        "socketpair" => 53,
        "setsockopt" => 54,
        "getsockopt" => 55,
        "clone" => 56,
        "fork" => 57,
        "vfork" => 58,
        "execve" => 59,
        "exit" => 60,
        "wait4" => 61,
        "kill" => 62,
        "uname" => 63,
        "semget" => 64,
        "semop" => 65,
        "semctl" => 66,
        "shmdt" => 67,
        "msgget" => 68,
        "msgsnd" => 69,
        "msgrcv" => 70,
        "msgctl" => 71,
        "fcntl" => 72,
        "flock" => 73,
        "fsync" => 74,
        "fdatasync" => 75,
        "truncate" => 76,
        "ftruncate" => 77,
        "getdents" => 78,
        "getcwd" => 79,
        "chdir" => 80,
        "fchdir" => 81,
        "rename" => 82,
        "mkdir" => 83,
        "rmdir" => 84,
        "creat" => 85,
        "link" => 86,
        "unlink" => 87,
        "symlink" => 88,
        "readlink" => 89,
        "chmod" => 90,
        "fchmod" => 91,
        "chown" => 92,
        "fchown" => 93,
        "lchown" => 94,
        "umask" => 95,
        "gettimeofday" => 96,
        "getrlimit" => 97,
        "getrusage" => 98,
        "sysinfo" => 99,
        "times" => 100,
        "ptrace" => 101,
        "getuid" => 102,
        "syslog" => 103,
        "getgid" => 104,
        "setuid" => 105,
        "setgid" => 106,
        "geteuid" => 107,
        "getegid" => 108,
        "setpgid" => 109,
        "getppid" => 110,
        "getpgrp" => 111,
        "setsid" => 112,
        "setreuid" => 113,
        "setregid" => 114,
        "getgroups" => 115,
        "setgroups" => 116,
        "setresuid" => 117,
        "getresuid" => 118,
        "setresgid" => 119,
        "getresgid" => 120,
        "getpgid" => 121,
        "setfsuid" => 122,
        "setfsgid" => 123,
        "getsid" => 124,
        "capget" => 125,
        "capset" => 126,
        "rt_sigpending" => 127,
        "rt_sigtimedwait" => 128,
        "rt_sigqueueinfo" => 129,
        "rt_sigsuspend" => 130,
        "sigaltstack" => 131,
        "utime" => 132,
        "mknod" => 133,
        "personality" => 135,
        "statfs" => 137,
        "fstatfs" => 138,
        "getpriority" => 140,
        "setpriority" => 141,
        "sched_setparam" => 142,
        "sched_getparam" => 143,
        "sched_setscheduler" => 144,
        "sched_getscheduler" => 145,
        "sched_get_priority_max" => 146,
        "sched_get_priority_min" => 147,
        "sched_rr_get_interval" => 148,
        "mlock" => 149,
        "munlock" => 150,
        "mlockall" => 151,
        "munlockall" => 152,
        "vhangup" => 153,
        "modify_ldt" => 154,
        "pivot_root" => 155,
        "prctl" => 157,
        "arch_prctl" => 158,
        "adjtimex" => 159,
        "setrlimit" => 160,
        "chroot" => 161,
        "sync" => 162,
        "acct" => 163,
        "settimeofday" => 164,
        "mount" => 165,
        "umount2" => 166,
        "reboot" => 169,
        "sethostname" => 170,
        "setdomainname" => 171,
        "iopl" => 172,
        "ioperm" => 173,
        "init_module" => 175,
        "delete_module" => 176,
        "quotactl" => 179,
        "gettid" => 186,
        "readahead" => 187,
        "setxattr" => 188,
        "lsetxattr" => 189,
        "fsetxattr" => 190,
        "getxattr" => 191,
        "lgetxattr" => 192,
        "fgetxattr" => 193,
        "listxattr" => 194,
        "llistxattr" => 195,
        "flistxattr" => 196,
        "removexattr" => 197,
        "lremovexattr" => 198,
        "fremovexattr" => 199,
        "tkill" => 200,
        "time" => 201,
        "futex" => 202,
        "sched_setaffinity" => 203,
        "sched_getaffinity" => 204,
        "set_thread_area" => 205,
        "io_setup" => 206,
        "io_destroy" => 207,
        "io_getevents" => 208,
        "io_submit" => 209,
        "io_cancel" => 210,
        "get_thread_area" => 211,
        "lookup_dcookie" => 212,
        "epoll_create" => 213,
        "epoll_ctl_old" => 214,
        "epoll_wait_old" => 215,
        "remap_file_pages" => 216,
        "getdents64" => 217,
        "set_tid_address" => 218,
        "restart_syscall" => 219,
        "semtimedop" => 220,
        "fadvise64" => 221,
        "timer_create" => 222,
        "timer_settime" => 223,
        "timer_gettime" => 224,
        "timer_getoverrun" => 225,
        "timer_delete" => 226,
        "clock_settime" => 227,
        "clock_gettime" => 228,
        "clock_getres" => 229,
        "clock_nanosleep" => 230,
        "exit_group" => 231,
        "epoll_wait" => 232,
        "epoll_ctl" => 233,
        "tgkill" => 234,
        "utimes" => 235,
        "mbind" => 237,
        "set_mempolicy" => 238,
        "get_mempolicy" => 239,
        "mq_open" => 240,
        "mq_unlink" => 241,
        "mq_timedsend" => 242,
        "mq_timedreceive" => 243,
        "mq_notify" => 244,
        "mq_getsetattr" => 245,
        "waitid" => 247,
        "ioprio_set" => 251,
        "ioprio_get" => 252,
        "inotify_init" => 253,
        "inotify_add_watch" => 254,
        "inotify_rm_watch" => 255,
        "openat" => 257,
        "mkdirat" => 258,
        "mknodat" => 259,
        "fchownat" => 260,
        "futimesat" => 261,
        "newfstatat" => 262,
        "unlinkat" => 263,
        "renameat" => 264,
        "linkat" => 265,
        "symlinkat" => 266,
        "readlinkat" => 267,
        "fchmodat" => 268,
        "faccessat" => 269,
        "pselect6" => 270,
        "ppoll" => 271,
        "unshare" => 272,
        "set_robust_list" => 273,
        "get_robust_list" => 274,
        "splice" => 275,
        "tee" => 276,
        "sync_file_range" => 277,
        "vmsplice" => 278,
        "utimensat" => 280,
        "epoll_pwait" => 281,
        "signalfd" => 282,
        "timerfd_create" => 283,
        "eventfd" => 284,
        "fallocate" => 285,
        "timerfd_settime" => 286,
        "timerfd_gettime" => 287,
        "accept4" => 288,
        "signalfd4" => 289,
        "eventfd2" => 290,
        "epoll_create1" => 291,
        "dup3" => 292,
        "pipe2" => 293,
        "inotify_init1" => 294,
        "preadv" => 295,
        "pwritev" => 296,
        "rt_tgsigqueueinfo" => 297,
        "perf_event_open" => 298,
        "recvmmsg" => 299,
        "fanotify_init" => 300,
        "fanotify_mark" => 301,
        "prlimit64" => 302,
        "name_to_handle_at" => 303,
        "open_by_handle_at" => 304,
        "clock_adjtime" => 305,
        "syncfs" => 306,
        "sendmmsg" => 307,
        "setns" => 308,
        "getcpu" => 309,
        "process_vm_readv" => 310,
        "process_vm_writev" => 311,
        "kcmp" => 312,
        "finit_module" => 313,
        "sched_setattr" => 314,
        "sched_getattr" => 315,
        "renameat2" => 316,
        "seccomp" => 317,
        "getrandom" => 318,
        "memfd_create" => 319,
        "bpf" => 321,
        "execveat" => 322,
        "membarrier" => 324,
        "mlock2" => 325,
        "copy_file_range" => 326,
        "preadv2" => 327,
        "pwritev2" => 328,
        "pkey_mprotect" => 329,
        "pkey_alloc" => 330,
        "pkey_free" => 331,
        "statx" => 332,
        "io_pgetevents" => 333,
        "rseq" => 334,
        "pidfd_send_signal" => 424,
        "io_uring_setup" => 425,
        "io_uring_enter" => 426,
        "io_uring_register" => 427,
        "open_tree" => 428,
        "move_mount" => 429,
        "fsopen" => 430,
        "fsconfig" => 431,
        "fsmount" => 432,
        "fspick" => 433,
        "pidfd_open" => 434,
        "clone3" => 435,
        "close_range" => 436,
        "openat2" => 437,
        "pidfd_getfd" => 438,
        "faccessat2" => 439,
        "process_madvise" => 440,
        "epoll_pwait2" => 441,
        "mount_setattr" => 442,
        "quotactl_fd" => 443,
        "landlock_create_ruleset" => 444,
        "landlock_add_rule" => 445,
        "landlock_restrict_self" => 446,
        "memfd_secret" => 447,
        "process_mrelease" => 448,
        "futex_waitv" => 449,
        "set_mempolicy_home_node" => 450,
        _ => return None,
    };
    Some(n as u32)
}

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
// BPF opcodes.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

#[derive(Clone, Copy)]
struct Instruction {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

fn stmt(code: u16, k: u32) -> Instruction {
    Instruction { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code, jt, jf, k }
}

/// Builds the filter for a container with these capabilities (Docker names without CAP_).
pub fn default_filter(capabilities: &[String]) -> Vec<(u16, u8, u8, u32)> {
    let has = |cap: &str| capabilities.iter().any(|c| c == cap);
    let eperm = RET_ERRNO | 1;
    let mut allowed: Vec<u32> = ALWAYS.iter().filter_map(|n| number(n)).collect();
    for (cap, names) in WITH_CAPABILITY {
        if has(cap) {
            allowed.extend(names.iter().filter_map(|n| number(n)));
        }
    }
    allowed.sort_unstable();
    allowed.dedup();
    let mut program =
        vec![stmt(LD_W_ABS, 4), jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0), stmt(RET_K, eperm), stmt(LD_W_ABS, 0)];
    for nr in &allowed {
        program.push(jump(JEQ_K, *nr, 0, 1));
        program.push(stmt(RET_K, RET_ALLOW));
    }
    // socket: every family but AF_VSOCK (40).
    let socket = [stmt(LD_W_ABS, 16), jump(JEQ_K, 40, 0, 1), stmt(RET_K, eperm), stmt(RET_K, RET_ALLOW)];
    program.push(jump(JEQ_K, 41, 0, socket.len() as u8));
    program.extend(socket);
    // personality: only the harmless personas.
    let personas = [0u32, 8, 0x20000, 0x20008, 0xffff_ffff];
    let mut personality = vec![stmt(LD_W_ABS, 16)];
    for (i, persona) in personas.iter().enumerate() {
        let remaining = (personas.len() - i - 1) as u8;
        personality.push(jump(JEQ_K, *persona, remaining + 1, 0));
    }
    personality.push(stmt(RET_K, eperm));
    personality.push(stmt(RET_K, RET_ALLOW));
    program.push(jump(JEQ_K, 135, 0, personality.len() as u8));
    program.extend(personality);
    if !has("SYS_ADMIN") {
        // clone without namespace flags; clone3 reports ENOSYS so libc falls back to clone.
        let clone = [stmt(LD_W_ABS, 16), jump(JSET_K, 0x7E02_0000, 0, 1), stmt(RET_K, eperm), stmt(RET_K, RET_ALLOW)];
        program.push(jump(JEQ_K, 56, 0, clone.len() as u8));
        program.extend(clone);
        program.push(jump(JEQ_K, 435, 0, 1));
        program.push(stmt(RET_K, RET_ERRNO | 38));
    }
    program.push(stmt(RET_K, eperm));
    program.into_iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
}

/// A seccomp profile in Docker's JSON format (`--security-opt seccomp=profile.json`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Vec<String>,
    /// The old single-name form.
    #[serde(default)]
    name: Option<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
}

fn action(name: &str, errno: u32) -> Result<u32, String> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => RET_ALLOW,
        "SCMP_ACT_ERRNO" => RET_ERRNO | (errno & 0xffff),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => 0,
        "SCMP_ACT_KILL_PROCESS" => 0x8000_0000,
        "SCMP_ACT_TRAP" => 0x0003_0000,
        "SCMP_ACT_TRACE" => 0x7ff0_0000 | (errno & 0xffff),
        "SCMP_ACT_LOG" => 0x7ffc_0000,
        other => return Err(format!("unsupported seccomp action {other:?}")),
    })
}

/// A jump inside one rule's block: to the next instruction, `n` further, or past the block
/// (the rule does not match).
#[derive(Clone, Copy)]
enum To {
    Next,
    Skip(u8),
    Fail,
}

const LD_W_ABS_ARG: fn(u32, bool) -> (u16, u32) = |index, high| (LD_W_ABS, 16 + 8 * index + if high { 4 } else { 0 });
const AND_K: u16 = 0x54;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;

/// One argument comparison (64-bit, as two 32-bit halves) that falls through when it holds.
fn compare(arg: &Arg) -> Result<Vec<(u16, To, To, u32)>, String> {
    if arg.index > 5 {
        return Err(format!("seccomp argument index {} out of range (0-5)", arg.index));
    }
    let (hi, lo) = ((arg.value >> 32) as u32, arg.value as u32);
    let load = |high: bool| {
        let (code, k) = LD_W_ABS_ARG(arg.index, high);
        (code, To::Next, To::Next, k)
    };
    Ok(match arg.op.as_str() {
        "SCMP_CMP_EQ" => {
            vec![load(true), (JEQ_K, To::Next, To::Fail, hi), load(false), (JEQ_K, To::Next, To::Fail, lo)]
        }
        "SCMP_CMP_NE" => {
            vec![load(true), (JEQ_K, To::Next, To::Skip(2), hi), load(false), (JEQ_K, To::Fail, To::Next, lo)]
        }
        "SCMP_CMP_MASKED_EQ" => {
            let (target_hi, target_lo) = ((arg.value_two >> 32) as u32, arg.value_two as u32);
            vec![
                load(true),
                (AND_K, To::Next, To::Next, hi),
                (JEQ_K, To::Next, To::Fail, target_hi),
                load(false),
                (AND_K, To::Next, To::Next, lo),
                (JEQ_K, To::Next, To::Fail, target_lo),
            ]
        }
        "SCMP_CMP_GT" | "SCMP_CMP_GE" => {
            let last = if arg.op == "SCMP_CMP_GT" { JGT_K } else { JGE_K };
            vec![
                load(true),
                (JGT_K, To::Skip(3), To::Next, hi),
                (JEQ_K, To::Next, To::Fail, hi),
                load(false),
                (last, To::Next, To::Fail, lo),
            ]
        }
        "SCMP_CMP_LT" | "SCMP_CMP_LE" => {
            let (last, k) = if arg.op == "SCMP_CMP_LT" { (JGE_K, lo) } else { (JGT_K, lo) };
            vec![
                load(true),
                (JGE_K, To::Next, To::Skip(3), hi),
                (JEQ_K, To::Next, To::Fail, hi),
                load(false),
                (last, To::Fail, To::Next, k),
            ]
        }
        other => return Err(format!("unsupported seccomp comparison {other:?}")),
    })
}

/// Compiles a Docker-format JSON profile for a container with these capabilities. Rules are
/// tried in order; the first whose syscall and arguments match decides. Names this table
/// does not know (other architectures, newer kernels) are skipped, as libseccomp does.
pub fn profile_filter(json: &str, capabilities: &[String]) -> Result<Vec<(u16, u8, u8, u32)>, String> {
    let profile: Profile = serde_json::from_str(json).map_err(|e| format!("decoding seccomp profile failed: {e}"))?;
    let default_errno = profile.default_errno_ret.unwrap_or(1);
    let default = action(&profile.default_action, default_errno)?;
    let has = |cap: &String| {
        let cap = cap.trim_start_matches("CAP_");
        capabilities.iter().any(|c| c == cap)
    };
    let mut program = vec![stmt(LD_W_ABS, 4), jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0), stmt(RET_K, default)];
    for rule in &profile.syscalls {
        if !rule.includes.caps.iter().all(has) || rule.excludes.caps.iter().any(has) {
            continue;
        }
        let native = |a: &String| matches!(a.as_str(), "amd64" | "x86_64" | "SCMP_ARCH_X86_64");
        if !rule.includes.arches.is_empty() && !rule.includes.arches.iter().any(native) {
            continue;
        }
        if rule.excludes.arches.iter().any(native) {
            continue;
        }
        let ret = action(&rule.action, rule.errno_ret.unwrap_or(default_errno))?;
        let mut checks = Vec::new();
        for arg in &rule.args {
            checks.extend(compare(arg)?);
        }
        // The block after the syscall test: the checks, then the rule's action.
        let block_len = checks.len() + 1;
        if block_len > 200 {
            return Err("seccomp rule with too many argument conditions".to_owned());
        }
        let resolve = |to: To, at: usize| -> u8 {
            match to {
                To::Next => 0,
                To::Skip(n) => n,
                To::Fail => (block_len - at - 1) as u8,
            }
        };
        let mut block: Vec<Instruction> = checks
            .iter()
            .enumerate()
            .map(|(at, (code, jt, jf, k))| Instruction {
                code: *code,
                jt: resolve(*jt, at),
                jf: resolve(*jf, at),
                k: *k,
            })
            .collect();
        block.push(stmt(RET_K, ret));
        for name in rule.names.iter().chain(rule.name.iter()) {
            let Some(nr) = number(name) else { continue };
            program.push(stmt(LD_W_ABS, 0));
            program.push(jump(JEQ_K, nr, 0, block.len() as u8));
            program.extend(block.iter().copied());
        }
        if program.len() > 4000 {
            return Err("seccomp profile too large for one filter (over 4096 instructions)".to_owned());
        }
    }
    program.push(stmt(RET_K, default));
    Ok(program.into_iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect())
}

/// Installs the default filter on this process (and what it execs).
pub fn install(capabilities: &[String]) -> io::Result<()> {
    install_filter(default_filter(capabilities))
}

/// Installs a compiled filter on this process (and what it execs).
pub fn install_filter(filter: Vec<(u16, u8, u8, u32)>) -> io::Result<()> {
    if std::env::consts::ARCH != "x86_64" {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "seccomp filters are only built for x86_64"));
    }
    let filter: Vec<libc::sock_filter> =
        filter.into_iter().map(|(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k }).collect();
    let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
    // SAFETY: the program points at `filter`, alive during the call.
    let result =
        unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program as *const libc::sock_fprog) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a classic BPF program on seccomp_data (x86_64, syscall `nr`, `args`).
    fn evaluate(program: &[(u16, u8, u8, u32)], nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend_from_slice(&nr.to_le_bytes());
        data.extend_from_slice(&AUDIT_ARCH_X86_64.to_le_bytes());
        data.extend_from_slice(&0u64.to_le_bytes());
        for arg in args {
            data.extend_from_slice(&arg.to_le_bytes());
        }
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let (code, jt, jf, k) = program[pc];
            let branch = |taken: bool| pc + 1 + usize::from(if taken { jt } else { jf });
            pc = match code {
                LD_W_ABS => {
                    a = u32::from_le_bytes(data[k as usize..k as usize + 4].try_into().expect("4 bytes"));
                    pc + 1
                }
                AND_K => {
                    a &= k;
                    pc + 1
                }
                JEQ_K => branch(a == k),
                JGT_K => branch(a > k),
                JGE_K => branch(a >= k),
                JSET_K => branch(a & k != 0),
                RET_K => return k,
                other => panic!("unexpected opcode {other:#x}"),
            };
        }
    }

    #[test]
    fn custom_profiles_compare_64_bit_arguments() {
        let profile = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"syscalls":[
            {"names":["read"],"action":"SCMP_ACT_ALLOW"},
            {"names":["write"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2,"op":"SCMP_CMP_LE"}]},
            {"names":["close"],"action":"SCMP_ACT_ERRNO","errnoRet":9,"args":[
                {"index":0,"value":4294967296,"op":"SCMP_CMP_GE"},{"index":1,"value":7,"op":"SCMP_CMP_NE"}]},
            {"names":["close"],"action":"SCMP_ACT_ALLOW"},
            {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":255,"valueTwo":8,"op":"SCMP_CMP_MASKED_EQ"}]},
            {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
            {"names":["umount2"],"action":"SCMP_ACT_ALLOW","excludes":{"caps":["CAP_SYS_ADMIN"]}},
            {"names":["kill"],"action":"SCMP_ACT_ALLOW","args":[{"index":1,"value":9,"op":"SCMP_CMP_GT"}]},
            {"names":["getpid"],"action":"SCMP_ACT_ALLOW","args":[{"index":2,"value":5,"op":"SCMP_CMP_LT"}]},
            {"names":["no_such_call_anywhere"],"action":"SCMP_ACT_ALLOW"}
        ]}"#;
        let program = profile_filter(profile, &[]).expect("compiles");
        let nr = |n: &str| number(n).expect(n);
        let run = |name: &str, args: [u64; 6]| evaluate(&program, nr(name), args);
        let enosys = RET_ERRNO | 38;
        assert_eq!(run("read", [0; 6]), RET_ALLOW);
        assert_eq!(run("openat", [0; 6]), enosys);
        assert_eq!(run("write", [2, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run("write", [3, 0, 0, 0, 0, 0]), enosys);
        assert_eq!(run("write", [1 << 32, 0, 0, 0, 0, 0]), enosys, "the high word counts");
        assert_eq!(run("close", [1 << 32, 0, 0, 0, 0, 0]), RET_ERRNO | 9);
        assert_eq!(run("close", [1 << 32, 7, 0, 0, 0, 0]), RET_ALLOW, "NE fails: next rule");
        assert_eq!(run("close", [u32::MAX as u64, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run("personality", [0x108, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run("personality", [0x109, 0, 0, 0, 0, 0]), enosys);
        assert_eq!(run("mount", [0; 6]), enosys, "needs CAP_SYS_ADMIN");
        assert_eq!(run("umount2", [0; 6]), RET_ALLOW);
        assert_eq!(run("kill", [1, 10, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run("kill", [1, 9, 0, 0, 0, 0]), enosys);
        assert_eq!(run("kill", [1, 1 << 40, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run("getpid", [0, 0, 4, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run("getpid", [0, 0, 5, 0, 0, 0]), enosys);
        assert_eq!(run("getpid", [0, 0, (1 << 32) | 1, 0, 0, 0]), enosys);
        let admin = profile_filter(profile, &["SYS_ADMIN".to_owned()]).expect("compiles");
        assert_eq!(evaluate(&admin, nr("mount"), [0; 6]), RET_ALLOW);
        assert_eq!(evaluate(&admin, nr("umount2"), [0; 6]), enosys);
        // Bad profiles say what is wrong.
        let bad_op = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_ABOUT"}]}]}"#;
        assert!(profile_filter(bad_op, &[]).expect_err("bad op").contains("SCMP_CMP_ABOUT"));
        assert!(profile_filter("{", &[]).expect_err("bad json").contains("decoding seccomp profile"));
    }

    #[test]
    fn default_filter_matches_its_rules() {
        let program = default_filter(&[]);
        let nr = |n: &str| number(n).expect(n);
        assert_eq!(evaluate(&program, nr("read"), [0; 6]), RET_ALLOW);
        assert_eq!(evaluate(&program, nr("mount"), [0; 6]), RET_ERRNO | 1);
        assert_eq!(evaluate(&program, nr("socket"), [40, 0, 0, 0, 0, 0]), RET_ERRNO | 1, "AF_VSOCK");
        assert_eq!(evaluate(&program, nr("socket"), [2, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(evaluate(&program, nr("clone"), [0x1000_0000, 0, 0, 0, 0, 0]), RET_ERRNO | 1, "CLONE_NEWUSER");
        assert_eq!(evaluate(&program, nr("clone3"), [0; 6]), RET_ERRNO | 38);
    }

    #[test]
    fn every_name_has_a_number_and_jumps_fit() {
        for name in ALWAYS.iter().chain(WITH_CAPABILITY.iter().flat_map(|(_, n)| n.iter())) {
            assert!(number(name).is_some(), "{name}");
        }
        let program = default_filter(&["SYS_ADMIN".to_owned()]);
        assert!(program.len() < 4096);
        let without = default_filter(&[]);
        assert!(without.len() > 600);
    }
}
