//! The secrets a storefront needs: user-svc's key pair (passwords are
//! sealed to it), the gateway's cookie key and the webhook signing secret.

use std::{collections::HashMap, path::Path};

use anyhow::Context;
use gateway::{cookies::CookieKey, webhooks::WebhookSecret};
use storefront_schemas::UnsealKey;

pub const SECRET_KEY_VAR: &str = "STOREFRONT_USER_SVC_SECRET_KEY";
pub const PUBLIC_KEY_VAR: &str = "STOREFRONT_USER_SVC_PUBLIC_KEY";
pub const COOKIE_KEY_VAR: &str = "STOREFRONT_COOKIE_KEY";
pub const WEBHOOK_SECRET_VAR: &str = "STOREFRONT_WEBHOOK_SECRET";

/// The secrets of one storefront.
pub struct Keys {
    pub unseal: UnsealKey,
    pub cookie: CookieKey,
    pub webhook: WebhookSecret,
}

/// Fresh keys as `.env` lines.
pub fn generate_env() -> String {
    env_lines(&Keys {
        unseal: UnsealKey::generate(),
        cookie: CookieKey::generate(),
        webhook: WebhookSecret::generate(),
    })
}

fn env_lines(keys: &Keys) -> String {
    format!(
        "{SECRET_KEY_VAR}={}\n{PUBLIC_KEY_VAR}={}\n{COOKIE_KEY_VAR}={}\n{WEBHOOK_SECRET_VAR}={}\n",
        keys.unseal.to_base64(),
        keys.unseal.seal_key().to_base64(),
        keys.cookie.to_base64(),
        keys.webhook.to_whsec(),
    )
}

/// Loads the keys from `path`, creating it (mode 0600) on first use, so
/// sessions survive a restart of `storefront up`. A file from before
/// webhooks existed gets a webhook secret added.
pub fn load_or_create(path: &Path) -> anyhow::Result<Keys> {
    use std::os::unix::fs::PermissionsExt;
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, generate_env())
            .with_context(|| format!("failed to write {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let mut text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    if !text.contains(WEBHOOK_SECRET_VAR) {
        text.push_str(&format!(
            "{WEBHOOK_SECRET_VAR}={}\n",
            WebhookSecret::generate().to_whsec()
        ));
        std::fs::write(path, &text)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let var = |name: &str| {
        vars.get(name)
            .copied()
            .with_context(|| format!("no {name} in {}", path.display()))
    };
    Ok(Keys {
        unseal: UnsealKey::parse(var(SECRET_KEY_VAR)?)?,
        cookie: CookieKey::parse(var(COOKIE_KEY_VAR)?)?,
        webhook: WebhookSecret::parse(var(WEBHOOK_SECRET_VAR)?).map_err(anyhow::Error::msg)?,
    })
}
