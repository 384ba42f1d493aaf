//! Plain-text tables: columns as wide as their widest cell, separated by two spaces.

/// A table being filled.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table with its header; `(none)` when it has no rows.
    pub fn render(&self) -> String {
        if self.rows.is_empty() {
            return "(none)".into();
        }
        self.lines(true)
    }

    /// The rows only (for two-column key/value tables).
    pub fn render_without_header(&self) -> String {
        self.lines(false)
    }

    fn lines(&self, header: bool) -> String {
        let columns = self.header.len();
        let mut widths = vec![0; columns];
        let all: Vec<&Vec<String>> = header
            .then_some(&self.header)
            .into_iter()
            .chain(self.rows.iter())
            .collect();
        for row in &all {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = Vec::new();
        for row in all {
            let cells: Vec<String> = (0..columns)
                .map(|i| {
                    let cell = row.get(i).map_or("", String::as_str);
                    format!("{cell:<width$}", width = widths[i])
                })
                .collect();
            out.push(cells.join("  ").trim_end().to_string());
        }
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_empty_tables_say_so() {
        let mut t = Table::new(&["ID", "ADDRESS"]);
        assert_eq!(t.render(), "(none)");
        t.row(vec!["1".into(), "127.0.0.1".into()]);
        t.row(vec!["10".into()]);
        assert_eq!(t.render(), "ID  ADDRESS\n1   127.0.0.1\n10");
        assert_eq!(t.render_without_header(), "1   127.0.0.1\n10");
    }
}
