//! `onionwatch completions` and the hidden `onionwatch manpages`: generated
//! from the clap definitions, so they never disagree with the options.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use clap_complete::Shell;

/// Print a shell completion script.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Write every man page into a directory.
#[derive(Debug, Args)]
pub struct ManpagesArgs {
    /// The directory to write onionwatch.1 and one page per subcommand into
    /// (created if missing).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
}

pub fn completions(args: CompletionsArgs) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut crate::cli_command(),
        "onionwatch",
        &mut script,
    );
    out!("{}", String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

pub fn manpages(args: ManpagesArgs) -> Result<ExitCode> {
    let dir = &args.out_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    clap_mangen::generate_to(crate::cli_command(), dir)
        .with_context(|| format!("write the man pages into {}", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
