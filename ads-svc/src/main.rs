use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    storefront_runtime::shutdown::run_main(serve())
}

async fn serve() -> anyhow::Result<()> {
    storefront_runtime::logs::init("info");
    let settings = ads_svc::Settings::parse();
    let service = ads_svc::start(settings, Default::default())
        .await
        .context("failed to start ads-svc")?;
    service.run_until_signal().await.context("ads-svc failed")
}
