//! One page's ads ranking at the default seeded data set: from the
//! precomputed lists (what ads-svc runs) against scanning every partner
//! of every recent purchase by raw counts (the ranking before them).
//! Each iteration ranks the next customer's page, round the whole set.
//!
//!   cargo bench -p storefront-e2e --bench ads_ranking

use ads_svc::ranking::{Method, Score};
use criterion::{criterion_group, criterion_main, Criterion};
use storefront_devstack::seed::SeedConfig;
use storefront_e2e::ads_world::AdsWorld;

fn one_page(c: &mut Criterion) {
    let mut world = AdsWorld::generate(&SeedConfig::default());
    let customers = world.customers(1);
    // Every list built once, as a service that has served for a while has.
    world.relevance(Method::Lists, &customers);
    let mut group = c.benchmark_group("one page's ads");
    for (name, method) in [
        ("precomputed lists, cosine (now)", Method::Lists),
        ("scan, raw counts (before)", Method::Scan(Score::Count)),
        ("scan, cosine (the reference)", Method::Scan(Score::Cosine)),
    ] {
        let mut next = customers.iter().cycle();
        group.bench_function(name, |b| {
            b.iter(|| {
                let customer = next.next().expect("customers cycle");
                std::hint::black_box(world.model.rank(method, customer))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, one_page);
criterion_main!(benches);
