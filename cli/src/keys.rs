//! The secrets a storefront needs: user-svc's key pair (passwords are
//! sealed to it) and the gateway's cookie key.

use std::{collections::HashMap, path::Path};

use anyhow::Context;
use gateway::cookies::CookieKey;
use user_svc::UnsealKey;

pub const SECRET_KEY_VAR: &str = "STOREFRONT_USER_SVC_SECRET_KEY";
pub const PUBLIC_KEY_VAR: &str = "STOREFRONT_USER_SVC_PUBLIC_KEY";
pub const COOKIE_KEY_VAR: &str = "STOREFRONT_COOKIE_KEY";

/// Fresh keys as `.env` lines.
pub fn generate_env() -> String {
    let unseal = UnsealKey::generate();
    env_lines(&unseal, &CookieKey::generate())
}

fn env_lines(unseal: &UnsealKey, cookie: &CookieKey) -> String {
    format!(
        "{SECRET_KEY_VAR}={}\n{PUBLIC_KEY_VAR}={}\n{COOKIE_KEY_VAR}={}\n",
        unseal.to_base64(),
        unseal.seal_key().to_base64(),
        cookie.to_base64()
    )
}

/// Loads the keys from `path`, creating it (mode 0600) on first use, so
/// sessions survive a restart of `storefront up`.
pub fn load_or_create(path: &Path) -> anyhow::Result<(UnsealKey, CookieKey)> {
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let unseal = UnsealKey::generate();
        let cookie = CookieKey::generate();
        std::fs::write(path, env_lines(&unseal, &cookie))
            .with_context(|| format!("failed to write {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let unseal = UnsealKey::parse(vars.get(SECRET_KEY_VAR).context("no user-svc secret key")?)?;
    let cookie = CookieKey::parse(vars.get(COOKIE_KEY_VAR).context("no cookie key")?)?;
    Ok((unseal, cookie))
}
