//! The effective configuration as a TOML file (what `funnelfold config check`
//! prints): every key with its value, secrets masked, and where the value comes from.

use toml::{Table, Value};

use crate::keys::{is_table_key, section_keys, sections, Key};
use crate::layers::{Loaded, Source};

impl Loaded {
    /// The effective settings as a TOML file (secrets masked), each value annotated
    /// with where it comes from and the environment variable that sets it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# funnelfold's effective configuration: built-in defaults");
        if let Some(file) = &self.file {
            out.push_str(&format!(", then {}", file.display()));
        }
        out.push_str(", then FUNNELFOLD_* environment variables.\n# Secrets are masked.\n");
        let table = Table::try_from(&self.settings).unwrap_or_default();
        for section in sections() {
            let values = match table.get(*section) {
                Some(Value::Table(t)) => t.clone(),
                _ => Table::new(),
            };
            out.push_str(&format!("\n[{section}]\n"));
            let mut subtables = Vec::new();
            for field in section_keys(section) {
                if is_table_key(section, field) {
                    subtables.push(*field);
                    continue;
                }
                let key = Key::Field { section, field };
                let origin = self.origin(&key);
                match values.get(*field) {
                    Some(v) => {
                        let line = format!("{} = {}", toml_key(field), toml_value(v));
                        out.push_str(&format!("{line:<44} # {origin}\n"));
                    }
                    None => {
                        let line = format!("# {field}: not set");
                        out.push_str(&format!("{line:<44} # {origin}\n"));
                    }
                }
            }
            for field in subtables {
                out.push_str(&format!("\n[{section}.{field}]\n"));
                if let Some(Value::Table(entries)) = values.get(field) {
                    for (k, v) in entries {
                        let key = Key::KafkaSetting(k.clone());
                        let line = format!("{} = {}", toml_key(k), toml_value(v));
                        out.push_str(&format!("{line:<44} # {}\n", self.origin(&key)));
                    }
                }
            }
        }
        out
    }

    fn origin(&self, key: &Key) -> String {
        match self.sources.get(key) {
            Some(Source::File(_)) => format!("file; env {}", key.env_name()),
            Some(Source::Env(name)) => format!("env {name}"),
            Some(Source::Flag(flag)) => format!("flag {flag}"),
            None => format!("default; env {}", key.env_name()),
        }
    }
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        toml_string(k)
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => toml_string(s),
        Value::Integer(i) => i.to_string(),
        Value::Float(x) if x.is_nan() => "nan".to_owned(),
        Value::Float(x) if x.is_infinite() => if *x > 0.0 { "inf" } else { "-inf" }.to_owned(),
        Value::Float(x) if x.fract() == 0.0 => format!("{x:.1}"),
        Value::Float(x) => x.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::layers::tests::from_text;
    use crate::layers::Flags;

    #[test]
    fn the_rendering_is_a_valid_file_with_the_same_settings() {
        let text = "[kafka]\nbrokers = \"b:9092\"\n[kafka.settings]\n\"linger.ms\" = 5\n[fold]\ninternal_domains = [\"a.example\"]\n[metrics]\nlisten = \"0.0.0.0:9100\"\n";
        let loaded = from_text(
            text,
            &[("FUNNELFOLD_QUERY_CACHE_TTL_MS", "5")],
            Flags::new(),
        )
        .expect("valid");
        let rendered = loaded.render();
        let again = from_text(&rendered, &[], Flags::new()).expect("renders a valid file");
        assert_eq!(again.settings, loaded.settings, "{rendered}");
        assert!(
            rendered.contains("# env FUNNELFOLD_QUERY_CACHE_TTL_MS"),
            "{rendered}"
        );
        assert!(
            rendered.contains("# default; env FUNNELFOLD_GROUP"),
            "{rendered}"
        );
        assert!(rendered.contains("# api_keys_file: not set"), "{rendered}");
    }
}
