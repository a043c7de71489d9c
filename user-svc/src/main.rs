use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    storefront_runtime::shutdown::run_main(serve())
}

async fn serve() -> anyhow::Result<()> {
    storefront_runtime::logs::init("info");
    let settings = user_svc::Settings::parse();
    let service = user_svc::start(settings, Default::default())
        .await
        .context("failed to start user-svc")?;
    service.run_until_signal().await.context("user-svc failed")
}
