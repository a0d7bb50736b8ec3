//! The report as a table for people (`--json` prints [`Report`] itself).

use comfy_table::{presets::NOTHING, Table};

use super::Report;

pub fn table(report: &Report) -> String {
    let mut table = Table::new();
    table
        .load_style(NOTHING)
        .set_header(["CHECK", "STATUS", "DETAIL", "FIX"]);
    for c in &report.checks {
        let status = if c.fixed {
            format!("{} (fixed)", c.status.as_str())
        } else {
            c.status.as_str().to_string()
        };
        table.add_row([
            c.name.clone(),
            status,
            c.message.clone(),
            c.fix.clone().unwrap_or_default(),
        ]);
    }
    let mut out = crate::app::render::flush_left(table);
    let s = &report.summary;
    out.push_str(&format!(
        "{} ok, {} warning{}, {} failure{}\n",
        s.ok,
        s.warn,
        if s.warn == 1 { "" } else { "s" },
        s.fail,
        if s.fail == 1 { "" } else { "s" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::doctor::Check;

    #[test]
    fn a_row_per_check_and_a_summary() {
        let mut fixed = Check::ok("permissions", "instances/a: mode was 0755, set to 0700");
        fixed.fixed = true;
        let report = Report::new(vec![
            Check::ok(
                "docker",
                "Docker engine 20.10 at unix:///var/run/docker.sock",
            ),
            Check::fail(
                "image",
                "the agent image x:y is missing",
                "supervisor image build",
            ),
            fixed,
        ]);
        let text = table(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("CHECK"), "{text}");
        assert!(lines[0].contains("FIX"));
        assert!(text.contains("supervisor image build"));
        assert!(text.contains("ok (fixed)"));
        assert!(text.ends_with("2 ok, 0 warnings, 1 failure\n"), "{text}");
    }
}
