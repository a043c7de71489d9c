//! Which products to advertise to a user, and why.
//!
//! Item-to-item co-purchase, scored by cosine similarity:
//! `together(a, b) / sqrt(orders(a) * orders(b))`, summed over the user's
//! recent purchases `a`. Raw co-purchase counts favour what sells most,
//! whatever it is bought with (a kite shown beside a coffee dripper);
//! dividing by both products' popularity keeps the pairs bought together
//! more often than their popularity alone explains. Cosine rather than
//! lift (`together * orders / (orders(a) * orders(b))`): lift divides by
//! the candidate's whole popularity and so puts products bought only a
//! handful of times first; cosine's square root, and a pair needing
//! [`MIN_TOGETHER`] orders to count at all, keep those down.
//!
//! Each product keeps its [`TOP_PARTNERS`] best partners, brought up to
//! date as orders arrive: an order makes stale the lists of its products
//! and the lists that hold one of them (their scores changed), and a stale
//! list is rebuilt from its own product's counts when next read. A page
//! merges its anchors' short lists; when that cannot prove its answer (a
//! product outside every list could still score higher), it scans every
//! partner instead, the reference computation. What the user already
//! bought is left out; best-sellers fill the rest.

use std::collections::HashSet;

use rustc_hash::{FxHashMap, FxHashSet};
use storefront_read_models::{Catalog, OrderBook};
use storefront_schemas::{Ad, Order};

/// Partners kept per product.
pub const TOP_PARTNERS: usize = 40;
/// Orders a pair needs in common before it counts: fewer is noise.
pub const MIN_TOGETHER: u32 = 3;

/// A product, numbered in the order it was first ordered.
type Key = u32;

/// How candidates are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    /// `together / sqrt(orders(a) * orders(b))`, pairs of at least [`MIN_TOGETHER`] orders.
    Cosine,
    /// Orders in common, every pair: what the ranking was before cosine,
    /// kept to measure against.
    Count,
}

impl Score {
    fn of(self, together: u32, orders_a: u32, orders_b: u32) -> Option<f64> {
        match self {
            Self::Cosine if together >= MIN_TOGETHER => {
                Some(f64::from(together) / (f64::from(orders_a) * f64::from(orders_b)).sqrt())
            }
            Self::Cosine => None,
            Self::Count => (together > 0).then_some(f64::from(together)),
        }
    }
}

/// A product's best partners, best first.
#[derive(Debug, Default)]
struct Partners {
    best: Vec<(f64, Key)>,
    stale: bool,
}

impl Partners {
    /// No list yet: built when first read.
    fn unbuilt() -> Self {
        Self {
            best: Vec::new(),
            stale: true,
        }
    }
}

/// How often products were bought together, and alone, and each product's
/// best partners. A checkpoint keeps the counts; the lists, derived from
/// them, are rebuilt as they are read.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CoPurchases {
    #[serde(skip)]
    keys: FxHashMap<String, Key>,
    ids: Vec<String>,
    orders_with: Vec<u32>,
    together: Vec<FxHashMap<Key, u32>>,
    #[serde(skip)]
    top: Vec<Partners>,
    /// Per product, the products whose best partners include it.
    #[serde(skip)]
    listed_in: Vec<FxHashSet<Key>>,
    #[serde(skip)]
    best_sellers: Option<Vec<(Key, u32)>>,
    #[serde(skip)]
    scans: u64,
}

impl CoPurchases {
    /// Counts one new order (call only for orders not seen before).
    pub fn apply(&mut self, order: &Order) {
        let mut distinct: Vec<Key> = order.product_ids.iter().map(|p| self.key(p)).collect();
        distinct.sort_unstable();
        distinct.dedup();
        for &a in &distinct {
            self.orders_with[a as usize] += 1;
            for &b in &distinct {
                if a != b {
                    *self.together[a as usize].entry(b).or_default() += 1;
                }
            }
        }
        for &product in &distinct {
            self.top[product as usize].stale = true;
            for &holder in &self.listed_in[product as usize] {
                self.top[holder as usize].stale = true;
            }
        }
        self.best_sellers = None;
    }

    /// After a restore of the counts alone: every product numbered as
    /// before, every list stale, listed nowhere.
    pub fn restored(&mut self) {
        let products = self.ids.len();
        self.keys = (0..products as Key)
            .map(|key| (self.ids[key as usize].clone(), key))
            .collect();
        self.top = std::iter::repeat_with(Partners::unbuilt)
            .take(products)
            .collect();
        self.listed_in = vec![FxHashSet::default(); products];
        self.best_sellers = None;
    }

    /// Pages ranked by scanning every partner, because their anchors' lists
    /// could not prove the answer.
    pub fn scans(&self) -> u64 {
        self.scans
    }

    fn key(&mut self, product_id: &str) -> Key {
        if let Some(&key) = self.keys.get(product_id) {
            return key;
        }
        let key = self.ids.len() as Key;
        self.keys.insert(product_id.to_owned(), key);
        self.ids.push(product_id.to_owned());
        self.orders_with.push(0);
        self.together.push(FxHashMap::default());
        self.top.push(Partners::unbuilt());
        self.listed_in.push(FxHashSet::default());
        key
    }

    /// The score of `b` against `a`, which were bought together in `together` orders.
    fn score(&self, kind: Score, a: Key, b: Key, together: u32) -> Option<f64> {
        kind.of(
            together,
            self.orders_with[a as usize],
            self.orders_with[b as usize],
        )
    }

    /// `product`'s best partners, rebuilt first if an order made them stale.
    fn best_partners(&mut self, product: Key) -> &[(f64, Key)] {
        let p = product as usize;
        if self.top[p].stale {
            for (_, old) in std::mem::take(&mut self.top[p].best) {
                self.listed_in[old as usize].remove(&product);
            }
            let mut best: Vec<(f64, Key)> = self.together[p]
                .iter()
                .filter_map(|(&b, &together)| {
                    Some((self.score(Score::Cosine, product, b, together)?, b))
                })
                .collect();
            let by_score = |x: &(f64, Key), y: &(f64, Key)| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1));
            if best.len() > TOP_PARTNERS {
                best.select_nth_unstable_by(TOP_PARTNERS - 1, by_score);
                best.truncate(TOP_PARTNERS);
            }
            best.sort_unstable_by(by_score);
            for &(_, partner) in &best {
                self.listed_in[partner as usize].insert(product);
            }
            self.top[p] = Partners { best, stale: false };
        }
        &self.top[p].best
    }

    /// The score no product outside `product`'s list can beat: its last
    /// entry's if the list is full, else none (the list holds every partner).
    fn list_floor(&self, product: Key) -> f64 {
        let best = &self.top[product as usize].best;
        if best.len() == TOP_PARTNERS {
            best.last().map_or(0.0, |(score, _)| *score)
        } else {
            0.0
        }
    }

    /// `candidate` scored against every anchor, in the anchors' order.
    fn candidate(&self, kind: Score, anchors: &[Key], candidate: Key) -> Option<Candidate> {
        let mut scored: Option<Candidate> = None;
        for &anchor in anchors {
            let Some(&together) = self.together[anchor as usize].get(&candidate) else {
                continue;
            };
            let Some(score) = self.score(kind, anchor, candidate, together) else {
                continue;
            };
            let c = scored.get_or_insert(Candidate {
                key: candidate,
                score: 0.0,
                anchor,
                anchor_score: score,
                together,
            });
            c.score += score;
            let stronger = score > c.anchor_score
                || (score == c.anchor_score
                    && self.ids[anchor as usize] < self.ids[c.anchor as usize]);
            if stronger {
                (c.anchor, c.anchor_score, c.together) = (anchor, score, together);
            }
        }
        scored
    }

    /// Every partner of every anchor scored: the reference computation.
    fn scan(&self, kind: Score, anchors: &[Key], bought: &FxHashSet<Key>) -> Vec<Candidate> {
        let partners: FxHashSet<Key> = anchors
            .iter()
            .flat_map(|&a| self.together[a as usize].keys().copied())
            .filter(|b| !bought.contains(b))
            .collect();
        partners
            .into_iter()
            .filter_map(|b| self.candidate(kind, anchors, b))
            .collect()
    }

    /// Keeps the best-sellers, most ordered first, up to date.
    fn best_sellers(&mut self) {
        let (ids, orders_with) = (&self.ids, &self.orders_with);
        self.best_sellers.get_or_insert_with(|| {
            let mut all: Vec<(Key, u32)> = (0..ids.len() as Key)
                .map(|k| (k, orders_with[k as usize]))
                .collect();
            all.sort_by(|a, b| {
                b.1.cmp(&a.1)
                    .then_with(|| ids[a.0 as usize].cmp(&ids[b.0 as usize]))
            });
            all.truncate(256);
            all
        });
    }
}

/// A product scored for a page, with the anchor it is shown for.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    key: Key,
    score: f64,
    /// The user's recent purchase that scores it highest, and their orders in common.
    anchor: Key,
    anchor_score: f64,
    together: u32,
}

/// How a page's candidates are found and scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The anchors' precomputed lists, merged (scanning only when they
    /// cannot prove the answer); cosine scores. What the service runs.
    Lists,
    /// Every partner of every anchor, scored by `Score`: the reference the
    /// lists are checked against, and with [`Score::Count`] the ranking
    /// before them.
    Scan(Score),
}

/// An ad, and the recent purchase it is shown for (none for a best-seller).
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub ad: Ad,
    pub anchor: Option<String>,
}

/// Ranks up to `limit` ads for `customer_id` by `method`, with what each is shown for.
pub fn rank(
    method: Method,
    customer_id: &str,
    recent: &[String],
    catalog: &Catalog,
    orders: &OrderBook,
    co: &mut CoPurchases,
    limit: usize,
) -> Vec<Pick> {
    let bought: FxHashSet<Key> = orders
        .all_products(customer_id)
        .into_iter()
        .filter_map(|p| co.keys.get(p).copied())
        .collect();
    let anchors: Vec<Key> = recent
        .iter()
        .filter_map(|p| co.keys.get(p).copied())
        .collect();
    let in_catalog =
        |co: &CoPurchases, c: &Candidate| catalog.get(&co.ids[c.key as usize]).is_some();
    let ranked = match method {
        Method::Scan(kind) => {
            let mut ranked = co.scan(kind, &anchors, &bought);
            sort(co, &mut ranked);
            ranked
        }
        Method::Lists => {
            let mut listed: Vec<Key> = Vec::new();
            for &anchor in &anchors {
                listed.extend(co.best_partners(anchor).iter().map(|(_, b)| *b));
            }
            listed.sort_unstable();
            listed.dedup();
            let mut ranked: Vec<Candidate> = listed
                .into_iter()
                .filter(|b| !bought.contains(b))
                .filter_map(|b| co.candidate(Score::Cosine, &anchors, b))
                .collect();
            sort(co, &mut ranked);
            // A product in no list scores at most the sum of the full lists' floors.
            let unseen_at_most: f64 = anchors.iter().map(|&a| co.list_floor(a)).sum();
            let last_shown = ranked
                .iter()
                .filter(|c| in_catalog(co, c))
                .nth(limit.saturating_sub(1));
            let proven =
                unseen_at_most == 0.0 || last_shown.is_some_and(|last| unseen_at_most < last.score);
            if !proven {
                co.scans += 1;
                ranked = co.scan(Score::Cosine, &anchors, &bought);
                sort(co, &mut ranked);
            }
            ranked
        }
    };
    let shown = ranked
        .into_iter()
        .filter(|c| in_catalog(co, c))
        .take(limit)
        .collect();
    picks(shown, &bought, recent, catalog, co, limit)
}

/// Best first; equal scores by product id.
fn sort(co: &CoPurchases, ranked: &mut [Candidate]) {
    ranked.sort_unstable_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| co.ids[a.key as usize].cmp(&co.ids[b.key as usize]))
    });
}

/// `shown` as ads, with best-sellers after them if they are fewer than `limit`.
fn picks(
    shown: Vec<Candidate>,
    bought: &FxHashSet<Key>,
    recent: &[String],
    catalog: &Catalog,
    co: &mut CoPurchases,
    limit: usize,
) -> Vec<Pick> {
    let mut ads: Vec<Pick> = shown
        .into_iter()
        .filter_map(|c| {
            let product = catalog.get(&co.ids[c.key as usize])?;
            let anchor = co.ids[c.anchor as usize].as_str();
            let anchor_name = catalog.get(anchor).map_or(anchor, |p| p.name.as_str());
            let orders = if c.together == 1 {
                "1 order".to_owned()
            } else {
                format!("{} orders", c.together)
            };
            let ad = Ad {
                product_id: product.product_id.clone(),
                name: product.name.clone(),
                price_cents: product.price_cents,
                reason: format!(
                    "Bought together with {anchor_name} (which you bought recently) in {orders}"
                ),
            };
            Some(Pick {
                ad,
                anchor: Some(anchor.to_owned()),
            })
        })
        .collect();

    if ads.len() < limit {
        let chosen: HashSet<String> = ads.iter().map(|a| a.ad.product_id.clone()).collect();
        let fallback = if recent.is_empty() {
            "Popular with shoppers"
        } else {
            "Best-seller"
        };
        co.best_sellers();
        let best_sellers = co.best_sellers.as_deref().unwrap_or_default();
        let fill: Vec<Pick> = best_sellers
            .iter()
            .filter(|(k, _)| !bought.contains(k))
            .map(|(k, n)| (co.ids[*k as usize].as_str(), n))
            .filter(|(p, _)| !chosen.contains(*p))
            .filter_map(|(p, n)| {
                let product = catalog.get(p)?;
                let ad = Ad {
                    product_id: p.to_owned(),
                    name: product.name.clone(),
                    price_cents: product.price_cents,
                    reason: format!("{fallback}: in {n} orders"),
                };
                Some(Pick { ad, anchor: None })
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

    /// A catalog, an order book and their co-purchases.
    struct World {
        catalog: Catalog,
        book: OrderBook,
        co: CoPurchases,
    }

    impl World {
        fn add(&mut self, order: &Order) {
            if self.book.apply(order) {
                self.co.apply(order);
            }
        }

        /// The ids of `customer_id`'s ads by `method`, from `recent`.
        fn ads(
            &mut self,
            method: Method,
            customer_id: &str,
            recent: &[&str],
            limit: usize,
        ) -> Vec<Ad> {
            let recent: Vec<String> = recent.iter().map(|p| p.to_string()).collect();
            let (catalog, book) = (&self.catalog, &self.book);
            let picks = rank(
                method,
                customer_id,
                &recent,
                catalog,
                book,
                &mut self.co,
                limit,
            );
            picks.into_iter().map(|pick| pick.ad).collect()
        }
    }

    /// Products `p-a`... and `orders` of (customer, products), each order
    /// repeated as many times as its count says.
    fn world(orders: &[(&str, &[&str], usize)]) -> World {
        let mut world = World {
            catalog: Catalog::default(),
            book: OrderBook::default(),
            co: CoPurchases::default(),
        };
        for id in ["p-a", "p-b", "p-c", "p-d", "p-e", "p-f", "p-kite"] {
            world.catalog.apply(Product {
                product_id: id.into(),
                name: format!("Product {id}"),
                category: "c".into(),
                price_cents: 100,
            });
        }
        let mut n = 0;
        for (customer, products, times) in orders {
            for _ in 0..*times {
                n += 1;
                world.add(&Order {
                    order_id: format!("o{n}"),
                    customer_id: customer.to_string(),
                    ordered_at_ms: n,
                    product_ids: products.iter().map(|p| p.to_string()).collect(),
                });
            }
        }
        world
    }

    fn ids(ads: &[Ad]) -> Vec<&str> {
        ads.iter().map(|a| a.product_id.as_str()).collect()
    }

    /// The demo's case: a best-seller bought with everything, and a product
    /// bought mostly with what the user bought.
    fn kite_world() -> World {
        world(&[
            ("c-other", &["p-a", "p-kite"], 6),
            ("c-other", &["p-kite"], 100),
            ("c-other", &["p-a", "p-d"], 5),
            ("c-other", &["p-d"], 3),
            ("c-me", &["p-a"], 1),
        ])
    }

    #[test]
    fn cosine_ranks_what_is_bought_with_the_purchase_above_what_sells_anyway() {
        let mut w = kite_world();
        let ads = w.ads(Method::Lists, "c-me", &["p-a"], 2);
        assert_eq!(ids(&ads), ["p-d", "p-kite"]);
        assert!(
            ads[0].reason.contains("Product p-a") && ads[0].reason.contains("5 orders"),
            "{}",
            ads[0].reason
        );
        // By raw counts (the ranking before), the kite came first.
        let by_count = w.ads(Method::Scan(Score::Count), "c-me", &["p-a"], 2);
        assert_eq!(ids(&by_count), ["p-kite", "p-d"]);
    }

    #[test]
    fn pairs_below_the_minimum_support_do_not_count_and_best_sellers_fill_in() {
        let mut w = world(&[
            ("c-other", &["p-a", "p-b"], 2),
            ("c-other", &["p-e"], 4),
            ("c-me", &["p-a"], 1),
        ]);
        let ads = w.ads(Method::Lists, "c-me", &["p-a"], 2);
        assert_eq!(ids(&ads), ["p-e", "p-b"]);
        assert!(
            ads[0].reason.starts_with("Best-seller"),
            "{}",
            ads[0].reason
        );
    }

    #[test]
    fn what_the_user_bought_is_left_out() {
        let mut w = world(&[
            ("c-other", &["p-a", "p-c"], 4),
            ("c-other", &["p-a", "p-d"], 3),
            ("c-me", &["p-a"], 1),
            ("c-me", &["p-c"], 1),
        ]);
        assert_eq!(ids(&w.ads(Method::Lists, "c-me", &["p-a"], 1)), ["p-d"]);
    }

    #[test]
    fn a_user_with_no_history_gets_best_sellers() {
        let mut w = world(&[("c-1", &["p-e", "p-f"], 1), ("c-2", &["p-e"], 1)]);
        let ads = w.ads(Method::Lists, "c-new", &[], 2);
        assert_eq!(ids(&ads), ["p-e", "p-f"]);
        assert!(ads[0]
            .reason
            .starts_with("Popular with shoppers: in 2 orders"));
    }

    #[test]
    fn a_new_order_brings_the_lists_it_changes_up_to_date() {
        let mut w = kite_world();
        assert_eq!(ids(&w.ads(Method::Lists, "c-me", &["p-a"], 1)), ["p-d"]);
        // p-d becomes a best-seller too: it sells a lot without p-a.
        for n in 0..400 {
            w.add(&Order {
                order_id: format!("late-{n}"),
                customer_id: "c-other".into(),
                ordered_at_ms: 10_000 + n,
                product_ids: vec!["p-d".into()],
            });
        }
        assert_eq!(ids(&w.ads(Method::Lists, "c-me", &["p-a"], 1)), ["p-kite"]);
    }
}
