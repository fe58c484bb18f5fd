//! Console page chrome: the HTML skeleton every page shares (head, skip link, navigation,
//! environment switcher, sign-out form), and small pieces reused by several pages (counts,
//! pagers, problem tables). maud escapes every interpolated value.
//!
//! Owns: markup only. Must not: read the store, the file system or the session table.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::result::Counts;
use crate::store::LoadRow;

/// Where a page sits in the navigation.
pub enum Nav<'a> {
    /// Signed out (sign-in, TOTP, errors).
    None,
    Lender {
        lender: &'a str,
        email: &'a str,
        env: &'a str,
        envs: &'a [String],
        /// The section's path segment (`loads`, `upload`, ...).
        section: &'a str,
        csrf: &'a str,
    },
    Operator {
        email: &'a str,
        section: &'a str,
        csrf: &'a str,
    },
}

const LENDER_SECTIONS: [(&str, &str); 5] = [
    ("loads", "Loads"),
    ("upload", "Upload"),
    ("validate", "Validate"),
    ("downloads", "Templates & lookups"),
    ("connect", "Connection"),
];

const OPERATOR_SECTIONS: [(&str, &str); 3] = [
    ("", "Lenders"),
    ("logins", "Logins & bans"),
    ("deliveries", "Failed deliveries"),
];

fn sign_out(csrf: &str) -> Markup {
    html! {
        form.signout method="post" action="/console/logout" {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { "Sign out" }
        }
    }
}

/// A whole page.
pub fn page(title: &str, nav: Nav<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · bulkload" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "bulkload" }
                    @match &nav {
                        Nav::None => {}
                        Nav::Lender { lender, email, env, envs, section, csrf } => {
                            nav aria-label="Sections" {
                                ul {
                                    @for (s, label) in LENDER_SECTIONS {
                                        li {
                                            @if *section == s {
                                                a href=(format!("/console/{env}/{s}")) aria-current="page" { (label) }
                                            } @else {
                                                a href=(format!("/console/{env}/{s}")) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                            nav.envs aria-label="Environment" {
                                ul {
                                    @for e in envs.iter() {
                                        li {
                                            @if e == env {
                                                a href=(format!("/console/{e}/{section}")) aria-current="page" { (e) }
                                            } @else {
                                                a href=(format!("/console/{e}/{section}")) { (e) }
                                            }
                                        }
                                    }
                                }
                            }
                            div.who { span { (email) " · " (lender) } (sign_out(csrf)) }
                        }
                        Nav::Operator { email, section, csrf } => {
                            nav aria-label="Sections" {
                                ul {
                                    @for (s, label) in OPERATOR_SECTIONS {
                                        @let href = if s.is_empty() { "/console/ops".to_string() } else { format!("/console/ops/{s}") };
                                        li {
                                            @if *section == s {
                                                a href=(href) aria-current="page" { (label) }
                                            } @else {
                                                a href=(href) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                            div.who { span { (email) " · operator" } (sign_out(csrf)) }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The counts of a load as a definition list: successes and failures, then every non-zero
/// counter (named as people say it; the result file's name in the tooltip).
pub fn counts(c: &Counts) -> Markup {
    const LABELS: [&str; 9] = [
        "Created",
        "Updated",
        "Added",
        "Removed",
        "Failed to create",
        "Failed to update",
        "Failed to add",
        "Failed to remove",
        "Wrong mode",
    ];
    html! {
        dl.counts {
            div { dt { "Succeeded" } dd { (c.successes()) } }
            div { dt { "Failed" } dd { (c.failures()) } }
            @for ((name, n), label) in c.named().into_iter().zip(LABELS) {
                @if n > 0 { div title=(name) { dt { (label) } dd { (n) } } }
            }
        }
    }
}

/// A load's state in words.
pub fn state(l: &LoadRow) -> &'static str {
    if !l.finished {
        "in progress"
    } else if l.error_message.is_some() {
        "refused"
    } else if l.counts.failures() > 0 {
        "with failures"
    } else {
        "succeeded"
    }
}

/// Previous / next links for a list of `total` items shown `per` at a time.
pub fn pager(base: &str, query: &str, page: i64, per: i64, total: i64) -> Markup {
    let pages = ((total + per - 1) / per).max(1);
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("&q={}", form_encode(query))
    };
    html! {
        nav.pager aria-label="Pages" {
            @if page > 1 {
                a href=(format!("{base}?page={}{q}", page - 1)) rel="prev" { "← Previous" }
            }
            span { "Page " (page) " of " (pages) " (" (total) ")" }
            @if page < pages {
                a href=(format!("{base}?page={}{q}", page + 1)) rel="next" { "Next →" }
            }
        }
    }
}

/// A filter form (GET, so it needs no CSRF token).
pub fn filter_form(action: &str, query: &str, label: &str) -> Markup {
    html! {
        form.filter method="get" action=(action) role="search" {
            label for="q" { (label) }
            input id="q" type="search" name="q" value=(query);
            button type="submit" { "Filter" }
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of a query value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A button copying the text of element `target` (hidden without JavaScript).
pub fn copy_button(target: &str) -> Markup {
    html! { button.copy type="button" data-copy=(target) hidden { "Copy" } }
}

/// Inline SVG: a bar chart of `values` (label, value) with an accessible name.
pub fn bar_chart(name: &str, values: &[(String, i64)]) -> Markup {
    let max = values.iter().map(|v| v.1).max().unwrap_or(0).max(1);
    let n = values.len().max(1) as f64;
    let (w, h) = (480.0, 120.0);
    let bw = w / n;
    let mut bars = String::new();
    for (i, (label, v)) in values.iter().enumerate() {
        let bh = (*v as f64 / max as f64) * (h - 20.0);
        let x = i as f64 * bw;
        // Labels and numbers are our own (hours, counts), escaped anyway.
        bars.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}: {}</title></rect>",
            x + 1.0,
            h - bh,
            (bw - 2.0).max(1.0),
            bh,
            esc(label),
            v
        ));
    }
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {w} {h}")) role="img" aria-label=(name) preserveAspectRatio="none" {
                (PreEscaped(bars))
            }
            figcaption { (name) ", max " (max) }
        }
    }
}

/// `s` escaped for HTML (through maud, never by hand).
fn esc(s: &str) -> String {
    html! { (s) }.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let m = page(
            "<script>",
            Nav::None,
            html! { p { ("\"&<>") } (bar_chart("c", &[("<b>".into(), 3)])) },
        )
        .into_string();
        assert!(!m.contains("<script>·") && m.contains("&lt;script&gt;"));
        assert!(m.contains("&quot;&amp;&lt;&gt;"));
        assert!(m.contains("&lt;b&gt;: 3"));
        assert_eq!(form_encode("a b&c"), "a+b%26c");
    }
}
