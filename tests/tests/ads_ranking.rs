//! The ads ranking on a seeded data set: the precomputed lists give the
//! same ads as scanning every partner, for many users and as orders keep
//! arriving; and the ads are about what the user bought more often than
//! raw co-purchase counts made them.

use ads_svc::ranking::{Method, Score};
use storefront_devstack::seed::SeedConfig;
use storefront_e2e::ads_world::AdsWorld;
use storefront_schemas::Order;

fn config() -> SeedConfig {
    SeedConfig {
        customers: 2_000,
        products: 400,
        orders: 40_000,
        ..SeedConfig::small()
    }
}

/// Every customer's ads from the lists and from the scan, side by side.
fn assert_lists_match_the_scan(world: &mut AdsWorld, customers: &[String]) {
    for customer in customers {
        let fast = world.model.rank(Method::Lists, customer);
        let reference = world.model.rank(Method::Scan(Score::Cosine), customer);
        assert_eq!(fast, reference, "ads of {customer}");
    }
}

#[test]
fn the_precomputed_lists_give_the_same_ads_as_scanning_every_partner() {
    let mut world = AdsWorld::generate(&config());
    let customers = world.customers(1);
    assert_lists_match_the_scan(&mut world, &customers);
    // The lists answered most pages on their own: the scan is the exception.
    let scans = world.model.scans() as usize;
    assert!(
        scans * 4 < customers.len(),
        "{scans} of {} pages needed the scan",
        customers.len()
    );

    // Orders keep coming (popular products, new pairs): the lists they
    // touch are brought up to date, and the answers still match.
    let later: Vec<Order> = world.data.orders[..5_000]
        .iter()
        .enumerate()
        .map(|(n, order)| Order {
            order_id: format!("later-{n}"),
            ordered_at_ms: order.ordered_at_ms + 1,
            ..order.clone()
        })
        .collect();
    for (n, order) in later.iter().enumerate() {
        world.model.add_order(order);
        if n % 500 == 0 {
            let some = world.customers(37);
            assert_lists_match_the_scan(&mut world, &some);
        }
    }
    assert_lists_match_the_scan(&mut world, &customers);
}

#[test]
fn ads_share_the_category_of_the_purchase_they_are_shown_for_more_than_raw_counts_did() {
    let mut world = AdsWorld::generate(&config());
    let customers = world.customers(1);
    let before = world.relevance(Method::Scan(Score::Count), &customers);
    let after = world.relevance(Method::Lists, &customers);
    assert!(after.attributed > 0 && before.attributed > 0);
    assert!(
        after.share() > before.share(),
        "same category: {:.3} by cosine, {:.3} by raw counts",
        after.share(),
        before.share()
    );
}
