//! Which products to advertise to a user, and why.
//!
//! Item-to-item co-purchase: a candidate scores the number of orders in
//! which it was bought together with each of the user's recent purchases.
//! What the user already bought is left out; best-sellers fill the rest.

use std::collections::{HashMap, HashSet};

use storefront_read_models::{Catalog, OrderBook};
use storefront_schemas::{Ad, Order};

/// How often products were bought together, and alone.
#[derive(Debug, Default)]
pub struct CoPurchases {
    together: HashMap<String, HashMap<String, u32>>,
    orders_with: HashMap<String, u32>,
    best_sellers: Option<Vec<(String, u32)>>,
}

impl CoPurchases {
    /// Counts one new order (call only for orders not seen before).
    pub fn apply(&mut self, order: &Order) {
        let distinct: HashSet<&String> = order.product_ids.iter().collect();
        for a in &distinct {
            *self.orders_with.entry((*a).clone()).or_default() += 1;
            for b in &distinct {
                if a != b {
                    *self
                        .together
                        .entry((*a).clone())
                        .or_default()
                        .entry((*b).clone())
                        .or_default() += 1;
                }
            }
        }
        self.best_sellers = None;
    }

    /// Orders that contain both products.
    pub fn together(&self, a: &str, b: &str) -> u32 {
        self.together
            .get(a)
            .and_then(|m| m.get(b))
            .copied()
            .unwrap_or(0)
    }

    fn best_sellers(&mut self) -> &[(String, u32)] {
        self.best_sellers.get_or_insert_with(|| {
            let mut all: Vec<_> = self
                .orders_with
                .iter()
                .map(|(p, n)| (p.clone(), *n))
                .collect();
            all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            all.truncate(256);
            all
        })
    }
}

/// Ranks up to `limit` ads for `customer_id` from their `recent` purchases.
pub fn select_ads(
    customer_id: &str,
    recent: &[String],
    catalog: &Catalog,
    orders: &OrderBook,
    co: &mut CoPurchases,
    limit: usize,
) -> Vec<Ad> {
    let bought = orders.all_products(customer_id);
    // candidate -> (score, strongest anchor, its count)
    let mut scores: HashMap<&str, (u32, &str, u32)> = HashMap::new();
    for anchor in recent {
        let Some(partners) = co.together.get(anchor) else {
            continue;
        };
        for (candidate, count) in partners {
            if bought.contains(candidate.as_str()) || catalog.get(candidate).is_none() {
                continue;
            }
            let entry = scores.entry(candidate).or_insert((0, anchor, 0));
            entry.0 += count;
            if *count > entry.2 || (*count == entry.2 && anchor.as_str() < entry.1) {
                entry.1 = anchor;
                entry.2 = *count;
            }
        }
    }
    let mut ranked: Vec<_> = scores.into_iter().collect();
    ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(b.0)));

    let mut ads: Vec<Ad> = ranked
        .into_iter()
        .take(limit)
        .filter_map(|(candidate, (_, anchor, count))| {
            let product = catalog.get(candidate)?;
            let anchor_name = catalog.get(anchor).map_or(anchor, |p| p.name.as_str());
            let orders = if count == 1 {
                "1 order".to_owned()
            } else {
                format!("{count} orders")
            };
            Some(Ad {
                product_id: product.product_id.clone(),
                name: product.name.clone(),
                price_cents: product.price_cents,
                reason: format!(
                    "Bought together with {anchor_name} (which you bought recently) in {orders}"
                ),
            })
        })
        .collect();

    if ads.len() < limit {
        let chosen: HashSet<String> = ads.iter().map(|a| a.product_id.clone()).collect();
        let fallback = if recent.is_empty() {
            "Popular with shoppers"
        } else {
            "Best-seller"
        };
        let fill: Vec<Ad> = co
            .best_sellers()
            .iter()
            .filter(|(p, _)| !bought.contains(p.as_str()) && !chosen.contains(p))
            .filter_map(|(p, n)| {
                let product = catalog.get(p)?;
                Some(Ad {
                    product_id: p.clone(),
                    name: product.name.clone(),
                    price_cents: product.price_cents,
                    reason: format!("{fallback}: in {n} orders"),
                })
            })
            .take(limit - ads.len())
            .collect();
        ads.extend(fill);
    }
    ads
}

#[cfg(test)]
mod tests {
    use storefront_schemas::Product;

    use super::*;

    fn world(orders: &[(&str, &str, &[&str])]) -> (Catalog, OrderBook, CoPurchases) {
        let mut catalog = Catalog::default();
        for id in ["p-a", "p-b", "p-c", "p-d", "p-e", "p-f"] {
            catalog.apply(Product {
                product_id: id.into(),
                name: format!("Product {id}"),
                category: "c".into(),
                price_cents: 100,
            });
        }
        let (mut book, mut co) = (OrderBook::default(), CoPurchases::default());
        for (i, (order_id, customer, products)) in orders.iter().enumerate() {
            let order = Order {
                order_id: order_id.to_string(),
                customer_id: customer.to_string(),
                ordered_at_ms: i as i64,
                product_ids: products.iter().map(|p| p.to_string()).collect(),
            };
            if book.apply(&order) {
                co.apply(&order);
            }
        }
        (catalog, book, co)
    }

    #[test]
    fn ads_rank_by_co_purchase_and_leave_out_what_the_user_bought() {
        let (catalog, book, mut co) = world(&[
            ("o1", "c-other", &["p-a", "p-c"]),
            ("o2", "c-other", &["p-a", "p-c", "p-d"]),
            ("o3", "c-other2", &["p-a", "p-d"]),
            ("o4", "c-other2", &["p-a", "p-b", "p-c"]),
            ("o5", "c-me", &["p-a", "p-b"]),
            ("o6", "c-other3", &["p-e"]),
        ]);
        let recent: Vec<String> = book
            .recent_products("c-me", 5)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let ads = select_ads("c-me", &recent, &catalog, &book, &mut co, 3);
        let ids: Vec<_> = ads.iter().map(|a| a.product_id.as_str()).collect();
        // p-c: 3 with p-a + 1 with p-b = 4; p-d: 2 with p-a. p-a and p-b are bought.
        assert_eq!(ids[..2], ["p-c", "p-d"]);
        assert!(
            ads[0].reason.contains("Product p-a") && ads[0].reason.contains("3 orders"),
            "{}",
            ads[0].reason
        );
        assert!(!ids.contains(&"p-a") && !ids.contains(&"p-b"));
        assert_eq!(
            ids[2], "p-e",
            "filled with a best-seller nobody bought with p-a or p-b"
        );
        assert!(
            ads[2].reason.starts_with("Best-seller"),
            "{}",
            ads[2].reason
        );
    }

    #[test]
    fn a_user_with_no_history_gets_best_sellers() {
        let (catalog, book, mut co) =
            world(&[("o1", "c-1", &["p-e", "p-f"]), ("o2", "c-2", &["p-e"])]);
        let ads = select_ads("c-new", &[], &catalog, &book, &mut co, 2);
        assert_eq!(
            ads.iter()
                .map(|a| a.product_id.as_str())
                .collect::<Vec<_>>(),
            ["p-e", "p-f"]
        );
        assert!(ads[0]
            .reason
            .starts_with("Popular with shoppers: in 2 orders"));
    }
}
