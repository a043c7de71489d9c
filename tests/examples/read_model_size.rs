//! What the read models of history-svc and ads-svc hold as the data grows:
//! the default data set and ten times its customers and orders (the
//! catalog stays at its size), each folded into the models, written to a
//! checkpoint, and restored in a fresh process of this example whose
//! resident memory is measured before and after (what a restarted service
//! holds, without the generator's own data).
//!
//!   cargo run --release -p storefront-e2e --example read_model_size [scales...]

use std::{process::Command, time::Instant};

use ads_svc::AdsModel;
use anyhow::{bail, Context};
use storefront_devstack::seed::{Dataset, SeedConfig};
use storefront_read_models::PurchaseHistory;
use storefront_runtime::{
    checkpoint::{Checkpoints, Positions, Stamp},
    ReadModel,
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--restore") {
        return restore(&args[1], &args[2]);
    }
    let scales: Vec<usize> = if args.is_empty() {
        vec![1, 10]
    } else {
        args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?
    };
    let dir = tempfile::tempdir()?;
    println!("| data set | orders | model | checkpoint MB | resident MB | restore s | MB per 100k orders |");
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: |");
    for scale in scales {
        let defaults = SeedConfig::default();
        let config = SeedConfig {
            customers: defaults.customers * scale,
            orders: defaults.orders * scale,
            ..defaults
        };
        let dataset = Dataset::generate(&config);
        let mut history = PurchaseHistory::default();
        let mut ads = AdsModel::default();
        for product in &dataset.products {
            history.catalog.apply(product.clone());
            ads.add_product(product.clone());
        }
        for order in &dataset.orders {
            history.orders.apply(order);
            ads.add_order(order);
        }
        drop(dataset);
        for (name, path) in [
            ("history", save(&history, dir.path().join("history"))?),
            ("ads", save(&ads, dir.path().join("ads"))?),
        ] {
            let file_mb = std::fs::metadata(&path)?.len() as f64 / 1e6;
            let exe = std::env::current_exe()?;
            let output = Command::new(exe)
                .args(["--restore", name, &path.display().to_string()])
                .output()?;
            if !output.status.success() {
                bail!(
                    "restore failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let text = String::from_utf8(output.stdout)?;
            let (resident_mb, seconds) = text
                .trim()
                .split_once(' ')
                .context("the restore prints two figures")?;
            let resident_mb: f64 = resident_mb.parse()?;
            println!(
                "| {scale}x | {} | {name} | {file_mb:.1} | {resident_mb:.1} | {seconds} | {:.1} |",
                config.orders,
                resident_mb / (config.orders as f64 / 100_000.0)
            );
        }
    }
    Ok(())
}

fn save<M: ReadModel>(model: &M, path: std::path::PathBuf) -> anyhow::Result<std::path::PathBuf> {
    let checkpoints = Checkpoints {
        path: path.clone(),
        interval: std::time::Duration::from_secs(30),
    };
    let stamp = Stamp {
        layout: M::LAYOUT.to_owned(),
        service: "read-model-size".to_owned(),
        topic_prefix: String::new(),
        cluster_id: None,
        positions: Positions::new(),
    };
    checkpoints.save(&stamp, model)?;
    Ok(path)
}

/// Restores one model and prints the resident memory it added (MB) and
/// the seconds the restore took.
fn restore(kind: &str, path: &str) -> anyhow::Result<()> {
    let checkpoints = Checkpoints {
        path: path.into(),
        interval: std::time::Duration::from_secs(30),
    };
    let before = resident_bytes()?;
    let started = Instant::now();
    let held: Box<dyn std::any::Any> = match kind {
        "history" => Box::new(
            checkpoints
                .load::<PurchaseHistory>()?
                .context("a checkpoint")?,
        ),
        "ads" => Box::new(checkpoints.load::<AdsModel>()?.context("a checkpoint")?),
        other => bail!("no model {other}"),
    };
    let seconds = started.elapsed().as_secs_f64();
    let added = resident_bytes()?.saturating_sub(before);
    println!("{:.1} {seconds:.2}", added as f64 / 1e6);
    drop(held);
    Ok(())
}

/// The resident set of this process now.
fn resident_bytes() -> anyhow::Result<u64> {
    let kib =
        storefront::processes::rss_kib(std::process::id()).context("VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}
