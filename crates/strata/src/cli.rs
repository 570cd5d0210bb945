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
    /// Verify every blob against its digest and the metadata against the blobs
    Fsck,
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage strata
    #[command(subcommand)]
    System(SystemCommand),
    /// Tools for looking inside strata
    #[command(subcommand)]
    Debug(DebugCommand),
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

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show disk usage
    Df,
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
