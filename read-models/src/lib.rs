//! Read models built from the reference topics (CQRS): the catalog and each
//! customer's orders. history-svc and ads-svc fold the same records into
//! them, and keep them in a checkpoint between runs.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use storefront_runtime::{HandlerError, Inbound, ReadModel, Topics};
use storefront_schemas::{
    now_ms, EventSet, Order, Product, Purchase, ReferenceRecord, RequestContext, Resolution,
    UserProfile, UserResolved,
};

/// Every product by id.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Catalog {
    products: HashMap<String, Product>,
}

impl Catalog {
    pub fn apply(&mut self, product: Product) {
        self.products.insert(product.product_id.clone(), product);
    }

    pub fn get(&self, product_id: &str) -> Option<&Product> {
        self.products.get(product_id)
    }
}

/// A product as the order book numbers it: in the order it was first bought.
type ProductKey = u32;

/// One order, as narrow as the page needs it.
#[derive(Debug, Serialize, Deserialize)]
struct BookedOrder {
    at_ms: i64,
    id: Box<str>,
    products: Box<[ProductKey]>,
}

/// Each customer's orders, idempotent on (customer, time, order id): a
/// re-seed or a redelivered record changes nothing. Product ids are
/// numbered once, so an order costs a few dozen bytes, not a few hundred.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct OrderBook {
    /// Per customer, ordered by (time, order id): newest last.
    by_customer: HashMap<Box<str>, Vec<BookedOrder>>,
    product_ids: Vec<Box<str>>,
    product_keys: HashMap<Box<str>, ProductKey>,
    orders: usize,
}

impl OrderBook {
    /// Adds an order; returns false if it was already known.
    pub fn apply(&mut self, order: &Order) -> bool {
        let (at_ms, id) = (order.ordered_at_ms, order.order_id.as_str());
        // A known order's products are numbered already: numbering them
        // again changes nothing.
        let products: Box<[ProductKey]> = order
            .product_ids
            .iter()
            .map(|p| self.product_key(p))
            .collect();
        let orders = match self.by_customer.get_mut(order.customer_id.as_str()) {
            Some(orders) => orders,
            None => self
                .by_customer
                .entry(order.customer_id.as_str().into())
                .or_default(),
        };
        let at = orders.partition_point(|o| (o.at_ms, &*o.id) < (at_ms, id));
        if orders
            .get(at)
            .is_some_and(|o| (o.at_ms, &*o.id) == (at_ms, id))
        {
            return false;
        }
        orders.insert(
            at,
            BookedOrder {
                at_ms,
                id: id.into(),
                products,
            },
        );
        self.orders += 1;
        true
    }

    fn product_key(&mut self, product_id: &str) -> ProductKey {
        if let Some(&key) = self.product_keys.get(product_id) {
            return key;
        }
        let key = self.product_ids.len() as ProductKey;
        self.product_ids.push(product_id.into());
        self.product_keys.insert(product_id.into(), key);
        key
    }

    /// The customer's `limit` most recently bought distinct products, newest
    /// first, with when each was last bought.
    pub fn recent_products(&self, customer_id: &str, limit: usize) -> Vec<(String, i64)> {
        let mut seen = HashSet::new();
        let mut recent = Vec::new();
        let Some(orders) = self.by_customer.get(customer_id) else {
            return recent;
        };
        'orders: for order in orders.iter().rev() {
            for &product in &order.products {
                if seen.insert(product) {
                    recent.push((self.product_ids[product as usize].to_string(), order.at_ms));
                    if recent.len() == limit {
                        break 'orders;
                    }
                }
            }
        }
        recent
    }

    /// Every product the customer ever bought, each once. Deduplicated
    /// by number, not by hashing strings: ads-svc asks on every page.
    pub fn all_products(&self, customer_id: &str) -> Vec<&str> {
        let Some(orders) = self.by_customer.get(customer_id) else {
            return Vec::new();
        };
        let mut keys: Vec<ProductKey> = orders
            .iter()
            .flat_map(|o| o.products.iter().copied())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .map(|p| &*self.product_ids[p as usize])
            .collect()
    }

    pub fn order_count(&self) -> usize {
        self.orders
    }
}

/// The customer's recent purchases as they appear on the page.
pub fn recent_purchases(
    catalog: &Catalog,
    orders: &OrderBook,
    customer_id: &str,
    limit: usize,
) -> Vec<Purchase> {
    orders
        .recent_products(customer_id, limit)
        .into_iter()
        .filter_map(|(product_id, at)| {
            let product = catalog.get(&product_id)?;
            Some(Purchase {
                product_id,
                name: product.name.clone(),
                category: product.category.clone(),
                price_cents: product.price_cents,
                purchased_at_ms: at,
            })
        })
        .collect()
}

/// The catalog and every customer's orders: what history-svc answers from,
/// and what ads-svc ranks with.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PurchaseHistory {
    pub catalog: Catalog,
    pub orders: OrderBook,
}

impl PurchaseHistory {
    /// Folds a record of the catalog or the orders topic of `topics`.
    /// Returns the order if it was new, or why the record is bad.
    pub fn apply(&mut self, record: &Inbound, topics: &Topics) -> Result<Option<Order>, String> {
        match record.event::<ReferenceRecord>(topics)? {
            ReferenceRecord::Product(product) => {
                self.catalog.apply(product);
                Ok(None)
            }
            ReferenceRecord::Order(order) => Ok(self.orders.apply(&order).then_some(order)),
            other => Err(format!("{} is not read here", other.event_type())),
        }
    }
}

impl ReadModel for PurchaseHistory {
    const LAYOUT: &'static str = "purchase history 2";

    fn apply(&mut self, record: &Inbound, topics: &Topics) -> Result<(), String> {
        PurchaseHistory::apply(self, record, topics).map(drop)
    }
}

/// The user a `user.resolved` record authenticated, with its request; `None`
/// when authentication failed or the request is past its deadline (nobody
/// waits for the answer any more).
pub fn authenticated_user(
    record: &Inbound,
) -> Result<Option<(RequestContext, UserProfile)>, HandlerError> {
    let resolved: UserResolved = record
        .decode()
        .map_err(|e| HandlerError::Invalid(e.to_string()))?;
    let context = resolved.context;
    let user = match (resolved.status, resolved.user) {
        (Resolution::Authenticated, Some(user)) => user,
        _ => return Ok(None),
    };
    if context.expired(now_ms()) {
        tracing::debug!(request_id = %context.request_id, "past its deadline; skipped");
        return Ok(None);
    }
    Ok(Some((context, user)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, at: i64, products: &[&str]) -> Order {
        Order {
            order_id: id.into(),
            customer_id: "c-1".into(),
            ordered_at_ms: at,
            product_ids: products.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn recent_products_are_distinct_and_newest_first_whatever_the_arrival_order() {
        let mut book = OrderBook::default();
        book.apply(&order("o2", 200, &["p-b", "p-c"]));
        book.apply(&order("o1", 100, &["p-a", "p-b"]));
        book.apply(&order("o3", 300, &["p-d"]));
        let recent: Vec<_> = book
            .recent_products("c-1", 3)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(recent, ["p-d", "p-b", "p-c"]);
        assert_eq!(book.recent_products("c-unknown", 3), vec![]);
    }

    #[test]
    fn an_order_seen_twice_counts_once() {
        let mut book = OrderBook::default();
        assert!(book.apply(&order("o1", 100, &["p-a"])));
        assert!(book.apply(&order("o0", 100, &["p-b"])));
        assert!(!book.apply(&order("o1", 100, &["p-a"])));
        assert!(!book.apply(&order("o0", 100, &["p-b"])));
        assert_eq!(book.order_count(), 2);
        assert_eq!(
            book.all_products("c-1"),
            ["p-a", "p-b"],
            "the products of both"
        );
    }
}
