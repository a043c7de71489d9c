//! The secrets a storefront needs: user-svc's key pair (passwords are
//! sealed to it), the gateway's cookie key, the webhook signing secret and
//! the operator console's token.

use std::{collections::HashMap, path::Path};

use anyhow::Context;
use gateway::{cookies::CookieKey, webhooks::WebhookSecret};
use storefront_schemas::UnsealKey;

pub const SECRET_KEY_VAR: &str = "STOREFRONT_USER_SVC_SECRET_KEY";
pub const PUBLIC_KEY_VAR: &str = "STOREFRONT_USER_SVC_PUBLIC_KEY";
pub const COOKIE_KEY_VAR: &str = "STOREFRONT_COOKIE_KEY";
pub const WEBHOOK_SECRET_VAR: &str = "STOREFRONT_WEBHOOK_SECRET";
pub const CONSOLE_TOKEN_VAR: &str = "STOREFRONT_CONSOLE_TOKEN";

/// The secrets of one storefront.
pub struct Keys {
    pub unseal: UnsealKey,
    pub cookie: CookieKey,
    pub webhook: WebhookSecret,
    pub console: ConsoleToken,
}

/// The operator console's bearer token. It never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleToken(String);

impl ConsoleToken {
    /// 32 random bytes, base64url: 43 characters.
    pub fn generate() -> Self {
        use base64::Engine;
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
    }

    /// A token given by an operator: at least 16 characters, printable ASCII, no spaces.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        if text.len() < 16 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            anyhow::bail!(
                "{CONSOLE_TOKEN_VAR} must be at least 16 printable characters without spaces"
            );
        }
        Ok(Self(text.to_owned()))
    }

    /// The token, to compare with what a client sent or to hand to a client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ConsoleToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleToken([redacted])")
    }
}

/// Fresh keys as `.env` lines.
pub fn generate_env() -> String {
    env_lines(&Keys {
        unseal: UnsealKey::generate(),
        cookie: CookieKey::generate(),
        webhook: WebhookSecret::generate(),
        console: ConsoleToken::generate(),
    })
}

fn env_lines(keys: &Keys) -> String {
    format!(
        "{SECRET_KEY_VAR}={}\n{PUBLIC_KEY_VAR}={}\n{COOKIE_KEY_VAR}={}\n{WEBHOOK_SECRET_VAR}={}\n{CONSOLE_TOKEN_VAR}={}\n",
        keys.unseal.to_base64(),
        keys.unseal.seal_key().to_base64(),
        keys.cookie.to_base64(),
        keys.webhook.to_whsec(),
        keys.console.expose(),
    )
}

/// Loads the keys from `path`, creating it (mode 0600) on first use, so
/// sessions survive a restart of `storefront up`. A file from before
/// webhooks or the console existed gets the missing secret added.
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
    let added: Vec<String> = [
        (WEBHOOK_SECRET_VAR, WebhookSecret::generate().to_whsec()),
        (
            CONSOLE_TOKEN_VAR,
            ConsoleToken::generate().expose().to_owned(),
        ),
    ]
    .into_iter()
    .filter(|(name, _)| !text.contains(&format!("{name}=")))
    .map(|(name, value)| format!("{name}={value}\n"))
    .collect();
    if !added.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&added.concat());
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
        console: ConsoleToken::parse(var(CONSOLE_TOKEN_VAR)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_file_without_a_console_token_gets_one_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.env");
        let old: String = generate_env()
            .lines()
            .filter(|l| !l.starts_with(CONSOLE_TOKEN_VAR))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, &old).unwrap();
        let keys = load_or_create(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&old));
        assert!(text.contains(&format!("{CONSOLE_TOKEN_VAR}={}", keys.console.expose())));
        assert_eq!(load_or_create(&path).unwrap().console, keys.console);
        assert_eq!(format!("{:?}", keys.console), "ConsoleToken([redacted])");
    }

    #[test]
    fn a_short_or_spaced_console_token_is_refused() {
        assert!(ConsoleToken::parse("short").is_err());
        assert!(ConsoleToken::parse("a token with spaces in it").is_err());
        assert_eq!(ConsoleToken::generate().expose().len(), 43);
    }
}
