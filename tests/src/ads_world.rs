//! The ads ranking on a seeded data set, without a broker: ads-svc's model
//! folded from the seed's catalog and orders, and how often an ad shares
//! the category of the purchase it is shown for (the seed's baskets stay
//! mostly within one category: that is the ground truth). Shared by the
//! ranking's test, its relevance example and its benchmark.

use std::collections::HashMap;

use ads_svc::{ranking::Method, AdsModel};
use storefront_devstack::seed::{Dataset, SeedConfig};

pub struct AdsWorld {
    pub data: Dataset,
    pub model: AdsModel,
    category: HashMap<String, String>,
}

/// Ads attributed to a purchase, and how many share its category.
#[derive(Debug, Default, Clone, Copy)]
pub struct Relevance {
    pub pages: usize,
    pub attributed: usize,
    pub same_category: usize,
    /// Ads that are best-sellers, attributed to nothing.
    pub fill: usize,
}

impl Relevance {
    pub fn share(&self) -> f64 {
        self.same_category as f64 / self.attributed.max(1) as f64
    }
}

impl AdsWorld {
    /// The data set `config` generates, folded into ads-svc's model.
    pub fn generate(config: &SeedConfig) -> Self {
        let data = Dataset::generate(config);
        let mut model = AdsModel::default();
        for product in &data.products {
            model.add_product(product.clone());
        }
        for order in &data.orders {
            model.add_order(order);
        }
        let category = data
            .products
            .iter()
            .map(|p| (p.product_id.clone(), p.category.clone()))
            .collect();
        Self {
            data,
            model,
            category,
        }
    }

    /// Every `step`th customer, the demo account first.
    pub fn customers(&self, step: usize) -> Vec<String> {
        self.data
            .customers
            .iter()
            .step_by(step.max(1))
            .map(|c| c.customer_id.clone())
            .collect()
    }

    /// How `method`'s ads for `customers` relate to what they are shown for.
    pub fn relevance(&mut self, method: Method, customers: &[String]) -> Relevance {
        let mut relevance = Relevance::default();
        for customer in customers {
            relevance.pages += 1;
            for pick in self.model.rank(method, customer) {
                let Some(anchor) = pick.anchor else {
                    relevance.fill += 1;
                    continue;
                };
                relevance.attributed += 1;
                if self.category.get(&anchor) == self.category.get(&pick.ad.product_id) {
                    relevance.same_category += 1;
                }
            }
        }
        relevance
    }
}
