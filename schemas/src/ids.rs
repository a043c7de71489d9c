use std::fmt;

/// An identifier that did not parse.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {value:?} is not valid: {reason}")]
pub struct IdError {
    kind: &'static str,
    value: String,
    reason: &'static str,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) identifier.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// Parses the hyphenated UUID form used on the topics.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                uuid::Uuid::parse_str(value).map(Self).map_err(|_| IdError {
                    kind: $kind,
                    value: value.chars().take(64).collect(),
                    reason: "expected a UUID",
                })
            }

            pub fn as_uuid(&self) -> &uuid::Uuid {
                &self.0
            }

            /// When a time-ordered identifier was made (Unix ms); `None`
            /// for a UUID that carries no time.
            pub fn created_at_ms(&self) -> Option<i64> {
                let (secs, nanos) = self.0.get_timestamp()?.to_unix();
                Some(secs as i64 * 1000 + i64::from(nanos / 1_000_000))
            }

            /// An identifier derived from 16 bytes of a keyed hash (UUIDv8).
            pub fn derived(bytes: [u8; 16]) -> Self {
                Self(uuid::Uuid::new_v8(bytes))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;

            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        /// Written as the hyphenated string the schemas declare.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        /// Read from a string; one that is not a UUID fails the whole record.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                Self::parse(&value).map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_id!(
    /// One page request, from the gateway to the completed page.
    RequestId,
    "request id"
);
uuid_id!(
    /// A shopper's session; the key of every request-path record.
    SessionId,
    "session id"
);

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Accepts 1 to 64 characters of ASCII letters, digits, `-` and `_`.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let valid = !value.is_empty()
                    && value.len() <= 64
                    && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if valid {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(IdError {
                        kind: $kind,
                        value: value.chars().take(64).collect(),
                        reason: "expected 1-64 ASCII letters, digits, '-' or '_'",
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_id!(
    /// A customer in the reference data, e.g. `c-000042`.
    CustomerId,
    "customer id"
);
text_id!(
    /// A catalog product, e.g. `p-0007`.
    ProductId,
    "product id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_what_is_not_theirs() {
        assert!(SessionId::parse("not-a-uuid").is_err());
        assert!(ProductId::parse("p 1").is_err());
        assert!(ProductId::parse("").is_err());
        let id = RequestId::new();
        assert_eq!(RequestId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn ids_travel_as_their_string_form() {
        let id = SessionId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<SessionId>(&json).unwrap(), id);
        let error = serde_json::from_str::<SessionId>("\"nope\"").unwrap_err();
        assert!(error.to_string().contains("session id"), "{error}");
    }
}
