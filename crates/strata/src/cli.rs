//! The command line, with Docker's command names and flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "strata", version, about = "A container engine that speaks Docker", disable_help_subcommand = true)]
pub struct Cli {
    /// Store root (images, layers, containers)
    #[arg(long, global = true, env = "STRATA_ROOT", default_value = "/var/lib/strata")]
    pub root: PathBuf,

    /// Snapshotter for unpacked layers: overlay (default where it works) or copy
    #[arg(long, global = true, env = "STRATA_SNAPSHOTTER")]
    pub snapshotter: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile
    Build(BuildArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// List images
    Images(ImagesArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Log in to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
    /// Verify every blob against its digest and the metadata against the blobs
    Fsck,
    /// Show the strata version information
    Version(VersionArgs),
    /// Display system-wide information
    Info(VersionArgs),
    /// Update configuration of one or more containers
    Update(UpdateArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Get real time events from strata
    Events(EventsArgs),
    /// Serve the Docker Engine API (for the docker CLI, the SDKs, compose)
    Serve(ServeArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Generate the autocompletion script for the specified shell
    Completion(CompletionArgs),
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(OneContainer),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Display the running processes of a container
    Top(OneContainer),
    /// Block until one or more containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Pause all processes within one or more containers
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(NamesArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCommand),
    #[command(name = "__monitor", hide = true)]
    Monitor(MonitorArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage builds
    #[command(subcommand)]
    Builder(BuilderCommand),
    /// Read manifests and their referrers from a registry
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Manage strata
    #[command(subcommand)]
    System(SystemCommand),
    /// Tools for looking inside strata
    #[command(subcommand)]
    Debug(DebugCommand),
}

/// The subcommand's name read off the arguments without parsing them (the global options
/// before it skipped), to re-execute from a sealed binary before clap's parse: whether it is
/// one of [`Command::starts_or_enters_containers`].
pub fn command_name_may_enter_containers(mut args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--root" | "--snapshotter") => {
                args.next();
            }
            Some(option) if option.starts_with('-') => {}
            Some(name) => {
                return matches!(name, "run" | "start" | "restart" | "exec" | "build" | "serve" | "__monitor")
            }
            None => return false,
        }
    }
    false
}

impl Command {
    /// Whether the command may start a container's process or join a running container (its
    /// process is then visible inside until it execs the container's command).
    pub fn starts_or_enters_containers(&self) -> bool {
        matches!(
            self,
            Command::Run(_)
                | Command::Start(_)
                | Command::Restart(_)
                | Command::Exec(_)
                | Command::Build(_)
                | Command::Serve(_)
                | Command::Monitor(_)
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// List containers
    #[command(alias = "list")]
    Ls(PsArgs),
    /// Display detailed information on one or more containers
    Inspect(InspectArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
}

#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long)]
    pub detach_keys: Option<String>,
    pub container: String,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create(NetworkCreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(NetworkLsArgs),
    /// Display detailed information on one or more networks
    Inspect(NetworkInspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(NamesArgs),
    /// Remove all unused networks
    Prune(NetworkPruneArgs),
    /// Connect a container to a network
    Connect(NetworkConnectArgs),
    /// Disconnect a container from a network
    Disconnect(NetworkDisconnectArgs),
}

#[derive(Debug, Args)]
pub struct NetworkConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct NetworkDisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct NetworkCreateArgs {
    /// Driver to manage the Network (bridge)
    #[arg(short, long)]
    pub driver: Option<String>,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Option<String>,
    /// Allocate container ip from a sub-range
    #[arg(long)]
    pub ip_range: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    pub opt: Vec<String>,
    /// Enable manual container attachment (always on here)
    #[arg(long)]
    pub attachable: bool,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct NetworkLsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
    /// Provide filter values (driver=, id=, label=, name=, type=custom|builtin)
    #[arg(short, long = "filter")]
    pub filters: Vec<String>,
    /// Format output using a custom template, or json
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct NetworkInspectArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct NetworkPruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
    /// Display detailed information on one or more volumes
    Inspect(NamesArgs),
    /// Remove one or more volumes
    Rm(VolumeRmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeRmArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    pub id: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Bind mount a volume
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Connect a container to a network (bridge, a network's name, none, host or
    /// container:NAME); given again, to more networks
    #[arg(long, alias = "net")]
    pub network: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long, alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Publish a container's port(s) to the host ([IP:][HOST:]CONTAINER[/PROTO])
    #[arg(short = 'p', long)]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104) on a user-defined network
    #[arg(long)]
    pub ip: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long)]
    pub mac_address: Option<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Run an init inside the container
    #[arg(long)]
    pub init: bool,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Add Linux capabilities
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Security Options
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Set meta data on a container
    #[arg(short, long)]
    pub label: Vec<String>,
    /// Signal to stop the container
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long)]
    pub stop_timeout: Option<i64>,
    /// Log driver options
    #[arg(long)]
    pub log_opt: Vec<String>,
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// The image, then the command and its arguments
    #[arg(required = true, trailing_var_arg = true)]
    pub image_and_command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    pub user: Option<String>,
    /// The container, then the command and its arguments
    #[arg(required = true, num_args = 2.., trailing_var_arg = true)]
    pub container_and_command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct OneContainer {
    pub container: String,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    pub container: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author
    #[arg(short, long)]
    pub author: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub container: String,
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Suppress progress output during copy (there is none)
    #[arg(short, long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH or a local path (- for a tar on STDIN)
    pub source: String,
    /// CONTAINER:DEST_PATH or a local path (- for a tar on STDOUT)
    pub destination: String,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output: table (default) or json
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output based on conditions provided (status=, name=, id=, label=)
    #[arg(short, long)]
    pub filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub name: String,
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long)]
    pub tail: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Seconds to wait before killing the container
    #[arg(short, long)]
    pub time: Option<i64>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a Dockerfile's parse tree in BuildKit's dump format, or lint it with --check
    Dockerfile(DebugDockerfileArgs),
}

#[derive(Debug, Args)]
pub struct DebugDockerfileArgs {
    /// The Dockerfile, or - for STDIN
    pub file: String,
    /// Run the build checks instead of dumping (exit 1 on SecretsUsedInArgOrEnv)
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Mount an image's filesystem read-only and print where
    Mount(ImageNamesArgs),
    /// Unmount an image mounted with "image mount"
    #[command(alias = "unmount")]
    Umount(ImageNamesArgs),
}

#[derive(Debug, Args)]
pub struct ImageNamesArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// NAME[:TAG|@DIGEST]
    pub name: String,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable (os/arch)
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull every platform of an image index (this platform's image is unpacked; the others'
    /// blobs are stored for save --all-platforms and push)
    #[arg(long)]
    pub all_platforms: bool,
    /// Check the registry's TLS certificate (default: Docker's rule — not for localhost,
    /// 127.0.0.0/8 and insecure registries, which may also fall back to plain HTTP)
    #[arg(long = "tls-verify", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// NAME[:TAG]
    pub name: String,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// How layers stored uncompressed are sent: gzip (as Docker) or none
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Check the registry's TLS certificate (default: Docker's rule — not for localhost,
    /// 127.0.0.0/8 and insecure registries, which may also fall back to plain HTTP)
    #[arg(long = "tls-verify", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (default: Docker Hub)
    pub server: Option<String>,
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Check the registry's TLS certificate (default: Docker's rule — not for localhost,
    /// 127.0.0.0/8 and insecure registries, which may also fall back to plain HTTP)
    #[arg(long = "tls-verify", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (default: Docker Hub)
    pub server: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Display an image manifest, or manifest list (as the registry has it)
    Inspect(ManifestInspectArgs),
    /// List the manifests that refer to an image (signatures, SBOMs, attestations) as an
    /// image index: the registry's referrers API, or the referrers tag schema
    Referrers(ReferrersArgs),
}

#[derive(Debug, Args)]
pub struct ManifestInspectArgs {
    /// NAME[:TAG|@DIGEST]
    pub name: String,
    /// Allow communication with an insecure registry (no certificate check, plain HTTP
    /// fallback)
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Args)]
pub struct ReferrersArgs {
    /// NAME[:TAG|@DIGEST]: the subject
    pub name: String,
    /// Only referrers of this artifact type
    #[arg(long)]
    pub artifact_type: Option<String>,
    /// Allow communication with an insecure registry (no certificate check, plain HTTP
    /// fallback)
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache
    Prune(BuilderPruneArgs),
}

#[derive(Debug, Args)]
pub struct BuilderPruneArgs {
    /// Remove all build cache, not just what no image shares
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Amount of disk space to keep for cache (e.g. 512m, 2g)
    #[arg(long = "keep-storage", alias = "max-used-space")]
    pub keep_storage: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show disk usage
    Df,
    /// Display system-wide information
    Info(VersionArgs),
    /// Get real time events from strata
    Events(EventsArgs),
    /// Remove unused data
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Tarball to import (plain, gzip or zstd), or - for STDIN
    pub file: String,
    /// Name the image REPOSITORY[:TAG]
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub changes: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output: table (default) or json
    #[arg(long)]
    pub format: Option<String>,
    /// REPOSITORY[:TAG] to list
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub image: String,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// Format output: table (default) or json
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Format output: json (default) or a template like '{{.Id}}' / '{{json .Config}}'
    #[arg(short, long)]
    pub format: Option<String>,
    /// Return JSON for specified type (container, image, volume, network)
    #[arg(long = "type", value_parser = ["container", "image", "volume", "network"])]
    pub kind: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Socket to listen on (unix:///PATH), given once or more
    #[arg(short = 'H', long = "host", default_value = "unix:///run/strata/strata.sock")]
    pub hosts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided (container=, event=, image=, label=,
    /// type=, volume=, scope=)
    #[arg(short, long = "filter")]
    pub filters: Vec<String>,
    /// Format output using a custom template ('{{.Type}} {{.Action}}', json)
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output using a custom template ('table {{.Name}}\t{{.CPUPerc}}', json)
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

/// The limits and restart policy `run`/`create` set and `update` changes.
#[derive(Debug, Args)]
pub struct ResourceArgs {
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<u64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub resources: ResourceArgs,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// bash, zsh or fish
    #[arg(value_parser = ["bash", "zsh", "fish"])]
    pub shell: String,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Format output using a custom template ('{{.Client.Version}}', json)
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// docker-archive (default) or oci-archive
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
    /// Save every platform of images pulled with --all-platforms (their index and blobs)
    #[arg(long)]
    pub all_platforms: bool,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context: a directory
    pub context: PathBuf,
    /// Name and optionally a tag (`name:tag`); may be given several times
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from stdin
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Networking mode for the RUN instructions during build: default (the host's), host or none
    #[arg(long)]
    pub network: Option<String>,
    /// Set build-time variables (`KEY=VALUE`, or `KEY` to take it from the environment)
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Suppress the build output and print the image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Set metadata for an image (`KEY=VALUE`)
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Secret to expose to RUN --mount=type=secret (`id=ID,src=FILE` or `id=ID,env=VAR`)
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// Reproducible image: timestamps from SOURCE_DATE_EPOCH (environment or --build-arg), else 0
    #[arg(long)]
    pub reproducible: bool,
    /// Build again without the cache and compare the image digests (exit 1 if they differ)
    #[arg(long)]
    pub verify: bool,
    /// Run the build checks instead of building (exit 1 on SecretsUsedInArgOrEnv)
    #[arg(long)]
    pub check: bool,
    /// Output destination: `type=local,dest=DIR`, `type=tar|oci|docker,dest=FILE|-`,
    /// `type=image` (the default), or a directory (local) or `-` (tar to stdout)
    #[arg(short = 'o', long = "output")]
    pub output: Option<String>,
    /// Progress output: auto (tty on a terminal, else plain), plain, tty, quiet
    #[arg(long, default_value = "auto")]
    pub progress: String,
}
