use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    storefront_runtime::shutdown::run_main(serve())
}

async fn serve() -> anyhow::Result<()> {
    storefront_runtime::logs::init("info");
    let settings = history_svc::Settings::parse();
    let service = history_svc::start(settings, Default::default())
        .await
        .context("failed to start history-svc")?;
    service
        .run_until_signal()
        .await
        .context("history-svc failed")
}
