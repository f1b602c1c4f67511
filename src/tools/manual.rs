//! The manual pages (roff, from clap's command tree) and the shell completion scripts: what
//! `callmgr man` and `callmgr completions` print, and what the .deb installs.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::Cli;

/// Writes `callmgr.1` and one `callmgr-SUBCOMMAND.1` per subcommand (nested ones too, e.g.
/// `callmgr-bench-e2e.1`) into `dir`, creating it; returns the manual pages `dir` now holds,
/// sorted (pages of an older build left there are listed too).
pub fn write_man_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("callmgr") && n.to_string_lossy().ends_with(".1")))
        .collect();
    written.sort();
    Ok(written)
}

/// Prints the completion script of `shell` for `callmgr` to `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "callmgr", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_per_subcommand_each_naming_its_flags() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_man_pages(dir.path()).unwrap();
        let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        for expected in ["callmgr.1", "callmgr-serve.1", "callmgr-import.1", "callmgr-bench-e2e.1", "callmgr-completions.1"] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
        }
        let import = std::fs::read_to_string(dir.path().join("callmgr-import.1")).unwrap();
        assert!(import.starts_with(".ie"), "roff: {}", &import[..40.min(import.len())]);
        assert!(import.contains("delimiter") && import.contains("rejects"), "the page documents the flags");
        let main = std::fs::read_to_string(dir.path().join("callmgr.1")).unwrap();
        assert!(main.contains("check\\-config"), "the main page lists the subcommands");
    }

    #[test]
    fn completions_offer_the_subcommands_and_their_flags() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut out = Vec::new();
            write_completions(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("check-config") && text.contains("timezone-column"), "{shell}: {}", &text[..200.min(text.len())]);
        }
    }
}
