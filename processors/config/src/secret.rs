//! Secrets: which settings hold credentials, and the wrapper that keeps one out of
//! everything printed (`Debug` output, the rendered configuration, error messages).

use std::fmt;

use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// What a masked secret prints as.
pub const MASK: &str = "********";

/// Whether a setting (a librdkafka key, a config file key) holds a credential, whose
/// value is never printed.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "private.key",
        "key.pem",
        "sasl.jaas",
        "oauthbearer.config",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// A secret: masked in `Debug` and when serialized (what gets printed), readable only
/// through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::tests::from_text;
    use crate::layers::Flags;

    #[test]
    fn credentials_are_recognised() {
        for key in [
            "sasl.password",
            "sasl.jaas.config",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "producer.sasl.password",
            "cursor_secret",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in [
            "sasl.mechanism",
            "sasl.username",
            "linger.ms",
            "ssl.ca.location",
        ] {
            assert!(!is_secret(key), "{key}");
        }
    }

    #[test]
    fn secrets_are_never_printed() {
        let text = "[kafka]\nbrokers = \"b:9092\"\n[kafka.settings]\n\"sasl.password\" = \"hunter2\"\n\"sasl.jaas.config\" = \"jaas-hunter2\"\n\"ssl.key.password\" = \"keypass-hunter2\"\n[query]\ncursor_secret = \"cursor-hunter2\"\n";
        let loaded = from_text(
            text,
            &[(
                "FUNNELFOLD_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
                "env-hunter2",
            )],
            Flags::new(),
        )
        .expect("valid");
        let rendered = loaded.render();
        let debug = format!("{:?} {:?}", loaded, loaded.settings);
        for printed in [&rendered, &debug] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains(MASK), "{printed}");
        }
        // The processors still get the real values.
        let kafka = loaded.settings.kafka_settings().expect("brokers");
        assert_eq!(kafka.extra["sasl.password"], "hunter2");
        assert_eq!(
            loaded
                .settings
                .query
                .cursor_secret
                .as_ref()
                .map(Secret::expose),
            Some("cursor-hunter2")
        );

        // A secret of the wrong type is not quoted in the error either.
        let err = from_text("[query]\ncursor_secret = 424242\n", &[], Flags::new())
            .expect_err("not a string")
            .to_string();
        assert!(!err.contains("424242"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }
}
