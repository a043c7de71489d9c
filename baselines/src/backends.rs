//! The business of the user, history and ads roles: the real services'
//! read models, folded from the same topics by the same reference reader,
//! and the functions the real services answer with.

use std::sync::{Arc, RwLock};

use ads_svc::{AdsModel, InjectDelay};
use storefront_read_models::{recent_purchases, PurchaseHistory};
use storefront_runtime::{
    DeadLetters, EventProducer, InstanceSettings, KafkaSettings, ReadModel, Readiness,
    ReferenceReader, Telemetry,
};
use storefront_schemas::{now_ms, CustomerId, SessionId};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use user_svc::Directory;

use crate::{
    parts::{AdsPart, HistoryPart, UserPart},
    Result, Role, Settings,
};

/// user-svc's directory of customers and sessions.
#[derive(Clone)]
pub(crate) struct Users(Arc<RwLock<Directory>>);

impl Users {
    /// The user whose session is open now, or why not.
    pub(crate) fn resolve(&self, session: &SessionId) -> UserPart {
        let picked_up_at_ms = now_ms();
        let resolved = self
            .0
            .read()
            .expect("directory lock")
            .resolve_session(*session, picked_up_at_ms);
        let (user, rejection) = match resolved {
            Ok(user) => (Some(user), None),
            Err(rejection) => (None, Some(rejection.to_owned())),
        };
        UserPart {
            picked_up_at_ms,
            user,
            rejection,
        }
    }
}

/// history-svc's read model.
#[derive(Clone)]
pub(crate) struct History(Arc<RwLock<PurchaseHistory>>);

impl History {
    /// The customer's recent distinct purchases, as history-svc finds them.
    pub(crate) fn recent(&self, customer: &CustomerId) -> HistoryPart {
        let picked_up_at_ms = now_ms();
        let purchases = {
            let model = self.0.read().expect("read model lock");
            recent_purchases(
                &model.catalog,
                &model.orders,
                customer.as_str(),
                history_svc::RECENT_PURCHASES,
            )
        };
        HistoryPart {
            picked_up_at_ms,
            customer_id: customer.to_string(),
            purchases,
        }
    }
}

/// ads-svc's read model, and its fault injection.
#[derive(Clone)]
pub(crate) struct Ads {
    model: Arc<RwLock<AdsModel>>,
    inject_delay: InjectDelay,
}

impl Ads {
    /// The customer's ads as ads-svc ranks them, late for the injected
    /// fraction of requests (an async sleep: others are not held up).
    pub(crate) async fn select(&self, customer: &CustomerId) -> AdsPart {
        let picked_up_at_ms = now_ms();
        let ads = self
            .model
            .write()
            .expect("read model lock")
            .select(customer.as_str());
        self.inject_delay.apply().await;
        AdsPart {
            picked_up_at_ms,
            customer_id: customer.to_string(),
            ads,
        }
    }
}

/// The business of one non-gateway role.
#[derive(Clone)]
pub(crate) enum Backend {
    Users(Users),
    History(History),
    Ads(Ads),
}

impl Backend {
    /// The role's read model, loaded and then kept up to date by a reference
    /// reader spawned on `tasks` (it marks `REFERENCE_LOADED` on `readiness`).
    /// The user role follows `sessions` on: sessions opened later resolve too.
    pub(crate) fn load(
        role: Role,
        settings: &Settings,
        telemetry: &Telemetry,
        readiness: Readiness,
        tasks: &mut JoinSet<storefront_runtime::Result<()>>,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let topics = settings.kafka.topics();
        let follow = Follow {
            kafka: &settings.kafka,
            instance: &settings.instance,
            telemetry,
            readiness,
            tasks,
            shutdown,
        };
        Ok(match role {
            Role::User => {
                let directory = Arc::new(RwLock::new(Directory::default()));
                follow.spawn(
                    vec![topics.customers.clone(), topics.sessions.clone()],
                    directory.clone(),
                )?;
                Self::Users(Users(directory))
            }
            Role::History => {
                let model = Arc::new(RwLock::new(PurchaseHistory::default()));
                follow.spawn(
                    vec![topics.catalog.clone(), topics.orders.clone()],
                    model.clone(),
                )?;
                Self::History(History(model))
            }
            Role::Ads => {
                let model = Arc::new(RwLock::new(AdsModel::default()));
                follow.spawn(
                    vec![topics.catalog.clone(), topics.orders.clone()],
                    model.clone(),
                )?;
                Self::Ads(Ads {
                    model,
                    inject_delay: settings.inject_delay.clone(),
                })
            }
            Role::Gateway => unreachable!("the gateway has no read model"),
        })
    }
}

/// What a reference reader needs.
struct Follow<'a> {
    kafka: &'a KafkaSettings,
    instance: &'a InstanceSettings,
    telemetry: &'a Telemetry,
    readiness: Readiness,
    tasks: &'a mut JoinSet<storefront_runtime::Result<()>>,
    shutdown: CancellationToken,
}

impl Follow<'_> {
    /// Folds `topics` into `model` from its checkpoint or the beginning,
    /// then follows them; bad records are dead-lettered, as the real
    /// services do.
    fn spawn<M: ReadModel>(self, topics: Vec<String>, model: Arc<RwLock<M>>) -> Result<()> {
        let producer = EventProducer::new(self.kafka, self.telemetry)?;
        let dead_letters = DeadLetters::new(producer, self.kafka.topics().dead_letters);
        let service = self.telemetry.service();
        let reader = ReferenceReader {
            service,
            topics,
            model,
            checkpoints: self.instance.checkpoints(service, &self.kafka.topic_prefix),
        };
        let (kafka, readiness, shutdown) = (self.kafka.clone(), self.readiness, self.shutdown);
        self.tasks
            .spawn(async move { reader.run(&kafka, dead_letters, readiness, shutdown).await });
        Ok(())
    }
}
