use clap::Parser;

fn main() -> anyhow::Result<()> {
    fchm::cli::run(fchm::cli::Cli::parse())
}
