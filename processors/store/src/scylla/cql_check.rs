//! Checks every statement the engine prepares ([`Statements::of`]) against the schema in
//! `schemas/cql/*.cql`, with no server: the tables and columns it names exist, the Rust
//! type bound to each marker serializes into the column's CQL type, and every read
//! looks up one partition (each partition-key column given by `=`, ranges only on
//! clustering columns, no `ALLOW FILTERING`, no `IN`, no scan across partitions).
//! Writes name whole primary keys. It also fails when the engine prepares or runs CQL
//! outside `statements.rs` (and the migrations), where this check would not see it.

use std::collections::BTreeMap;
use std::path::Path;

use super::migrations::{added_column, migration_statements, MIGRATIONS};
use super::statements::{Bind, Cql, Statements};

const KS: &str = "ks";

#[derive(Debug, Default)]
struct Table {
    /// Column → CQL type, spaces removed (`map<text,bigint>`).
    columns: BTreeMap<String, String>,
    partition_key: Vec<String>,
    clustering: Vec<String>,
}

/// Splits on `sep` outside parentheses and angle brackets.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let (mut parts, mut depth, mut current) = (Vec::new(), 0i32, String::new());
    for c in s.chars() {
        match c {
            '(' | '<' => depth += 1,
            ')' | '>' => depth -= 1,
            _ => {}
        }
        if c == sep && depth == 0 {
            parts.push(current.trim().to_string());
            current.clear();
        } else {
            current.push(c);
        }
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_string());
    }
    parts
}

fn names(list: &str) -> Vec<String> {
    list.split(',').map(|n| n.trim().to_string()).collect()
}

fn parse_create_table(statement: &str) -> (String, Table) {
    let rest = statement
        .strip_prefix(&format!("CREATE TABLE IF NOT EXISTS {KS}."))
        .unwrap_or_else(|| panic!("not a CREATE TABLE: {statement}"));
    let open = rest.find('(').expect("a column list");
    let name = rest[..open].trim().to_string();
    let mut depth = 0;
    let close = rest
        .char_indices()
        .skip(open)
        .find(|&(_, c)| {
            depth += match c {
                '(' => 1,
                ')' => -1,
                _ => 0,
            };
            depth == 0
        })
        .map(|(at, _)| at)
        .expect("a closed column list");
    let mut table = Table::default();
    for part in split_top(&rest[open + 1..close], ',') {
        if let Some(key) = part.strip_prefix("PRIMARY KEY") {
            let unwrap = |s: &str| {
                let s = s.trim();
                s.strip_prefix('(')
                    .and_then(|s| s.strip_suffix(')'))
                    .unwrap_or(s)
                    .to_string()
            };
            let parts = split_top(&unwrap(key), ',');
            let first = unwrap(&parts[0]);
            table.partition_key = names(&first);
            table.clustering = parts[1..].iter().map(|c| c.trim().to_string()).collect();
        } else {
            let (column, ty) = part.split_once(char::is_whitespace).expect("a column type");
            let ty = ty.trim();
            let ty = match ty.strip_suffix("PRIMARY KEY") {
                Some(ty) => {
                    table.partition_key = vec![column.to_string()];
                    ty.trim()
                }
                None => ty,
            };
            table
                .columns
                .insert(column.to_string(), ty.replace(' ', ""));
        }
    }
    (name, table)
}

/// The tables after every migration in `schemas/cql/`, applied in order.
fn schema() -> BTreeMap<String, Table> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/cql");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("schemas/cql")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cql"))
        .collect();
    files.sort();
    let applied: Vec<&str> = MIGRATIONS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        files, applied,
        "every file of schemas/cql is a migration the engine applies, in order"
    );
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for name in &files {
        let text = std::fs::read_to_string(dir.join(name)).expect("a migration");
        for statement in migration_statements(&text, KS, 1) {
            let statement = statement.split_whitespace().collect::<Vec<_>>().join(" ");
            if statement.starts_with("CREATE KEYSPACE") {
                continue;
            }
            if let Some((table, column)) = added_column(&statement, KS) {
                let ty = statement.split_whitespace().skip(5).collect::<String>();
                tables
                    .get_mut(table)
                    .unwrap_or_else(|| {
                        panic!("{name} alters a table no migration made: {statement}")
                    })
                    .columns
                    .insert(column.to_string(), ty);
                continue;
            }
            let (table, columns) = parse_create_table(&statement);
            tables.insert(table, columns);
        }
    }
    tables
}

/// `column op ?` conditions of a WHERE clause, in marker order, or the first condition
/// of another shape.
fn conditions(clause: &str) -> Result<Vec<(String, String)>, String> {
    clause
        .split(" AND ")
        .map(|condition| {
            let parts: Vec<&str> = condition.split_whitespace().collect();
            if parts.len() == 3 && parts[2] == "?" {
                Ok((parts[0].to_string(), parts[1].to_string()))
            } else {
                Err(format!("a condition other than `column op ?`: {condition}"))
            }
        })
        .collect()
}

/// Problems of one statement; none when it fits the schema.
fn check(name: &str, cql: &Cql, schema: &BTreeMap<String, Table>) -> Vec<String> {
    let text = cql.text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut problems = Vec::new();
    let upper = text.to_uppercase();
    for banned in ["ALLOW FILTERING", " IN ", "TOKEN(", " IN("] {
        if upper.contains(banned) {
            problems.push(format!("uses {}", banned.trim()));
        }
    }
    let markers = text.matches('?').count();
    if markers != cql.binds.len() {
        problems.push(format!(
            "{markers} markers, {} bind types declared",
            cql.binds.len()
        ));
    }
    let table_of = |t: &str| -> Option<&Table> { schema.get(t) };
    // (column, bind) pairs to type-check; the write timestamp is checked apart.
    let mut bound: Vec<(String, Bind)> = Vec::new();
    let mut binds = cql.binds.iter().copied();
    let table: &Table;
    let where_clause: Option<&str>;
    if let Some(rest) = text.strip_prefix("SELECT ") {
        let Some((columns, rest)) = rest.split_once(&format!(" FROM {KS}.")) else {
            return vec![format!("no FROM {KS}.table: {text}")];
        };
        let (t, clause) = match rest.split_once(" WHERE ") {
            Some((t, clause)) => (t, Some(clause)),
            None => (rest, None),
        };
        let Some(found) = table_of(t) else {
            return vec![format!("no table {t} in schemas/cql")];
        };
        table = found;
        for column in names(columns) {
            if !table.columns.contains_key(&column) {
                problems.push(format!("selects {column}, which {t} does not have"));
            }
        }
        where_clause = clause;
        if clause.is_none() {
            problems.push("reads without a WHERE: a scan across partitions".into());
        }
    } else if let Some(rest) = text.strip_prefix(&format!("INSERT INTO {KS}.")) {
        let Some((t, rest)) = rest.split_once(" (") else {
            return vec![format!("unreadable INSERT: {text}")];
        };
        let Some(found) = table_of(t) else {
            return vec![format!("no table {t} in schemas/cql")];
        };
        table = found;
        let (columns, _) = rest.split_once(") VALUES").expect("VALUES");
        let columns = names(columns);
        for key in table.partition_key.iter().chain(&table.clustering) {
            if !columns.contains(key) {
                problems.push(format!("writes {t} without its key column {key}"));
            }
        }
        for column in columns {
            match binds.next() {
                Some(bind) => bound.push((column, bind)),
                None => problems.push(format!("no bind type for {column}")),
            }
        }
        if !text.ends_with(" USING TIMESTAMP ?") || binds.next() != Some(Bind::I64) {
            problems.push(
                "does not write at the flush's timestamp (`USING TIMESTAMP ?`, an i64)".into(),
            );
        }
        where_clause = None;
    } else if let Some(rest) = text.strip_prefix(&format!("DELETE FROM {KS}.")) {
        let Some((t, clause)) = rest.split_once(" USING TIMESTAMP ? WHERE ") else {
            return vec![format!("a DELETE not at the flush's timestamp: {text}")];
        };
        let Some(found) = table_of(t) else {
            return vec![format!("no table {t} in schemas/cql")];
        };
        table = found;
        if binds.next() != Some(Bind::I64) {
            problems.push("binds the write timestamp as something other than i64".into());
        }
        let given: Vec<String> = match conditions(clause) {
            Ok(conditions) => conditions.into_iter().map(|(c, _)| c).collect(),
            Err(problem) => {
                problems.push(problem);
                Vec::new()
            }
        };
        for key in table.partition_key.iter().chain(&table.clustering) {
            if !given.contains(key) {
                problems.push(format!("deletes from {t} without its key column {key}"));
            }
        }
        where_clause = Some(clause);
    } else {
        return vec![format!("neither SELECT, INSERT nor DELETE: {text}")];
    }

    if let Some(clause) = where_clause {
        let conditions = match conditions(clause) {
            Ok(conditions) => conditions,
            Err(problem) => {
                problems.push(problem);
                Vec::new()
            }
        };
        for key in &table.partition_key {
            if !conditions.iter().any(|(c, op)| c == key && op == "=") {
                problems.push(format!("does not fix partition-key column {key} with `=`"));
            }
        }
        // Clustering columns: restricted in key order, `=` on a prefix, then ranges on
        // one column at most.
        let mut ranged: Option<&str> = None;
        let mut next_clustering = 0;
        for (column, op) in &conditions {
            if table.partition_key.contains(column) {
                continue;
            }
            let Some(at) = table.clustering.iter().position(|c| c == column) else {
                problems.push(format!("restricts {column}, not a key column"));
                continue;
            };
            match ranged {
                Some(r) if r != column => {
                    problems.push(format!("restricts {column} after a range on {r}"));
                }
                Some(_) => {}
                None if op == "=" => {
                    if at != next_clustering {
                        problems.push(format!("restricts {column} out of clustering order"));
                    }
                    next_clustering = at + 1;
                }
                None => {
                    if at != next_clustering {
                        problems.push(format!("ranges on {column} out of clustering order"));
                    }
                    ranged = Some(column);
                }
            }
        }
        for (column, _) in conditions {
            match binds.next() {
                Some(bind) => bound.push((column, bind)),
                None => problems.push(format!("no bind type for {column}")),
            }
        }
    }

    for (column, bind) in bound {
        match table.columns.get(&column) {
            None => problems.push(format!("names {column}, which the table does not have")),
            Some(ty) if *ty != bind.cql_type().replace(' ', "") => problems.push(format!(
                "binds {bind:?} (CQL {}) to {column}, a {ty}",
                bind.cql_type()
            )),
            Some(_) => {}
        }
    }
    problems
        .into_iter()
        .map(|p| format!("{name}: {p}\n    {text}"))
        .collect()
}

#[test]
fn every_statement_fits_the_schema_and_reads_one_partition() {
    let schema = schema();
    let statements = Statements::of(KS);
    let problems: Vec<String> = statements
        .all()
        .into_iter()
        .flat_map(|(name, cql)| check(name, cql, &schema))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_cql_is_prepared_or_run_outside_the_checked_statements() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/scylla");
    for entry in std::fs::read_dir(&dir).expect("src/scylla") {
        let path = entry.expect("entry").path();
        let file = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        // The migrations run DDL and their own bookkeeping; this file names the calls.
        if ["statements.rs", "migrations.rs", "cql_check.rs"].contains(&file.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        for call in [
            ".prepare(",
            "query_unpaged(",
            "query_iter(",
            "query_single_page(",
        ] {
            assert!(
                !text.contains(call),
                "{file} calls {call}: write the statement in statements.rs, where cql_check checks it"
            );
        }
    }
}

#[test]
fn the_check_finds_what_is_wrong() {
    let schema = schema();
    let bad = |text: &str, binds: &[Bind]| {
        let cql = Cql {
            text: text.to_string(),
            binds: binds.to_vec(),
        };
        check("bad", &cql, &schema)
    };
    use Bind::*;
    assert!(!bad(
        "SELECT nope FROM ks.profiles WHERE funnel_id = ? AND anonymous_id = ?",
        &[Str, Str]
    )
    .is_empty());
    assert!(!bad(
        "SELECT fold_state FROM ks.visitor_state WHERE funnel_id = ?",
        &[Str]
    )
    .is_empty());
    assert!(!bad("SELECT funnel_id FROM ks.funnel_shares", &[]).is_empty());
    assert!(!bad("SELECT fold_state FROM ks.visitor_state WHERE funnel_id = ? AND anonymous_id = ? ALLOW FILTERING", &[Str, Str]).is_empty());
    assert!(!bad("SELECT next_offset FROM ks.checkpoints WHERE consumer_group = ? AND topic = ? AND source_partition = ?", &[Str, Str, I64]).is_empty());
    assert!(!bad("SELECT bucket FROM ks.active_buckets WHERE funnel_id = ? AND year_bucket = ? AND bucket >= ?", &[Str, I32, I32]).is_empty());
    assert!(!bad(
        "INSERT INTO ks.visitor_state (funnel_id, fold_state) VALUES (?, ?) USING TIMESTAMP ?",
        &[Str, Bytes, I64]
    )
    .is_empty());
    assert!(!bad("DELETE FROM ks.sessions_by_visitor USING TIMESTAMP ? WHERE funnel_id = ? AND anonymous_id = ?", &[I64, Str, Str]).is_empty());
    assert!(!bad("SELECT x FROM ks.no_such_table WHERE a = ?", &[Str]).is_empty());
    // And what is right passes.
    assert_eq!(
        bad(
            "SELECT fold_state FROM ks.visitor_state WHERE funnel_id = ? AND anonymous_id = ?",
            &[Str, Str]
        ),
        Vec::<String>::new()
    );
}
