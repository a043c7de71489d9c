//! Whether the ads are about what the user bought: on the default seeded
//! data set, how often an ad shares the category of the purchase it is
//! shown for (the seed's baskets stay mostly within one category), ranked
//! by raw co-purchase counts (before) and by cosine similarity (now); and
//! the demo account's ads by each.
//!
//!   cargo run --release -p storefront-e2e --example ad_relevance [customer step]

use ads_svc::ranking::{Method, Score};
use storefront_devstack::seed::{SeedConfig, DEMO_CUSTOMER_ID};
use storefront_e2e::ads_world::AdsWorld;

fn main() -> anyhow::Result<()> {
    let step: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1,
    };
    let config = SeedConfig::default();
    let mut world = AdsWorld::generate(&config);
    let customers = world.customers(step);
    println!(
        "default data set ({} customers, {} products, {} orders); ads for {} customers",
        config.customers,
        config.products,
        config.orders,
        customers.len()
    );
    println!("| ranking | ads shown for a purchase | same category | best-seller fill |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, method) in [
        (
            "raw co-purchase counts (before)",
            Method::Scan(Score::Count),
        ),
        ("cosine similarity (now)", Method::Lists),
    ] {
        let r = world.relevance(method, &customers);
        println!(
            "| {name} | {} | {} ({:.1} %) | {} |",
            r.attributed,
            r.same_category,
            100.0 * r.share(),
            r.fill
        );
    }
    println!(
        "pages the lists could not prove (scanned): {}",
        world.model.scans()
    );
    for (name, method) in [
        ("raw counts", Method::Scan(Score::Count)),
        ("cosine", Method::Lists),
    ] {
        println!("\nthe demo account's ads by {name}:");
        for pick in world.model.rank(method, DEMO_CUSTOMER_ID) {
            println!("  {}: {}", pick.ad.name, pick.ad.reason);
        }
    }
    Ok(())
}
