//! `slakeeper bench`: measurements of the runtime (filled in below).

use crate::cli::BenchArgs;

pub async fn run(_a: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench: not implemented yet")
}
