//! Loading the review report's rows from the database and shaping it for templates, text
//! and JSON. The arithmetic is `crate::core::report`'s.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::core::duration::format_seconds;
use crate::core::model::Kpi;
use crate::core::model::Workflow;
use crate::core::report::{self, FactRow, KpiResult, OpenedRow, Report, Scope};
use crate::shell::db::{Db, DbError};
use crate::shell::store::{self, from_ms};

pub async fn build(
    db: &Db,
    wf: &Workflow,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Report, DbError> {
    let opened: Vec<OpenedRow> = store::opened_between(db, &wf.name, since, until)
        .await?
        .into_iter()
        .map(|(ticket, priority, category)| OpenedRow {
            ticket,
            priority,
            category,
        })
        .collect();
    let facts: Vec<FactRow> = store::facts_between(db, &wf.name, since, until)
        .await?
        .into_iter()
        .map(|f| FactRow {
            ticket: f.ticket,
            priority: f.priority,
            kind: f.kind,
            clock: f.clock,
            outcome: f.outcome,
            value: f.value,
            at: from_ms(f.at),
        })
        .collect();
    Ok(report::build(&Scope::of(wf, since, until), &opened, &facts))
}

/// A KPI's value as people write it: NPS in signed points, CSAT and FCR in percent.
fn kpi_value(k: Kpi, v: Option<f64>) -> String {
    match (k, v) {
        (_, None) => "n/a".into(),
        (Kpi::Nps, Some(x)) => format!("{x:+.1}"),
        (_, x) => report::percent(x),
    }
}

fn kpi_target(k: &KpiResult) -> String {
    match (k.kpi, k.target) {
        (_, None) => "none".into(),
        (Kpi::Nps, Some(t)) => format!(">= {t:+.0}"),
        (_, Some(t)) => format!(">= {}", pct_target(t)),
    }
}

/// A target as written in the workflow file (`95%`, `92.5%`).
fn pct_target(t: f64) -> String {
    let p = t * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// `met`, `missed`, `no_target` or `no_data`: templates translate these.
fn verdict(k: &KpiResult) -> &'static str {
    match (k.met, k.target, k.value) {
        (Some(true), _, _) => "met",
        (Some(false), _, _) => "missed",
        (None, None, _) => "no_target",
        (None, _, _) => "no_data",
    }
}

fn kpi_label(k: Kpi) -> &'static str {
    match k {
        Kpi::Nps => "NPS",
        Kpi::Csat => "CSAT",
        Kpi::Fcr => "FCR",
    }
}

fn local(r: &Report, t: DateTime<Utc>) -> String {
    match r.timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) => t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    }
}

/// The `report` object templates see (strings already formatted; see the templates).
pub fn template_context(r: &Report) -> Value {
    let shares = |v: &[report::Share]| -> Vec<Value> {
        v.iter()
            .map(|s| json!({"name": s.name, "count": s.count, "share": report::percent(Some(s.share))}))
            .collect()
    };
    json!({
        "workflow": r.workflow,
        "since": local(r, r.since),
        "until": local(r, r.until),
        "timezone": r.timezone,
        "volume": r.volume,
        "resolved": r.resolved,
        "by_category": shares(&r.by_category),
        "by_priority": shares(&r.by_priority),
        "handling_time": {
            "mean": r.handling_mean_s.map(format_seconds).unwrap_or_else(|| "n/a".into()),
            "p90": r.handling_p90_s.map(format_seconds).unwrap_or_else(|| "n/a".into()),
        },
        "satisfaction": {
            "mean": r.satisfaction_mean.map(|m| format!("{m:.1}")).unwrap_or_else(|| "n/a".into()),
            "responses": r.responses,
        },
        "csat": report::percent(r.csat),
        "fcr": report::percent(r.fcr),
        "nps": kpi_value(Kpi::Nps, r.nps),
        "nps_answers": {"count": r.nps_responses, "promoters": r.promoters,
                        "passives": r.passives, "detractors": r.detractors},
        // Each KPI against this workflow's own target (`kpis:` in the workflow file).
        "kpis": r.kpis.iter().map(|k| json!({
            "kpi": k.kpi.as_str(), "label": kpi_label(k.kpi), "value": kpi_value(k.kpi, k.value),
            "target": kpi_target(k), "verdict": verdict(k),
        })).collect::<Vec<_>>(),
        "attainment": r.attainment.iter().map(|a| json!({
            "clock": a.clock, "priority": a.priority, "met": a.met, "breached": a.breached,
            "rate": report::percent(a.rate),
        })).collect::<Vec<_>>(),
        "breaches": r.breaches.iter().map(|b| json!({
            "ticket": b.ticket, "clock": b.clock, "priority": b.priority, "due": local(r, b.due),
        })).collect::<Vec<_>>(),
        "top_categories": r.top_categories.iter().map(|s| json!({"name": s.name, "count": s.count})).collect::<Vec<_>>(),
    })
}

/// Plain-text rendering for `slakeeper report`.
pub fn render_text(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Review: {}  {} — {} ({})\n",
        r.workflow,
        local(r, r.since),
        local(r, r.until),
        r.timezone
    ));
    s.push_str(&format!(
        "  volume {}   resolved {}   handling mean {}  p90 {}\n",
        r.volume,
        r.resolved,
        r.handling_mean_s
            .map(format_seconds)
            .unwrap_or_else(|| "n/a".into()),
        r.handling_p90_s
            .map(format_seconds)
            .unwrap_or_else(|| "n/a".into())
    ));
    s.push_str(&format!(
        "  satisfaction {} ({} responses)   NPS answers {} ({} promoters, {} passives, {} detractors)\n",
        r.satisfaction_mean
            .map(|m| format!("{m:.2}"))
            .unwrap_or_else(|| "n/a".into()),
        r.responses,
        r.nps_responses,
        r.promoters,
        r.passives,
        r.detractors
    ));
    s.push_str("  KPIs (this workflow's targets):\n");
    for k in &r.kpis {
        s.push_str(&format!(
            "    {:<6} {:>7}   target {:<8} {}\n",
            kpi_label(k.kpi),
            kpi_value(k.kpi, k.value),
            kpi_target(k),
            verdict(k).replace('_', " ")
        ));
    }
    for (title, list) in [
        ("by category", &r.by_category),
        ("by priority", &r.by_priority),
    ] {
        s.push_str(&format!("  {title}:\n"));
        for c in list {
            s.push_str(&format!(
                "    {:<24} {:>5}  {}\n",
                c.name,
                c.count,
                report::percent(Some(c.share))
            ));
        }
    }
    s.push_str("  SLA attainment:\n");
    for a in &r.attainment {
        s.push_str(&a.text_line());
    }
    s.push_str(&format!("  breaches ({}):\n", r.breaches.len()));
    for b in &r.breaches {
        s.push_str(&format!(
            "    {:<20} {:<24} {:<12} due {}\n",
            b.ticket,
            b.clock,
            b.priority,
            local(r, b.due)
        ));
    }
    s.push_str("  top categories:\n");
    for (i, c) in r.top_categories.iter().enumerate() {
        s.push_str(&format!("    {}. {} ({})\n", i + 1, c.name, c.count));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The weekly review (text, and the email in both languages) judges each KPI against the
    /// workflow's own target: franchise-store (seed 004) asks CSAT 95 %, so 90 % is missed
    /// there although it would have passed the old fixed 90 % line.
    #[test]
    fn review_shows_each_kpi_against_the_workflows_own_target() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
        let cfg = crate::workflow::load_dir(&dir)
            .unwrap_or_else(|d| panic!("{}", crate::workflow::render_diags(&d)));
        let Some(wf) = cfg.catalog.get("franchise-store") else {
            panic!("franchise-store is shipped");
        };
        let at = Utc
            .with_ymd_and_hms(2026, 11, 20, 1, 0, 0)
            .single()
            .expect("instant");
        let fact = |kind: &str, outcome: Option<&str>, value: i64| FactRow {
            ticket: "T1".into(),
            priority: "general".into(),
            kind: kind.into(),
            clock: None,
            outcome: outcome.map(str::to_string),
            value: Some(value),
            at,
        };
        let mut facts: Vec<FactRow> = [5, 5, 5, 5, 5, 4, 4, 4, 4, 2]
            .into_iter()
            .map(|s| fact("score", None, s))
            .collect();
        for n in [10u8, 9, 3] {
            facts.push(fact("nps", Some(report::nps_class(n)), i64::from(n)));
        }
        let since = at - chrono::Duration::days(7);
        let r = report::build(
            &Scope::of(wf, since, at + chrono::Duration::days(1)),
            &[],
            &facts,
        );

        let text = render_text(&r);
        let line = |k: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(k))
                .unwrap_or_default()
                .to_string()
        };
        assert!(line("CSAT").contains("90.0%"), "{text}");
        assert!(line("CSAT").contains(">= 95%") && line("CSAT").ends_with("missed"));
        assert!(line("NPS ").contains("+33.3") && line("NPS ").ends_with("missed"));
        assert!(line("FCR").contains("n/a") && line("FCR").ends_with("no data"));
        assert!(
            !text.contains("85%") && !text.contains("target 90%"),
            "{text}"
        );

        let ctx = json!({ "report": template_context(&r) });
        let en = cfg
            .templates
            .render("weekly_review", "en", "en", &ctx)
            .expect("renders");
        assert!(
            en.body.contains("- CSAT: 90.0% (target >= 95%): MISSED"),
            "{}",
            en.body
        );
        assert!(en.body.contains("- NPS: +33.3 (target >= +40): MISSED"));
        assert!(
            en.body
                .contains("- First-contact resolution: n/a (target >= 80%): no data")
        );
        let zh = cfg
            .templates
            .render("weekly_review", "zh-CN", "zh-CN", &ctx)
            .expect("renders");
        assert!(
            zh.body
                .contains("- 客户满意度 CSAT：90.0%（目标 ≥ 95%）未达标"),
            "{}",
            zh.body
        );
        assert!(
            zh.body
                .contains("- 首次解决率 FCR：暂无（目标 ≥ 80%）暂无数据")
        );
    }
}
