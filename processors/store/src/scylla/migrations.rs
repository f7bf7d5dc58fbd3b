//! The ScyllaDB schema (`schemas/cql/*.cql`) and how it is applied: in order, once
//! each, recorded in `schema_migrations`.

use std::collections::BTreeSet;

use scylla::client::session::Session;

use crate::{Result, StoreError};

use super::errors::{corrupt, db_err};

/// The CQL migrations, in the order they apply (`schemas/cql/`).
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "001_keyspace.cql",
        include_str!("../../../../schemas/cql/001_keyspace.cql"),
    ),
    (
        "002_tables.cql",
        include_str!("../../../../schemas/cql/002_tables.cql"),
    ),
    (
        "003_checkpoint_logs.cql",
        include_str!("../../../../schemas/cql/003_checkpoint_logs.cql"),
    ),
    (
        "004_funnel_shares.cql",
        include_str!("../../../../schemas/cql/004_funnel_shares.cql"),
    ),
    (
        "005_journeys.cql",
        include_str!("../../../../schemas/cql/005_journeys.cql"),
    ),
    (
        "006_event_bots.cql",
        include_str!("../../../../schemas/cql/006_event_bots.cql"),
    ),
];

/// Checks a keyspace name before it is pasted into CQL: an unquoted CQL identifier
/// of at most 48 characters.
pub(super) fn check_keyspace(keyspace: &str) -> Result<()> {
    let ok = keyspace.len() <= 48
        && keyspace
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && keyspace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Fatal(format!(
            "invalid keyspace name {keyspace:?}: use a letter then letters, digits or '_' (at most 48)"
        )))
    }
}

/// The statements of a migration file: placeholders filled in, `--` comments
/// dropped, split on `;`.
pub fn migration_statements(text: &str, keyspace: &str, replication_factor: u32) -> Vec<String> {
    let without_comments: String = text
        .lines()
        .map(|line| match line.find("--") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .replace("${keyspace}", keyspace)
        .replace("${replication_factor}", &replication_factor.to_string())
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Applies the CQL migrations ([`MIGRATIONS`]) not yet applied to `keyspace`, in order,
/// creating the keyspace (SimpleStrategy, `replication_factor`) if needed. Returns the
/// names of the files it applied.
///
/// Applied files are recorded in `{keyspace}.schema_migrations`, each once all its
/// statements ran. Every statement is `IF NOT EXISTS`, or an `ALTER TABLE ... ADD` that
/// is skipped when its column exists ([`added_column`]), so a migration interrupted
/// half-way is simply run again. The driver waits for schema agreement after each DDL
/// statement. Run migrations from one place (a deploy step), not from every processor
/// at once: concurrent DDL is safe on ScyllaDB with Raft-based schema, less so on older
/// clusters.
pub async fn migrate(
    session: &Session,
    keyspace: &str,
    replication_factor: u32,
) -> Result<Vec<String>> {
    check_keyspace(keyspace)?;
    if replication_factor == 0 {
        return Err(StoreError::Fatal(
            "replication factor must be at least 1".into(),
        ));
    }
    let run = |cql: String| async move {
        session
            .query_unpaged(cql, &[])
            .await
            .map_err(db_err("running a migration"))?;
        Ok::<_, StoreError>(())
    };

    // The keyspace must exist before the table that records migrations can.
    let (first_name, first_text) = MIGRATIONS[0];
    for statement in migration_statements(first_text, keyspace, replication_factor) {
        run(statement).await?;
    }
    run(format!(
        "CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations (name text PRIMARY KEY, applied_at timestamp)"
    ))
    .await?;

    let applied: BTreeSet<String> = session
        .query_unpaged(
            format!("SELECT name FROM {keyspace}.schema_migrations"),
            &[],
        )
        .await
        .map_err(db_err("reading schema_migrations"))?
        .into_rows_result()
        .map_err(db_err("reading schema_migrations"))?
        .rows::<(String,)>()
        .map_err(|e| corrupt("schema_migrations", e))?
        .map(|row| {
            row.map(|(name,)| name)
                .map_err(|e| corrupt("schema_migrations row", e))
        })
        .collect::<Result<_>>()?;

    let mut newly = Vec::new();
    for (name, text) in MIGRATIONS {
        if applied.contains(*name) {
            continue;
        }
        if *name != first_name {
            for statement in migration_statements(text, keyspace, replication_factor) {
                if let Some((table, column)) = added_column(&statement, keyspace) {
                    if column_exists(session, keyspace, table, column).await? {
                        continue;
                    }
                }
                run(statement).await?;
            }
        }
        session
            .query_unpaged(
                format!("INSERT INTO {keyspace}.schema_migrations (name, applied_at) VALUES (?, toTimestamp(now()))"),
                (*name,),
            )
            .await
            .map_err(db_err("recording a migration"))?;
        newly.push(name.to_string());
    }
    Ok(newly)
}

/// The table and column of `ALTER TABLE {keyspace}.{table} ADD {column} {type}`. CQL
/// has no `ADD IF NOT EXISTS`, and adding a column that exists is an error, so the
/// runner looks the column up first.
pub(super) fn added_column<'a>(statement: &'a str, keyspace: &str) -> Option<(&'a str, &'a str)> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    match words.as_slice() {
        ["ALTER", "TABLE", table, "ADD", column, _type, ..] => table
            .strip_prefix(keyspace)
            .and_then(|t| t.strip_prefix('.'))
            .map(|table| (table, *column)),
        _ => None,
    }
}

/// Whether `keyspace.table` has `column`, from the schema tables (which hold unquoted
/// names, as all of ours are, in lower case).
async fn column_exists(
    session: &Session,
    keyspace: &str,
    table: &str,
    column: &str,
) -> Result<bool> {
    let rows = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns \
             WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
            (
                keyspace.to_lowercase(),
                table.to_lowercase(),
                column.to_lowercase(),
            ),
        )
        .await
        .map_err(db_err("reading system_schema.columns"))?
        .into_rows_result()
        .map_err(db_err("reading system_schema.columns"))?;
    Ok(rows.rows_num() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_split_into_statements() {
        let statements = migration_statements(MIGRATIONS[0].1, "ks_test", 3);
        assert_eq!(statements.len(), 1);
        assert!(statements[0].starts_with("CREATE KEYSPACE IF NOT EXISTS ks_test"));
        assert!(statements[0].contains("'replication_factor': 3"));
        let tables = migration_statements(MIGRATIONS[1].1, "ks_test", 3);
        assert!(
            tables
                .iter()
                .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS ks_test.")),
            "{tables:#?}"
        );
        assert!(tables.iter().all(|s| !s.contains("${")));
        assert_eq!(tables.len(), 11);
        // Later migrations run again after an interruption: every statement must be
        // safe to repeat (an added column is looked up first).
        for (name, text) in &MIGRATIONS[1..] {
            for statement in migration_statements(text, "ks_test", 3) {
                assert!(
                    statement.starts_with("CREATE TABLE IF NOT EXISTS ks_test.")
                        || added_column(&statement, "ks_test").is_some(),
                    "{name}: {statement}"
                );
            }
        }
    }

    #[test]
    fn added_columns_are_recognised_for_their_keyspace_only() {
        let adds: Vec<_> = migration_statements(
            include_str!("../../../../schemas/cql/006_event_bots.cql"),
            "ks_test",
            1,
        );
        let added: Vec<_> = adds.iter().map(|s| added_column(s, "ks_test")).collect();
        assert_eq!(
            added,
            vec![
                Some(("events_by_hour", "is_bot")),
                Some(("events_by_visitor", "is_bot"))
            ]
        );
        assert_eq!(
            added_column("ALTER TABLE other.t ADD c int", "ks_test"),
            None
        );
        assert_eq!(
            added_column("ALTER TABLE ks_test2.t ADD c int", "ks_test"),
            None
        );
        assert_eq!(
            added_column("ALTER TABLE ks_test.t DROP c", "ks_test"),
            None
        );
        assert_eq!(
            added_column(
                "CREATE TABLE IF NOT EXISTS ks_test.t (a int PRIMARY KEY)",
                "ks_test"
            ),
            None
        );
    }

    #[test]
    fn keyspace_names_are_checked() {
        assert!(check_keyspace("funnelfold").is_ok());
        assert!(check_keyspace("ff_test_123").is_ok());
        assert!(check_keyspace("").is_err());
        assert!(check_keyspace("1abc").is_err());
        assert!(check_keyspace("a; DROP KEYSPACE x").is_err());
    }
}
