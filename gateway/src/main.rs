use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    storefront_runtime::shutdown::run_main(serve())
}

async fn serve() -> anyhow::Result<()> {
    storefront_runtime::logs::init("info");
    let settings = gateway::Settings::parse();
    let service = gateway::start(settings, Default::default())
        .await
        .context("failed to start gateway")?;
    service.run_until_signal().await.context("gateway failed")
}
