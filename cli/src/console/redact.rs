//! What the console never shows: a login's sealed password, password
//! hashes, and any field or header whose name says password, secret, token
//! or cookie. Names, cities and purchases are personal data the console
//! shows to its operators; secrets open accounts and are not theirs to see.

use serde_json::Value;

pub(super) const REDACTED: &str = "[redacted]";

/// Whether a field or header called `name` holds a secret.
pub(super) fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "token", "cookie", "authorization"]
        .iter()
        .any(|word| name.contains(word))
}

/// `value` with every secret field's value replaced, at any depth.
pub(super) fn redact(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if is_secret(name) {
                    if !field.is_null() {
                        *field = Value::String(REDACTED.into());
                    }
                } else {
                    redact(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_at_any_depth_and_the_rest_is_kept() {
        let mut value = serde_json::json!({
            "context": {"session_id": "s"},
            "login": {"username": "demo", "sealed_password": [1, 2, 3]},
            "users": [{"password_hash": "$argon2id$...", "name": "Ada"}],
            "headers": {"X-Webhook-Secret": "whsec_x", "request-id": "r"},
            "callback_token": null,
        });
        redact(&mut value);
        assert_eq!(value["login"]["sealed_password"], REDACTED);
        assert_eq!(value["login"]["username"], "demo");
        assert_eq!(value["users"][0]["password_hash"], REDACTED);
        assert_eq!(value["users"][0]["name"], "Ada");
        assert_eq!(value["headers"]["X-Webhook-Secret"], REDACTED);
        assert_eq!(value["headers"]["request-id"], "r");
        assert_eq!(value["context"]["session_id"], "s");
        assert!(value["callback_token"].is_null());
    }
}
