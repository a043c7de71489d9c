//! Read models built from the reference topics (CQRS): the catalog and each
//! customer's orders. history-svc and ads-svc fold the same records into
//! them; a restart rebuilds them from the topics.

use std::collections::{HashMap, HashSet};

use storefront_runtime::{HandlerError, Inbound, Topics};
use storefront_schemas::{
    now_ms, EventSet, Order, Product, Purchase, ReferenceRecord, RequestContext, Resolution,
    UserProfile, UserResolved,
};

/// Every product by id.
#[derive(Debug, Default)]
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

/// One customer's orders, newest last.
#[derive(Debug, Default)]
struct CustomerOrders {
    orders: Vec<(i64, String, Vec<String>)>,
}

/// Each customer's orders, idempotent on order id (a re-seed or a
/// redelivered record changes nothing).
#[derive(Debug, Default)]
pub struct OrderBook {
    by_customer: HashMap<String, CustomerOrders>,
    seen: HashSet<String>,
}

impl OrderBook {
    /// Adds an order; returns false if it was already known.
    pub fn apply(&mut self, order: &Order) -> bool {
        if !self.seen.insert(order.order_id.clone()) {
            return false;
        }
        let orders = &mut self
            .by_customer
            .entry(order.customer_id.clone())
            .or_default()
            .orders;
        let at = orders.partition_point(|(t, id, _)| {
            (*t, id.as_str()) <= (order.ordered_at_ms, order.order_id.as_str())
        });
        orders.insert(
            at,
            (
                order.ordered_at_ms,
                order.order_id.clone(),
                order.product_ids.clone(),
            ),
        );
        true
    }

    /// The customer's `limit` most recently bought distinct products, newest
    /// first, with when each was last bought.
    pub fn recent_products(&self, customer_id: &str, limit: usize) -> Vec<(String, i64)> {
        let mut seen = HashSet::new();
        let mut recent = Vec::new();
        let Some(customer) = self.by_customer.get(customer_id) else {
            return recent;
        };
        'orders: for (at, _, products) in customer.orders.iter().rev() {
            for product in products {
                if seen.insert(product.as_str()) {
                    recent.push((product.clone(), *at));
                    if recent.len() == limit {
                        break 'orders;
                    }
                }
            }
        }
        recent
    }

    /// Every product the customer ever bought.
    pub fn all_products(&self, customer_id: &str) -> HashSet<&str> {
        self.by_customer
            .get(customer_id)
            .map(|c| {
                c.orders
                    .iter()
                    .flat_map(|(_, _, p)| p.iter().map(String::as_str))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn order_count(&self) -> usize {
        self.seen.len()
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
#[derive(Debug, Default)]
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
        assert!(!book.apply(&order("o1", 100, &["p-a"])));
        assert_eq!(book.order_count(), 1);
    }
}
