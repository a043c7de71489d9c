//! A deterministic data set for the reference topics: customers (with the
//! demo account), their argon2id credentials, a catalog in categories, and
//! orders with a long-tailed (Zipf) product popularity whose baskets mostly
//! stay within one category, so co-purchase ranking has signal.

use std::collections::BTreeSet;

use rand::{
    distributions::{Distribution, WeightedIndex},
    rngs::StdRng,
    seq::SliceRandom,
    Rng, SeedableRng,
};
use storefront_runtime::{topics, EventProducer, KafkaSettings, Outbound, Telemetry};
use storefront_schemas::{Credential, Customer, Order, Product};
use user_svc::passwords::{self, HashCost};

pub const DEMO_USERNAME: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-password";
pub const DEMO_CUSTOMER_ID: &str = "c-demo";

/// How much to seed.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedConfig {
    /// Customers besides the demo account (userN, password userN-password).
    #[arg(long, default_value_t = 10_000)]
    pub customers: usize,
    /// Products in the catalog.
    #[arg(long, default_value_t = 2_000)]
    pub products: usize,
    /// Orders across all customers.
    #[arg(long, default_value_t = 200_000)]
    pub orders: usize,
    /// Random seed: the same seed gives the same data set.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// argon2id memory (KiB) for the generated users' hashes; the demo
    /// account always gets the recommended cost.
    #[arg(long, default_value_t = 1024)]
    pub hash_memory_kib: u32,
}

/// The default data set: what `storefront seed` makes without flags.
impl Default for SeedConfig {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct SeedOnly {
            #[command(flatten)]
            seed: SeedConfig,
        }
        storefront_runtime::settings::defaults::<SeedOnly>(&[]).seed
    }
}

impl SeedConfig {
    /// A data set small enough for tests.
    pub fn small() -> Self {
        Self {
            customers: 60,
            products: 80,
            orders: 1_500,
            seed: 7,
            hash_memory_kib: 256,
        }
    }
}

/// The generated records, before hashing and writing.
pub struct Dataset {
    pub customers: Vec<Customer>,
    /// (username, customer id, password) per customer.
    pub logins: Vec<(String, String, String)>,
    pub products: Vec<Product>,
    pub orders: Vec<Order>,
}

const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "kitchen",
        &[
            "Kettle",
            "Chef's Knife",
            "Cutting Board",
            "Saucepan",
            "Frying Pan",
            "Spatula",
            "Colander",
            "Teapot",
        ],
    ),
    (
        "coffee",
        &[
            "Coffee Grinder",
            "Pour-over Dripper",
            "Espresso Cups",
            "Milk Frother",
            "Coffee Beans",
            "Paper Filters",
            "Scale",
        ],
    ),
    (
        "outdoor",
        &[
            "Tent",
            "Sleeping Bag",
            "Camping Stove",
            "Headlamp",
            "Water Bottle",
            "Trekking Poles",
            "Rain Jacket",
        ],
    ),
    (
        "garden",
        &[
            "Trowel",
            "Pruning Shears",
            "Watering Can",
            "Seed Tray",
            "Garden Gloves",
            "Hose Nozzle",
            "Compost Bin",
        ],
    ),
    (
        "office",
        &[
            "Notebook",
            "Fountain Pen",
            "Desk Lamp",
            "Monitor Stand",
            "Stapler",
            "Desk Organizer",
            "Ink Bottle",
        ],
    ),
    (
        "books",
        &[
            "Cookbook",
            "Travel Guide",
            "Novel",
            "Field Guide",
            "Poetry Collection",
            "Atlas",
            "Sketchbook",
        ],
    ),
    (
        "audio",
        &[
            "Headphones",
            "Bluetooth Speaker",
            "Earbuds",
            "Turntable",
            "Record Cleaner",
            "Headphone Stand",
        ],
    ),
    (
        "fitness",
        &[
            "Yoga Mat",
            "Kettlebell",
            "Jump Rope",
            "Foam Roller",
            "Resistance Bands",
            "Water Flask",
        ],
    ),
    (
        "home",
        &[
            "Throw Blanket",
            "Candle",
            "Vase",
            "Picture Frame",
            "Cushion",
            "Wall Clock",
            "Doormat",
        ],
    ),
    (
        "toys",
        &[
            "Puzzle",
            "Building Blocks",
            "Board Game",
            "Kite",
            "Plush Bear",
            "Card Game",
        ],
    ),
];
const ADJECTIVES: &[&str] = &[
    "Classic", "Compact", "Deluxe", "Everyday", "Nordic", "Rustic", "Studio", "Travel", "Heritage",
    "Urban", "Pro", "Mini", "Eco", "Copper", "Oak", "Linen", "Granite", "Alpine",
];
const FIRST: &[&str] = &[
    "Ada", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kiri",
    "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tomas", "Uma", "Viktor",
    "Wen", "Yara", "Zane",
];
const LAST: &[&str] = &[
    "Alvarez", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jensen", "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Rossi", "Schmidt",
    "Tanaka", "Varga", "Weber", "Young",
];
const CITIES: &[&str] = &[
    "Lyon", "Porto", "Ghent", "Tartu", "Bergen", "Graz", "Bologna", "Malmo", "Brno", "Leipzig",
    "Utrecht", "Aarhus",
];

/// 2026-01-01T00:00:00Z: order times end here, so the data set never changes with the clock.
const EPOCH_MS: i64 = 1_767_225_600_000;
const DAY_MS: i64 = 86_400_000;

impl Dataset {
    pub fn generate(config: &SeedConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let products = generate_products(&mut rng, config.products.max(CATEGORIES.len()));

        let mut customers = vec![Customer {
            customer_id: DEMO_CUSTOMER_ID.into(),
            username: DEMO_USERNAME.into(),
            name: "Dana Demo".into(),
            city: "Lyon".into(),
            registered_at_ms: EPOCH_MS - 400 * DAY_MS,
        }];
        let mut logins = vec![(
            DEMO_USERNAME.to_owned(),
            DEMO_CUSTOMER_ID.to_owned(),
            DEMO_PASSWORD.to_owned(),
        )];
        for i in 1..=config.customers {
            let customer_id = format!("c-{i:06}");
            let username = format!("user{i}");
            customers.push(Customer {
                customer_id: customer_id.clone(),
                username: username.clone(),
                name: format!(
                    "{} {}",
                    FIRST.choose(&mut rng).unwrap(),
                    LAST.choose(&mut rng).unwrap()
                ),
                city: CITIES.choose(&mut rng).unwrap().to_string(),
                registered_at_ms: EPOCH_MS - rng.gen_range(30..1000) * DAY_MS,
            });
            logins.push((
                username.clone(),
                customer_id,
                format!("{username}-password"),
            ));
        }

        let popularity = Popularity::new(&mut rng, &products);
        let mut orders = Vec::with_capacity(config.orders + 8);
        // Shoppers are long-tailed too: a few buy often.
        let shopper_weights: Vec<f64> = (1..=config.customers.max(1))
            .map(|r| 1.0 / (r as f64).powf(0.6))
            .collect();
        let shoppers = WeightedIndex::new(&shopper_weights).expect("weights are positive");
        for n in 0..config.orders {
            let customer = if config.customers == 0 {
                DEMO_CUSTOMER_ID.to_owned()
            } else {
                format!("c-{:06}", shoppers.sample(&mut rng) + 1)
            };
            let basket = popularity.basket(&mut rng, &products);
            orders.push(Order {
                order_id: format!("o-{n:07}"),
                customer_id: customer,
                ordered_at_ms: EPOCH_MS - rng.gen_range(1..365 * DAY_MS),
                product_ids: basket,
            });
        }
        // The demo account: eight recent orders of popular products, so it
        // has history and co-purchases to rank ads from.
        for n in 0..8 {
            orders.push(Order {
                order_id: format!("o-demo-{n}"),
                customer_id: DEMO_CUSTOMER_ID.into(),
                ordered_at_ms: EPOCH_MS - (8 - n) * 3 * DAY_MS,
                product_ids: popularity.basket(&mut rng, &products),
            });
        }
        Self {
            customers,
            logins,
            products,
            orders,
        }
    }

    /// What the demo account bought, newest first, distinct: what history-svc should show.
    pub fn recent_products(&self, customer_id: &str, limit: usize) -> Vec<String> {
        let mut orders: Vec<&Order> = self
            .orders
            .iter()
            .filter(|o| o.customer_id == customer_id)
            .collect();
        orders.sort_by(|a, b| (b.ordered_at_ms, &b.order_id).cmp(&(a.ordered_at_ms, &a.order_id)));
        let mut seen = BTreeSet::new();
        let mut recent = Vec::new();
        for order in orders {
            for p in &order.product_ids {
                if recent.len() < limit && seen.insert(p.clone()) {
                    recent.push(p.clone());
                }
            }
        }
        recent
    }

    /// Every product a customer ever bought.
    pub fn all_products(&self, customer_id: &str) -> BTreeSet<String> {
        self.orders
            .iter()
            .filter(|o| o.customer_id == customer_id)
            .flat_map(|o| o.product_ids.clone())
            .collect()
    }
}

fn generate_products(rng: &mut StdRng, count: usize) -> Vec<Product> {
    (0..count)
        .map(|i| {
            let (category, nouns) = CATEGORIES[i % CATEGORIES.len()];
            let noun = nouns[(i / CATEGORIES.len()) % nouns.len()];
            let adjective = ADJECTIVES[(i / (CATEGORIES.len() * nouns.len())) % ADJECTIVES.len()];
            let edition = i / (CATEGORIES.len() * nouns.len() * ADJECTIVES.len());
            let name = if edition == 0 {
                format!("{adjective} {noun}")
            } else {
                format!("{adjective} {noun} {}", edition + 1)
            };
            Product {
                product_id: format!("p-{i:05}"),
                name,
                category: category.into(),
                price_cents: rng.gen_range(3..300) * 100 + [0, 49, 90, 99][rng.gen_range(0..4)],
            }
        })
        .collect()
}

/// Zipf-like popularity, overall and within each category.
struct Popularity {
    overall: WeightedIndex<f64>,
    by_category: Vec<(Vec<usize>, WeightedIndex<f64>)>,
    category_of: Vec<usize>,
}

impl Popularity {
    fn new(rng: &mut StdRng, products: &[Product]) -> Self {
        let mut ranked: Vec<usize> = (0..products.len()).collect();
        ranked.shuffle(rng);
        let mut weight = vec![0.0; products.len()];
        for (rank, &i) in ranked.iter().enumerate() {
            weight[i] = 1.0 / (rank as f64 + 1.0).powf(1.05);
        }
        let category_of: Vec<usize> = (0..products.len()).map(|i| i % CATEGORIES.len()).collect();
        let by_category = (0..CATEGORIES.len())
            .map(|c| {
                let members: Vec<usize> = (0..products.len())
                    .filter(|i| category_of[*i] == c)
                    .collect();
                let weights: Vec<f64> = members.iter().map(|i| weight[*i]).collect();
                (
                    members,
                    WeightedIndex::new(&weights).expect("every category has products"),
                )
            })
            .collect();
        Self {
            overall: WeightedIndex::new(&weight).expect("weights are positive"),
            by_category,
            category_of,
        }
    }

    fn basket(&self, rng: &mut StdRng, products: &[Product]) -> Vec<String> {
        let size = [1, 1, 1, 1, 2, 2, 2, 3, 3, 4][rng.gen_range(0..10)];
        let first = self.overall.sample(rng);
        let mut picked = vec![first];
        let (members, within) = &self.by_category[self.category_of[first]];
        for _ in 1..size * 3 {
            if picked.len() == size {
                break;
            }
            let next = if rng.gen_bool(0.8) {
                members[within.sample(rng)]
            } else {
                self.overall.sample(rng)
            };
            if !picked.contains(&next) {
                picked.push(next);
            }
        }
        picked
            .into_iter()
            .map(|i| products[i].product_id.clone())
            .collect()
    }
}

/// Hashes every login's password, on all cores.
pub fn credentials(logins: &[(String, String, String)], memory_kib: u32) -> Vec<Credential> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = logins.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = logins
            .chunks(chunk)
            .map(|logins| {
                scope.spawn(move || {
                    logins
                        .iter()
                        .map(|(username, customer_id, password)| {
                            let cost = if username == DEMO_USERNAME {
                                HashCost::RECOMMENDED
                            } else {
                                HashCost {
                                    memory_kib,
                                    iterations: 1,
                                }
                            };
                            Credential {
                                username: username.clone(),
                                customer_id: customer_id.clone(),
                                password_hash: passwords::hash(password, cost),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("hashing does not panic"))
            .collect()
    })
}

/// What `seed` did per topic.
#[derive(Debug, Default)]
pub struct SeedReport {
    pub written: Vec<(String, usize)>,
    pub skipped: Vec<(String, i64)>,
}

/// Writes the data set to the reference topics. A topic that already holds
/// at least as many records as planned is left alone, so seeding twice
/// changes nothing; records are keyed by their ids and the read models are
/// idempotent, so finishing an interrupted seed is safe too.
pub async fn seed(settings: &KafkaSettings, config: &SeedConfig) -> anyhow::Result<SeedReport> {
    topics::ensure_topics(settings).await?;
    let t = settings.topics();
    let dataset = Dataset::generate(config);
    let producer = EventProducer::new(settings, &Telemetry::local("storefront-seed"))?;
    let mut report = SeedReport::default();

    let mut plan: Vec<(String, usize)> = vec![
        (t.catalog.clone(), dataset.products.len()),
        (t.customers.clone(), dataset.customers.len()),
        (t.credentials.clone(), dataset.logins.len()),
        (t.orders.clone(), dataset.orders.len()),
    ];
    let sizes = {
        let (settings, topics) = (
            settings.clone(),
            plan.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
        );
        tokio::task::spawn_blocking(move || topic_sizes(&settings, &topics)).await??
    };
    let mut sizes = sizes.into_iter();
    plan.retain(|(topic, planned)| {
        let existing = sizes.next().unwrap_or(0);
        if existing >= *planned as i64 {
            report.skipped.push((topic.clone(), existing));
            false
        } else {
            true
        }
    });
    for (topic, _) in plan {
        let records: Vec<Outbound> = if topic == t.catalog {
            dataset
                .products
                .iter()
                .map(|p| Outbound::reference(&topic, &p.product_id, p))
                .collect()
        } else if topic == t.customers {
            dataset
                .customers
                .iter()
                .map(|c| Outbound::reference(&topic, &c.customer_id, c))
                .collect()
        } else if topic == t.credentials {
            let (logins, memory) = (dataset.logins.clone(), config.hash_memory_kib);
            let hashed = tokio::task::spawn_blocking(move || credentials(&logins, memory)).await?;
            hashed
                .iter()
                .map(|c| Outbound::reference(&topic, &c.username, c))
                .collect()
        } else {
            dataset
                .orders
                .iter()
                .map(|o| Outbound::reference(&topic, &o.customer_id, o))
                .collect()
        };
        for batch in records.chunks(5_000) {
            producer.send_all(batch).await?;
        }
        tracing::info!(%topic, records = records.len(), "seeded");
        report.written.push((topic, records.len()));
    }
    Ok(report)
}

/// Records in each topic now (the sum of its partitions' watermark spans).
fn topic_sizes(settings: &KafkaSettings, topics: &[String]) -> anyhow::Result<Vec<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let timeout = std::time::Duration::from_secs(5);
    let consumer: BaseConsumer = settings.consumer_config("storefront-seed").create()?;
    let mut sizes = Vec::with_capacity(topics.len());
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let mut total = 0;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) =
                storefront_runtime::watermarks::fetch(&consumer, topic, partition.id(), timeout)?;
            total += high - low.max(0);
        }
        sizes.push(total);
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_data_set() {
        let a = Dataset::generate(&SeedConfig::small());
        let b = Dataset::generate(&SeedConfig::small());
        assert_eq!(a.orders, b.orders);
        assert_eq!(a.products, b.products);
        assert_eq!(a.customers, b.customers);
    }

    #[test]
    fn the_demo_account_has_a_history_and_popularity_is_long_tailed() {
        let data = Dataset::generate(&SeedConfig {
            customers: 200,
            products: 200,
            orders: 20_000,
            ..SeedConfig::small()
        });
        assert_eq!(data.recent_products(DEMO_CUSTOMER_ID, 5).len(), 5);
        let mut counts = std::collections::HashMap::new();
        for order in &data.orders {
            for p in &order.product_ids {
                *counts.entry(p.clone()).or_insert(0usize) += 1;
            }
        }
        let mut sorted: Vec<usize> = counts.values().copied().collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let top_tenth: usize = sorted.iter().take(sorted.len() / 10).sum();
        let all: usize = sorted.iter().sum();
        assert!(
            top_tenth * 2 > all,
            "the top 10% of products make over half the sales ({top_tenth} of {all})"
        );
    }
}
