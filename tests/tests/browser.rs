//! The storefront page (`gateway/static/index.html`) in a real browser:
//! headless Debian Chromium driven by playwright-core runs
//! `tests/browser/storefront.mjs` against two stacks on the test broker, one
//! with all five services and one without ads-svc, whose pages are partial.
//! Screenshots of each view go to `target/browser-screenshots/storefront/`.

use storefront_devstack::stack::Service;
use storefront_e2e::{browser, TestStack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_page_in_chromium() {
    // Before any stack starts: without the tools this fails at once, saying what to run.
    browser::require_tools();
    let (full, partial) = tokio::join!(
        TestStack::start(&Service::ALL, 3_000),
        // No ads-svc: each page misses its ads part and the aggregator
        // answers partial at the deadline, before login's 2 s sync budget.
        TestStack::start(
            &[
                Service::User,
                Service::History,
                Service::Aggregator,
                Service::Gateway,
            ],
            1_500,
        ),
    );

    // A generated user (a cheap password hash, unlike demo's) with five
    // recent purchases; both stacks are seeded alike.
    let data = &full.dataset;
    let (username, customer_id, password, recent) = data
        .logins
        .iter()
        .filter(|(username, ..)| username != storefront_devstack::seed::DEMO_USERNAME)
        .map(|(u, id, p)| (u, id, p, data.recent_products(id, 5)))
        .find(|(.., recent)| recent.len() == 5)
        .expect("a seeded user with five purchases");
    let customer = data
        .customers
        .iter()
        .find(|c| &c.customer_id == customer_id)
        .expect("the user's customer record");
    let purchases: Vec<&str> = recent
        .iter()
        .map(|id| {
            data.products
                .iter()
                .find(|p| &p.product_id == id)
                .map(|p| p.name.as_str())
                .expect("a seeded product")
        })
        .collect();

    let screenshots = browser::run_spec(
        "storefront",
        &[
            ("STOREFRONT_URL", full.gateway().base),
            ("STOREFRONT_PARTIAL_URL", partial.gateway().base),
            ("STOREFRONT_USERNAME", username.clone()),
            ("STOREFRONT_PASSWORD", password.clone()),
            ("STOREFRONT_USER_NAME", customer.name.clone()),
            ("STOREFRONT_USER_CITY", customer.city.clone()),
            (
                "STOREFRONT_PURCHASES",
                serde_json::to_string(&purchases).unwrap(),
            ),
        ],
    )
    .await;
    for view in [
        "login-wrong-password",
        "page-full",
        "logged-out",
        "page-partial",
    ] {
        let found = std::fs::read_dir(&screenshots).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(&format!("-{view}.png"))
        });
        assert!(
            found,
            "no screenshot of {view} in {}",
            screenshots.display()
        );
    }
    tokio::join!(full.stack.stop(), partial.stack.stop());
}
