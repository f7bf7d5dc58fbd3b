//! Plain-text tables for terminals: left-aligned text, right-aligned numbers.

use std::fmt;

pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(header: I) -> Self {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, cells: I) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Writes the table, each line prefixed by `indent`.
    pub fn write(&self, f: &mut impl fmt::Write, indent: &str) -> fmt::Result {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in self.rows.iter().chain([&self.header]) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        // A column is numeric when every non-empty body cell is (the header is text).
        let is_number = |c: &str| {
            let c = c.trim_end_matches('%').trim_end_matches('×');
            c == "-" || c.replace([',', '.'], "").parse::<i64>().is_ok()
        };
        let numeric: Vec<bool> = (0..columns)
            .map(|i| {
                let cells: Vec<&str> = self
                    .rows
                    .iter()
                    .filter_map(|r| r.get(i).map(String::as_str))
                    .filter(|c| !c.is_empty())
                    .collect();
                !cells.is_empty() && cells.iter().all(|c| is_number(c))
            })
            .collect();
        for row in [&self.header].into_iter().chain(&self.rows) {
            let mut line = String::from(indent);
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                let pad = width - cell.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if numeric[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if i + 1 < columns {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_align_right_and_text_left() {
        let mut t = Table::new(["topic", "records"]);
        t.row(["events.raw", "1,200"]);
        t.row(["dlq", "3"]);
        let mut s = String::new();
        t.write(&mut s, "  ").expect("write");
        assert_eq!(
            s,
            "  topic       records\n  events.raw    1,200\n  dlq               3\n"
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
    }
}
