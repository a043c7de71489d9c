//! user-svc: the first hop. On `page.requested` it authenticates the
//! request (a login's sealed password against the argon2id hash from the
//! `credentials` topic, or an open session from the `sessions` topic),
//! opens a session at login, closes it at logout, and emits `user.resolved`.

pub mod passwords;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use storefront_runtime::{
    service::StreamService, HandlerError, Inbound, InstanceSettings, KafkaSettings, Outbound,
    ReadModel, RecordHandler, RunningService, Telemetry, TelemetrySettings, Topics,
};
use storefront_schemas::{
    now_ms, rejection, Credential, Customer, EventSet, PageRequested, ReferenceRecord, Resolution,
    Session, SessionId, UnsealKey, UserProfile, UserResolved,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "user-svc", about = "Authenticates storefront requests")]
pub struct Settings {
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
    /// Address of /healthz and /readyz.
    #[arg(long, env = "STOREFRONT_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: SocketAddr,
    /// X25519 secret key (base64) that opens passwords sealed by the gateway; `storefront keygen` makes one.
    #[arg(long, env = "STOREFRONT_USER_SVC_SECRET_KEY", value_parser = UnsealKey::parse, hide_env_values = true)]
    pub secret_key: UnsealKey,
    /// How long a session lasts after login.
    #[arg(long, env = "STOREFRONT_SESSION_TTL_SECS", default_value_t = 86_400)]
    pub session_ttl_secs: u64,
    #[command(flatten)]
    pub instance: InstanceSettings,
}

/// Who may log in, who they are, and which sessions are open: user-svc's
/// read model, folded from the credentials, customers and sessions topics.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Directory {
    credentials: HashMap<String, Credential>,
    customers: HashMap<String, Customer>,
    sessions: HashMap<SessionId, Session>,
}

impl ReadModel for Directory {
    const LAYOUT: &'static str = "user directory 1";

    /// Folds a record of the credentials, customers or sessions topic of
    /// `topics`; says why a record is bad.
    fn apply(&mut self, record: &Inbound, topics: &Topics) -> Result<(), String> {
        match record.event::<ReferenceRecord>(topics)? {
            ReferenceRecord::Credential(c) => {
                self.credentials.insert(c.username.clone(), c);
            }
            ReferenceRecord::Customer(c) => {
                self.customers.insert(c.customer_id.clone(), c);
            }
            ReferenceRecord::Session(s) => {
                self.sessions.insert(s.session_id, s);
            }
            other => return Err(format!("{} is not read by user-svc", other.event_type())),
        }
        Ok(())
    }
}

impl Directory {
    /// The user whose session `session_id` is open at `now_ms`, or why not
    /// (a [`rejection`] code).
    pub fn resolve_session(
        &self,
        session_id: SessionId,
        now_ms: i64,
    ) -> Result<UserProfile, &'static str> {
        match self.sessions.get(&session_id) {
            None => Err(rejection::UNKNOWN_SESSION),
            Some(session) if session.expires_at_ms <= now_ms => Err(rejection::EXPIRED_SESSION),
            Some(session) => Ok(self.profile(&session.customer_id)),
        }
    }

    fn profile(&self, customer_id: &str) -> UserProfile {
        match self.customers.get(customer_id) {
            Some(c) => UserProfile {
                customer_id: c.customer_id.clone(),
                name: c.name.clone(),
                city: c.city.clone(),
            },
            None => UserProfile {
                customer_id: customer_id.to_owned(),
                name: customer_id.to_owned(),
                city: String::new(),
            },
        }
    }
}

struct Authenticator {
    directory: Arc<RwLock<Directory>>,
    key: UnsealKey,
    topics: Topics,
    session_ttl_ms: i64,
    /// Verified against when the username is unknown, so that an unknown
    /// user costs as much time as a wrong password.
    decoy_hash: Arc<str>,
    /// Hashes verified at once, at most: one per core. Each takes its
    /// argon2 memory cost (19 MiB at the recommended cost) and a core, so
    /// more at once would take memory and gain nothing.
    verifications: Arc<tokio::sync::Semaphore>,
}

enum Verdict {
    Authenticated(UserProfile),
    Rejected(&'static str),
}

impl Authenticator {
    async fn login(&self, username: &str, sealed_password: &[u8]) -> Verdict {
        let Some(password) = self.key.unseal(sealed_password) else {
            tracing::error!("a login's password is not sealed to this user-svc's key; is the gateway's STOREFRONT_USER_SVC_PUBLIC_KEY right?");
            return Verdict::Rejected(rejection::INVALID_CREDENTIALS);
        };
        let credential = self
            .directory
            .read()
            .expect("directory lock")
            .credentials
            .get(username)
            .cloned();
        let hash = credential.as_ref().map_or_else(
            || self.decoy_hash.clone(),
            |c| Arc::from(c.password_hash.as_str()),
        );
        let Ok(_permit) = self.verifications.acquire().await else {
            return Verdict::Rejected(rejection::INVALID_CREDENTIALS);
        };
        let verified = tokio::task::spawn_blocking(move || passwords::verify(&password, &hash))
            .await
            .unwrap_or(false);
        match credential {
            Some(credential) if verified => Verdict::Authenticated(
                self.directory
                    .read()
                    .expect("directory lock")
                    .profile(&credential.customer_id),
            ),
            _ => Verdict::Rejected(rejection::INVALID_CREDENTIALS),
        }
    }

    /// Ends a session at `at` (a logout); `None` if there is no such session.
    /// Derived from the request alone, so a redelivery writes the same record.
    fn close_session(&self, session_id: SessionId, at: i64) -> Option<Session> {
        let mut directory = self.directory.write().expect("directory lock");
        let session = directory.sessions.get_mut(&session_id)?;
        session.expires_at_ms = session.expires_at_ms.min(at);
        Some(session.clone())
    }

    fn session(&self, session_id: SessionId, now: i64) -> Verdict {
        match self
            .directory
            .read()
            .expect("directory lock")
            .resolve_session(session_id, now)
        {
            Ok(user) => Verdict::Authenticated(user),
            Err(reason) => Verdict::Rejected(reason),
        }
    }
}

impl RecordHandler for Authenticator {
    async fn handle(&self, record: Inbound) -> Result<Vec<Outbound>, HandlerError> {
        let request: PageRequested = record
            .decode()
            .map_err(|e| HandlerError::Invalid(e.to_string()))?;
        let context = request.context;
        let now = now_ms();
        if context.expired(now) {
            tracing::debug!(request_id = %context.request_id, "past its deadline; skipped");
            return Ok(vec![]);
        }
        let mut outputs = Vec::new();
        let verdict = match &request.login {
            Some(login) => {
                let verdict = self.login(&login.username, &login.sealed_password).await;
                if let Verdict::Authenticated(user) = &verdict {
                    // Derived from the request alone, so a redelivery writes the same session.
                    let session = Session {
                        session_id: context.session_id,
                        customer_id: user.customer_id.clone(),
                        opened_at_ms: context.requested_at_ms,
                        expires_at_ms: context.requested_at_ms + self.session_ttl_ms,
                    };
                    outputs.push(Outbound::reference(
                        &self.topics.sessions,
                        &session.session_id.to_string(),
                        &session,
                    ));
                    self.directory
                        .write()
                        .expect("directory lock")
                        .sessions
                        .insert(session.session_id, session);
                }
                verdict
            }
            None if request.logout => {
                if let Some(closed) =
                    self.close_session(context.session_id, context.requested_at_ms)
                {
                    outputs.push(Outbound::reference(
                        &self.topics.sessions,
                        &closed.session_id.to_string(),
                        &closed,
                    ));
                }
                Verdict::Rejected(rejection::LOGGED_OUT)
            }
            None => self.session(context.session_id, now),
        };
        let (status, rejection, user) = match verdict {
            Verdict::Authenticated(user) => (Resolution::Authenticated, None, Some(user)),
            Verdict::Rejected(reason) => (Resolution::Rejected, Some(reason.to_owned()), None),
        };
        tracing::info!(request_id = %context.request_id, ?status, ?rejection, login = request.login.is_some(), logout = request.logout, "resolved");
        let event = UserResolved {
            context,
            status,
            rejection,
            user,
        };
        outputs.push(Outbound::for_request(
            &self.topics.user_resolved,
            &event.context,
            &record.trace,
            &event,
        ));
        Ok(outputs)
    }
}

/// Starts user-svc; it runs until `shutdown` is cancelled.
pub async fn start(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningService> {
    let topics = settings.kafka.topics();
    let directory = Arc::new(RwLock::new(Directory::default()));
    let decoy_hash = Arc::from(passwords::hash(
        &random_password(),
        passwords::HashCost::RECOMMENDED,
    ));
    let handler = Authenticator {
        directory: directory.clone(),
        key: settings.secret_key,
        topics: topics.clone(),
        session_ttl_ms: (settings.session_ttl_secs as i64).saturating_mul(1000),
        decoy_hash,
        verifications: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        )),
    };
    let service = StreamService {
        name: "user-svc",
        http_addr: settings.http_addr,
        inputs: vec![topics.page_requested.clone()],
        reference_topics: vec![
            topics.credentials.clone(),
            topics.customers.clone(),
            topics.sessions.clone(),
        ],
        model: directory,
        instance: settings.instance,
        handler: Arc::new(handler),
        max_in_flight: 64,
        telemetry: Telemetry::new("user-svc", &settings.telemetry)?,
    };
    Ok(service.start(&settings.kafka, shutdown).await?)
}

fn random_password() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
