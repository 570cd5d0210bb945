//! One module per command; each is a few lines over `strata_engine`.

mod build;
mod container_ops;
mod containers;
mod debug;
mod fsck;
mod history;
mod images;
mod import;
mod inspect;
mod load;
mod mount;
mod networks;
mod registry;
mod rmi;
mod save;
mod system;
mod tag;
mod volumes;

use strata_engine::Engine;

use crate::cli::{
    BuilderCommand, Cli, Command, ContainerCommand, DebugCommand, ImageCommand, ManifestCommand, NetworkCommand,
    SystemCommand, VolumeCommand,
};

/// Runs a command; returns the exit code for success paths that still fail partly.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    // Commands that need no store.
    if let Command::Debug(DebugCommand::Dockerfile(args)) = cli.command {
        return debug::dockerfile(args);
    }
    if let Command::Completion(args) = &cli.command {
        return completion(&args.shell);
    }
    if let Command::Version(args) = &cli.command {
        return system::version(args, &cli.root, cli.snapshotter.as_deref());
    }
    let engine = Engine::open_with(&cli.root, cli.snapshotter.as_deref())?;
    match cli.command {
        Command::Build(args) => build::run(&engine, args),
        Command::Import(args) | Command::Image(ImageCommand::Import(args)) => import::run(&engine, args),
        Command::Images(args) | Command::Image(ImageCommand::Ls(args)) => images::run(&engine, args),
        Command::History(args) | Command::Image(ImageCommand::History(args)) => history::run(&engine, args),
        Command::Inspect(args) => inspect::any(&engine, args),
        Command::Image(ImageCommand::Inspect(args)) => inspect::run(&engine, args),
        Command::Container(ContainerCommand::Inspect(args)) => inspect::containers(&engine, args),
        Command::Run(args) => containers::run(&engine, args),
        Command::Create(args) => containers::create(&engine, args),
        Command::Start(args) => containers::start(&engine, args),
        Command::Ps(args) | Command::Container(ContainerCommand::Ls(args)) => containers::ps(&engine, args),
        Command::Logs(args) => containers::logs(&engine, args),
        Command::Stop(args) => containers::stop(&engine, args),
        Command::Restart(args) => containers::restart(&engine, args),
        Command::Kill(args) => containers::kill(&engine, args),
        Command::Rm(args) | Command::Container(ContainerCommand::Rm(args)) => containers::rm(&engine, args),
        Command::Wait(args) => containers::wait(&engine, args),
        Command::Exec(args) => containers::exec(&engine, args),
        Command::Diff(args) => container_ops::diff(&engine, args),
        Command::Commit(args) => container_ops::commit(&engine, args),
        Command::Export(args) => container_ops::export(&engine, args),
        Command::Cp(args) => container_ops::cp(&engine, args),
        Command::Rename(args) => container_ops::rename(&engine, args),
        Command::Top(args) => container_ops::top(&engine, args),
        Command::Pause(args) => containers::pause(&engine, args, true),
        Command::Unpause(args) => containers::pause(&engine, args, false),
        Command::Container(ContainerCommand::Prune(args)) => containers::prune(&engine, args.force),
        Command::Monitor(args) => containers::monitor(&engine, &args.id),
        Command::Network(NetworkCommand::Create(args)) => networks::create(&engine, args),
        Command::Network(NetworkCommand::Ls(args)) => networks::ls(&engine, args),
        Command::Network(NetworkCommand::Inspect(args)) => networks::inspect(&engine, args),
        Command::Network(NetworkCommand::Rm(args)) => networks::rm(&engine, args),
        Command::Network(NetworkCommand::Prune(args)) => networks::prune(&engine, args),
        Command::Network(NetworkCommand::Connect(args)) => {
            Ok(engine.connect_network(&args.network, &args.container, &args.alias, args.ip.as_deref()).map(|()| 0)?)
        }
        Command::Network(NetworkCommand::Disconnect(args)) => {
            let _ = args.force;
            Ok(engine.disconnect_network(&args.network, &args.container).map(|()| 0)?)
        }
        Command::Volume(VolumeCommand::Create(args)) => volumes::create(&engine, args),
        Command::Volume(VolumeCommand::Ls(args)) => volumes::ls(&engine, args),
        Command::Volume(VolumeCommand::Inspect(args)) => volumes::inspect(&engine, args),
        Command::Volume(VolumeCommand::Rm(args)) => volumes::rm(&engine, args),
        Command::Volume(VolumeCommand::Prune(args)) => volumes::prune(&engine, args),
        Command::Tag(args) | Command::Image(ImageCommand::Tag(args)) => tag::run(&engine, args),
        Command::Rmi(args) | Command::Image(ImageCommand::Rm(args)) => rmi::run(&engine, args),
        Command::Save(args) | Command::Image(ImageCommand::Save(args)) => save::run(&engine, args),
        Command::Load(args) | Command::Image(ImageCommand::Load(args)) => load::run(&engine, args),
        Command::Pull(args) | Command::Image(ImageCommand::Pull(args)) => registry::pull(&engine, args),
        Command::Push(args) | Command::Image(ImageCommand::Push(args)) => registry::push(&engine, args),
        Command::Login(args) => registry::login(args),
        Command::Logout(args) => registry::logout(args),
        Command::Image(ImageCommand::Prune(args)) => system::prune(&engine, args, false),
        Command::Image(ImageCommand::Mount(args)) => mount::mount(&engine, args),
        Command::Image(ImageCommand::Umount(args)) => mount::umount(&engine, args),
        Command::Fsck => fsck::run(&engine),
        Command::Builder(BuilderCommand::Prune(args)) => system::builder_prune(&engine, args),
        Command::Manifest(ManifestCommand::Inspect(args)) => registry::manifest_inspect(&engine, args),
        Command::Manifest(ManifestCommand::Referrers(args)) => registry::referrers(&engine, args),
        Command::System(SystemCommand::Df) => system::df(&engine),
        Command::Info(args) | Command::System(SystemCommand::Info(args)) => system::info(&engine, &args),
        Command::Update(args) => containers::update(&engine, args),
        Command::Stats(args) => containers::stats(&engine, args),
        Command::Attach(args) | Command::Container(ContainerCommand::Attach(args)) => containers::attach(&engine, args),
        Command::Port(args) | Command::Container(ContainerCommand::Port(args)) => containers::port(&engine, args),
        Command::Events(args) | Command::System(SystemCommand::Events(args)) => system::events(&engine, args),
        Command::Serve(args) => strata_api::serve(engine.clone(), &args.hosts).map(|()| 0),
        Command::System(SystemCommand::Prune(args)) => system::prune(&engine, args, true),
        Command::Debug(_) | Command::Version(_) | Command::Completion(_) => unreachable!("handled above"),
    }
}

/// `strata completion SHELL`: the shell's completion script, for the name strata was invoked
/// by (`docker` through a symlink completes as docker).
fn completion(shell: &str) -> anyhow::Result<u8> {
    use clap::CommandFactory;
    let name = std::env::args_os()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "strata".to_owned());
    let shell = match shell {
        "bash" => clap_complete::Shell::Bash,
        "zsh" => clap_complete::Shell::Zsh,
        _ => clap_complete::Shell::Fish,
    };
    let mut command = crate::cli::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut out);
    // clap_complete offers hidden subcommands too: the monitor is not for typing.
    let script = String::from_utf8_lossy(&out).replace(" __monitor", "");
    crate::output::print(&script)?;
    Ok(0)
}
