use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    storefront_runtime::shutdown::run_main(serve())
}

async fn serve() -> anyhow::Result<()> {
    storefront_runtime::logs::init("info,librdkafka=warn");
    let settings = storefront_baselines::Settings::parse();
    let role = settings.role.service_name();
    storefront_baselines::run_until_signal(settings)
        .await
        .with_context(|| format!("{role} failed"))
}
